import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { containerd, TaskClient } from '../src/generated/index.js';
import { Client } from '../src/ttrpc/client.js';
import { RpcError } from '../src/ttrpc/errors.js';
import { Metadata, NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import { busyboxRootfs, CONTAINER_PATH, startContainerd, type Containerd } from './harness/index.js';

/**
 * flint's ttrpc client against a real peer: containerd-shim-runc-v2,
 * started by a private containerd with `ctr run -d`.
 */
const c: Containerd = await startContainerd();
t.teardown(() => c.stop());

const id = c.newId('interop');
const run = await c.ctr(['run', '-d', '--runtime', 'io.containerd.runc.v2', '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sleep', '1000']);
t.equal(run.code, 0, run.stderr);
t.teardown(async () => {
  await c.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
  await c.ctr(['task', 'delete', '-f', id]);
  await c.ctr(['container', 'delete', id]);
});

const address = readFileSync(join(c.state, 'io.containerd.runtime.v2.task', c.namespace, id, 'address'), 'utf8').trim();
const client = await Client.connect(address, { metadata: new Metadata({ [NAMESPACE_KEY]: c.namespace }) });
t.teardown(() => client.close());
const task = new TaskClient(client);

t.test('Connect answers with the shim and task pids', async (t) => {
  const response = await task.connect({ id });
  t.ok(response.shimPid > 0, `shim pid ${response.shimPid}`);
  t.ok(response.taskPid > 0, `task pid ${response.taskPid}`);
  t.match(readFileSync(`/proc/${response.shimPid}/cmdline`, 'utf8'), /containerd-shim-runc-v2/);
});

t.test('State decodes: running, with the pid and the bundle', async (t) => {
  const connect = await task.connect({ id });
  const state = await task.state({ id });
  t.equal(state.id, id);
  t.equal(state.status, containerd.v1.types.Status.RUNNING);
  t.equal(state.pid, connect.taskPid);
  t.match(state.bundle, new RegExp(`${id}$`));
  t.equal(state.terminal, false);
});

t.test('errors come back as typed statuses', async (t) => {
  const err = await task.state({ id: 'no-such-task' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof RpcError, 'RpcError');
  t.equal((err as RpcError).code, 5, 'NotFound');
  t.match((err as RpcError).message, /not found|not created/);
});

t.test('many calls in flight on one connection', async (t) => {
  const answers = await Promise.all(Array.from({ length: 64 }, () => task.state({ id })));
  t.equal(answers.length, 64);
  t.ok(answers.every((a) => a.status === containerd.v1.types.Status.RUNNING));
});
