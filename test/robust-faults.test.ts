import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { createFailingRunc, type RuncStep } from './harness/failing-runc.js';
import { containerTraces, flintServers, runcShims, tracesGone, type ContainerTraces } from './harness/host-state.js';
import { busyboxImage, CTR_BIN, isClean, leftovers, runCommand, RUNTIMES, shimSocketPath, spareServerPids, startContainerd, type Containerd, type LeftoverReport } from './harness/index.js';
import { isRunning, signal } from './harness/procfs.js';
import type { RuntimeName } from './harness/scenario.js';

/**
 * Faults: runc failing at each step, the shim server SIGKILLed, containerd
 * restarted under running tasks (the runc shim as the oracle for the last
 * two), the log FIFO's reader gone at exit. flint's runc is a wrapper (see
 * harness/failing-runc.ts) that passes through to the real runc until told
 * to fail one subcommand; every scenario ends by proving nothing is left:
 * processes, mounts, FIFOs, bundles, runc state, cgroups, shim sockets.
 */
const work = mkdtempSync('/tmp/flf-');
const runc = createFailingRunc(join(work, 'runc'));
const c: Containerd = await startContainerd({ env: { FLINT_CONFIG: runc.configPath } });
t.teardown(async () => {
  runc.failAt(undefined);
  await c.stop();
  rmSync(work, { recursive: true, force: true });
});
const image = await busyboxImage(c);

type CtrResult = Awaited<ReturnType<Containerd['ctr']>>;

function ctr(args: readonly string[], timeoutMs = 30_000): Promise<CtrResult> {
  return c.ctr(args, { timeoutMs });
}

/** `ctr run -d` of the busybox image; throws with ctr's stderr on failure. */
async function runDetached(runtime: RuntimeName, id: string, cmd: readonly string[]): Promise<void> {
  const r = await ctr(['run', '-d', '--runtime', RUNTIMES[runtime], '--fifo-dir', c.fifoDir, image, id, ...cmd]);
  if (r.code !== 0) throw new Error(`ctr run -d ${id} (${runtime}): ${r.stderr}`);
}

/** The task's (pid, status) from `ctr task ls`, or undefined when it is not listed. */
async function task(id: string): Promise<{ pid: number; status: string } | undefined> {
  const r = await ctr(['task', 'ls'], 10_000);
  for (const line of r.stdout.toString().split('\n').slice(1)) {
    const [name, pid, status] = line.trim().split(/\s+/);
    if (name === id) return { pid: Number(pid), status: status ?? '' };
  }
  return undefined;
}

async function waitStatus(id: string, want: (status: string | undefined) => boolean, timeoutMs = 15_000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let status = (await task(id))?.status;
  while (!want(status) && Date.now() < deadline) {
    await sleep(100);
    status = (await task(id))?.status;
  }
  return status;
}

/** Kills, deletes and removes a container with runc passing through; returns the ctr results. */
async function remove(id: string): Promise<{ kill: CtrResult; delete: CtrResult; rm: CtrResult }> {
  const kill = await ctr(['task', 'kill', '-a', '-s', 'SIGKILL', id]);
  const del = await ctr(['task', 'delete', '-f', id]);
  const rm = await ctr(['container', 'rm', id]);
  return { kill, delete: del, rm };
}

/** Harness-wide leftovers, the traces of `id` and any flint server; polls until all are gone or `timeoutMs` passes. */
async function settle(id: string, pids: readonly number[] = [], timeoutMs = 10_000): Promise<{ all: LeftoverReport; traces: ContainerTraces; snapshots: string[] }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await leftovers(c);
    const traces = containerTraces(c, id, pids);
    const snapshots = (await ctr(['snapshots', 'ls'], 10_000)).stdout.toString().split('\n').filter((l) => l.startsWith(`${id} `) || l.startsWith(`${id}\t`));
    const servers = flintServers(c);
    if ((isClean(all) && tracesGone(traces) && snapshots.length === 0 && servers.length === 0) || Date.now() >= deadline) return { all, traces, snapshots };
    await sleep(100);
  }
}

