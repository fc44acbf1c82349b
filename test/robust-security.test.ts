import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { containerd, TaskDescriptor } from '../src/generated/index.js';
import { peerCred } from '../src/native/peercred.js';
import { Code } from '../src/ttrpc/codes.js';
import { NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import { Server } from '../src/ttrpc/server.js';
import { requireSameUser } from '../src/ttrpc/unix-creds.js';
import { agentCreateRequest, failure, inNamespace, withAgentClient } from './harness/agent-client.js';
import { startAgent, type AgentHandle } from './harness/flint-agent.js';
import { busyboxRootfs, CONTAINER_PATH, RUNTIMES, SHIM_SOCKET_DIR, shimSocketPath, spawnWithExactEnv, startContainerd, type Containerd } from './harness/index.js';
import { mountsUnder } from './harness/procfs.js';
import { AGENT_API_PORT, RawConnection, requestFrame } from './harness/raw-ttrpc.js';
import { shimSocketOf, taskClientAt } from './harness/shim-server.js';

/**
 * Who may talk to flint, and where flint may write: the shim's and the
 * agent's sockets are 0600 and the shim checks SO_PEERCRED; ids cannot
 * climb out of the bundle and state roots; symlinks under the agent's root
 * are not written through; the agent mounts nothing under /proc, /sys or /dev.
 */

const NOBODY = 65534;
const TASK = TaskDescriptor.name;

const scratch = mkdtempSync('/tmp/fsec-');
// Others may pass through (not list): so a socket's own mode, not its dir, decides who connects.
chmodSync(scratch, 0o711);
const agent: AgentHandle = await startAgent({ dirMode: 0o711 });
const c: Containerd = await startContainerd();
/** A path under /sys that must never come to exist (the agent is pointed at it below). */
const sysRoot = `/sys/fs/cgroup/flint-sec-${process.pid}`;
t.teardown(async () => {
  await c.stop();
  await agent.dispose();
  rmSync(scratch, { recursive: true, force: true });
  // Only there if the agent wrongly created it.
  if (existsSync(sysRoot)) rmSync(sysRoot, { recursive: true, force: true });
});

async function runDetached(id: string, extra: string[] = []): Promise<void> {
  const r = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, ...extra, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sleep', '1000'], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`ctr run ${id} failed: ${r.stderr}`);
}

const hostId = c.newId('sec');
const vmId = c.newId('secvm');
await runDetached(hostId);
await runDetached(vmId, ['--runtime-config-path', agent.configPath]);
const shimSocket = shimSocketOf(c, hostId);
/**
 * The shim socket's dir is root-only, which would hide what the socket's
 * own mode does; a hard link to the same socket in a 0711 dir exposes it.
 * The link shares the inode, so its mode is the shim socket's mode.
 */
const shimLink = join(scratch, 'shim.sock');
linkSync(shimSocket, shimLink);

function connectFrame(id: string): Buffer {
  return requestFrame(1, { service: TASK, method: 'Connect', payload: containerd.task.v2.ConnectRequest.encode({ id }).finish(), metadata: [{ key: NAMESPACE_KEY, value: c.namespace }] });
}

/** What a client running as another user saw. */
interface PeerOutcome {
  readonly connected: boolean;
  /** Bytes the server sent back. */
  readonly got: number;
  /** The first of them, as text. */
  readonly head: string;
  readonly closed?: boolean;
  readonly error?: string;
  readonly timeout?: boolean;
}

// Runs as the other user, so it may use nothing but node's own modules.
const PEER_SCRIPT = `
const net = require('net');
const [path, hex] = process.argv.slice(1);
let connected = false, got = 0, head = '', done = false;
const report = (extra) => { if (done) return; done = true; console.log(JSON.stringify({ connected, got, head, ...extra })); process.exit(0); };
const s = net.createConnection({ path });
s.on('connect', () => { connected = true; s.write(Buffer.from(hex, 'hex')); });
s.on('data', (b) => { got += b.length; head = (head + b.toString('latin1')).slice(0, 64); });
s.on('error', (e) => report({ error: e.code }));
s.on('close', () => report({ closed: true }));
setTimeout(() => report({ timeout: true }), 5000);
`;

/** Connects to `path` from a process running as uid/gid 65534 and sends `bytes`. */
function connectAsNobody(path: string, bytes: Buffer): Promise<PeerOutcome> {
  return new Promise((resolve, reject) => {
    // Nothing of the checkout's: it may sit where uid 65534 cannot go.
    const child = spawnWithExactEnv(process.execPath, ['-e', PEER_SCRIPT, path, bytes.toString('hex')], { PATH: '/usr/bin:/bin' }, {
      uid: NOBODY,
      gid: NOBODY,
      cwd: '/',
      stdio: ['ignore', 'pipe', 'pipe'],
    }) as ChildProcessByStdio<null, Readable, Readable>;
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out) as PeerOutcome);
      } catch {
        reject(new Error(`peer script printed ${JSON.stringify(out)}; stderr ${err}`));
      }
    });
  });
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

