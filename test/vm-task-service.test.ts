import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { taskEventsDuring } from './harness/ctr-events.js';
import { startAgent } from './harness/flint-agent.js';
import { fdCount, fdTargets, flintServers } from './harness/host-state.js';
import { busyboxRootfs, CONTAINER_PATH, CTR_BIN, startContainerd, waitForClean, type Containerd } from './harness/index.js';
import { openPacedFifo } from './harness/slow-reader.js';
import { isRunning, listProcesses, withDescendants } from './harness/procfs.js';
import { removeContainer, runRm, RUNTIMES, taskStatus } from './harness/scenario.js';
import { shimPidOf, shimSocketOf, taskClientAt } from './harness/shim-server.js';

/**
 * The shim's VM mode (src/vm) through a private containerd, beyond the ctr
 * scenarios of test/shim-vm.test.ts: what happens around the agent, its
 * other shims and the containers it ran before. The agent runs outside a VM
 * on hvsock://<tmp>/fc.vsock (test/harness/flint-agent.ts).
 */
const agent = await startAgent();
const c: Containerd = await startContainerd({ env: { FLINT_CONFIG: agent.configPath } });
t.teardown(async () => {
  await c.stop();
  await agent.dispose();
});

async function runDetached(id: string, cmd: readonly string[], namespace = c.namespace): Promise<void> {
  const r = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, ...cmd], { namespace, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`ctr run -d ${id}: ${r.stderr}`);
}

/** Polls `read` until it returns `want` or `timeoutMs` passes; returns the last value. */
async function settled<T>(read: () => T, want: T, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = read();
  while (JSON.stringify(value) !== JSON.stringify(want) && Date.now() < deadline) {
    await sleep(50);
    value = read();
  }
  return value;
}

/** The agent's descendants' argv: the container processes it runs (and anything it leaked). */
function agentDescendants(): string[] {
  const procs = listProcesses();
  const pids = withDescendants([agent.pid], procs);
  pids.delete(agent.pid);
  return procs.filter((p) => pids.has(p.pid)).map((p) => p.argv.join(' '));
}

t.test('an exec of a missing binary fails at once and leaves nothing in the agent', async (t) => {
  const id = c.newId('badexec');
  await runDetached(id, ['sleep', '1000']);
  try {
    // One exec that works first, so the baseline holds what any exec sets up for good.
    const good = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'good', id, 'true'], { timeoutMs: 20_000 });
    t.equal(good.code, 0, good.stderr);
    const bundle = join(agent.root, c.namespace, id);
    const files = readdirSync(bundle).sort();
    const fds = await settled(() => fdCount(agent.pid), fdCount(agent.pid));
    const fdsBefore = fdTargets(agent.pid);
    const processes = agentDescendants();

    const bad = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'bad', id, '/no/such/binary'], { timeoutMs: 20_000 });
    t.notOk(bad.timedOut, 'ctr does not hang');
    t.not(bad.code, 0, 'the exec fails');
    t.match(bad.stderr, /no\/such\/binary/, 'with runc\'s reason');

    t.same(await settled(() => readdirSync(bundle).sort(), files), files, 'no FIFOs of the exec left in the bundle');
    const fdsAfter = await settled(() => fdCount(agent.pid), fds);
    t.equal(fdsAfter, fds, 'the agent holds no FIFO, listener or connection of it', { added: fdTargets(agent.pid).filter((fd) => !fdsBefore.includes(fd)) });
    t.same(agentDescendants(), processes, 'no process of it is left');
    const again = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'bad', id, 'sh', '-c', 'echo reused'], { timeoutMs: 20_000 });
    t.same({ code: again.code, stdout: again.stdout.toString() }, { code: 0, stdout: 'reused\n' }, 'the exec id is free again');
  } finally {
    await removeContainer(c, id);
  }
});

