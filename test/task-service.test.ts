import t, { type Test } from 'tap';
import pino from 'pino';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, symlinkSync, writeFileSync, writeSync, type Dirent } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_CONFIG, loadConfig } from '../src/config/config.js';
import { containerd, io, TaskClient, TaskDescriptor } from '../src/generated/index.js';
import { mkfifo, pipe, setNonblocking, unreadBytes } from '../src/native/fd.js';
import { Reaper, zombieChildren } from '../src/sys/reaper.js';
import { cgroupsOf, isUnified } from '../src/taskapi/cgroup.js';
import type { EventPublisher, TaskEvent } from '../src/taskapi/events.js';
import { openProcessIO } from '../src/taskapi/io/index.js';
import { RuncTaskService } from '../src/taskapi/service.js';
import { Client, Code, Metadata, NAMESPACE_KEY, RpcError, Server } from '../src/ttrpc/index.js';
import { mountsUnder } from './harness/procfs.js';
import { openPacedFifo, SlowReader } from './harness/slow-reader.js';

/**
 * RuncTaskService end to end over a real ttrpc Server/Client pair on a unix
 * socket, with real runc and busybox bundles. runc's state lives under a
 * private root in the temp dir; stdio is FIFOs made here and read here.
 * Every child of this process goes through the reaper (or is spawned
 * synchronously), so the reaper's stray scan never takes a status libuv wants.
 */

const NS = 'flint-task-test';
const STATUS = containerd.v1.types.Status;
const OCI_PROCESS_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
const OCI_RESOURCES_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
const GO_ZERO_TIME_SECONDS = -62135596800;
const APPLETS = ['sh', 'sleep', 'true', 'cat', 'echo', 'stty', 'seq'];

const tmp = mkdtempSync(join(tmpdir(), 'flint-task-'));
const runcRoot = join(tmp, 'runc');
const socketPath = join(tmp, 'task.sock');
const tmpdirBefore = new Set(readdirSync(tmpdir()));
const reaper = Reaper.get();

/** (namespace, topic, event) in publish order. */
const events: { namespace: string; topic: string; event: TaskEvent }[] = [];
/** Called with each event as it is published, for a look at the world at that moment. */
const onPublish = new Set<(event: TaskEvent) => void>();
const recorder: EventPublisher = {
  publish: (namespace, event) => {
    events.push({ namespace, topic: event.topic, event });
    for (const look of onPublish) look(event);
  },
};

/** How often the service asked the server to end. */
let shutdowns = 0;
const service = new RuncTaskService({
  namespace: NS,
  events: recorder,
  reaper,
  log: pino({ enabled: false }),
  config: DEFAULT_CONFIG,
  loadConfig: (path) => loadConfig(path, {}).config,
  onShutdown: () => void shutdowns++,
});
const server = new Server();
server.register(TaskDescriptor, service);
const listener = net.createServer();
await new Promise<void>((resolve, reject) => {
  listener.once('error', reject);
  listener.listen(socketPath, () => resolve());
});
server.serve(listener);
const client = await Client.connect(socketPath, { metadata: new Metadata({ [NAMESPACE_KEY]: NS }) });
const task = new TaskClient(client);
/** What this process had open before any container: Node's own eventfds and the like. */
const fdsBefore = openFds();

/** Container ids created here; teardown removes whatever a failed test left. */
const containers = new Set<string>();
const fifos: FifoReader[] = [];

t.teardown(async () => {
  for (const id of containers) {
    await task.kill({ id, signal: 9, all: true }).catch(() => {});
    await task.wait({ id }, { timeoutMs: 5_000 }).catch(() => {});
    await task.delete({ id }).catch(() => {});
  }
  const nsRoot = join(runcRoot, NS);
  if (existsSync(nsRoot)) {
    for (const id of readdirSync(nsRoot)) {
      try {
        execFileSync('runc', ['--root', nsRoot, 'delete', '--force', id], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
  for (const fifo of fifos) fifo.close();
  await client.close();
  server.destroy();
  await new Promise((resolve) => listener.close(resolve));
  rmSync(tmp, { recursive: true, force: true });
});

const runcOptions = {
  typeUrl: 'containerd.runc.v1.Options',
  value: containerd.runc.v1.Options.encode({ root: runcRoot }).finish(),
};

let bundles = 0;
/** A bundle with a busybox rootfs; config.json from `runc spec` with our args. */
function makeBundle(args: string[], edit: (spec: Record<string, any>) => void = () => {}): string {
  const bundle = join(tmp, `bundle-${++bundles}`);
  const bin = join(bundle, 'rootfs', 'bin');
  mkdirSync(bin, { recursive: true });
  copyFileSync('/bin/busybox', join(bin, 'busybox'));
  for (const applet of APPLETS) symlinkSync('busybox', join(bin, applet));
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const file = join(bundle, 'config.json');
  const spec = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;
  spec.process.args = args;
  spec.process.terminal = false;
  spec.process.env = ['PATH=/bin'];
  spec.root.readonly = false;
  edit(spec);
  writeFileSync(file, JSON.stringify(spec, null, 2));
  return bundle;
}

/** A spec edit: no pid namespace of its own, the container's processes live in the host's. */
function hostPidNamespace(spec: Record<string, any>): void {
  spec.linux.namespaces = spec.linux.namespaces.filter((ns: { type: string }) => ns.type !== 'pid');
}

/**
 * Whether `pid` lives on or has been killed: gone, a zombie, exiting, or
 * with SIGKILL pending (kill(2) returns before its victim has run to die).
 */
function fate(pid: number): 'alive' | 'killed' {
  const SIGKILL_BIT = 1n << 8n;
  const PF_EXITING = 0x4;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const [state, , , , , , flags] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state === 'Z' || state === 'X' || (Number(flags) & PF_EXITING) !== 0) return 'killed';
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const pending = [...status.matchAll(/^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$/gm)].map((m) => BigInt(`0x${m[1]}`));
    return pending.some((mask) => (mask & SIGKILL_BIT) !== 0n) ? 'killed' : 'alive';
  } catch {
    return 'killed'; // gone
  }
}

/**
 * A FIFO the test reads. Opened read-write-nonblocking first (a reader that
 * never waits for a writer) plus a writer of our own, so the reader never
 * sees EOF between the shim's writers: the test polls for the text instead.
 */
class FifoReader {
  readonly path: string;
  private text = '';
  private readonly socket: net.Socket;
  private readonly keepAlive: number;

  constructor(name: string) {
    this.path = join(tmp, name);
    execFileSync('mkfifo', [this.path]);
    const fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    this.keepAlive = openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK);
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    this.socket.setEncoding('utf8');
    this.socket.on('data', (chunk: string) => (this.text += chunk));
    this.socket.on('error', () => {});
    fifos.push(this);
  }

  get output(): string {
    return this.text;
  }

  /** Resolves once `wanted` has been read (or after timeoutMs, with what there is). */
  async waitFor(wanted: string, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.text.includes(wanted) && Date.now() < deadline) await sleep(20);
    return this.text;
  }

  close(): void {
    this.socket.destroy();
    try {
      closeSync(this.keepAlive);
    } catch {
      // closed already
    }
  }
}

interface Created {
  readonly id: string;
  readonly bundle: string;
  readonly pid: number;
  readonly stdout: FifoReader | undefined;
}

let ids = 0;
function newId(prefix: string): string {
  return `${prefix}-${process.pid}-${++ids}`;
}

async function create(prefix: string, args: string[], opts: { stdout?: boolean } = {}): Promise<Created> {
  const id = newId(prefix);
  const bundle = makeBundle(args);
  const stdout = opts.stdout ? new FifoReader(`${id}.stdout`) : undefined;
  containers.add(id);
  const { pid } = await task.create({ id, bundle, stdout: stdout?.path ?? '', options: runcOptions });
  return { id, bundle, pid, stdout };
}

/** Kills (if needed), waits and deletes; the container is forgotten. */
async function remove(id: string): Promise<void> {
  const state = await task.state({ id });
  if (state.status === STATUS.RUNNING || state.status === STATUS.PAUSED) {
    await task.kill({ id, signal: 9, all: true });
    await task.wait({ id }, { timeoutMs: 10_000 });
  }
  await task.delete({ id });
  containers.delete(id);
}

function processSpec(args: string[]): { typeUrl: string; value: Uint8Array } {
  const spec = { args, cwd: '/', env: ['PATH=/bin'], terminal: false, user: { uid: 0, gid: 0 } };
  return { typeUrl: OCI_PROCESS_TYPE, value: Buffer.from(JSON.stringify(spec)) };
}

/** The RpcError a call fails with; a call that succeeds is a test failure. */
async function failure(call: Promise<unknown>): Promise<RpcError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error('call succeeded but should have failed');
}

async function expectError(t: Test, call: Promise<unknown>, code: Code, message: string | RegExp, what: string): Promise<RpcError> {
  const err = await failure(call);
  t.equal(err.code, code, `${what}: ${Code[code]} (got ${Code[err.code]}: ${err.message})`);
  t.match(err.message, message, `${what}: message`);
  return err;
}

function nearNow(t: Test, ts: { seconds?: number | null; nanos?: number | null } | null | undefined, what: string): void {
  const seconds = Number(ts?.seconds ?? GO_ZERO_TIME_SECONDS);
  t.not(seconds, GO_ZERO_TIME_SECONDS, `${what} is set`);
  t.ok(Math.abs(seconds - Date.now() / 1000) < 60, `${what} is now-ish`);
}