t.test('the shim socket and the agent socket are 0600', async (t) => {
  t.ok(lstatSync(shimSocket).isSocket(), 'the shim address is a socket');
  t.equal(mode(shimSocket).toString(8), '600', `shim socket ${shimSocket} is 0600`);
  t.equal(statSync(shimSocket).uid, process.geteuid!(), 'owned by the shim user');
  t.equal(mode(SHIM_SOCKET_DIR) & 0o022, 0, `${SHIM_SOCKET_DIR} is not writable by others`);
  t.ok(lstatSync(agent.socket).isSocket(), 'the agent listens on a socket');
  t.equal(mode(agent.socket).toString(8), '600', `agent socket ${agent.socket} is 0600`);
});

t.test('another uid cannot even connect: the mode refuses it', async (t) => {
  t.equal(mode(shimLink).toString(8), '600', 'the link is the shim socket');
  const shim = await connectAsNobody(shimLink, connectFrame(hostId));
  t.same(shim, { connected: false, got: 0, head: '', error: 'EACCES' }, 'shim socket: EACCES for uid 65534');
  // The agent's dir is 0711 here, so only the socket's own mode stands in the way.
  t.equal(mode(agent.dir).toString(8), '711');
  const vm = await connectAsNobody(agent.socket, Buffer.from(`CONNECT ${AGENT_API_PORT}\n`));
  t.same(vm, { connected: false, got: 0, head: '', error: 'EACCES' }, 'agent socket: EACCES for uid 65534');
});

/**
 * Checks that a peer of another uid got nothing past `preamble` (what a
 * transport says before ttrpc takes over) and was hung up on.
 */
function expectRefused(t: Test, outcome: PeerOutcome, what: string, preamble = /^$/): void {
  t.ok(outcome.connected, `${what}: connect(2) itself succeeds (the mode allows it)`);
  t.ok(outcome.got === outcome.head.length && preamble.test(outcome.head), `${what}: not one ttrpc byte answered (${JSON.stringify(outcome.head)})`);
  t.ok(outcome.closed === true || outcome.error === 'ECONNRESET' || outcome.error === 'EPIPE', `${what}: the server hung up (${JSON.stringify(outcome)})`);
  t.notOk(outcome.timeout, `${what}: no hang`);
}

t.test('SO_PEERCRED: a ttrpc server with the shim handshake on a 0777 socket refuses uid 65534', async (t) => {
  const dir = mkdtempSync(join(scratch, 'cred-'));
  chmodSync(dir, 0o755);
  const path = join(dir, 'ttrpc.sock');
  const errors: Error[] = [];
  const server = new Server({ handshake: requireSameUser(peerCred), onError: (err) => errors.push(err) });
  server.register(TaskDescriptor, { connect: async () => ({ shimPid: process.pid, taskPid: 42, version: 'test' }) });
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  chmodSync(path, 0o777);
  server.serve(listener);
  t.teardown(() => server.destroy());

  expectRefused(t, await connectAsNobody(path, connectFrame('x')), 'uid 65534');
  const reasons = errors.map((e) => String((e.cause as Error | undefined)?.message));
  t.ok(reasons.some((m) => /invalid credentials: peer uid=65534 gid=65534/.test(m)), `the refusal names the peer (${reasons.join('; ')})`);

  const conn = await RawConnection.unix(path);
  try {
    await conn.write(connectFrame('x'));
    const r = await conn.waitFor(1, 5_000);
    t.ok(typeof r === 'object' && r.status === undefined, 'a client of the same uid is served');
  } finally {
    conn.destroy();
  }
});