t.test('a reused container id: each run\'s events reach containerd once, in order, its own', async (t) => {
  const id = c.newId('reuse');
  // A container kept alive in the namespace keeps its shim server up, for the reuse within one server.
  const keeper = c.newId('keeper');
  const events = await taskEventsDuring(c, id, async () => {
    const first = await runRm(c, 'flint', ['sh', '-c', 'exit 3'], { id });
    t.equal(first.code, 3, first.stderr);
    t.equal(await settled(() => flintServers(c).length, 0, 10_000), 0, 'the first run\'s shim server has exited');
    const second = await runRm(c, 'flint', ['sh', '-c', 'echo again; exit 4'], { id });
    t.same({ code: second.code, stdout: second.stdout.toString() }, { code: 4, stdout: 'again\n' }, 'a new shim server runs the id again');
    await runDetached(keeper, ['sleep', '1000']);
    const server = flintServers(c).map((p) => p.pid);
    const third = await runRm(c, 'flint', ['sh', '-c', 'exit 5'], { id });
    const fourth = await runRm(c, 'flint', ['sh', '-c', 'exit 6'], { id });
    t.same([third.code, fourth.code], [5, 6], 'one server runs the id twice in a row');
    t.same(flintServers(c).map((p) => p.pid), server, 'the same server did');
    await removeContainer(c, keeper);
  });
  const once = ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'];
  t.same(events.map((e) => e.topic), [...once, ...once, ...once, ...once], 'each run\'s events, each once, in order');
  t.same(events.filter((e) => e.topic === '/tasks/exit').map((e) => e.fields.exit_status), [3, 4, 5, 6], 'each exit is its own run\'s');
});

t.test('two namespaces on one agent: their shims run containers side by side', async (t) => {
  const namespaces = [c.namespace, `${c.namespace}-b`];
  const keepers = namespaces.map((namespace) => ({ namespace, id: c.newId('side') }));
  try {
    // A shim server per namespace, both serving the one agent, each with a container and its stdio.
    for (const k of keepers) await runDetached(k.id, ['sleep', '1000'], k.namespace);
    t.equal(new Set(keepers.map((k) => shimSocketOf(c, k.id, k.namespace))).size, 2, 'one shim server per namespace');
    for (let round = 0; round < 3; round++) {
      const runs = namespaces.flatMap((namespace) =>
        [0, 1].map(async (i) => {
          const text = `${namespace}-${round}-${i}`;
          const r = await runRm(c, 'flint', ['sh', '-c', `echo ${text}`], { namespace, timeoutMs: 60_000 });
          return { code: r.code, stdout: r.stdout.toString(), want: `${text}\n` };
        }),
      );
      const execs = keepers.map(async (k) => {
        const r = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', `x${round}`, k.id, 'echo', `${k.namespace}-exec`], { namespace: k.namespace, timeoutMs: 60_000 });
        return { code: r.code, stdout: r.stdout.toString(), want: `${k.namespace}-exec\n` };
      });
      for (const r of await Promise.all([...runs, ...execs])) {
        t.same({ code: r.code, stdout: r.stdout }, { code: 0, stdout: r.want }, `round ${round}: ${r.want.trim()}`);
      }
    }
  } finally {
    for (const k of keepers) await removeContainer(c, k.id, k.namespace);
  }
});

t.test('Connect: the task pid from the agent, the shim\'s own pid; Shutdown leaves live tasks and the agent alone', async (t) => {
  const id = c.newId('connect');
  await runDetached(id, ['sleep', '1000']);
  const socket = shimSocketOf(c, id);
  const shimPid = shimPidOf(socket);
  const { client, task } = await taskClientAt(socket, c.namespace);
  try {
    const connect = await task.connect({ id });
    const state = await task.state({ id });
    t.equal(connect.shimPid, shimPid, 'shim_pid is the shim server\'s');
    t.ok(connect.taskPid > 0 && connect.taskPid === state.pid, `task_pid is the task's (${connect.taskPid})`);
    t.ok(withDescendants([agent.pid], listProcesses()).has(connect.taskPid), 'a process the agent runs');

    await task.shutdown({ id, now: true });
    const exec = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'after', id, 'echo', 'still'], { timeoutMs: 20_000 });
    t.same({ code: exec.code, stdout: exec.stdout.toString() }, { code: 0, stdout: 'still\n' }, 'the shim still serves its task after Shutdown{now}');
    t.ok(isRunning(shimPid), 'the shim server is still running');
    t.equal(await taskStatus(c, id), 'RUNNING', 'the task still runs');
    t.ok(agent.alive, 'the agent is still running');
  } finally {
    await client.close();
    await removeContainer(c, id);
  }
  const report = await waitForClean(c, 10_000);
  t.same(report.processes, [], 'after its last task the shim server exits');
  t.ok(agent.alive, 'and the agent, which may serve other shims, does not');
});

