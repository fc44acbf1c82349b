import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { FIRST_STDIO_PORT } from '../src/agent/stdio-ports.js';
import { containerd, type flint, type google } from '../src/generated/index.js';
import { Code } from '../src/ttrpc/codes.js';
import { wrapExtraData, type StdioPorts } from '../src/vm/extra-data.js';
import { agentCreateRequest, failure, inNamespace, withAgentClient, type AgentClients } from './harness/agent-client.js';
import { buildBusyboxRootfs } from './harness/busybox.js';
import { removeNamespaceCgroups, removeRuncRoot, RUNC_ROOT } from './harness/cleanup.js';
import { startAgent, type AgentHandle } from './harness/flint-agent.js';
import { isRunning, mountsUnder } from './harness/procfs.js';
import { AGENT_API_PORT } from './harness/raw-ttrpc.js';

/**
 * flint-agent (src/agent) called directly, as the VM-mode shim calls it, over
 * its hybrid vsock socket: the stdio ports it hands out, a port in use,
 * `vm:` mounts, agent-only IO, Shutdown and --exit-when-empty. Containers
 * run with real runc on a busybox rootfs.
 */
const scratch = mkdtempSync('/tmp/fags-');
const rootfs = join(scratch, 'rootfs');
buildBusyboxRootfs(rootfs);
/** Unique to this run, so its runc state and cgroups can be removed by name. */
const NS = basename(scratch);
const agent = await startAgent();
t.teardown(async () => {
  await agent.dispose();
  removeRuncRoot(NS);
  removeNamespaceCgroups(NS);
  rmSync(scratch, { recursive: true, force: true });
});

let specs = 0;

/** An OCI spec from `runc spec` running `args`, with a cgroup under the test's namespace. */
function ociSpec(id: string, args: string[]): object {
  const dir = join(scratch, `spec-${++specs}`);
  mkdirSync(dir);
  execFileSync('runc', ['spec', '--bundle', dir]);
  const spec = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, any>;
  spec.process.args = args;
  spec.process.terminal = false;
  spec.process.env = ['PATH=/bin'];
  spec.root = { path: 'rootfs', readonly: false };
  spec.linux.cgroupsPath = `/${NS}/${id}`;
  return spec;
}

/** An ExecProcessRequest.spec as the shim sends it: the process spec and the ports in the envelope. */
function execSpec(args: string[], ports: StdioPorts = { stdin: 0, stdout: 0, stderr: 0 }): google.protobuf.IAny {
  return wrapExtraData({ jsonSpec: Buffer.from(JSON.stringify({ args, cwd: '/', env: ['PATH=/bin'] })), runcOptions: undefined, ports });
}

/** The rootfs as a VM-local mount: the agent mounts it itself. */
const VM_ROOTFS: containerd.types.IMount[] = [{ type: 'vm:bind', source: rootfs, options: ['rbind'] }];

/** `promise`, or 'timeout' after `ms`, so a test fails instead of hanging. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([promise, sleep(ms).then(() => 'timeout' as const)]);
}

/** The agent's events after `after` up to and including the first with `topic`. */
async function eventsUntil(events: AgentClients['events'], after: number, topic: string): Promise<flint.vm.v1.GetEventResponse[]> {
  const seen: flint.vm.v1.GetEventResponse[] = [];
  for (;;) {
    const next = await events.getEvent({ after }, { timeoutMs: 20_000 });
    seen.push(next);
    after = Number(next.sequence);
    if (next.envelope?.topic === topic) return seen;
  }
}

/** Creates and starts a task running `args` with no stdio; returns its pid. */
async function runTask(clients: AgentClients, id: string, args: string[]): Promise<number> {
  await clients.task.create(agentCreateRequest(id, { spec: ociSpec(id, args), rootfs: VM_ROOTFS }), inNamespace(NS));
  return (await clients.task.start({ id }, inNamespace(NS))).pid;
}

async function killAndDelete(clients: AgentClients, id: string): Promise<void> {
  await clients.task.kill({ id, signal: 9, all: true }, inNamespace(NS)).catch(() => {});
  await clients.task.wait({ id }, inNamespace(NS));
  await clients.task.delete({ id }, inNamespace(NS));
}

t.test('StdioPorts: from 11000 up, never the same port twice, 0 for a stream not asked for', async (t) => {
  await withAgentClient(agent.socket, async ({ ports }) => {
    const first = await ports.allocate({ stdin: true, stdout: true, stderr: true });
    t.same([first.stdinPort, first.stdoutPort, first.stderrPort], [FIRST_STDIO_PORT, FIRST_STDIO_PORT + 1, FIRST_STDIO_PORT + 2], 'the first three ports');
    const some = await ports.allocate({ stdin: false, stdout: true, stderr: false });
    t.same([some.stdinPort, some.stderrPort], [0, 0], 'no port for streams not asked for');
    t.equal(some.stdoutPort, FIRST_STDIO_PORT + 3, 'the next port');
  });
  // Two shims at once, each on its own connection.
  const batches = await Promise.all(
    [0, 1].map((shim) =>
      withAgentClient(agent.socket, async ({ ports }) => {
        const got: number[] = [];
        for (let i = 0; i < 20; i++) {
          const r = await ports.allocate({ stdin: shim === 0, stdout: true, stderr: true });
          got.push(...[r.stdinPort, r.stdoutPort, r.stderrPort].filter((p) => p !== 0));
        }
        return got;
      }),
    ),
  );
  const all = batches.flat();
  t.equal(new Set(all).size, all.length, `${all.length} ports to two connections, all different`);
  t.ok(all.every((p) => p > FIRST_STDIO_PORT + 3), 'none handed out before');
});