t.test('SO_PEERCRED on the live shim: with its mode opened up, uid 65534 still gets nothing', async (t) => {
  chmodSync(shimLink, 0o666);
  let outcome: PeerOutcome;
  try {
    outcome = await connectAsNobody(shimLink, connectFrame(hostId));
  } finally {
    chmodSync(shimLink, 0o600);
  }
  t.equal(mode(shimSocket).toString(8), '600', 'the shim socket is 0600 again');
  expectRefused(t, outcome, 'uid 65534 on the shim');
  const { client, task } = await taskClientAt(shimSocket, c.namespace);
  try {
    const r = await task.connect({ id: hostId }, { timeoutMs: 5_000 });
    t.ok(r.taskPid > 0, 'the shim still serves its own user');
  } finally {
    await client.close();
  }
});

t.test('SO_PEERCRED on the live agent (hvsock): with its mode opened up, uid 65534 gets the hybrid ack and no ttrpc', async (t) => {
  chmodSync(agent.socket, 0o666);
  let outcome: PeerOutcome;
  try {
    outcome = await connectAsNobody(agent.socket, Buffer.concat([Buffer.from(`CONNECT ${AGENT_API_PORT}\n`), connectFrame(vmId)]));
  } finally {
    chmodSync(agent.socket, 0o600);
  }
  t.equal(mode(agent.socket).toString(8), '600', 'the agent socket is 0600 again');
  // The hybrid vsock layer acks the CONNECT line; the ttrpc server then checks who is on the other end.
  expectRefused(t, outcome, 'uid 65534 on the agent', /^OK \d+\n$/);
  const r = await withAgentClient(agent.socket, ({ task }) => task.connect({ id: vmId }, inNamespace(c.namespace)));
  t.ok(r.taskPid > 0, `the agent still serves its own user (task pid ${r.taskPid})`);
  t.ok(agent.alive, 'the agent is still up');
});

/** Names of every entry under `dir`, recursively (symlinks not followed). */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, prefix: string): void => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const rel = `${prefix}${name}`;
      out.push(rel);
      if (lstatSync(join(d, name)).isDirectory()) walk(join(d, name), `${rel}/`);
    }
  };
  walk(dir, '');
  return out;
}

const BAD_IDS = ['../x', 'a/b', '..', '.', 'x/../../y', '/abs', 'a'.repeat(77)];

t.test('ctr run with an id that is not one path component fails clearly and creates nothing', async (t) => {
  const watched = [join(c.state, 'io.containerd.runtime.v2.task'), join(c.root, 'io.containerd.runtime.v2.task'), c.fifoDir, join('/run/containerd/runc', c.namespace)];
  const before = watched.map(tree);
  for (const id of BAD_IDS) {
    const r = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'true']);
    t.not(r.code, 0, `${JSON.stringify(id)}: refused`);
    t.match(r.stderr, /identifier|invalid argument/, `${JSON.stringify(id)}: the error says why (${r.stderr.trim()})`);
    t.notOk(existsSync(shimSocketPath(c.address, c.namespace, id)), `${JSON.stringify(id)}: no shim socket`);
  }
  t.same(watched.map(tree), before, 'nothing new under the state, root, FIFO or runc dirs');
  t.notOk(existsSync(join(c.state, 'x')) || existsSync(join(c.dir, 'x')) || existsSync(join(c.state, 'io.containerd.runtime.v2.task', 'x')), 'no "x" next to them');
});

t.test('the shim Task API refuses traversal ids with InvalidArgument', async (t) => {
  const bundle = mkdtempSync(join(scratch, 'bundle-'));
  const before = [tree(scratch), tree(join('/run/containerd/runc', c.namespace))];
  const { client, task } = await taskClientAt(shimSocket, c.namespace);
  try {
    for (const id of [...BAD_IDS, '']) {
      const err = await task.create({ id, bundle, rootfs: [] }, { timeoutMs: 10_000 }).then(() => undefined, (e: unknown) => e as { code?: number; message?: string });
      t.equal(err?.code, Code.InvalidArgument, `Create ${JSON.stringify(id.slice(0, 20))}: InvalidArgument (${err?.message})`);
    }
    for (const execId of ['../e', 'e/../../f', '..']) {
      const err = await task
        .exec({ id: hostId, execId, spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from('{"args":["true"],"cwd":"/"}') } }, { timeoutMs: 10_000 })
        .then(() => undefined, (e: unknown) => e as { code?: number; message?: string });
      t.equal(err?.code, Code.InvalidArgument, `Exec ${JSON.stringify(execId)}: InvalidArgument (${err?.message})`);
    }
  } finally {
    await client.close();
  }
  t.same([tree(scratch), tree(join('/run/containerd/runc', c.namespace))], before, 'nothing created in the bundle or the runc root');
});