const EVENT_TYPES: Readonly<Record<string, { decode(value: Uint8Array): { containerId: string } }>> = {
  '/tasks/create': containerd.events.TaskCreate,
  '/tasks/start': containerd.events.TaskStart,
  '/tasks/exit': containerd.events.TaskExit,
  '/tasks/delete': containerd.events.TaskDelete,
  '/tasks/oom': containerd.events.TaskOOM,
  '/tasks/exec-added': containerd.events.TaskExecAdded,
  '/tasks/exec-started': containerd.events.TaskExecStarted,
  '/tasks/paused': containerd.events.TaskPaused,
  '/tasks/resumed': containerd.events.TaskResumed,
};

/** The events about container `id`, in publish order. */
function eventsOf(id: string): { topic: string; event: TaskEvent }[] {
  return events.filter((e) => e.namespace === NS && EVENT_TYPES[e.topic]!.decode(e.event.value).containerId === id);
}

t.test('create, start, wait, delete: exit status and exited_at', async (t) => {
  const c = await create('life', ['sh', '-c', 'echo hello; exit 3'], { stdout: true });
  t.ok(c.pid > 0, 'create returns the init pid');
  let state = await task.state({ id: c.id });
  t.equal(state.status, STATUS.CREATED, 'CREATED after create');
  t.equal(state.pid, c.pid);
  t.equal(state.bundle, c.bundle);
  t.equal(state.stdout, c.stdout!.path);
  t.equal(state.exitStatus, 0);
  t.equal(Number(state.exitedAt?.seconds), GO_ZERO_TIME_SECONDS, 'no exited_at before exit');
  t.match(await task.connect({ id: c.id }), { shimPid: process.pid, taskPid: c.pid }, 'connect: this server\'s pid and the task\'s');

  const waiting = task.wait({ id: c.id });
  const started = await task.start({ id: c.id });
  t.equal(started.pid, c.pid, 'start returns the same pid');
  const exit = await waiting;
  t.equal(exit.exitStatus, 3, 'wait reports the exit status');
  nearNow(t, exit.exitedAt, 'wait exited_at');
  t.equal(await c.stdout!.waitFor('hello\n'), 'hello\n', 'stdout reached the FIFO');

  state = await task.state({ id: c.id });
  t.equal(state.status, STATUS.STOPPED, 'STOPPED after exit');
  t.equal(state.exitStatus, 3);
  t.same(state.exitedAt, exit.exitedAt, 'state and wait agree on exited_at');

  const again = await task.wait({ id: c.id });
  t.same([again.exitStatus, again.exitedAt], [3, exit.exitedAt], 'a wait after the exit answers at once');

  const deleted = await task.delete({ id: c.id });
  containers.delete(c.id);
  t.equal(deleted.pid, c.pid);
  t.equal(deleted.exitStatus, 3);
  t.same(deleted.exitedAt, exit.exitedAt);
  await expectError(t, task.state({ id: c.id }), Code.NotFound, `container ${c.id}: not created`, 'state after delete');
  t.notOk(existsSync(join(runcRoot, NS, c.id)), 'runc state removed');
});

t.test('status transitions: running, paused, running, stopped', async (t) => {
  const c = await create('states', ['sleep', '100']);
  await task.start({ id: c.id });
  t.equal((await task.state({ id: c.id })).status, STATUS.RUNNING, 'RUNNING after start');
  await task.pause({ id: c.id });
  t.equal((await task.state({ id: c.id })).status, STATUS.PAUSED, 'PAUSED after pause');
  await task.resume({ id: c.id });
  t.equal((await task.state({ id: c.id })).status, STATUS.RUNNING, 'RUNNING after resume');
  await task.kill({ id: c.id, signal: 9 });
  const exit = await task.wait({ id: c.id }, { timeoutMs: 10_000 });
  t.equal(exit.exitStatus, 137, 'SIGKILL: 128+9');
  t.equal((await task.state({ id: c.id })).status, STATUS.STOPPED, 'STOPPED after exit');
  await remove(c.id);
});

t.test('a paused container can be killed', async (t) => {
  const c = await create('pkill', ['sleep', '100']);
  await task.start({ id: c.id });
  await task.pause({ id: c.id });
  await task.kill({ id: c.id, signal: 9, all: true });
  // runc kill of a frozen container: the kill lands once it thaws.
  await task.resume({ id: c.id }).catch(() => {});
  const exit = await task.wait({ id: c.id }, { timeoutMs: 10_000 });
  t.equal(exit.exitStatus, 137);
  await remove(c.id);
});

interface WrongCall {
  readonly op: string;
  readonly call: (id: string) => Promise<unknown>;
}

const WRONG_IN_CREATED: WrongCall[] = [
  { op: 'pause', call: (id) => task.pause({ id }) },
  { op: 'resume', call: (id) => task.resume({ id }) },
  { op: 'checkpoint', call: (id) => task.checkpoint({ id, path: join(tmp, 'ckpt-created') }) },
];
const WRONG_IN_RUNNING: WrongCall[] = [
  { op: 'start', call: (id) => task.start({ id }) },
  { op: 'resume', call: (id) => task.resume({ id }) },
  { op: 'delete', call: (id) => task.delete({ id }) },
];
const WRONG_IN_PAUSED: WrongCall[] = [
  { op: 'start', call: (id) => task.start({ id }) },
  { op: 'pause', call: (id) => task.pause({ id }) },
  { op: 'delete', call: (id) => task.delete({ id }) },
];
const WRONG_IN_STOPPED: WrongCall[] = [
  { op: 'start', call: (id) => task.start({ id }) },
  { op: 'pause', call: (id) => task.pause({ id }) },
  { op: 'resume', call: (id) => task.resume({ id }) },
  { op: 'update', call: (id) => task.update({ id, resources: { typeUrl: OCI_RESOURCES_TYPE, value: Buffer.from('{}') } }) },
  { op: 'exec', call: (id) => task.exec({ id, execId: 'late', spec: processSpec(['true']) }) },
  { op: 'checkpoint', call: (id) => task.checkpoint({ id, path: join(tmp, 'ckpt-stopped') }) },
];

async function checkWrong(t: Test, id: string, state: string, status: containerd.v1.types.Status, calls: WrongCall[]): Promise<void> {
  for (const { op, call } of calls) {
    await expectError(t, call(id), Code.FailedPrecondition, `cannot ${op} container ${id} in state ${state}`, `${op} in ${state}`);
    t.equal((await task.state({ id })).status, status, `${op} in ${state} leaves it ${state}`);
  }
}

t.test('every operation in the wrong state: FailedPrecondition naming op and state, state unchanged', async (t) => {
  const c = await create('wrong', ['sleep', '100']);
  await checkWrong(t, c.id, 'created', STATUS.CREATED, WRONG_IN_CREATED);
  await task.start({ id: c.id });
  await checkWrong(t, c.id, 'running', STATUS.RUNNING, WRONG_IN_RUNNING);
  await task.pause({ id: c.id });
  await checkWrong(t, c.id, 'paused', STATUS.PAUSED, WRONG_IN_PAUSED);
  await task.resume({ id: c.id });
  await task.kill({ id: c.id, signal: 9 });
  await task.wait({ id: c.id }, { timeoutMs: 10_000 });
  await checkWrong(t, c.id, 'stopped', STATUS.STOPPED, WRONG_IN_STOPPED);
  await expectError(t, task.kill({ id: c.id, signal: 9 }), Code.NotFound, 'process already finished', 'kill of a stopped init');
  await remove(c.id);
  await expectError(t, task.delete({ id: c.id }), Code.NotFound, `container ${c.id}: not created`, 'delete twice');
});

t.test('deleting a created container that never started', async (t) => {
  // Both with and without a pid namespace of its own: without one, an init
  // exit would also trigger the kill of what it left (runc kill --all).
  for (const [what, edit] of [['own pid namespace', () => {}], ['host pid namespace', hostPidNamespace]] as const) {
    const id = newId('nostart');
    const bundle = makeBundle(['sleep', '100'], edit);
    containers.add(id);
    const { pid } = await task.create({ id, bundle, options: runcOptions });
    const deleted = await task.delete({ id });
    containers.delete(id);
    t.equal(deleted.pid, pid, `${what}: delete reports the init pid`);
    t.notOk(existsSync(join(runcRoot, NS, id)), `${what}: runc state removed`);
    await expectError(t, task.state({ id }), Code.NotFound, 'not created', `${what}: gone`);
    // runc delete --force killed the init; its exit, seen by the reaper
    // later, must not be announced after the delete, nor start a kill.
    await sleep(500);
    const topics = eventsOf(id).map((e) => e.topic);
    t.equal(topics[0], '/tasks/create', `${what}: create first`);
    t.equal(topics.filter((x) => x === '/tasks/start').length, 0, `${what}: no start`);
    t.equal(topics.filter((x) => x === '/tasks/delete').length, 1, `${what}: one delete`);
    t.equal(topics.at(-1), '/tasks/delete', `${what}: delete is the last event: ${topics.join(' ')}`);
    const log = existsSync(join(bundle, 'log.json')) ? readFileSync(join(bundle, 'log.json'), 'utf8') : '';
    t.notMatch(log, /"level":"error"/, `${what}: runc was asked nothing after the delete (its log has no error)`);
  }
});