t.test('a stdio port in use: Create and Exec fail with AlreadyExists before anything is created', async (t) => {
  const id = 'port-in-use';
  // The agent's own API port is in use for as long as the agent runs.
  const busy = { stdin: 0, stdout: AGENT_API_PORT, stderr: 0 };
  await withAgentClient(agent.socket, async (clients) => {
    const { sequence: head } = await clients.events.head({});
    const err = await failure(clients.task.create(agentCreateRequest(id, { spec: ociSpec(id, ['true']), rootfs: VM_ROOTFS, ports: busy }), inNamespace(NS)));
    t.equal(err?.code, Code.AlreadyExists, `Create: AlreadyExists (${err?.message})`);
    t.match(err?.message ?? '', String(AGENT_API_PORT), 'naming the port');
    t.notOk(existsSync(join(agent.root, NS, id)), 'no bundle');
    t.same((await clients.events.head({})).sequence, head, 'no event');

    const live = 'port-in-use-live';
    await runTask(clients, live, ['sleep', '1000']);
    try {
      const bundle = join(agent.root, NS, live);
      const files = readdirSync(bundle).sort();
      const execErr = await failure(clients.task.exec({ id: live, execId: 'x', spec: execSpec(['true'], busy) }, inNamespace(NS)));
      t.equal(execErr?.code, Code.AlreadyExists, `Exec: AlreadyExists (${execErr?.message})`);
      t.same(readdirSync(bundle).sort(), files, 'no FIFO made');
      const again = await failure(clients.task.exec({ id: live, execId: 'x', spec: execSpec(['true']) }, inNamespace(NS)));
      t.equal(again, undefined, 'the exec id was not taken');
    } finally {
      await killAndDelete(clients, live);
    }
  });
});

t.test('vm: mounts are mounted by the agent with the prefix stripped; file:// output stays in the agent', async (t) => {
  const id = 'vmlocal';
  const log = join(scratch, 'vmlocal.log');
  const bundle = join(agent.root, NS, id);
  await withAgentClient(agent.socket, async (clients) => {
    const { sequence: head } = await clients.events.head({});
    const spec = ociSpec(id, ['sh', '-c', 'echo in-vm; test -x /bin/busybox && echo rootfs-ok']);
    await clients.task.create(agentCreateRequest(id, { spec, rootfs: VM_ROOTFS, stdout: `file://${log}`, stderr: `file://${log}` }), inNamespace(NS));
    try {
      t.ok(mountsUnder(join(bundle, 'rootfs')).some((m) => m.mountPoint === join(bundle, 'rootfs')), 'the rootfs is mounted in the agent bundle');
      t.same(readdirSync(bundle).filter((f) => /-(stdin|stdout|stderr)$/.test(f)), [], 'no FIFO set: file:// output is the agent\'s');
      await clients.task.start({ id }, inNamespace(NS));
      const exit = await clients.task.wait({ id }, inNamespace(NS));
      t.equal(exit.exitStatus, 0, 'the task ran');
      t.equal(readFileSync(log, 'utf8'), 'in-vm\nrootfs-ok\n', 'its output went to the file, inside the agent');
      const [created] = await eventsUntil(clients.events, Number(head), '/tasks/create');
      const event = containerd.events.TaskCreate.decode(created!.envelope!.event!.value!);
      t.same(event.rootfs.map((m) => m.type), ['bind'], 'the mount the task got has the prefix stripped');
    } finally {
      await clients.task.delete({ id }, inNamespace(NS)).catch(() => {});
    }
  });
  t.same(mountsUnder(agent.root), [], 'Delete unmounted it');
  t.notOk(existsSync(bundle), 'and removed the bundle');
});

t.test('Shutdown: without now the agent stays; with now it exits, deleting its tasks', async (t) => {
  const own: AgentHandle = await startAgent();
  t.teardown(() => own.dispose());
  const id = 'shutdown-now';
  let pid = 0;
  await withAgentClient(own.socket, async (clients) => {
    pid = await runTask(clients, id, ['sleep', '1000']);
    await clients.task.shutdown({ id, now: false }, inNamespace(NS));
    const state = await clients.task.state({ id }, inNamespace(NS));
    t.equal(state.status, containerd.v1.types.Status.RUNNING, 'Shutdown without now: the task still runs');
    // The agent may exit before its answer is out; a closed connection is an answer too.
    const err = await failure(clients.task.shutdown({ id, now: true }, inNamespace(NS)));
    t.ok(err === undefined || err.code === Code.Unavailable, `Shutdown{now} returns or the connection closes (${err?.message})`);
  });
  t.equal(await within(own.exited, 20_000), 0, 'the agent exits with status 0');
  t.notOk(isRunning(pid), 'its task\'s process is gone');
  t.notOk(existsSync(join(own.root, NS, id)), 'its bundle is gone');
  t.notOk(existsSync(join(RUNC_ROOT, NS, id)), 'its runc state is gone');
  t.same(mountsUnder(own.root), [], 'nothing is left mounted');
});

t.test('--exit-when-empty: the agent exits once its last task is deleted, not before', async (t) => {
  const own: AgentHandle = await startAgent({ args: ['--exit-when-empty'] });
  t.teardown(() => own.dispose());
  await withAgentClient(own.socket, async (clients) => {
    await runTask(clients, 'first', ['sleep', '1000']);
    await runTask(clients, 'second', ['sleep', '1000']);
    await killAndDelete(clients, 'first');
    const state = await clients.task.state({ id: 'second' }, inNamespace(NS));
    t.equal(state.status, containerd.v1.types.Status.RUNNING, 'with a task left the agent still serves');
    t.ok(own.alive, 'and runs');
    await killAndDelete(clients, 'second');
  });
  t.equal(await within(own.exited, 20_000), 0, 'after the last Delete the agent exits with status 0');
});
