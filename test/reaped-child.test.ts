import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { isReapedStdio, ReapedChild } from '../src/sys/reaped-child.js';
import { Reaper } from '../src/sys/reaper.js';
import { zombieChildren } from '../src/sys/reaper.js';

/**
 * Helpers spawned vfork-style and reaped by the shim's reaper (runc's way
 * of running): what Runc relies on of a ChildProcess.
 */
const reaper = Reaper.get();
const dir = mkdtempSync(join(tmpdir(), 'flint-reaped-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function spawn(command: string, args: string[], stdio: ConstructorParameters<typeof ReapedChild>[2]['stdio']): ReapedChild {
  return new ReapedChild(command, args, { stdio }, (pid) => reaper.wait(pid));
}

function ended(child: ReapedChild, event: 'exit' | 'close'): Promise<[number | null, NodeJS.Signals | null]> {
  return new Promise((resolve) => child.once(event, (code: number | null, signal: NodeJS.Signals | null) => resolve([code, signal])));
}

function collect(child: ReapedChild): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  return { out: () => out, err: () => err };
}

const openFds = () => readdirSync('/proc/self/fd').length;

t.test('piped stdout and stderr, the exit code, and exit before close', async (t) => {
  const child = spawn('sh', ['-c', 'echo out; echo err >&2; exit 3'], ['ignore', 'pipe', 'pipe']);
  t.ok(child.pid! > 0, 'has a pid at once');
  const output = collect(child);
  const order: string[] = [];
  child.once('exit', () => order.push('exit'));
  const closed = ended(child, 'close');
  t.same(await closed, [3, null], 'close reports code 3');
  order.push('close');
  t.same(order, ['exit', 'close']);
  t.same([output.out(), output.err()], ['out\n', 'err\n'], 'both streams, kept apart');
  t.same([child.exitCode, child.signalCode], [3, null]);
});

t.test('stdin piped in, then EOF', async (t) => {
  const child = spawn('cat', [], ['pipe', 'pipe', 'ignore']);
  const output = collect(child);
  child.stdin!.end('hello stdin');
  t.same(await ended(child, 'close'), [0, null]);
  t.equal(output.out(), 'hello stdin');
});

t.test('an fd of ours as stdout; nothing as stdin', async (t) => {
  const file = join(dir, 'out.txt');
  const fd = openSync(file, 'w');
  const child = spawn('sh', ['-c', 'cat; echo written'], ['ignore', fd, 'ignore']);
  t.same(await ended(child, 'exit'), [0, null]);
  closeSync(fd);
  t.equal(readFileSync(file, 'utf8'), 'written\n', 'the child wrote into our fd, and read EOF from /dev/null');
});

t.test('kill: the signal is reported, not a code', async (t) => {
  const child = spawn('sleep', ['30'], ['ignore', 'ignore', 'ignore']);
  t.ok(child.kill('SIGKILL'), 'signalled');
  t.same(await ended(child, 'close'), [null, 'SIGKILL']);
  t.notOk(child.kill('SIGKILL'), 'a reaped child is not signalled again (its pid may be reused)');
});

t.test('a program that cannot be executed: error, and no exit or close', async (t) => {
  const fdsBefore = openFds();
  const child = spawn(join(dir, 'no-such-program'), [], ['ignore', 'pipe', 'pipe']);
  let exited = false;
  child.once('exit', () => (exited = true));
  const err = await new Promise<NodeJS.ErrnoException>((resolve) => child.once('error', resolve));
  t.equal(err.code, 'ENOENT');
  t.equal(child.pid, undefined, 'no pid');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.notOk(exited);
  t.equal(openFds(), fdsBefore, 'the pipes made for it are closed');
});

t.test('many children: no fd left open, no zombie left', async (t) => {
  const fdsBefore = openFds();
  const runs = Array.from({ length: 20 }, (_, i) => {
    const child = spawn('sh', ['-c', `echo ${i}; exit ${i % 3}`], ['ignore', 'pipe', 'pipe']);
    const output = collect(child);
    return ended(child, 'close').then(([code]) => ({ code, out: output.out() }));
  });
  const results = await Promise.all(runs);
  t.same(
    results,
    results.map((_, i) => ({ code: i % 3, out: `${i}\n` })),
    'each child its own output and code',
  );
  t.equal(openFds(), fdsBefore, 'no fd left open');
  t.same(zombieChildren(process.pid), [], 'no zombie');
});

t.test('which stdio it takes; Reaper.spawnHelper falls back to child_process for the rest', async (t) => {
  t.ok(isReapedStdio(['ignore', 'pipe', 7]));
  t.ok(isReapedStdio([null, undefined, 'inherit']));
  t.notOk(isReapedStdio('pipe'), 'a single keyword');
  t.notOk(isReapedStdio(['ignore', 'ignore', 'ignore', 5]), 'a fourth fd');
  t.notOk(isReapedStdio(['ignore', 'ipc', 'ignore']), 'ipc');
  t.type(reaper.spawnHelper('true', [], { stdio: ['ignore', 'ignore', 'ignore'] }), ReapedChild);
  const fallback = reaper.spawnHelper('sh', ['-c', 'exit 0'], { stdio: ['ignore', 'ignore', 'ignore', 'ignore'] });
  t.notOk(fallback instanceof ReapedChild, 'four slots: a ChildProcess');
  await new Promise((resolve) => fallback.once('exit', resolve));
});