t.test('exec: duplicate id, kill before start, unknown exec, run to exit', async (t) => {
  const c = await create('exec', ['sleep', '100']);
  await task.start({ id: c.id });
  const out = new FifoReader(`${c.id}.exec.stdout`);
  const stdin = join(tmp, `${c.id}.exec.stdin`);
  execFileSync('mkfifo', [stdin]);
  await task.exec({ id: c.id, execId: 'e1', spec: processSpec(['sh', '-c', 'echo from-exec; sleep 0.3; exit 4']), stdout: out.path, stdin });
  let state = await task.state({ id: c.id, execId: 'e1' });
  t.equal(state.status, STATUS.CREATED, 'an added exec is CREATED');
  t.equal(state.id, 'e1');
  t.equal(state.execId, 'e1');

  await expectError(t, task.exec({ id: c.id, execId: 'e1', spec: processSpec(['true']) }), Code.AlreadyExists, 'e1', 'duplicate exec id');
  await expectError(t, task.kill({ id: c.id, execId: 'e1', signal: 9 }), Code.FailedPrecondition, 'cannot kill exec e1 in state created', 'kill before start');
  t.equal((await task.state({ id: c.id, execId: 'e1' })).status, STATUS.CREATED, 'still CREATED');

  await expectError(t, task.state({ id: c.id, execId: 'nope' }), Code.NotFound, 'process does not exist nope', 'state of an unknown exec');
  await expectError(t, task.kill({ id: c.id, execId: 'nope', signal: 9 }), Code.NotFound, 'process does not exist nope', 'kill of an unknown exec');
  await expectError(t, task.start({ id: c.id, execId: 'nope' }), Code.NotFound, 'process does not exist nope', 'start of an unknown exec');
  await expectError(t, task.wait({ id: c.id, execId: 'nope' }), Code.NotFound, 'process does not exist nope', 'wait of an unknown exec');
  await expectError(t, task.delete({ id: c.id, execId: 'nope' }), Code.NotFound, 'process does not exist nope', 'delete of an unknown exec');

  const waiting = task.wait({ id: c.id, execId: 'e1' });
  const { pid } = await task.start({ id: c.id, execId: 'e1' });
  t.ok(pid > 0 && pid !== c.pid, 'the exec has its own pid');
  state = await task.state({ id: c.id, execId: 'e1' });
  t.equal(state.status, STATUS.RUNNING, 'RUNNING after start');
  t.equal(state.pid, pid);
  const pids = await task.pids({ id: c.id });
  const execEntry = pids.processes.find((p) => p.pid === pid);
  t.ok(execEntry, 'pids lists the exec');
  t.equal(containerd.runc.v1.ProcessDetails.decode(execEntry!.info!.value!).execId, 'e1', 'with its exec id');
  t.ok(pids.processes.some((p) => p.pid === c.pid), 'and the init');

  await expectError(t, task.start({ id: c.id, execId: 'e1' }), Code.FailedPrecondition, 'cannot start exec e1 in state running', 'start twice');
  await expectError(t, task.delete({ id: c.id, execId: 'e1' }), Code.FailedPrecondition, 'cannot delete exec e1 in state running', 'delete running exec');

  const exit = await waiting;
  t.equal(exit.exitStatus, 4, 'exec exit status');
  nearNow(t, exit.exitedAt, 'exec exited_at');
  t.match(await out.waitFor('from-exec'), 'from-exec\n', 'exec stdout reached its FIFO');
  t.equal((await task.state({ id: c.id, execId: 'e1' })).status, STATUS.STOPPED, 'STOPPED after exit');
  t.equal((await task.state({ id: c.id })).status, STATUS.RUNNING, 'the init runs on');
  await expectError(t, task.kill({ id: c.id, execId: 'e1', signal: 9 }), Code.NotFound, 'process already finished', 'kill of an exited exec');

  t.ok(fdsInto(stdin).length > 0, 'until its delete the shim holds the exited exec\'s stdin keep-alive');
  const deleted = await task.delete({ id: c.id, execId: 'e1' });
  t.same([deleted.pid, deleted.exitStatus], [pid, 4]);
  t.same(fdsInto(stdin), [], 'exec delete closed its stdin (reader and keep-alive)');
  await expectError(t, task.state({ id: c.id, execId: 'e1' }), Code.NotFound, 'process does not exist e1', 'exec gone after delete');
  t.notOk(existsSync(join(c.bundle, 'e1.pid')), 'exec pid file removed');
  await remove(c.id);
  rmSync(stdin);
});

t.test('exec ids are validated', async (t) => {
  const c = await create('execid', ['sleep', '100']);
  await task.start({ id: c.id });
  for (const execId of ['../x', 'a/b', '']) {
    await expectError(t, task.exec({ id: c.id, execId, spec: processSpec(['true']) }), Code.InvalidArgument, /identifier/, `exec id ${JSON.stringify(execId)}`);
  }
  await remove(c.id);
});

t.test('exec of a missing binary fails with runc\'s own words', async (t) => {
  const c = await create('nobin', ['sleep', '100']);
  await task.start({ id: c.id });
  const stdin = join(tmp, `${c.id}.missing.stdin`);
  execFileSync('mkfifo', [stdin]);
  await task.exec({ id: c.id, execId: 'missing', spec: processSpec(['/bin/no-such-binary']), stdin });
  const err = await failure(task.start({ id: c.id, execId: 'missing' }));
  t.same(fdsInto(stdin), [], 'the failed start closed the stdin it opened (reader and keep-alive)');
  t.match(err.message, /^OCI runtime exec failed: /, `worded as by the runc shim, then runc's error: ${err.message}`);
  t.match(err.message, /no-such-binary/, 'names the binary');
  t.match(err.message, /no such file or directory|not found/i, 'says why');
  t.equal((await task.state({ id: c.id, execId: 'missing' })).status, STATUS.CREATED, 'the exec stays CREATED');
  await task.delete({ id: c.id, execId: 'missing' });
  t.notOk(existsSync(join(c.bundle, 'missing.pid')), 'no pid file left');
  await remove(c.id);
  rmSync(stdin);
});

t.test('unknown container: NotFound "container X: not created" for every call', async (t) => {
  const id = 'never-created';
  const calls: [string, Promise<unknown>][] = [
    ['state', task.state({ id })],
    ['start', task.start({ id })],
    ['delete', task.delete({ id })],
    ['pids', task.pids({ id })],
    ['pause', task.pause({ id })],
    ['resume', task.resume({ id })],
    ['checkpoint', task.checkpoint({ id, path: join(tmp, 'x') })],
    ['kill', task.kill({ id, signal: 9 })],
    ['exec', task.exec({ id, execId: 'e', spec: processSpec(['true']) })],
    ['resizePty', task.resizePty({ id, width: 80, height: 24 })],
    ['closeIO', task.closeIO({ id, stdin: true })],
    ['update', task.update({ id, resources: { typeUrl: OCI_RESOURCES_TYPE, value: Buffer.from('{}') } })],
    ['wait', task.wait({ id })],
    ['stats', task.stats({ id })],
  ];
  for (const [op, call] of calls) await expectError(t, call, Code.NotFound, `container ${id}: not created`, op);
  const connect = await task.connect({ id });
  t.equal(connect.taskPid, 0, 'connect of an unknown container has no task pid');
});

t.test('invalid container ids are InvalidArgument', async (t) => {
  const bundle = makeBundle(['true']);
  for (const id of ['../x', 'a/b', '', '.', 'x'.repeat(77)]) {
    await expectError(t, task.create({ id, bundle, options: runcOptions }), Code.InvalidArgument, /identifier/, `id ${JSON.stringify(id.slice(0, 20))}`);
  }
  t.same(readdirSync(join(tmp)).filter((n) => n === 'x' || n === 'b'), [], 'nothing made outside the temp layout');
});

t.test('bundle problems', async (t) => {
  await expectError(t, task.create({ id: newId('nobundle'), bundle: join(tmp, 'does-not-exist'), options: runcOptions }), Code.NotFound, 'does-not-exist', 'missing bundle');
  await expectError(t, task.create({ id: newId('relbundle'), bundle: 'relative/bundle', options: runcOptions }), Code.InvalidArgument, 'must be absolute', 'relative bundle');

  const noConfig = makeBundle(['true']);
  rmSync(join(noConfig, 'config.json'));
  await expectError(t, task.create({ id: newId('noconfig'), bundle: noConfig, options: runcOptions }), Code.InvalidArgument, join(noConfig, 'config.json'), 'missing config.json');

  const badConfig = makeBundle(['true']);
  writeFileSync(join(badConfig, 'config.json'), '{"ociVersion": ');
  await expectError(t, task.create({ id: newId('badconfig'), bundle: badConfig, options: runcOptions }), Code.InvalidArgument, join(badConfig, 'config.json'), 'invalid config.json');

  const arrayConfig = makeBundle(['true']);
  writeFileSync(join(arrayConfig, 'config.json'), '[]');
  await expectError(t, task.create({ id: newId('arrconfig'), bundle: arrayConfig, options: runcOptions }), Code.InvalidArgument, join(arrayConfig, 'config.json'), 'config.json not an object');

  // Root reads any file whatever its mode: a directory in its place is what cannot be read.
  const unreadableConfig = makeBundle(['true']);
  rmSync(join(unreadableConfig, 'config.json'));
  mkdirSync(join(unreadableConfig, 'config.json'));
  await expectError(t, task.create({ id: newId('dirconfig'), bundle: unreadableConfig, options: runcOptions }), Code.InvalidArgument, `failed to read spec ${join(unreadableConfig, 'config.json')}`, 'unreadable config.json');

  for (const bundle of [noConfig, badConfig, arrayConfig, unreadableConfig]) {
    t.notOk(existsSync(join(bundle, 'flint-runc.json')), 'a failed create leaves no settings file');
  }
  t.equal(service.size, 0, 'no container was kept');
});

