import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { containerd } from '../src/generated/index.js';
import { busyboxRootfs, CONTAINER_PATH, CTR_BIN, RUNTIMES, startContainerd, taskStatus, type Containerd } from './harness/index.js';
import { pool } from './harness/pool.js';
import { isRunning } from './harness/procfs.js';
import { listenerPids, rssKiB, shimPidOf, shimSocketOf, taskClientAt } from './harness/shim-server.js';
import { SlowReader } from './harness/slow-reader.js';

/**
 * flint under load: many containers started at once, many calls in flight
 * on one connection, and a container whose output outruns its reader. The
 * last must cost the shim a bounded amount of memory, with and without a
 * terminal: without one the FIFOs go straight to runc and the shim copies
 * nothing; with one the shim copies the pty to the FIFO and must let
 * backpressure through rather than buffer.
 */

/**
 * Containers in the burst, all `ctr run -d` launched at once. On a 2-core
 * machine the burst is CPU-bound (each container costs a ctr, the shim's
 * `start` and its server, two node processes, and runc), about a minute.
 */
const CONTAINERS = Number(process.env.FLINT_LOAD_CONTAINERS ?? 100);
/** Per ctr; generous, as the machine may be shared with other work. */
const BURST_CTR_TIMEOUT_MS = 240_000;
const RPCS = 1000;
/** How long each flood is sampled; the terminal path, where the shim does the copying, gets the longer look. */
const FLOOD_MS = Number(process.env.FLINT_FLOOD_MS ?? 20_000);
const FLOOD_NO_TTY_MS = Number(process.env.FLINT_FLOOD_NO_TTY_MS ?? 10_000);
/** Bound on the shim's RSS growth while a flood is held back. */
const RSS_BOUND_KIB = 64 * 1024;

/** USER_HZ: 100 on every Linux this runs on. */
const CLOCK_TICKS = 100;

// Bounded, but with room for the burst's per-ctr bound on a loaded machine.
t.setTimeout(600_000);
const c: Containerd = await startContainerd();
t.teardown(() => c.stop());

function runArgs(id: string, cmd: readonly string[], flags: readonly string[] = []): string[] {
  return ['run', '--runtime', RUNTIMES.flint, ...flags, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, ...cmd];
}

async function remove(id: string): Promise<void> {
  await c.ctr(['task', 'delete', '-f', id], { timeoutMs: 30_000 });
  await c.ctr(['container', 'rm', id], { timeoutMs: 30_000 });
}

t.test(`${CONTAINERS} containers started at once through ctr run -d all run, then all go`, async (t) => {
  const ids = Array.from({ length: CONTAINERS }, () => c.newId('load'));
  const started = Date.now();
  const runs = await Promise.all(ids.map((id) => c.ctr(['run', '-d', ...runArgs(id, ['sleep', '1000']).slice(1)], { timeoutMs: BURST_CTR_TIMEOUT_MS })));
  const startMs = Date.now() - started;
  const failed = runs.map((r, i) => (r.code === 0 ? undefined : `${ids[i]}: ${r.code} ${r.timedOut ? 'timed out' : r.stderr.trim()}`)).filter(Boolean);
  t.same(failed, [], `every ctr run -d succeeded (${startMs} ms in all, ${(startMs / CONTAINERS).toFixed(0)} ms per container)`);

  const ls = await c.ctr(['task', 'ls'], { timeoutMs: 30_000 });
  const running = new Set(
    ls.stdout
      .toString()
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[2] === 'RUNNING')
      .map((f) => f[0]),
  );
  t.same(ids.filter((id) => !running.has(id)), [], `all ${CONTAINERS} RUNNING`);
  const sockets = ids.map((id) => {
    try {
      return shimSocketOf(c, id);
    } catch {
      return '';
    }
  });

  const removing = Date.now();
  const batches: string[][] = [];
  for (let i = 0; i < ids.length; i += 10) batches.push(ids.slice(i, i + 10));
  const removals = await pool(
    5,
    batches.map((batch) => async () => {
      const task = await c.ctr(['task', 'delete', '-f', ...batch], { timeoutMs: 60_000 });
      const container = await c.ctr(['container', 'rm', ...batch], { timeoutMs: 60_000 });
      return task.code === 0 && container.code === 0 ? '' : `${batch.join(',')}: ${task.stderr.trim()} ${container.stderr.trim()}`;
    }),
  );
  t.same(removals.filter(Boolean), [], `every ctr task delete -f / container rm succeeded (${Date.now() - removing} ms)`);
  const left = await c.ctr(['container', 'ls', '-q'], { timeoutMs: 30_000 });
  t.same(left.stdout.toString().split('\n').filter((l) => ids.includes(l.trim())), [], 'no container left');
  const deadline = Date.now() + 30_000;
  let serving = sockets.filter((s) => s !== '' && listenerPids(s).length > 0);
  while (serving.length > 0 && Date.now() < deadline) {
    await sleep(200);
    serving = serving.filter((s) => listenerPids(s).length > 0);
  }
  t.same(serving, [], 'every shim server has exited');
  t.same(sockets.filter((s) => s !== '' && existsSync(s)), [], 'and removed its socket');
});