t.test('the shim Task API: a bundle whose rootfs is a symlink out of it is refused, nothing mounted or written', async (t) => {
  const bundle = mkdtempSync(join(scratch, 'linked-'));
  const outside = mkdtempSync(join(scratch, 'outside-'));
  const hostBundle = join(c.state, 'io.containerd.runtime.v2.task', c.namespace, hostId);
  writeFileSync(join(bundle, 'config.json'), readFileSync(join(hostBundle, 'config.json')));
  symlinkSync(outside, join(bundle, 'rootfs'));
  const id = c.newId('linked');
  const rootfs = [{ type: 'bind', source: busyboxRootfs(c), target: '', options: ['rbind', 'ro'] }];
  const seenOutside = new Set<string>();
  const watcher = setInterval(() => {
    for (const m of mountsUnder(outside)) seenOutside.add(m.mountPoint);
  }, 2);
  const { client, task } = await taskClientAt(shimSocket, c.namespace);
  let err: { code?: number; message?: string } | undefined;
  try {
    err = await failure(task.create({ id, bundle, rootfs }, { timeoutMs: 10_000 }));
    // Were it created after all, it must not outlive the test with its mount outside.
    if (!err) await task.delete({ id }, { timeoutMs: 10_000 }).catch(() => {});
  } finally {
    clearInterval(watcher);
    await client.close();
  }
  t.equal(err?.code, Code.InvalidArgument, `InvalidArgument (${err?.message})`);
  t.match(err?.message ?? '', /rootfs.*outside/, 'the error names the rootfs and says it leads outside');
  t.same([...seenOutside], [], 'nothing was mounted outside, not even for a moment');
  t.same(readdirSync(outside), [], 'nothing was written outside');
  t.same(readdirSync(bundle).sort(), ['config.json', 'rootfs'], 'nothing was written in the bundle either');
  t.notOk(existsSync(join('/run/containerd/runc', c.namespace, id)), 'no runc state');
});

// ---- the agent, called directly as the VM-mode shim would ----

/** A CreateTaskRequest as the VM-mode shim sends it, with no stdio. */
function agentCreate(id: string, rootfs: containerd.types.IMount[] = []): containerd.task.v2.ICreateTaskRequest {
  return agentCreateRequest(id, { rootfs });
}

t.test('agent: traversal ids and namespaces are refused with InvalidArgument, nothing created', async (t) => {
  const before = tree(agent.dir);
  await withAgentClient(agent.socket, async ({ task }) => {
    for (const id of [...BAD_IDS, '']) {
      const err = await failure(task.create(agentCreate(id), inNamespace(c.namespace)));
      t.equal(err?.code, Code.InvalidArgument, `id ${JSON.stringify(id.slice(0, 20))}: ${err?.message}`);
    }
    for (const ns of ['../evil', 'a/b', '..', '.']) {
      const err = await failure(task.create(agentCreate('fine'), inNamespace(ns)));
      t.equal(err?.code, Code.InvalidArgument, `namespace ${JSON.stringify(ns)}: ${err?.message}`);
    }
  });
  t.same(tree(agent.dir), before, 'nothing new anywhere in the agent dir');
  t.notOk(existsSync(join(agent.dir, 'x')) || existsSync(join(agent.dir, 'evil')) || existsSync('/tmp/evil'), 'nothing next to the root');
});