t.test('a failed runc create is undone', async (t) => {
  const bundle = makeBundle(['/bin/no-such-init']);
  const id = newId('badinit');
  const out = new FifoReader(`${id}.stdout`);
  const err = await failure(task.create({ id, bundle, stdout: out.path, options: runcOptions }));
  t.match(err.message, /^OCI runtime create failed: runc create failed: .*no-such-init/, `worded as by the runc shim, then runc's error: ${err.message}`);
  t.notOk(existsSync(join(runcRoot, NS, id)), 'no runc state left');
  t.notOk(existsSync(join(bundle, 'flint-runc.json')), 'no settings file left');
  await expectError(t, task.state({ id }), Code.NotFound, 'not created', 'not kept');
});

t.test('wrong Any type URLs are InvalidArgument naming the type', async (t) => {
  const bundle = makeBundle(['true']);
  await expectError(
    t,
    task.create({ id: newId('opts'), bundle, options: { typeUrl: 'example.com/Bogus', value: Buffer.from([1, 2]) } }),
    Code.InvalidArgument,
    'example.com/Bogus',
    'create options',
  );
  t.notOk(existsSync(join(bundle, 'flint-runc.json')), 'nothing written for refused options');

  const c = await create('anys', ['sleep', '100']);
  await task.start({ id: c.id });
  await expectError(
    t,
    task.exec({ id: c.id, execId: 'e', spec: { typeUrl: 'example.com/NotAProcess', value: Buffer.from('{}') } }),
    Code.InvalidArgument,
    'example.com/NotAProcess',
    'exec spec',
  );
  await expectError(t, task.exec({ id: c.id, execId: 'e2', spec: { typeUrl: OCI_PROCESS_TYPE, value: Buffer.from('not json') } }), Code.InvalidArgument, /not valid JSON/, 'exec spec not JSON');
  await expectError(t, task.exec({ id: c.id, execId: 'e3' }), Code.InvalidArgument, /missing/, 'exec spec missing');
  await expectError(
    t,
    task.update({ id: c.id, resources: { typeUrl: 'example.com/NotResources', value: Buffer.from('{}') } }),
    Code.InvalidArgument,
    'example.com/NotResources',
    'update resources',
  );
  await expectError(
    t,
    task.checkpoint({ id: c.id, path: join(tmp, 'ck'), options: { typeUrl: 'example.com/NotCheckpoint', value: Buffer.from([1]) } }),
    Code.InvalidArgument,
    'example.com/NotCheckpoint',
    'checkpoint options',
  );
  await expectError(t, task.state({ id: c.id, execId: 'e' }), Code.NotFound, 'process does not exist e', 'a refused exec is not added');
  await remove(c.id);
});

/** A file of the container's cgroup (its init's), for the controller `controller` on a v1 host. */
function cgroupFile(pid: number, controller: string, name: string): string {
  const cgroups = cgroupsOf(pid);
  if (!cgroups) throw new Error(`no cgroups for pid ${pid}`);
  return join(cgroups.unified ? cgroups.dir : cgroups.dirs[controller]!, name);
}

t.test('update: runc update --resources - applies the LinuxResources to the container\'s cgroup', async (t) => {
  const c = await create('update', ['sleep', '100']);
  await task.start({ id: c.id });
  const pidsMax = cgroupFile(c.pid, 'pids', 'pids.max');
  const memoryMax = cgroupFile(c.pid, 'memory', isUnified() ? 'memory.max' : 'memory.limit_in_bytes');
  t.equal(readFileSync(pidsMax, 'utf8').trim(), 'max', 'no pids limit to begin with');
  await task.update({ id: c.id, resources: { typeUrl: OCI_RESOURCES_TYPE, value: Buffer.from(JSON.stringify({ pids: { limit: 50 }, memory: { limit: 48 * 1024 * 1024 } })) } });
  t.equal(readFileSync(pidsMax, 'utf8').trim(), '50', 'pids.max is the new limit');
  t.equal(readFileSync(memoryMax, 'utf8').trim(), String(48 * 1024 * 1024), 'and so is the memory limit');
  t.equal((await task.state({ id: c.id })).status, STATUS.RUNNING);
  const cpus = { typeUrl: OCI_RESOURCES_TYPE, value: Buffer.from(JSON.stringify({ cpu: { cpus: '4095' } })) };
  const err = await expectError(t, task.update({ id: c.id, resources: cpus }), Code.Unknown, /^runc update failed: ./, 'a cpuset the kernel refuses');
  t.match(err.message, /cpuset|cpus/, `in runc's own words: ${err.message}`);
  t.equal(readFileSync(pidsMax, 'utf8').trim(), '50', 'the limits stay as they were');
  t.equal((await task.state({ id: c.id })).status, STATUS.RUNNING, 'and the container runs on');
  await remove(c.id);
});

/** The fields of containerd's Metrics (v1 or v2, by type URL) that runc reports too. */
function metricsOf(any: { typeUrl?: string | null; value?: Uint8Array | null }): { memoryLimit: number; pidsCurrent: number; pidsLimit: number; cpuUsage: number } {
  if (any.typeUrl === 'io.containerd.cgroups.v2.Metrics') {
    const m = io.containerd.cgroups.v2.Metrics.decode(any.value!);
    return { memoryLimit: Number(m.memory?.usageLimit), pidsCurrent: Number(m.pids?.current), pidsLimit: Number(m.pids?.limit), cpuUsage: Number(m.cpu?.usageUsec) * 1000 };
  }
  const m = io.containerd.cgroups.v1.Metrics.decode(any.value!);
  return { memoryLimit: Number(m.memory?.usage?.limit), pidsCurrent: Number(m.pids?.current), pidsLimit: Number(m.pids?.limit), cpuUsage: Number(m.cpu?.usage?.total) };
}

t.test('stats: the metrics type containerd expects for the host\'s cgroups, with what runc sees; a stopped container has them too', async (t) => {
  const id = newId('stats');
  const limit = 64 * 1024 * 1024;
  const bundle = makeBundle(['sleep', '100'], (spec) => (spec.linux.resources = { ...spec.linux.resources, memory: { limit }, pids: { limit: 20 } }));
  containers.add(id);
  await task.create({ id, bundle, options: runcOptions });
  const { pid } = await task.start({ id });
  // Start answers once runc has let the init go; until it has exec'd sleep it is still runc init, with its threads in pids.current.
  while (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'sleep') await new Promise((resolve) => setTimeout(resolve, 10));
  const running = (await task.stats({ id })).stats!;
  t.equal(running.typeUrl, isUnified() ? 'io.containerd.cgroups.v2.Metrics' : 'io.containerd.cgroups.v1.Metrics', 'the type URL containerd decodes by');
  const ours = metricsOf(running);
  const runcSees = (JSON.parse(execFileSync('runc', ['--root', join(runcRoot, NS), 'events', '--stats', id], { encoding: 'utf8' })) as { data: { memory: { usage: { limit: number } }; pids: { current: number; limit: number } } }).data;
  t.same([ours.memoryLimit, ours.pidsCurrent, ours.pidsLimit], [runcSees.memory.usage.limit, runcSees.pids.current, runcSees.pids.limit], 'the limits and the process count runc events reports');
  t.same([ours.memoryLimit, ours.pidsCurrent, ours.pidsLimit], [limit, 1, 20], 'the spec\'s limits, one process');
  t.ok(ours.cpuUsage > 0, 'cpu time was counted');

  await task.kill({ id, signal: 9 });
  await task.wait({ id }, { timeoutMs: 10_000 });
  const stopped = (await task.stats({ id })).stats!;
  t.equal(stopped.typeUrl, running.typeUrl, 'a stopped container still has metrics, as under the runc shim');
  const after = metricsOf(stopped);
  t.same([after.memoryLimit, after.pidsCurrent, after.pidsLimit], [limit, 0, 20], 'read from its cgroup, there until Delete: no process left');
  t.ok(after.cpuUsage >= ours.cpuUsage, 'the cpu time it used');
  await remove(id);
  await expectError(t, task.stats({ id }), Code.NotFound, 'not created', 'none after delete');
});

t.test('an exit observed before Start returns is never lost', async (t) => {
  // `true` often exits before Start has answered; the Wait comes only after.
  for (let i = 0; i < 5; i++) {
    const c = await create('quick', ['true']);
    await task.start({ id: c.id });
    t.equal((await task.wait({ id: c.id }, { timeoutMs: 10_000 })).exitStatus, 0, `init ${i}: its exit is reported`);
    await remove(c.id);
    t.same(eventsOf(c.id).map((e) => e.topic), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], `init ${i}: start precedes the exit`);
  }
  const c = await create('quickexec', ['sleep', '100']);
  await task.start({ id: c.id });
  for (let i = 0; i < 5; i++) {
    const execId = `q${i}`;
    await task.exec({ id: c.id, execId, spec: processSpec(['sh', '-c', `exit ${i}`]) });
    await task.start({ id: c.id, execId });
    t.equal((await task.wait({ id: c.id, execId }, { timeoutMs: 10_000 })).exitStatus, i, `exec ${i}: its exit is reported`);
    await task.delete({ id: c.id, execId });
  }
  const execTopics = eventsOf(c.id).filter((e) => e.topic !== '/tasks/create' && e.topic !== '/tasks/start').map((e) => e.topic);
  t.same(execTopics, Array.from({ length: 5 }, () => ['/tasks/exec-added', '/tasks/exec-started', '/tasks/exit']).flat(), 'each exec: added, started, then its exit');
  await remove(c.id);
});

