import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { defineCtrScenarios } from './harness/ctr-scenarios.js';
import { startAgent } from './harness/flint-agent.js';
import { busyboxRootfs, CONTAINER_PATH, isClean, startContainerd, waitForClean, type Containerd } from './harness/index.js';
import { mountsUnder } from './harness/procfs.js';
import { RUNTIMES } from './harness/scenario.js';

/**
 * VM mode: the shim forwards the task API to flint-agent over Firecracker's
 * hybrid vsock protocol. The agent runs outside a VM on hvsock://<tmp>/fc.vsock,
 * so the shim speaks exactly what it would speak to Firecracker.
 */
const agent = await startAgent();
const agentRoot = agent.root;
const c: Containerd = await startContainerd({ env: { FLINT_CONFIG: agent.configPath } });
t.teardown(async () => {
  await c.stop();
  await agent.dispose();
});

defineCtrScenarios(t, c);

t.test('the task really runs in the agent: its bundle is under the agent root', async (t) => {
  const id = c.newId('proof');
  const run = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sleep', '1000']);
  t.equal(run.code, 0, run.stderr);
  try {
    t.ok(existsSync(join(agentRoot, c.namespace, id, 'config.json')), 'config.json written by the agent');
    const fifos = readdirSync(join(agentRoot, c.namespace, id)).filter((name) => /-(stdout|stderr|stdin)$/.test(name));
    t.ok(fifos.length > 0, 'the FIFO set lives in the agent bundle');
  } finally {
    await c.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    await c.ctr(['task', 'delete', '-f', id]);
    await c.ctr(['container', 'delete', id]);
  }
  t.notOk(existsSync(join(agentRoot, c.namespace, id)), 'the agent removed the bundle on delete');
});

t.test('agent killed mid-run: calls fail instead of hanging, a new shim serves the agent once back, nothing is left on the host', async (t) => {
  const id = c.newId('loss');
  const run = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sleep', '1000']);
  t.equal(run.code, 0, run.stderr);
  await agent.stop('SIGKILL');
  const exec = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'late', id, 'true'], { timeoutMs: 20_000 });
  t.not(exec.code, 0, 'exec after the agent died fails');
  t.notOk(exec.timedOut, 'and does not hang');
  const status = await c.ctr(['task', 'ls']);
  t.match(status.stdout.toString(), new RegExp(`${id}\\s+\\d+\\s+STOPPED`), 'the task reports an exit');
  // The agent's containers died with it only in a real VM; outside one, the new agent removes what it left.
  await agent.restart();
  // The old shim still holds the lost task, but a new container of its group gets a new shim.
  const again = c.newId('back');
  const r = await c.ctr(['run', '--rm', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), again, 'echo', 'back'], { timeoutMs: 30_000 });
  t.equal(r.stdout.toString(), 'back\n', 'a new shim uses the agent once it is back, the lost task not yet deleted');
  const rm = await c.ctr(['task', 'delete', '-f', id], { timeoutMs: 20_000 });
  t.notOk(rm.timedOut, 'delete does not hang');
  t.equal(rm.code, 0, `the lost task is deleted ${rm.stderr}`);
  t.match(rm.stderr, /exit code 255/, 'its exit status is 255');
  await c.ctr(['container', 'delete', id]);
  const report = await waitForClean(c, 10_000);
  t.same(report.processes, [], 'no shim left on the host');
  t.same(report.mounts, [], 'no mounts left on the host');
});

t.test('afterwards: nothing left on either end', async (t) => {
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'host clean', { report });
  await sleep(200);
  const bundles = existsSync(join(agentRoot, c.namespace)) ? readdirSync(join(agentRoot, c.namespace)) : [];
  t.same(bundles, [], 'no bundles left in the agent');
  t.same(mountsUnder(agentRoot), [], 'no mounts left in the agent');
});