t.test(`${RPCS} concurrent calls on one connection to a live shim all get their answers`, async (t) => {
  const id = c.newId('rpc');
  const run = await c.ctr(['run', '-d', ...runArgs(id, ['sleep', '1000']).slice(1)], { timeoutMs: 60_000 });
  t.equal(run.code, 0, run.stderr);
  t.teardown(() => remove(id));
  const socket = shimSocketOf(c, id);
  const { client, task } = await taskClientAt(socket, c.namespace);
  try {
    const started = Date.now();
    const calls = Array.from({ length: RPCS }, (_, i) => {
      const call = i % 3 === 0 ? task.connect({ id }) : i % 3 === 1 ? task.state({ id }) : task.state({ id: 'absent' });
      return call.then(
        (r) => ({ i, ok: true as const, r }),
        (err: { code?: number }) => ({ i, ok: false as const, code: err.code }),
      );
    });
    t.equal(client.pendingCalls, RPCS, `${RPCS} calls in flight at once`);
    const results = await Promise.all(calls);
    const ms = Date.now() - started;
    t.equal(results.length, RPCS, `all answered in ${ms} ms`);
    const wrong = results.filter(({ i, ok, ...rest }) => {
      if (i % 3 === 2) return ok || (rest as { code?: number }).code !== 5;
      if (!ok) return true;
      const r = (rest as { r: { taskPid?: number; status?: number } }).r;
      return i % 3 === 0 ? !(r.taskPid! > 0) : r.status !== containerd.v1.types.Status.RUNNING;
    });
    t.same(wrong.slice(0, 5), [], 'each answer is the right one (Connect: the pid; State: RUNNING; State of an absent id: NotFound)');
    t.equal(client.pendingCalls, 0, 'nothing left pending');
  } finally {
    await client.close();
  }
});

/** Samples VmRSS of `pid` every 250 ms until `stop` resolves. */
async function sampleRss(pid: number, stop: Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  let done = false;
  void stop.finally(() => (done = true));
  while (!done) {
    const kib = rssKiB(pid);
    if (kib === undefined) break;
    samples.push(kib);
    await Promise.race([sleep(250), stop]);
  }
  return samples;
}

/** utime + stime of `pid` in ms. */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Waits for a child to exit, killing it after `ms`. */
async function exited(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exit;
  clearTimeout(timer);
}

/**
 * Runs a producer writing as fast as it can under `ctr run` (through
 * `script` for a terminal), reads ctr's output at a trickle for a while,
 * and checks the shim server's RSS over that time.
 */
async function flood(t: Test, terminal: boolean): Promise<void> {
  const floodMs = terminal ? FLOOD_MS : FLOOD_NO_TTY_MS;
  const id = c.newId(terminal ? 'ttyflood' : 'flood');
  const producer = ['yes', 'flood-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ'];
  const ctrArgs = ['--address', c.address, '--namespace', c.namespace, ...runArgs(id, producer, terminal ? ['--rm', '-t'] : ['--rm'])];
  const child = terminal
    ? spawn('script', ['-qec', [CTR_BIN, ...ctrArgs].map((a) => `'${a}'`).join(' '), '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(CTR_BIN, ctrArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stderr!.resume();
  // At most 256 KiB/s: far below what the producer can write.
  const reader = new SlowReader(child.stdout!, 16 * 1024, 62);
  try {
    let status: string | undefined;
    const deadline = Date.now() + 30_000;
    while (status !== 'RUNNING' && Date.now() < deadline && child.exitCode === null) {
      await sleep(100);
      status = await taskStatus(c, id);
    }
    t.equal(status, 'RUNNING', 'the producer runs');
    const pid = shimPidOf(shimSocketOf(c, id));
    // Let the pipes fill before the baseline, so the baseline holds what a full pipeline costs.
    await sleep(1_000);
    const baseline = rssKiB(pid)!;
    const cpu0 = cpuMs(pid);
    const samples = await sampleRss(pid, sleep(floodMs));
    t.comment(`shim CPU during the flood: ${cpuMs(pid) - cpu0} ms`);
    const peak = Math.max(...samples);
    t.ok(samples.length > floodMs / 500, `${samples.length} RSS samples over ${floodMs} ms`);
    t.ok(isRunning(pid), 'the shim server is alive');
    t.ok(reader.consumed > 0, `the reader got ${reader.consumed} bytes (at most ${reader.rate} B/s)`);
    t.ok(peak - baseline < RSS_BOUND_KIB, `shim RSS ${baseline} KiB → peak ${peak} KiB, growth ${peak - baseline} KiB (bound ${RSS_BOUND_KIB} KiB)`);
    const tail = samples.slice(-Math.max(1, Math.floor(samples.length / 4)));
    t.comment(`RSS KiB: first ${samples[0]}, last quarter ${Math.min(...tail)}..${Math.max(...tail)}, last ${samples[samples.length - 1]}`);
  } finally {
    reader.drain();
    await c.ctr(['task', 'kill', '-a', '-s', 'SIGKILL', id], { timeoutMs: 10_000 });
    child.stdin!.end();
    await exited(child, 20_000);
    if (await taskStatus(c, id)) await remove(id);
    else await c.ctr(['container', 'rm', id], { timeoutMs: 10_000 });
  }
}

t.test('a producer faster than its reader, no terminal: the shim copies nothing and stays flat', (t) => flood(t, false));
t.test('a producer faster than its reader, with a terminal: the shim copies under backpressure', (t) => flood(t, true));