t.test('checkpoint fails with runc\'s own error text', async (t) => {
  const c = await create('ckpt', ['sleep', '100']);
  await task.start({ id: c.id });
  const err = await failure(task.checkpoint({ id: c.id, path: join(tmp, `ckpt-${c.id}`) }));
  t.equal(err.code, Code.Unknown, 'a runc failure is Unknown, as in containerd');
  t.match(err.message, /^runc checkpoint failed: ./, `runc's error: ${err.message}`);
  const detail = err.message.slice('runc checkpoint failed: '.length);
  t.ok(detail.trim().length > 0, 'non-empty detail');
  t.notMatch(detail, /^exit status \d+$/, 'not just an exit status');
  t.match(detail, /^criu failed: /, 'runc\'s words for what criu did');
  // As with the runc shim: criu's log is kept in the bundle and named.
  const kept = join(c.bundle, 'criu-dump.log');
  t.match(err.message, `(criu's log: ${kept})`, 'the error names criu\'s log');
  t.match(readFileSync(kept, 'utf8'), /Dumping|dump/i, 'which is criu\'s dump log');
  t.notOk(existsSync(join(c.bundle, 'criu-work')), 'criu\'s private work directory is removed');
  t.equal((await task.state({ id: c.id })).status, STATUS.RUNNING, 'still RUNNING after the failed checkpoint');
  await remove(c.id);
});

t.test('a create restoring a checkpoint is Unimplemented, and nothing is left', async (t) => {
  const id = newId('restore');
  const bundle = makeBundle(['true']);
  await expectError(t, task.create({ id, bundle, checkpoint: join(tmp, 'some-checkpoint'), options: runcOptions }), Code.Unimplemented, 'restoring from a checkpoint is not supported', 'restore');
  t.notOk(existsSync(join(runcRoot, NS, id)), 'runc never ran');
  await expectError(t, task.state({ id }), Code.NotFound, 'not created', 'not kept');
});

function runcOptionsWith(extra: Record<string, unknown>): { typeUrl: string; value: Uint8Array } {
  return { typeUrl: 'containerd.runc.v1.Options', value: containerd.runc.v1.Options.encode({ root: runcRoot, ...extra }).finish() };
}

t.test('runc options io_uid and io_gid: the stdio FIFOs of the init and of execs are given to them', async (t) => {
  // openProcessIO gives the FIFOs to io_uid:io_gid before runc runs ...
  const direct = new FifoReader(`${newId('ioowner-direct')}.stdout`);
  const io = await openProcessIO({ stdin: '', stdout: direct.path, stderr: '', terminal: false }, { id: 'x', namespace: NS }, { uid: 1234, gid: 5678 });
  t.same([lstatSync(direct.path).uid, lstatSync(direct.path).gid], [1234, 5678], 'opened for a process: owned by io_uid:io_gid');
  await io.close();
  // ... then runc hands the uid to the process's user and keeps the gid
  // (fixStdioPermissions), as it does with the runc shim's pipes; in a user
  // namespace that user maps back to io_uid.
  const id = newId('ioowner');
  const bundle = makeBundle(['sleep', '100']);
  const stdout = new FifoReader(`${id}.stdout`);
  const stderr = new FifoReader(`${id}.stderr`);
  t.same([lstatSync(stdout.path).uid, lstatSync(stdout.path).gid], [process.getuid!(), process.getgid!()], 'made by the test: ours');
  containers.add(id);
  await task.create({ id, bundle, stdout: stdout.path, stderr: stderr.path, options: runcOptionsWith({ ioUid: 1234, ioGid: 5678 }) });
  for (const fifo of [stdout, stderr]) t.equal(lstatSync(fifo.path).gid, 5678, `${fifo.path}: group io_gid`);
  await task.start({ id });
  const execOut = new FifoReader(`${id}.exec.stdout`);
  await task.exec({ id, execId: 'x', spec: processSpec(['echo', 'owned']), stdout: execOut.path });
  const waiting = task.wait({ id, execId: 'x' }, { timeoutMs: 10_000 });
  await task.start({ id, execId: 'x' });
  t.equal((await waiting).exitStatus, 0);
  t.equal(await execOut.waitFor('owned\n'), 'owned\n', 'the exec writes through its FIFO');
  t.equal(lstatSync(execOut.path).gid, 5678, 'the exec\'s FIFO too');
  await task.delete({ id, execId: 'x' });
  await remove(id);
});

t.test('runc options binary_name, no_pivot_root, no_new_keyring, criu_path and systemd_cgroup reach runc', async (t) => {
  // A runc that records its command line, then is runc.
  const calls = join(tmp, 'recorded-runc.calls');
  const recorder = join(tmp, 'recorded-runc');
  writeFileSync(recorder, `#!/bin/sh\necho "$*" >> '${calls}'\nexec runc "$@"\n`, { mode: 0o755 });
  const recorded = (command: string) => readFileSync(calls, 'utf8').split('\n').filter((line) => line.split(' ').includes(command));
  const id = newId('runcopts');
  containers.add(id);
  await task.create({ id, bundle: makeBundle(['sleep', '100']), options: runcOptionsWith({ binaryName: recorder, noPivotRoot: true, noNewKeyring: true, criuPath: '/usr/sbin/criu' }) });
  await task.start({ id });
  await remove(id);
  const [create] = recorded('create');
  t.match(create, /(^| )--no-pivot( |$)/, 'create: --no-pivot');
  t.match(create, /(^| )--no-new-keyring( |$)/, 'create: --no-new-keyring');
  for (const command of ['create', 'start', 'delete']) {
    t.match(recorded(command)[0], new RegExp(`^--root ${join(runcRoot, NS)} .*--criu /usr/sbin/criu ${command} `), `${command}: runc from binary_name, with the global flags first`);
  }
  // systemd_cgroup: this machine has no systemd, so runc may refuse; the flag reached it either way.
  const systemd = newId('systemdcg');
  containers.add(systemd);
  const outcome = await task.create({ id: systemd, bundle: makeBundle(['sleep', '100']), options: runcOptionsWith({ binaryName: recorder, systemdCgroup: true }) }).then(
    () => 'created',
    (err: RpcError) => err.message,
  );
  t.match(recorded('create').at(-1), / --systemd-cgroup /, `create: --systemd-cgroup (${outcome})`);
  if (outcome === 'created') await remove(systemd);
  else await expectError(t, task.state({ id: systemd }), Code.NotFound, 'not created', 'a refused create keeps nothing');
});