t.test('agent: symlinks under --root are not followed out of it', async (t) => {
  const outside = mkdtempSync(join(scratch, 'outside-'));
  // <root>/<ns> → outside
  const nsLink = 'seclink';
  symlinkSync(outside, join(agent.root, nsLink));
  // <root>/<ns>/<id> → outside
  const nsReal = 'secreal';
  mkdirSync(join(agent.root, nsReal));
  symlinkSync(outside, join(agent.root, nsReal, 'victim'));
  // <root>/<ns>/<id>/rootfs → outside: a bundle left in place, whose rootfs leads away.
  const nsStale = 'secstale';
  mkdirSync(join(agent.root, nsStale, 'stale'), { recursive: true });
  symlinkSync(outside, join(agent.root, nsStale, 'stale', 'rootfs'));
  const source = busyboxRootfs(c);

  // Watch for a mount landing outside while the calls run (the failure mode being guarded against).
  const seenOutside = new Set<string>();
  const watcher = setInterval(() => {
    for (const m of mountsUnder(outside)) seenOutside.add(m.mountPoint);
  }, 2);
  try {
    await withAgentClient(agent.socket, async ({ task }) => {
      const a = await failure(task.create(agentCreate('victim'), inNamespace(nsLink)));
      t.equal(a?.code, Code.InvalidArgument, `namespace dir is a symlink out: ${a?.message}`);
      t.match(a?.message ?? '', /outside/, 'the error says it leads outside');
      const b = await failure(task.create(agentCreate('victim'), inNamespace(nsReal)));
      t.equal(b?.code, Code.InvalidArgument, `bundle dir is a symlink out: ${b?.message}`);
      const rootfs = [{ type: 'bind', source, target: '', options: ['rbind', 'ro'] }];
      const s = await failure(task.create(agentCreate('stale', rootfs), inNamespace(nsStale)));
      t.ok(s?.code === Code.AlreadyExists || s?.code === Code.InvalidArgument, `a bundle already there, its rootfs a symlink out: refused (${s?.code} ${s?.message})`);
    });
  } finally {
    clearInterval(watcher);
  }
  t.same(readdirSync(outside), [], 'nothing was written outside');
  t.same([...seenOutside], [], 'nothing was mounted outside, not even for a moment');
  t.same(mountsUnder(outside), [], 'no mount left outside');
  t.ok(lstatSync(join(agent.root, nsLink)).isSymbolicLink(), 'the symlinks themselves are left as they were');
  rmSync(join(agent.root, nsLink));
  rmSync(join(agent.root, nsReal), { recursive: true });
  rmSync(join(agent.root, nsStale), { recursive: true });
});

t.test('agent: a second Create of a live task is refused and leaves the live bundle alone', async (t) => {
  const bundle = join(agent.root, c.namespace, vmId);
  const config = readFileSync(join(bundle, 'config.json'), 'utf8');
  const entries = readdirSync(bundle).sort();
  await withAgentClient(agent.socket, async ({ task }) => {
    const err = await failure(task.create(agentCreate(vmId), inNamespace(c.namespace)));
    t.equal(err?.code, Code.AlreadyExists, `AlreadyExists (${err?.message})`);
  });
  t.ok(existsSync(bundle), 'the live bundle is still there');
  t.equal(existsSync(bundle) ? readFileSync(join(bundle, 'config.json'), 'utf8') : '', config, 'its config.json is untouched');
  t.same(existsSync(bundle) ? readdirSync(bundle).sort() : [], entries, 'and so is everything else in it');
  const exec = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'after-dup', vmId, 'echo', 'ok'], { timeoutMs: 30_000 });
  t.equal(exec.stdout.toString(), 'ok\n', `the live task still execs ${exec.stderr}`);
});

t.test('agent: nothing is mounted under /dev, /sys or /proc, whatever --root says', async (t) => {
  // One agent whose --root is a symlink, pointed at each forbidden tree in turn.
  const link = join(scratch, 'root-link');
  const devRoot = mkdtempSync('/dev/shm/flint-sec-');
  t.teardown(() => rmSync(devRoot, { recursive: true, force: true }));
  symlinkSync(devRoot, link);
  const forbidden = await startAgent({ root: link });
  t.teardown(() => forbidden.dispose());
  const targets: Array<[string, string]> = [
    ['/dev', devRoot],
    ['/sys', sysRoot],
    ['/proc', `/proc/flint-sec-${process.pid}`],
  ];
  for (const [where, target] of targets) {
    rmSync(link);
    symlinkSync(target, link);
    const before = existsSync(target) ? readdirSync(target) : undefined;
    const err = await withAgentClient(forbidden.socket, ({ task }) => failure(task.create(agentCreate('mnt'), inNamespace(c.namespace))));
    t.equal(err?.code, Code.InvalidArgument, `root under ${where}: InvalidArgument (${err?.message})`);
    t.match(err?.message ?? '', /refusing to mount/, `root under ${where}: refused as a mount target`);
    t.same(existsSync(target) ? readdirSync(target) : undefined, before, `root under ${where}: nothing created there`);
  }
  t.ok(forbidden.alive, 'the agent is still up');
});