/** Asserts nothing of `id` (nor anything else) is left. */
async function assertNothingLeft(t: Test, id: string, pids: readonly number[] = []): Promise<void> {
  const { all, traces, snapshots } = await settle(id, pids);
  t.same(all.processes.map((p) => p.argv.join(' ')), [], 'no shim, runc or container processes');
  t.same(flintServers(c).map((p) => p.pid), [], 'no flint server');
  t.same(all.mounts, [], 'no mounts under the harness dir');
  t.same(all.fifos, [], 'no FIFOs in ctr\'s fifo dir');
  t.same(all.bundles, [], 'no bundle dirs');
  t.same(all.sockets, [], 'no shim sockets');
  t.same(all.tasks, [], 'no tasks');
  t.same(all.containers, [], 'no containers');
  t.same(traces.runcState, [], 'no runc state');
  t.same(traces.cgroups, [], 'no cgroups');
  t.same(traces.processes, [], 'the container processes are gone');
  t.same(snapshots, [], 'no snapshot');
}

const injected = (step: RuncStep) => new RegExp(`injected failure at ${step}`);

t.test('runc failing at each step', async (t) => {
  t.afterEach(() => runc.failAt(undefined));

  t.test('create: ctr run fails with runc\'s message, the create is unwound', async (t) => {
    const id = c.newId('fcreate');
    runc.clearCalls();
    runc.failAt('create');
    const r = await ctr(['run', '--rm', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, image, id, 'true']);
    runc.failAt(undefined);
    t.not(r.code, 0, 'ctr run fails');
    t.match(r.stderr, injected('create'), 'with the injected message');
    t.ok(runc.calls().includes('!create'), 'the wrapper failed the create');
    await assertNothingLeft(t, id);
  });

  t.test('start: ctr run fails, the task stays created; deleting it leaves nothing', async (t) => {
    const id = c.newId('fstart');
    runc.clearCalls();
    runc.failAt('start');
    // ctr's deferred task delete refuses a created task with a pid ("task must be
    // stopped"), so the created task legitimately stays until it is deleted.
    const r = await ctr(['run', '--rm', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, image, id, 'sleep', '1000']);
    runc.failAt(undefined);
    t.not(r.code, 0, 'ctr run fails');
    t.match(r.stderr, injected('start'), 'with the injected message');
    const calls = runc.calls();
    t.ok(calls.includes('create') && calls.includes('!start'), `runc create ran, start failed (${calls.join(' ')})`);
    const created = await task(id);
    t.equal(created?.status, 'CREATED', 'the task is still created');
    t.ok(created && isRunning(created.pid), 'its init waits in runc init');

    const del = await ctr(['task', 'delete', '-f', id]);
    t.equal(del.code, 0, `force-deleting the created task works: ${del.stderr}`);
    t.ok(runc.calls().includes('delete'), 'with runc delete');
    const rm = await ctr(['container', 'rm', id]);
    t.equal(rm.code, 0, rm.stderr);
    await assertNothingLeft(t, id, created ? [created.pid] : []);
  });

  t.test('exec: ctr task exec fails, the exec is gone and the container unaffected', async (t) => {
    const id = c.newId('fexec');
    await runDetached('flint', id, ['sleep', '1000']);
    const initPid = (await task(id))!.pid;
    const server = flintServers(c, id)[0];
    t.ok(server, 'the flint server runs');
    const fifosBefore = readdirSync(c.fifoDir).sort();
    const bundle = join(c.state, 'io.containerd.runtime.v2.task', c.namespace, id);
    const fdsBefore = readdirSync(`/proc/${server!.pid}/fd`).length;

    runc.failAt('exec');
    const r = await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'x1', id, 'sh', '-c', 'echo hi']);
    runc.failAt(undefined);
    t.not(r.code, 0, 'ctr task exec fails');
    t.match(r.stderr, injected('exec'), 'with the injected message');

    t.same(readdirSync(c.fifoDir).sort(), fifosBefore, 'the exec\'s FIFOs are gone');
    t.notOk(existsSync(join(bundle, 'x1.pid')), 'no pid file of the exec');
    let fds = readdirSync(`/proc/${server!.pid}/fd`).length;
    for (let i = 0; i < 20 && fds > fdsBefore; i++) {
      await sleep(100);
      fds = readdirSync(`/proc/${server!.pid}/fd`).length;
    }
    t.ok(fds <= fdsBefore, `the shim holds no more fds than before (${fdsBefore} -> ${fds})`);
    t.equal((await task(id))?.status, 'RUNNING', 'the container still runs');
    const ps = await ctr(['task', 'ps', id]);
    t.equal(ps.stdout.toString().trim().split('\n').length, 2, 'only the init runs in it');

    const again = await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'x1', id, 'sh', '-c', 'echo hi']);
    t.same({ code: again.code, stdout: again.stdout.toString() }, { code: 0, stdout: 'hi\n' }, 'the same exec id works once runc does');

    const removed = await remove(id);
    t.equal(removed.delete.code, 0, removed.delete.stderr);
    t.equal(removed.rm.code, 0, removed.rm.stderr);
    await assertNothingLeft(t, id, [initPid]);
  });

  t.test('kill: ctr task kill fails, the task runs on; a retry kills it and cleans up', async (t) => {
    const id = c.newId('fkill');
    await runDetached('flint', id, ['sleep', '1000']);
    const initPid = (await task(id))!.pid;

    runc.failAt('kill');
    const r = await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    runc.failAt(undefined);
    t.not(r.code, 0, 'ctr task kill fails');
    t.match(r.stderr, injected('kill'), 'with the injected message');
    t.equal((await task(id))?.status, 'RUNNING', 'the task still runs');
    t.ok(isRunning(initPid), 'its init is alive');

    const kill = await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    t.equal(kill.code, 0, `retried kill: ${kill.stderr}`);
    t.equal(await waitStatus(id, (s) => s === 'STOPPED'), 'STOPPED', 'the task stops');
    const del = await ctr(['task', 'delete', id]);
    t.equal(del.code, 0, del.stderr);
    const rm = await ctr(['container', 'rm', id]);
    t.equal(rm.code, 0, rm.stderr);
    await assertNothingLeft(t, id, [initPid]);
  });

  t.test('delete: ctr task delete fails, the stopped task stays; a retry removes everything', async (t) => {
    const id = c.newId('fdelete');
    await runDetached('flint', id, ['sleep', '1000']);
    const initPid = (await task(id))!.pid;
    const kill = await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    t.equal(kill.code, 0, kill.stderr);
    t.equal(await waitStatus(id, (s) => s === 'STOPPED'), 'STOPPED', 'the task stops');

    runc.failAt('delete');
    const r = await ctr(['task', 'delete', id]);
    runc.failAt(undefined);
    t.not(r.code, 0, 'ctr task delete fails');
    t.match(r.stderr, injected('delete'), 'with the injected message');
    t.equal((await task(id))?.status, 'STOPPED', 'the task is still listed, stopped');
    t.ok(existsSync(join(c.state, 'io.containerd.runtime.v2.task', c.namespace, id)), 'its bundle is kept for the retry');

    const del = await ctr(['task', 'delete', id]);
    t.equal(del.code, 0, `retried delete: ${del.stderr}`);
    const rm = await ctr(['container', 'rm', id]);
    t.equal(rm.code, 0, rm.stderr);
    await assertNothingLeft(t, id, [initPid]);
  });
});

