import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startAgent } from './harness/flint-agent.js';
import { fdCount, fdTargets } from './harness/host-state.js';
import { busyboxRootfs, CONTAINER_PATH, startContainerd, type Containerd } from './harness/index.js';
import { listProcesses, withDescendants } from './harness/procfs.js';
import { removeContainer, RUNTIMES } from './harness/scenario.js';

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
