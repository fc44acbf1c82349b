import t from 'tap';
import { InvalidArgumentError } from '../src/errdefs/errors.js';
import { parseStdio, type StdioPaths, type StdioTarget } from '../src/taskapi/io/stdio-uri.js';

function paths(stdout: string, stdin = '', stderr = ''): StdioPaths {
  return { stdin, stdout, stderr, terminal: false };
}

const CASES: readonly { name: string; input: StdioPaths; want: StdioTarget }[] = [
  { name: 'all empty is no IO', input: paths(''), want: { kind: 'null' } },
  { name: 'all empty with a terminal is still no IO', input: { ...paths(''), terminal: true }, want: { kind: 'null' } },
  {
    name: 'plain paths are FIFOs',
    input: paths('/run/x/stdout', '/run/x/stdin', '/run/x/stderr'),
    want: { kind: 'fifo', stdin: '/run/x/stdin', stdout: '/run/x/stdout', stderr: '/run/x/stderr' },
  },
  { name: 'stdout only', input: paths('/f/out'), want: { kind: 'fifo', stdin: '', stdout: '/f/out', stderr: '' } },
  { name: 'stdin only', input: paths('', '/f/in'), want: { kind: 'fifo', stdin: '/f/in', stdout: '', stderr: '' } },
  { name: 'stderr only', input: paths('', '', '/f/err'), want: { kind: 'fifo', stdin: '', stdout: '', stderr: '/f/err' } },
  {
    name: 'fifo:// URIs are FIFOs at their path',
    input: paths('fifo:///f/out', 'fifo:///f/in', 'fifo:///f/err'),
    want: { kind: 'fifo', stdin: '/f/in', stdout: '/f/out', stderr: '/f/err' },
  },
  {
    name: 'fifo:// paths are percent-decoded',
    input: paths('fifo:///f/with%20space'),
    want: { kind: 'fifo', stdin: '', stdout: '/f/with space', stderr: '' },
  },
  { name: 'file:///p appends to one file', input: paths('file:///var/log/c1.log'), want: { kind: 'file', path: '/var/log/c1.log' } },
  { name: 'file:// is case-insensitive in its scheme', input: paths('FILE:///var/log/c1.log'), want: { kind: 'file', path: '/var/log/c1.log' } },
  { name: 'file:// path is percent-decoded', input: paths('file:///var/log/my%20log'), want: { kind: 'file', path: '/var/log/my log' } },
  {
    name: 'file:// ignores the FIFO fields beside it',
    input: paths('file:///l', '/f/in', 'file:///l'),
    want: { kind: 'file', path: '/l' },
  },
  { name: 'binary:///p with no query has no args', input: paths('binary:///usr/bin/logger'), want: { kind: 'binary', path: '/usr/bin/logger', args: [] } },
  {
    name: 'binary:///p?a=b&c=d passes key, value pairs as args',
    input: paths('binary:///p?a=b&c=d'),
    want: { kind: 'binary', path: '/p', args: ['a', 'b', 'c', 'd'] },
  },
  {
    name: 'binary query values are decoded',
    input: paths('binary:///bin/log?dir=%2Fvar%2Flog&tag=a+b'),
    want: { kind: 'binary', path: '/bin/log', args: ['dir', '/var/log', 'tag', 'a b'] },
  },
];

t.test('parseStdio table', (t) => {
  for (const c of CASES) t.same(parseStdio(c.input), c.want, c.name);
  t.end();
});

function refusal(input: StdioPaths): Error | undefined {
  try {
    parseStdio(input);
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

const BAD: readonly { name: string; input: StdioPaths; mentions: readonly string[] }[] = [
  { name: 'unknown scheme on stdout', input: paths('tcp://127.0.0.1:9/x'), mentions: ['"tcp"', 'tcp://127.0.0.1:9/x'] },
  { name: 'unknown scheme on stdin', input: paths('/f/out', 'http://h/in'), mentions: ['"http"', 'http://h/in'] },
  { name: 'unknown scheme on stderr', input: paths('/f/out', '', 'ftp://h/err'), mentions: ['"ftp"'] },
  { name: 'file:// with no path', input: paths('file://'), mentions: ['file', 'no path'] },
  { name: 'binary:// with no path', input: paths('binary://'), mentions: ['binary', 'no path'] },
  { name: 'a file:// stdin beside a FIFO stdout', input: paths('/f/out', 'file:///x'), mentions: ['"file"'] },
  { name: 'malformed percent-encoding in a file path', input: paths('file:///p%zz'), mentions: ['file:///p%zz'] },
  { name: 'malformed percent-encoding in a fifo path', input: paths('fifo:///p%zz'), mentions: ['fifo:///p%zz'] },
  { name: 'malformed percent-encoding in a binary path', input: paths('binary:///p%E0%A4%A'), mentions: ['binary:///p%E0%A4%A'] },
];

t.test('bad URIs are InvalidArgument and say what was wrong', (t) => {
  for (const c of BAD) {
    const err = refusal(c.input);
    t.type(err, InvalidArgumentError, `${c.name}: InvalidArgumentError`);
    for (const word of c.mentions) t.match(err?.message ?? '', word, `${c.name}: message names ${word}`);
  }
  t.end();
});