t.test('the shim server killed with SIGKILL', async (t) => {
  /** Runs a task, SIGKILLs its shim, and records what containerd and the host show. */
  async function killShim(runtime: RuntimeName) {
    const id = c.newId(`k9-${runtime}`);
    await runDetached(runtime, id, ['sleep', '1000']);
    const initPid = (await task(id))!.pid;
    const shims = runtime === 'flint' ? flintServers(c, id) : runcShims(c, id);
    if (shims.length !== 1) throw new Error(`want one ${runtime} shim for ${id}, found ${shims.length}`);
    const socket = shimSocketPath(c.address, c.namespace, id);
    const socketBefore = existsSync(socket);
    signal(shims[0]!.pid, 'SIGKILL');

    // containerd runs `<shim> delete` once the connection drops: that kills the container.
    const deadline = Date.now() + 15_000;
    while (isRunning(initPid) && Date.now() < deadline) await sleep(100);
    const initGone = !isRunning(initPid);
    const status = (await task(id))?.status;
    const stateDel = await ctr(['task', 'delete', id]);
    const rm = await ctr(['container', 'rm', id]);
    // The detached ctr that made the task's FIFOs is gone and the task vanished with
    // its shim, so no client removes them: they are ctr's, not the shim's. List, then drop them.
    const clientFifos = readdirSync(c.fifoDir).flatMap((d) => readdirSync(join(c.fifoDir, d)).map((f) => join(d, f)));
    for (const d of readdirSync(c.fifoDir)) rmSync(join(c.fifoDir, d), { recursive: true, force: true });
    const after = await settle(id, [initPid]);
    // The runc shim (1.6) leaves its socket when killed (see shim.go's note); not our concern here.
    if (runtime === 'runc') rmSync(socket, { force: true });
    return { id, socketBefore, initGone, status, deleteCode: stateDel.code, deleteErr: stateDel.stderr, rmCode: rm.code, clientFifos, after };
  }

  const runcSeen = await killShim('runc');
  const flint = await killShim('flint');
  t.ok(flint.socketBefore, 'the flint server had a socket');
  t.ok(flint.initGone, 'the container was killed by the shim\'s delete path');
  t.ok(flint.status === undefined || flint.status === 'STOPPED' || flint.status === 'UNKNOWN', `the task is stopped or gone (${flint.status})`);
  t.equal(flint.status, runcSeen.status, 'containerd shows the task as it does for the runc shim');
  t.equal(flint.deleteCode, runcSeen.deleteCode, `ctr task delete exits as with the runc shim (${flint.deleteErr.trim()})`);
  t.equal(flint.rmCode, 0, 'ctr container rm works');
  t.same(flint.clientFifos.map((f) => f.replace(/^\d+\//, '')).sort(), runcSeen.clientFifos.map((f) => f.replace(/^\d+\//, '').replace(runcSeen.id, flint.id)).sort(), 'ctr\'s FIFOs stay behind as with the runc shim');
  t.equal(runcSeen.rmCode, 0, 'ctr container rm works (runc shim)');
  const { all, traces } = flint.after;
  t.same(traces.runcState, [], 'no runc state');
  t.same(traces.cgroups, [], 'no cgroups');
  t.same(traces.mounts, [], 'no rootfs mount');
  t.same(traces.bundles, [], 'no bundle');
  t.same(traces.sockets, [], 'the dead server\'s socket was removed');
  t.same(traces.processes, [], 'no container process');
  t.same(all.processes.map((p) => p.argv.join(' ')), [], 'no shim processes');
  t.same(flintServers(c).map((p) => p.pid), [], 'no flint server');
  t.same(all.fifos, [], 'no FIFOs');
  t.same(all.mounts, [], 'no mounts');
  t.same(runcSeen.after.traces.runcState, [], 'runc shim: no runc state either');
});

/** Records `ctr events` until stopped; topics() lists the task topics seen for a container id. */
function recordEvents(): { stop(): void; topics(id: string): string[] } {
  const events = spawn(CTR_BIN, ['--address', c.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let text = '';
  events.stdout.on('data', (d: Buffer) => (text += d.toString()));
  return {
    stop: () => events.kill('SIGTERM'),
    topics: (id) =>
      text
        .split('\n')
        .filter((line) => line.includes(c.namespace) && line.includes(`"${id}"`))
        .map((line) => /\s(\/tasks\/[a-z-]+)\s/.exec(line)?.[1])
        .filter((topic): topic is string => topic !== undefined),
  };
}

t.test('containerd restarted under running tasks: they reconnect and still work', async (t) => {
  const runtimes: RuntimeName[] = ['runc', 'flint'];
  const ids = Object.fromEntries(runtimes.map((r) => [r, { long: c.newId(`rs-${r}`), short: c.newId(`rss-${r}`) }])) as Record<RuntimeName, { long: string; short: string }>;
  for (const runtime of runtimes) await runDetached(runtime, ids[runtime].long, ['sleep', '1000']);
  // These exit while containerd is down: their exit events find nobody to take them.
  for (const runtime of runtimes) await runDetached(runtime, ids[runtime].short, ['sleep', '2']);
  const serverBefore = flintServers(c, ids.flint.long).map((p) => p.pid);
  const pids = Object.fromEntries(await Promise.all(runtimes.map(async (r) => [r, (await task(ids[r].long))!.pid] as const))) as Record<RuntimeName, number>;
  const containerdBefore = c.pid;

  await c.restart({ downMs: 3_000 });
  t.not(c.pid, containerdBefore, 'containerd is a new process');
  const events = recordEvents();
  t.teardown(() => events.stop());
  await sleep(1_000);
  t.same(flintServers(c, ids.flint.long).map((p) => p.pid), serverBefore, 'the same flint server serves on (reconnected, not restarted)');

  const seen: Record<string, unknown> = {};
  for (const runtime of runtimes) {
    const { long, short } = ids[runtime];
    const running = await task(long);
    const shortStatus = await waitStatus(short, (s) => s === 'STOPPED');
    const exec = await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'after', long, 'sh', '-c', 'echo alive; exit 4']);
    const kill = await ctr(['task', 'kill', '-s', 'SIGKILL', long]);
    const stopped = await waitStatus(long, (s) => s === 'STOPPED');
    const delLong = await ctr(['task', 'delete', long]);
    const delShort = await ctr(['task', 'delete', short]);
    const rm = await ctr(['container', 'rm', long, short]);
    seen[runtime] = {
      status: running?.status,
      pid: running?.pid === pids[runtime],
      shortStatus,
      exec: { code: exec.code, stdout: exec.stdout.toString() },
      kill: kill.code,
      stopped,
      delete: [delLong.code, delShort.code],
      rm: rm.code,
    };
  }
  await sleep(1_000);
  events.stop();
  for (const runtime of runtimes) (seen[runtime] as Record<string, unknown>).events = events.topics(ids[runtime].long);
  t.same(seen.flint, seen.runc, 'flint behaves like the runc shim across the restart');
  t.same(seen.flint, {
    status: 'RUNNING',
    pid: true,
    shortStatus: 'STOPPED',
    exec: { code: 4, stdout: 'alive\n' },
    kill: 0,
    stopped: 'STOPPED',
    delete: [0, 0],
    rm: 0,
    events: ['/tasks/exec-added', '/tasks/exec-started', '/tasks/exit', '/tasks/exit', '/tasks/delete'],
  }, 'events published after the restart reach the new containerd');
  t.equal(serverBefore.length, 1, 'one flint server before the restart');
  const gone = { runcState: [], cgroups: [], bundles: [], mounts: [], sockets: [], processes: [] };
  for (const runtime of runtimes) {
    const { all, traces } = await settle(ids[runtime].long, [pids[runtime]]);
    t.same(traces, gone, `${runtime}: nothing of the task left`);
    t.same(containerTraces(c, ids[runtime].short), gone, `${runtime}: nothing of the short task left`);
    t.ok(isClean(all), `${runtime}: harness clean`, { all });
  }
  // Unless it became the containerd's spare server, which serves no task and leaves by itself.
  const spares = spareServerPids(c);
  t.notOk(serverBefore.some((pid) => isRunning(pid) && !spares.includes(pid)), 'the flint server exited after its tasks were deleted, or waits as the spare');
});

t.test('the server\'s logger never holds up its exit once containerd has closed the log FIFO', async (t) => {
  // containerd closes the shim's log FIFO when the Shutdown call's connection ends;
  // log lines still buffered at exit then meet EPIPE. A child logs, loses its
  // reader, logs on and exits the way serve.ts does.
  const fifo = join(work, 'log-fifo');
  execFileSync('mkfifo', [fifo]);
  const logger = new URL('../src/shim/logger.js', import.meta.url).href;
  const script = `
    import { closeSync, constants, openSync } from 'node:fs';
    import { createShimLogger } from ${JSON.stringify(logger)};
    process.on('SIGPIPE', () => {});
    const reader = openSync(${JSON.stringify(fifo)}, constants.O_RDONLY | constants.O_NONBLOCK);
    const log = createShimLogger(${JSON.stringify(fifo)}, 'info', { runtime: 'flint' });
    log.info('serving');
    await new Promise((resolve) => setTimeout(resolve, 50));
    closeSync(reader);
    for (let i = 0; i < 5; i++) log.info({ i }, 'shutting down');
    log.flush();
    process.exit(0);
  `;
  const r = await runCommand(process.execPath, ['--input-type=module', '-e', script], { timeoutMs: 10_000 });
  t.same({ code: r.code, timedOut: r.timedOut }, { code: 0, timedOut: false }, `the process exits at once (${r.stderr.trim()})`);
});

t.test('afterwards: nothing left', async (t) => {
  const report = await leftovers(c);
  t.ok(isClean(report), 'clean', { report });
  const runcRoot = join('/run/containerd/runc', c.namespace);
  t.same(existsSync(runcRoot) ? readdirSync(runcRoot) : [], [], 'no runc state in the namespace');
  t.notMatch(readFileSync(c.logPath, 'utf8'), /panic/, 'containerd did not panic');
});
