import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Reaper, zombieChildren } from '../src/sys/reaper.js';

/**
 * The subreaper. A tap file is its own process, so making it a child
 * subreaper here affects nothing else. Every child is started through
 * Reaper.spawn, as flint's code does, so the reaper never steals its status.
 */
const reaper = Reaper.get();
const started = new Set<number>();

t.teardown(async () => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  reaper.reapNow();
});

interface Launched {
  /** The direct child's exit code, as Node reports it. */
  readonly code: number | null;
  /** Pids the script printed, one a line. */
  readonly printed: number[];
}

/**
 * Runs `sh -c script` through the reaper; resolves when the shell exits and
 * its stdout closes (so background jobs must not hold stdout). Grandchildren
 * that must be reparented to us should outlive the shell (a short sleep):
 * a shell may reap a background job that exits first.
 */
function launch(script: string): Promise<Launched> {
  return new Promise((resolve, reject) => {
    const child = reaper.spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => (out += chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      const printed = out.split('\n').filter((l) => l.trim() !== '').map(Number);
      for (const pid of printed) started.add(pid);
      resolve({ code, printed });
    });
  });
}

function state(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

t.test('one reaper per process', (t) => {
  t.equal(Reaper.get(), reaper);
  t.end();
});

t.test('wait() gets a reparented grandchild exit status', async (t) => {
  const before = Date.now();
  const { code, printed } = await launch('sh -c "sleep 0.3; exit 7" >/dev/null & echo $!; exit 0');
  t.equal(code, 0, 'the intermediate shell exited on its own');
  const [pid] = printed;
  t.ok(pid! > 0, 'grandchild pid printed');
  t.equal(parentOf(pid!), process.pid, 'the grandchild was reparented to us');
  const exit = await within(5_000, reaper.wait(pid!), 'grandchild exit');
  t.equal(exit.pid, pid);
  t.equal(exit.status, 7);
  t.type(exit.exitedAt, Date);
  t.ok(exit.exitedAt.getTime() >= before + 300 && exit.exitedAt.getTime() <= Date.now(), 'exitedAt is when it exited: after its sleep, before we heard');
  t.equal(state(pid!), undefined, 'and it is gone: no zombie');
});

t.test('many waiters on one pid all get the exit', async (t) => {
  const { printed } = await launch('sh -c "sleep 0.3; exit 9" >/dev/null & echo $!; exit 0');
  const pid = printed[0]!;
  const exits = await within(5_000, Promise.all([reaper.wait(pid), reaper.wait(pid), reaper.wait(pid)]), 'three waiters');
  t.same(exits.map((e) => e.status), [9, 9, 9]);
});

t.test('an exit before wait() is not lost', async (t) => {
  t.test('reaped by the stray scan while a start is watched, then claimed through the watch', async (t) => {
    const watch = reaper.watchExits();
    t.teardown(() => watch.close());
    const { printed } = await launch('sh -c "sleep 0.1; exit 5" >/dev/null & echo $!; exit 0');
    const pid = printed[0]!;
    // Longer than the stray scan delay: the zombie is reaped and its exit kept.
    await reapedByStrayScan(pid);
    t.equal(state(pid), undefined, 'reaped although nobody was waiting');
    const exit = await within(1_000, watch.wait(pid), 'kept exit');
    t.equal(exit.status, 5);
    t.equal(exit.pid, pid);
  });
  t.test('still a zombie when wait() is called', async (t) => {
    const { printed } = await launch('sh -c "sleep 0.1; exit 6" >/dev/null & echo $!; exit 0');
    const pid = printed[0]!;
    // No await between seeing the zombie and asking: the stray scan cannot run in between.
    const deadline = Date.now() + 2_000;
    while (state(pid) !== 'Z' && state(pid) !== undefined && Date.now() < deadline) {
      // bounded busy wait, without yielding to the event loop
    }
    t.equal(state(pid), 'Z', 'a zombie nobody reaped yet');
    const exit = await within(2_000, reaper.wait(pid), 'zombie exit');
    t.equal(exit.status, 6);
  });
});

t.test('an exit nobody claimed never goes to a later process with the same pid', async (t) => {
  // A stray reaped with no start watching (a daemon a container left, say):
  // its exit must not be the exit of whatever gets its pid next, such as a
  // runc the shim runs, or a container's init.
  const { printed } = await launch('sh -c "sleep 0.1; exit 5" >/dev/null & echo $!; exit 0');
  const pid = printed[0]!;
  await reapedByStrayScan(pid);
  t.equal(state(pid), undefined, 'reaped by the stray scan');
  const reused = await spawnWithPid(pid, 'exit 3');
  t.equal(reused.pid, pid, 'a new process got the same pid');
  t.equal(await within(5_000, reused.exit, 'the new process exit'), 3, 'its own exit status, not the stray\'s');
});

t.test('a watch hands out only exits reaped while it was open', async (t) => {
  const { printed } = await launch('sh -c "sleep 0.1; exit 5" >/dev/null & echo $!; exit 0');
  const pid = printed[0]!;
  await reapedByStrayScan(pid);
  const watch = reaper.watchExits();
  t.teardown(() => watch.close());
  const reused = await spawnWithPid(pid, 'sleep 0.2; exit 8');
  // Asked for by pid, as a start does once runc has written the pid file.
  t.equal((await within(5_000, watch.wait(pid), 'the exit of the new process')).status, 8);
  await reused.exit;
});

/** Waits (bounded) until the stray scan has reaped `pid`. */
async function reapedByStrayScan(pid: number): Promise<void> {
  for (let i = 0; i < 60 && state(pid) !== undefined; i++) await sleep(50);
}

/** A process started by spawnWithPid, and its exit code to come. */
interface Spawned {
  readonly pid: number | undefined;
  readonly exit: Promise<number | null>;
}

/**
 * Starts `sh -c script` through the reaper with the pid `pid`, by setting
 * the kernel's last-allocated pid just below it; another process forking at
 * that moment takes it first, so it retries.
 */
async function spawnWithPid(pid: number, script: string): Promise<Spawned> {
  for (let attempt = 0; attempt < 50; attempt++) {
    writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const child = reaper.spawnHelper('sh', ['-c', script], { stdio: ['ignore', 'ignore', 'inherit'] });
    const spawned = { pid: child.pid, exit: new Promise<number | null>((resolve) => child.once('exit', (code: number | null) => resolve(code))) };
    if (spawned.pid === pid) return spawned;
    await spawned.exit;
  }
  throw new Error(`could not get pid ${pid} for a new process`);
}

t.test('a signal death reports 128+signal', async (t) => {
  for (const [signal, number] of [
    ['SIGKILL', 9],
    ['SIGTERM', 15],
  ] as const) {
    const { printed } = await launch('sleep 100 >/dev/null & echo $!; exit 0');
    const pid = printed[0]!;
    const exit = reaper.wait(pid);
    process.kill(pid, signal);
    t.equal((await within(5_000, exit, signal)).status, 128 + number, `${signal}: ${128 + number}`);
  }
});

t.test("Node's own children keep their exit status", async (t) => {
  t.test('alongside reparented strays', async (t) => {
    // Strays and Node children exit together; each Node child must still see its code.
    const runs = [1, 2, 3, 4, 5].map((code) => launch(`sh -c "exit 0" >/dev/null & sh -c "exit 1" >/dev/null & exit ${code}`));
    const results = await within(10_000, Promise.all(runs), 'five shells');
    t.same(results.map((r) => r.code), [1, 2, 3, 4, 5]);
  });
  t.test('even when a stray scan runs while the child is a zombie', async (t) => {
    const child = reaper.spawn('sh', ['-c', 'exit 3'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const pid = child.pid!;
    // Block the event loop until the child is a zombie, so libuv has not reaped it yet.
    const deadline = Date.now() + 2_000;
    while (state(pid) !== 'Z' && Date.now() < deadline) {
      // bounded busy wait
    }
    t.equal(state(pid), 'Z', 'the child is an unreaped zombie');
    t.ok(zombieChildren(process.pid).includes(pid), 'zombieChildren sees it');
    reaper.reapNow();
    t.equal(state(pid), 'Z', 'the reaper left it to libuv');
    t.equal(await within(5_000, exited, 'exit event'), 3, "Node's 'exit' has the real code");
  });
});

t.test('strays are reaped: no zombie children are left', async (t) => {
  await launch('for i in 1 2 3 4 5 6 7 8; do sh -c "exit $i" >/dev/null & done; exit 0');
  let zombies = zombieChildren(process.pid);
  for (let i = 0; i < 60 && zombies.length > 0; i++) {
    await sleep(50);
    zombies = zombieChildren(process.pid);
  }
  t.same(zombies, [], 'no zombie children of this process');
});

t.test('zombieChildren reads /proc stat with odd command names', async (t) => {
  // comm is the executable's name: spaces and a ')' must not confuse the parser.
  const dir = mkdtempSync(join(tmpdir(), 'flint-reaper-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const odd = join(dir, 'a b) c');
  symlinkSync('/bin/sleep', odd);
  const { printed } = await launch(`'${odd}' 0.2 >/dev/null & echo $!; exit 0`);
  const pid = printed[0]!;
  const deadline = Date.now() + 3_000;
  while (state(pid) !== 'Z' && Date.now() < deadline) {
    // bounded busy wait: no event-loop turn, so the stray scan cannot take it first
  }
  t.match(readFileSync(`/proc/${pid}/stat`, 'latin1'), '(a b) c)', 'the comm really is odd');
  t.ok(zombieChildren(process.pid).includes(pid), 'seen as a zombie child');
  t.equal((await within(3_000, reaper.wait(pid), 'odd comm exit')).status, 0);
});
