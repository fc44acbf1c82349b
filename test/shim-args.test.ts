import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './harness/repo.js';
import { parseShimArgs, type ShimArgs } from '../src/shim/args.js';

const NONE: ShimArgs = {
  namespace: '',
  id: '',
  address: '',
  publishBinary: '',
  bundle: '',
  socket: '',
  debug: false,
  version: false,
  action: undefined,
};

function failure(argv: string[]): Error | undefined {
  try {
    parseShimArgs(argv);
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

t.test('containerd 1.6 start command line', (t) => {
  const args = parseShimArgs(['-namespace', 'ns', '-address', 'a', '-publish-binary', 'b', '-id', 'x', '-debug', 'start']);
  t.same(args, { ...NONE, namespace: 'ns', address: 'a', publishBinary: 'b', id: 'x', debug: true, action: 'start' });
  t.end();
});

t.test('containerd 1.6 delete command line with -bundle', (t) => {
  const args = parseShimArgs(['-namespace', 'ns', '-address', '/run/c.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'x', '-bundle', '/run/b/x', 'delete']);
  t.same(args, { ...NONE, namespace: 'ns', address: '/run/c.sock', publishBinary: '/usr/bin/containerd', id: 'x', bundle: '/run/b/x', action: 'delete' });
  t.end();
});

t.test('the serve command line has no action', (t) => {
  const args = parseShimArgs(['-namespace', 'ns', '-id', 'x', '-address', 'a', '-socket', 'unix:///run/s/abc']);
  t.same(args, { ...NONE, namespace: 'ns', id: 'x', address: 'a', socket: 'unix:///run/s/abc' });
  t.equal(args.action, undefined);
  t.end();
});

t.test('Go flag spellings: -name value, -name=value, --name value, --name=value', (t) => {
  for (const argv of [['-id', 'x'], ['-id=x'], ['--id', 'x'], ['--id=x']]) {
    t.equal(parseShimArgs(argv).id, 'x', argv.join(' '));
  }
  t.equal(parseShimArgs(['-publish-binary=/bin/c']).publishBinary, '/bin/c');
  t.equal(parseShimArgs(['-id', '1234']).id, '1234', 'numeric-looking values stay strings');
  t.equal(parseShimArgs(['-id=']).id, '', '-id= is an explicit empty value');
  t.same(parseShimArgs(['-publish-binary', '', '-id', 'x']), { ...NONE, id: 'x' }, 'an empty separate value is a value too');
  t.end();
});

t.test('-id is one flag, not -i -d', (t) => {
  t.same(parseShimArgs(['-id', 'x']), { ...NONE, id: 'x' });
  t.end();
});

t.test('booleans: -debug, -debug=false, -v', (t) => {
  t.equal(parseShimArgs(['-debug']).debug, true);
  t.equal(parseShimArgs(['-debug=true']).debug, true);
  t.equal(parseShimArgs(['-debug=false']).debug, false);
  t.equal(parseShimArgs([]).debug, false);
  t.same(parseShimArgs(['-v']), { ...NONE, version: true });
  t.equal(parseShimArgs(['--v']).version, true);
  t.end();
});

t.test('a repeated flag keeps its last value, as Go does', (t) => {
  const args = parseShimArgs(['-namespace', 'a', '-namespace', 'b']);
  t.equal(args.namespace, 'b');
  t.equal(typeof args.namespace, 'string', 'never an array');
  t.end();
});

t.test('errors', (t) => {
  const cases: { argv: string[]; says: RegExp }[] = [
    { argv: ['-nope', '1'], says: /nope/ },
    { argv: ['-namespace', 'ns', '-bogus-flag', 'start'], says: /bogus-flag|bogusFlag/ },
    { argv: ['-version'], says: /version/ },
    { argv: ['-h'], says: /\bh\b/ },
    { argv: ['bogus'], says: /unknown action "bogus": want start or delete/ },
    { argv: ['-id', 'x', 'stop'], says: /unknown action "stop"/ },
    { argv: ['start', 'extra'], says: /too many arguments: start extra/ },
    { argv: ['-id'], says: /id/ },
    { argv: ['-namespace', 'ns', '-id'], says: /id/ },
  ];
  for (const c of cases) {
    const err = failure(c.argv);
    t.type(err, Error, `${c.argv.join(' ')}: refused`);
    t.match(err?.message ?? '', c.says, `${c.argv.join(' ')}: ${err?.message}`);
  }
  t.end();
});

t.test('parsing never exits the process or prints', (t) => {
  const exit = process.exit;
  const write = process.stderr.write;
  let exited = false;
  let printed = '';
  process.exit = (() => {
    exited = true;
  }) as typeof process.exit;
  process.stderr.write = ((chunk: string) => {
    printed += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    failure(['-nope']);
    failure(['-h']);
  } finally {
    process.exit = exit;
    process.stderr.write = write;
  }
  t.equal(exited, false);
  t.equal(printed, '');
  t.end();
});

t.test('the built binary: -v prints the version and exits 0, without starting a server', (t) => {
  const pkg = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string };
  const r = spawnSync(join(repoRoot(), 'bin', 'containerd-shim-flint-v2'), ['-v'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr})`);
  t.equal(r.stderr, '', 'nothing on stderr');
  t.match(r.stdout, /^containerd-shim-flint-v2:\n/, 'names the binary first');
  t.match(r.stdout, `  Version:  ${pkg.version}\n`, 'the package version');
  t.match(r.stdout, /  Revision: \S+\n/, 'a revision line');
  t.match(r.stdout, '  Runtime:  io.containerd.flint.v2\n');
  t.end();
});