t.test('a slow client gets a terminal\'s whole output, through Delete', async (t) => {
  const id = newId('drain');
  const lines = 100_000;
  const expected = Array.from({ length: lines }, (_, i) => `${i + 1}\r\n`).join('').length;
  const bundle = makeBundle(['seq', '1', String(lines)], (spec) => (spec.process.terminal = true));
  const stdout = join(tmp, `${id}.stdout`);
  execFileSync('mkfifo', [stdout]);
  const socket = new net.Socket({ fd: openSync(stdout, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
  const keepAlive = openSync(stdout, constants.O_WRONLY | constants.O_NONBLOCK);
  // The process's writes are held back by the client (pty, shim copy, FIFO), not buffered without bound.
  const reader = new SlowReader(socket, 16 * 1024, 10);
  t.teardown(() => {
    reader.stop();
    socket.destroy();
    closeSync(keepAlive);
  });
  containers.add(id);
  await task.create({ id, bundle, stdout, terminal: true, options: runcOptions });
  const waiting = task.wait({ id }, { timeoutMs: 30_000 });
  await task.start({ id });
  t.equal((await waiting).exitStatus, 0);
  // Delete as soon as the exit is known, as `ctr run --rm` does; what is still
  // on its way is drained into the FIFO before Delete answers.
  reader.drain();
  await task.delete({ id });
  containers.delete(id);
  for (let i = 0; i < 100 && reader.consumed < expected; i++) await sleep(20);
  t.equal(reader.consumed, expected, 'every byte the process wrote to its terminal reached the client');
  rmSync(stdout);
});

t.test('an exit is reported once the client has read what the process wrote before it', async (t) => {
  // containerd 1.6's CRI closes its FIFO readers when it learns of the exit;
  // what they have not read by then is lost from the container's log. So by
  // the time Wait answers and /tasks/exit is published, the FIFO must hold
  // nothing unread, with the client reading at its own pace (as containerd
  // does). seq 1 200000 writes 1,288,895 bytes and exits at once.
  const args = ['seq', '1', '200000'];

  /** A FIFO read at 6.4 MB/s at most, and how much it held unread when the exit of `id`/`execId` was published. */
  function pacedFifo(id: string, execId: string): { path: string; unread: () => number; unreadAtExitEvent: () => number | undefined } {
    const fifo = openPacedFifo(join(tmp, `${id}.${execId || 'init'}.stdout`), 64 * 1024, 10);
    let atExit: number | undefined;
    const look = (event: TaskEvent) => {
      if (event.topic !== '/tasks/exit') return;
      const exit = containerd.events.TaskExit.decode(event.value);
      if (exit.containerId === id && exit.id === (execId || id)) atExit = fifo.unread();
    };
    onPublish.add(look);
    t.teardown(() => {
      onPublish.delete(look);
      fifo.close();
      rmSync(fifo.path, { force: true });
    });
    return { path: fifo.path, unread: () => fifo.unread(), unreadAtExitEvent: () => atExit };
  }

  const id = newId('outputread');
  const initOut = pacedFifo(id, '');
  containers.add(id);
  await task.create({ id, bundle: makeBundle(args), stdout: initOut.path, options: runcOptions });
  const initExit = task.wait({ id }, { timeoutMs: 30_000 });
  await task.start({ id });
  t.equal((await initExit).exitStatus, 0, 'init: exited');
  const initUnread = [initOut.unread(), initOut.unreadAtExitEvent()];
  t.same(initUnread, [0, 0], `init: nothing left unread in the FIFO when Wait answers, nor when the exit event was published (${initUnread.join(', ')} bytes)`);
  await remove(id);

  const c = await create('outputreadexec', ['sleep', '100']);
  await task.start({ id: c.id });
  const execOut = pacedFifo(c.id, 'seq');
  await task.exec({ id: c.id, execId: 'seq', spec: processSpec(args), stdout: execOut.path });
  const execExit = task.wait({ id: c.id, execId: 'seq' }, { timeoutMs: 30_000 });
  await task.start({ id: c.id, execId: 'seq' });
  t.equal((await execExit).exitStatus, 0, 'exec: exited');
  const execUnread = [execOut.unread(), execOut.unreadAtExitEvent()];
  t.same(execUnread, [0, 0], `exec: nothing left unread in the FIFO when Wait answers, nor when the exit event was published (${execUnread.join(', ')} bytes)`);
  await task.delete({ id: c.id, execId: 'seq' });
  await remove(c.id);
});

t.test('a client that reads nothing does not hold an exit back, and its FIFO keeps the kernel\'s size', async (t) => {
  const id = newId('noreader');
  const path = join(tmp, `${id}.stdout`);
  mkfifo(path);
  const readEnd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writeEnd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  t.teardown(() => {
    closeSync(readEnd);
    closeSync(writeEnd);
    rmSync(path, { force: true });
  });
  containers.add(id);
  await task.create({ id, bundle: makeBundle(['seq', '1', '1000']), stdout: path, options: runcOptions });
  // As under the runc shim, which does not grow pipes: what a client that
  // stops reading at the exit can lose is at most a default pipe's worth.
  const [freshRead, freshWrite] = pipe();
  setNonblocking(freshWrite, true);
  const defaultSize = fillUntilFull(freshWrite);
  [freshRead, freshWrite].forEach((fd) => closeSync(fd));
  t.equal(fillUntilFull(writeEnd), defaultSize, `the output FIFO holds what a new pipe holds (${defaultSize} bytes)`);
  while (unreadBytes(readEnd) > 0) readSync(readEnd, Buffer.alloc(65536));

  const waiting = task.wait({ id }, { timeoutMs: 30_000 });
  await task.start({ id });
  t.equal((await waiting).exitStatus, 0, 'the exit is reported');
  const written = Array.from({ length: 1000 }, (_, i) => `${i + 1}\n`).join('').length;
  t.equal(unreadBytes(readEnd), written, 'with the output still unread: nobody reads it');
  await remove(id);
});

/** Writes to a non-blocking pipe or FIFO until it takes no more; returns how much it took. */
function fillUntilFull(fd: number): number {
  const page = Buffer.alloc(4096);
  let total = 0;
  for (;;) {
    try {
      total += writeSync(fd, page);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return total;
      throw err;
    }
  }
}

t.test('runc option shim_cgroup is left to start, which placed the server: Create goes ahead', async (t) => {
  const id = newId('shimcg');
  containers.add(id);
  const { pid } = await task.create({ id, bundle: makeBundle(['true']), options: runcOptionsWith({ shimCgroup: '/flint-shim' }) });
  t.ok(pid > 0, 'created');
  await remove(id);
});

t.test('runc options criu_work_path and criu_image_path reach runc checkpoint', async (t) => {
  // criu cannot dump on this kernel, but it writes its dump.log first: into
  // the work path when there is one, else into the image path.
  const workPath = join(tmp, 'criu-work');
  const imagePath = join(tmp, 'criu-images');
  const id = newId('criupaths');
  containers.add(id);
  await task.create({ id, bundle: makeBundle(['sleep', '100']), options: runcOptionsWith({ criuWorkPath: workPath, criuImagePath: imagePath }) });
  await task.start({ id });
  const requested = join(tmp, `ckpt-${id}`);
  await failure(task.checkpoint({ id, path: requested }));
  t.ok(existsSync(join(workPath, 'dump.log')), 'criu worked in criu_work_path');
  t.notOk(existsSync(join(requested, 'dump.log')), 'not in the image path');
  await failure(task.checkpoint({ id, path: '' }));
  t.ok(existsSync(imagePath), 'a request without a path checkpoints into criu_image_path');
  await remove(id);
});

t.test('many concurrent Wait callers all get the exit', async (t) => {
  const c = await create('waiters', ['sh', '-c', 'sleep 0.5; exit 12']);
  const waits = Array.from({ length: 20 }, () => task.wait({ id: c.id }, { timeoutMs: 15_000 }));
  await task.start({ id: c.id });
  const exits = await Promise.all(waits);
  t.same(new Set(exits.map((e) => e.exitStatus)), new Set([12]), 'every waiter saw 12');
  t.equal(new Set(exits.map((e) => `${e.exitedAt?.seconds}.${e.exitedAt?.nanos}`)).size, 1, 'with one exited_at');
  await remove(c.id);
});

t.test('a Wait whose caller goes away does not disturb the others', async (t) => {
  const c = await create('abandon', ['sleep', '100']);
  await task.start({ id: c.id });
  const abort = new AbortController();
  const abandoned = task.wait({ id: c.id }, { signal: abort.signal });
  const kept = task.wait({ id: c.id }, { timeoutMs: 15_000 });
  abort.abort();
  await t.rejects(abandoned, 'the abandoned wait fails locally');
  // SIGKILL: a pid-namespace init ignores signals it has no handler for.
  await task.kill({ id: c.id, signal: 9 });
  t.equal((await kept).exitStatus, 137, 'the other waiter still gets the exit');
  await remove(c.id);
});

t.test('stdin through a FIFO reaches the process; CloseIO gives it EOF', async (t) => {
  const id = newId('stdin');
  const bundle = makeBundle(['cat']);
  const stdin = join(tmp, `${id}.stdin`);
  execFileSync('mkfifo', [stdin]);
  const stdout = new FifoReader(`${id}.stdout`);
  containers.add(id);
  await task.create({ id, bundle, stdin, stdout: stdout.path, options: runcOptions });
  await task.start({ id });
  const writer = openSync(stdin, constants.O_WRONLY | constants.O_NONBLOCK);
  writeFileSync(writer, 'ping\n');
  closeSync(writer);
  t.equal(await stdout.waitFor('ping\n'), 'ping\n', 'cat echoed stdin');
  await sleep(100);
  t.equal((await task.state({ id })).status, STATUS.RUNNING, 'our writer closing is no EOF: the shim holds stdin open');
  const waiting = task.wait({ id }, { timeoutMs: 10_000 });
  await task.closeIO({ id, stdin: true });
  t.equal((await waiting).exitStatus, 0, 'cat saw EOF after CloseIO and exited 0');
  await remove(id);
  rmSync(stdin);
});

t.test('a terminal: output is copied from the console, resize works', async (t) => {
  const id = newId('tty');
  const bundle = makeBundle(['sh', '-c', 'stty size; echo tty-out; exit 5'], (spec) => (spec.process.terminal = true));
  const stdout = new FifoReader(`${id}.stdout`);
  containers.add(id);
  const mismatch = makeBundle(['true']);
  await expectError(
    t,
    task.create({ id: newId('ttymismatch'), bundle: mismatch, stdout: stdout.path, terminal: true, options: runcOptions }),
    Code.Unknown,
    /^OCI runtime create failed: runc create failed: .*console/,
    'a terminal the spec does not ask for: runc refuses, as with the runc shim',
  );
  await task.create({ id, bundle, stdout: stdout.path, terminal: true, options: runcOptions });
  t.equal((await task.state({ id })).terminal, true);
  await task.resizePty({ id, width: 100, height: 40 });
  const waiting = task.wait({ id }, { timeoutMs: 10_000 });
  await task.start({ id });
  t.equal((await waiting).exitStatus, 5);
  const output = await stdout.waitFor('tty-out');
  t.match(output, /tty-out\r?\n/, 'console output reached the FIFO');
  t.match(output, /^40 100\r?\n/, 'the process sees the size ResizePty set (TIOCSWINSZ on the master): 40 rows, 100 columns');
  await remove(id);
});

t.test('an exec with a terminal: console output copied, resize works, exit reported', async (t) => {
  const c = await create('ttyexec', ['sleep', '100']);
  await task.start({ id: c.id });
  const out = new FifoReader(`${c.id}.exec.stdout`);
  const stdin = join(tmp, `${c.id}.exec.stdin`);
  execFileSync('mkfifo', [stdin]);
  // It waits for a line on stdin, so the resize below surely comes first.
  const spec = { args: ['sh', '-c', 'read go; stty size; echo exec-tty; exit 6'], cwd: '/', env: ['PATH=/bin'], terminal: true, user: { uid: 0, gid: 0 } };
  await task.exec({ id: c.id, execId: 'tty', terminal: true, stdin, stdout: out.path, spec: { typeUrl: OCI_PROCESS_TYPE, value: Buffer.from(JSON.stringify(spec)) } });
  const waiting = task.wait({ id: c.id, execId: 'tty' }, { timeoutMs: 10_000 });
  await task.start({ id: c.id, execId: 'tty' });
  await task.resizePty({ id: c.id, execId: 'tty', width: 120, height: 50 });
  const writer = openSync(stdin, constants.O_WRONLY | constants.O_NONBLOCK);
  writeFileSync(writer, 'go\n');
  closeSync(writer);
  t.equal((await waiting).exitStatus, 6);
  const output = await out.waitFor('exec-tty');
  t.match(output, /exec-tty\r?\n/, 'console output reached the FIFO');
  t.match(output, /^50 120\r?$/m, 'the exec sees the size ResizePty set: 50 rows, 120 columns');
  await task.delete({ id: c.id, execId: 'tty' });
  await remove(c.id);
  rmSync(stdin);
});

t.test('resize without a terminal is a no-op', async (t) => {
  const c = await create('notty', ['sleep', '100']);
  await task.start({ id: c.id });
  await task.resizePty({ id: c.id, width: 80, height: 24 });
  t.equal((await task.state({ id: c.id })).status, STATUS.RUNNING);
  await remove(c.id);
});

t.test('deleting a container whose exec was running when the init died', async (t) => {
  const c = await create('orphanexec', ['sleep', '100']);
  await task.start({ id: c.id });
  const stdin = join(tmp, `${c.id}.exec.stdin`);
  execFileSync('mkfifo', [stdin]);
  await task.exec({ id: c.id, execId: 'bg', spec: processSpec(['sleep', '100']), stdin });
  const { pid: execPid } = await task.start({ id: c.id, execId: 'bg' });
  // The init's death takes the exec with it (one pid namespace); delete at once.
  await task.kill({ id: c.id, signal: 9 });
  await task.wait({ id: c.id }, { timeoutMs: 10_000 });
  await task.delete({ id: c.id });
  containers.delete(c.id);
  const deadline = Date.now() + 5_000;
  while (existsSync(`/proc/${execPid}`) && Date.now() < deadline) await sleep(20);
  t.notOk(existsSync(`/proc/${execPid}`), 'the exec process is gone');
  t.same(fdsInto(stdin), [], 'no fd of the exec stdin FIFO is left open');
  t.notOk(existsSync(join(c.bundle, 'bg.pid')), 'the exec pid file is removed');
  const topics = eventsOf(c.id).map((e) => e.topic);
  t.equal(topics.at(-1), '/tasks/delete', `delete is the last event: ${topics.join(' ')}`);
  t.equal(topics.filter((x) => x === '/tasks/exit').length, 2, 'one exit for the exec, one for the init');
  rmSync(stdin);
});

t.test('without its own pid namespace, the init\'s exit takes the other processes along', async (t) => {
  // As the runc shim does (ShouldKillAllOnExit): nothing may outlive the init
  // when the kernel will not kill the rest of the namespace for us.
  const id = newId('hostpid');
  const bundle = makeBundle(['sleep', '100'], hostPidNamespace);
  containers.add(id);
  const { pid } = await task.create({ id, bundle, options: runcOptions });
  await task.start({ id });
  const stdin = join(tmp, `${id}.exec.stdin`);
  execFileSync('mkfifo', [stdin]);
  await task.exec({ id, execId: 'bg', spec: processSpec(['sleep', '100']), stdin });
  const execWait = task.wait({ id, execId: 'bg' }, { timeoutMs: 10_000 });
  const { pid: execPid } = await task.start({ id, execId: 'bg' });
  process.kill(pid, 'SIGKILL');
  t.equal((await task.wait({ id }, { timeoutMs: 10_000 })).exitStatus, 137, 'init killed');
  // Before any Delete: the exec must not outlive the init.
  t.equal((await execWait).exitStatus, 137, 'the exec was killed with the init');
  t.notOk(existsSync(`/proc/${execPid}`), 'the exec process is gone');
  await task.delete({ id });
  containers.delete(id);
  t.same(fdsInto(stdin), [], 'no fd of the exec stdin FIFO is left open');
  t.notOk(existsSync(join(bundle, 'bg.pid')), 'the exec pid file is removed');
  const topics = eventsOf(id).map((e) => e.topic);
  t.same(topics.slice(-3), ['/tasks/exit', '/tasks/exit', '/tasks/delete'], `both exits precede delete: ${topics.join(' ')}`);
  rmSync(stdin);
});

t.test('without its own pid namespace, the init\'s exit is reported only once what it left is dead', async (t) => {
  // The runc shim runs `runc kill --all KILL` and waits for it before
  // SetExited: a Wait that has returned means nothing of the container runs.
  const id = newId('hostpidbg');
  const bundle = makeBundle(['sh', '-c', 'sleep 100 & echo $!'], hostPidNamespace);
  const stdout = new FifoReader(`${id}.stdout`);
  containers.add(id);
  await task.create({ id, bundle, stdout: stdout.path, options: runcOptions });
  const exited = task.wait({ id }, { timeoutMs: 10_000 });
  await task.start({ id });
  const background = Number((await stdout.waitFor('\n')).trim());
  t.ok(background > 0, `the background child's pid was printed (${background})`);
  t.equal((await exited).exitStatus, 0, 'the init exited on its own');
  // Looked at as soon as Wait has answered: nothing else could kill it meanwhile.
  t.equal(fate(background), 'killed', 'the background child has been killed when Wait returns');
  await remove(id);
});

t.test('when the init dies, the exits of its execs are reported before its own', async (t) => {
  // containerd takes the init's exit as the container's end: an exec exit
  // after it would be about a task already gone. Both with its own pid
  // namespace (the kernel kills the execs) and without (runc kill --all).
  for (const [what, edit] of [['own pid namespace', () => {}], ['host pid namespace', hostPidNamespace]] as const) {
    const id = newId('execorder');
    containers.add(id);
    await task.create({ id, bundle: makeBundle(['sleep', '100'], edit), options: runcOptions });
    await task.start({ id });
    const execIds = ['a', 'b', 'c'];
    const execWaits: Promise<unknown>[] = [];
    const execsDone = new Set<string>();
    for (const execId of execIds) {
      await task.exec({ id, execId, spec: processSpec(['sleep', '100']) });
      execWaits.push(task.wait({ id, execId }, { timeoutMs: 10_000 }).then(() => execsDone.add(execId)));
      await task.start({ id, execId });
    }
    await task.kill({ id, signal: 9 });
    t.equal((await task.wait({ id }, { timeoutMs: 10_000 })).exitStatus, 137, `${what}: the init was killed`);
    t.same([...execsDone].sort(), execIds, `${what}: every exec's Wait had answered before the init's`);
    await Promise.all(execWaits);
    const exits = eventsOf(id)
      .filter((e) => e.topic === '/tasks/exit')
      .map((e) => containerd.events.TaskExit.decode(e.event.value).id);
    t.equal(exits.at(-1), id, `${what}: the init's exit comes last (${exits.join(' ')})`);
    t.same(exits.slice(0, -1).sort(), execIds, `${what}: before it, one exit per exec`);
    await remove(id);
  }
});

t.test('a second create with the same id is AlreadyExists', async (t) => {
  const c = await create('dup', ['sleep', '100']);
  await expectError(t, task.create({ id: c.id, bundle: makeBundle(['true']), options: runcOptions }), Code.AlreadyExists, `container ${c.id}: already exists`, 'duplicate create');
  t.equal((await task.state({ id: c.id })).pid, c.pid, 'the first container is untouched');
  await remove(c.id);
});

t.test('file:// stdout appends both streams to one file', async (t) => {
  const id = newId('filelog');
  const bundle = makeBundle(['sh', '-c', 'echo to-out; echo to-err >&2; exit 0']);
  const log = join(tmp, 'logs', `${id}.log`);
  containers.add(id);
  await task.create({ id, bundle, stdout: `file://${log}`, stderr: `file://${log}`, options: runcOptions });
  const waiting = task.wait({ id }, { timeoutMs: 10_000 });
  await task.start({ id });
  t.equal((await waiting).exitStatus, 0);
  await remove(id);
  const text = readFileSync(log, 'utf8');
  t.match(text, 'to-out\n');
  t.match(text, 'to-err\n');
});

t.test('binary:// stdout goes to a logger process', async (t) => {
  const id = newId('binlog');
  const out = join(tmp, `${id}.logger-out`);
  const logger = join(tmp, `${id}-logger.sh`);
  // containerd's shim-logger protocol: stdout on fd 3, stderr on fd 4, close fd 5 when ready.
  writeFileSync(
    logger,
    '#!/bin/sh\nexec 5>&-\necho "$CONTAINER_NAMESPACE/$CONTAINER_ID $1=$2" > "$2"\ncat <&3 >> "$2" &\ncat <&4 >> "$2.err"\nwait\n',
    { mode: 0o755 },
  );
  const uri = `binary://${logger}?out=${encodeURIComponent(out)}`;
  const bundle = makeBundle(['sh', '-c', 'echo logged-out; echo logged-err >&2; exit 0']);
  containers.add(id);
  await task.create({ id, bundle, stdout: uri, stderr: uri, options: runcOptions });
  const waiting = task.wait({ id }, { timeoutMs: 10_000 });
  await task.start({ id });
  t.equal((await waiting).exitStatus, 0);
  await remove(id);
  t.equal(readFileSync(out, 'utf8'), `${NS}/${id} out=${out}\nlogged-out\n`, 'the logger got its env, args and stdout');
  t.equal(readFileSync(`${out}.err`, 'utf8'), 'logged-err\n', 'and stderr');
});

t.test('binary:// with a logger that cannot start fails Create cleanly', async (t) => {
  const id = newId('nologger');
  const bundle = makeBundle(['true']);
  const err = await failure(task.create({ id, bundle, stdout: `binary://${join(tmp, 'no-such-logger')}`, options: runcOptions }));
  t.match(err.message, 'no-such-logger', `names the logger: ${err.message}`);
  t.notOk(existsSync(join(runcRoot, NS, id)), 'runc never ran');
  await expectError(t, task.state({ id }), Code.NotFound, 'not created', 'not kept');
});

t.test('rootfs mounts from the request are mounted, and undone on delete and on a failed create', async (t) => {
  const id = newId('mounted');
  const bundle = makeBundle(['sleep', '100']);
  // The rootfs comes from elsewhere, as a snapshot mount would.
  const source = join(tmp, `${id}-snapshot`);
  execFileSync('mv', [join(bundle, 'rootfs'), source]);
  const rootfs = [{ type: 'bind', source, options: ['rbind', 'rw'] }];
  containers.add(id);
  await task.create({ id, bundle, rootfs, options: runcOptions });
  t.ok(mountsUnder(join(bundle, 'rootfs')).length > 0, 'the rootfs is mounted in the bundle');
  await task.start({ id });
  await remove(id);
  t.same(mountsUnder(join(bundle, 'rootfs')), [], 'unmounted by delete');

  const failing = makeBundle(['/bin/no-such-init']);
  const failingSource = join(tmp, `${id}-snapshot2`);
  execFileSync('mv', [join(failing, 'rootfs'), failingSource]);
  const err = await failure(task.create({ id: newId('mountfail'), bundle: failing, rootfs: [{ type: 'bind', source: failingSource, options: ['rbind', 'rw'] }], options: runcOptions }));
  t.match(err.message, /no-such-init/);
  t.same(mountsUnder(join(failing, 'rootfs')), [], 'unmounted after the failed create');
});

t.test('events are published in order', async (t) => {
  const c = await create('events', ['sleep', '100']);
  await task.start({ id: c.id });
  await task.exec({ id: c.id, execId: 'ev', spec: processSpec(['sh', '-c', 'exit 2']) });
  const execWait = task.wait({ id: c.id, execId: 'ev' });
  const { pid: execPid } = await task.start({ id: c.id, execId: 'ev' });
  t.equal((await execWait).exitStatus, 2);
  await task.delete({ id: c.id, execId: 'ev' });
  await task.kill({ id: c.id, signal: 9 });
  await task.wait({ id: c.id }, { timeoutMs: 10_000 });
  await task.delete({ id: c.id });
  containers.delete(c.id);

  const seen = eventsOf(c.id);
  t.same(
    seen.map((e) => e.topic),
    ['/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exit', '/tasks/exit', '/tasks/delete'],
    'create, start, exec-added, exec-started, exit(exec), exit(init), delete',
  );
  const ev = containerd.events;
  const byTopic = (topic: string, nth = 0) => seen.filter((e) => e.topic === topic)[nth]!.event;
  const created = ev.TaskCreate.decode(byTopic('/tasks/create').value);
  t.same([created.containerId, created.bundle, created.pid], [c.id, c.bundle, c.pid], 'create carries id, bundle and pid');
  t.equal(byTopic('/tasks/create').typeUrl, 'containerd.events.TaskCreate');
  t.equal(ev.TaskStart.decode(byTopic('/tasks/start').value).pid, c.pid, 'start carries the init pid');
  t.equal(ev.TaskExecAdded.decode(byTopic('/tasks/exec-added').value).execId, 'ev');
  const execStarted = ev.TaskExecStarted.decode(byTopic('/tasks/exec-started').value);
  t.same([execStarted.execId, execStarted.pid], ['ev', execPid]);
  const execExit = ev.TaskExit.decode(byTopic('/tasks/exit', 0).value);
  t.same([execExit.containerId, execExit.id, execExit.pid, execExit.exitStatus], [c.id, 'ev', execPid, 2], 'exit of the exec has id = exec id');
  const initExit = ev.TaskExit.decode(byTopic('/tasks/exit', 1).value);
  t.same([initExit.containerId, initExit.id, initExit.pid, initExit.exitStatus], [c.id, c.id, c.pid, 137], 'exit of the init has id = container id');
  const deleted = ev.TaskDelete.decode(byTopic('/tasks/delete').value);
  t.same([deleted.containerId, deleted.id, deleted.pid, deleted.exitStatus], [c.id, c.id, c.pid, 137]);
});

t.test('pause and resume publish events', async (t) => {
  const c = await create('pev', ['sleep', '100']);
  await task.start({ id: c.id });
  await task.pause({ id: c.id });
  await task.resume({ id: c.id });
  t.same(
    eventsOf(c.id).map((e) => e.topic),
    ['/tasks/create', '/tasks/start', '/tasks/paused', '/tasks/resumed'],
  );
  await remove(c.id);
});

t.test('a container whose init exits before start is asked for', async (t) => {
  // The init is killed while CREATED: the exit is recorded and Delete works.
  const c = await create('earlyexit', ['sleep', '100']);
  await task.kill({ id: c.id, signal: 9 });
  const exit = await task.wait({ id: c.id }, { timeoutMs: 10_000 });
  t.equal(exit.exitStatus, 137);
  t.equal((await task.state({ id: c.id })).status, STATUS.STOPPED);
  await expectError(t, task.start({ id: c.id }), Code.FailedPrecondition, `cannot start container ${c.id} in state stopped`, 'start after the exit');
  await remove(c.id);
});

t.test('Shutdown ends the server only once no container is left, with or without now', async (t) => {
  // As the runc shim (containerd 1.6): `now` is ignored.
  const before = shutdowns;
  const c = await create('shutdown', ['sleep', '100']);
  await task.shutdown({ id: c.id, now: true });
  await task.shutdown({ id: c.id });
  t.equal(shutdowns, before, 'not while a container is served, now or not');
  t.equal((await task.state({ id: c.id })).status, STATUS.CREATED, 'the container is untouched');
  await remove(c.id);
  await task.shutdown({ id: c.id, now: true });
  t.equal(shutdowns, before + 1, 'once none is left');
});

t.test('cleanup leaves nothing behind', async (t) => {
  t.equal(service.size, 0, 'the service holds no container');
  const nsRoot = join(runcRoot, NS);
  t.same(existsSync(nsRoot) ? readdirSync(nsRoot) : [], [], 'no runc state dirs under the runc root');
  t.same(mountsUnder(tmp).map((m) => m.mountPoint), [], 'no mounts under the temp dir');
  const ours = new Set(fifos.map((f) => f.path));
  const strayFifos = walk(tmp).filter((p) => isFifo(p) && !ours.has(p));
  t.same(strayFifos, [], 'no FIFOs but the test\'s own');
  const leftInBundles = walk(tmp).filter((p) => /\/bundle-\d+\/(flint-runc\.json|[^/]+\.pid)$/.test(p) && !p.endsWith('/init.pid'));
  t.same(leftInBundles, [], 'no settings or exec pid files left in bundles');
  const newTmp = readdirSync(tmpdir()).filter((n) => !tmpdirBefore.has(n) && tmp !== join(tmpdir(), n));
  // runc.exec's process.json dirs and the console sockets' dirs (ConsoleSocket.listen).
  t.same(newTmp.filter((n) => /^(runc-process-|pty)/.test(n)), [], 'no temp dirs or console sockets left in the system temp dir');
  let zombies = zombieChildren(process.pid);
  for (let i = 0; i < 40 && zombies.length > 0; i++) {
    await sleep(50);
    zombies = zombieChildren(process.pid);
  }
  t.same(zombies, [], 'no zombie children');
  t.same(liveChildren(), [], 'no child processes left running');
  for (const fifo of fifos) fifo.close();
  await sleep(50);
  const leaked = openFds().filter((target) => target.startsWith(`${tmp}/`) || /eventfd|ptmx|\/dev\/pts\//.test(target));
  for (const target of fdsBefore) {
    const i = leaked.indexOf(target);
    if (i >= 0) leaked.splice(i, 1);
  }
  t.same(leaked, [], 'no fds left open into the temp dir, no eventfds, no ptys');
});

function walk(dir: string): string[] {
  const out: string[] = [];
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...walk(p));
  }
  return out;
}

function isFifo(path: string): boolean {
  try {
    return lstatSync(path).isFIFO();
  } catch {
    return false;
  }
}

/** This process's open fds whose target is `path`. */
function fdsInto(path: string): string[] {
  return openFds().filter((target) => target === path);
}

/** The targets of this process's open fds. */
function openFds(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      out.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed meanwhile (readdir's own fd)
    }
  }
  return out;
}

/** Children of this process that are alive (not zombies), with their command lines. */
function liveChildren(): string[] {
  const out: string[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) !== process.pid || rest[0] === 'Z') continue;
      out.push(`${name}: ${readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0/g, ' ')}`);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