t.test('file:// and binary:// log URIs are handled in the agent, with no vsock stdio', async (t) => {
  const dir = join(agent.dir, 'logs');
  const logFile = join(dir, 'out.log');
  const fileId = c.newId('logfile');
  const run = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--log-uri', `file://${logFile}`, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), fileId, 'sh', '-c', 'echo to-file; echo err-to-file >&2; exec sleep 1000'], { timeoutMs: 30_000 });
  t.equal(run.code, 0, run.stderr);
  try {
    t.same(readdirSync(join(agent.root, c.namespace, fileId)).filter((f) => /-(stdin|stdout|stderr)$/.test(f)), [], 'no FIFO set in the agent bundle');
    const text = await settled(() => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''), 'to-file\nerr-to-file\n');
    t.match(text, /to-file/, 'stdout reached the file');
    t.match(text, /err-to-file/, 'stderr reached the file');
  } finally {
    await removeContainer(c, fileId);
  }

  const logger = join(dir, 'logger.sh');
  const captured = join(dir, 'captured.log');
  writeFileSync(logger, `#!/bin/sh\nexec 5>&-\necho "$CONTAINER_NAMESPACE/$CONTAINER_ID" > ${captured}\ncat <&3 >> ${captured} &\ncat <&4 >> ${captured}\nwait\n`);
  chmodSync(logger, 0o755);
  const binId = c.newId('logbin');
  const bin = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--log-uri', `binary://${logger}`, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), binId, 'sh', '-c', 'echo to-logger; exec sleep 1000'], { timeoutMs: 30_000 });
  t.equal(bin.code, 0, bin.stderr);
  try {
    const got = await settled(() => (existsSync(captured) ? readFileSync(captured, 'utf8') : ''), `${c.namespace}/${binId}\nto-logger\n`);
    t.equal(got, `${c.namespace}/${binId}\nto-logger\n`, 'the logger got the ids and the output');
    const procs = listProcesses();
    const underAgent = withDescendants([agent.pid], procs);
    t.ok(procs.some((p) => underAgent.has(p.pid) && p.argv.includes(logger)), 'the logger runs under the agent');
  } finally {
    await removeContainer(c, binId);
  }
});

t.test('an exit is reported once the client has read what the process wrote before it', async (t) => {
  // As in embedded mode (task-service.test.ts): containerd 1.6's CRI stops
  // reading at the exit, so Wait and /tasks/exit must come only once the
  // host FIFO holds nothing unread. The task is created on the shim's socket
  // directly, with a FIFO this test reads at 1.6 MB/s; seq writes 1.3 MB.
  const base = c.newId('outbase');
  await runDetached(base, ['sleep', '1000']);
  const id = c.newId('outread');
  const dir = mkdtempSync(join(c.dir, 'or-'));
  const bundle = join(dir, 'bundle');
  mkdirSync(bundle);
  const spec = JSON.parse(readFileSync(join(c.state, 'io.containerd.runtime.v2.task', c.namespace, base, 'config.json'), 'utf8')) as { process: { args: string[] } };
  spec.process.args = ['seq', '1', '200000'];
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const stdout = openPacedFifo(join(dir, 'stdout'), 16 * 1024, 10);
  const { client, task } = await taskClientAt(shimSocketOf(c, base), c.namespace);
  let atExitEvent: number | undefined;
  const events = spawn(CTR_BIN, ['--address', c.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
  events.stdout.on('data', (d: Buffer) => {
    if (atExitEvent === undefined && d.toString().includes('/tasks/exit') && d.toString().includes(`"container_id":"${id}"`)) atExitEvent = stdout.unread();
  });
  try {
    await sleep(300); // ctr events subscribes
    await task.create({ id, bundle, stdout: stdout.path });
    const exit = task.wait({ id }, { timeoutMs: 30_000 });
    await task.start({ id });
    t.equal((await exit).exitStatus, 0, 'seq exited');
    const atWait = stdout.unread();
    // ctr prints the event once containerd has it; bounded, in case it never comes.
    for (let i = 0; i < 500 && atExitEvent === undefined; i++) await sleep(10);
    t.same([atWait, atExitEvent], [0, 0], `nothing left unread in the FIFO when Wait answers, nor when the exit event arrives (${atWait}, ${atExitEvent} bytes)`);
    await task.delete({ id });
  } finally {
    events.kill('SIGTERM');
    stdout.close();
    await client.close();
    await removeContainer(c, base);
    rmSync(dir, { recursive: true, force: true });
  }
});
