import type { ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, fstatSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { sendFd } from '../src/native/fdpass.js';
import { socketpair } from '../src/native/socket.js';
import { HANDOFF_ENV, type Handoff, type HandoffMessage } from '../src/shim/handoff.js';
import { shimSocketAddress, socketPath, spareSocketPath } from '../src/shim/socket-address.js';
import { SpareClaim } from '../src/shim/spare-claim.js';
import { encodeReady, SPARE_ACK, SPARE_NAK } from '../src/shim/spare-protocol.js';
import { waitAsSpare } from '../src/shim/spare-wait.js';
import { buildId } from '../src/shim/version.js';
import { busyboxRootfs, CONTAINER_PATH, isClean, processesOwnedBy, repoRoot, runCommand, spawnFlint, startContainerd, waitForClean, type CommandResult, type Containerd } from './harness/index.js';
import { fdCount, fdTargets } from './harness/host-state.js';
import { isRunning, listProcesses, signal, unmountUnder } from './harness/procfs.js';
import { RUNTIMES } from './harness/scenario.js';
import { listenerPids, shimPidOf, shimSocketOf, taskClientAt } from './harness/shim-server.js';

/**
 * Spare servers: a server whose last container is gone waits, for
 * spareServerMs, for the next container's `start` to hand it a group
 * instead of a new Node process being started. First the handoff between
 * spare-wait.ts and spare-claim.ts in this process, then through containerd.
 */
const dir = mkdtempSync('/tmp/fspare-');
t.teardown(() => {
  // What start spawned here, and what a failed Create may have mounted in a bundle.
  for (const p of processesOwnedBy(dir)) signal(p.pid, 'SIGKILL');
  unmountUnder(dir);
  rmSync(dir, { recursive: true, force: true });
});
let n = 0;

function message(id: string): HandoffMessage {
  return { namespace: 'ns', id, address: '/run/c.sock', socket: `unix://${dir}/${id}.sock`, bundle: dir, debug: false, configPath: undefined };
}

/** A spare waiting (5 s) at a new path, and how many fds this process had open before. */
async function aSpare(): Promise<{ path: string; waiting: Promise<Handoff | undefined>; fdsBefore: number }> {
  const path = join(dir, `spare-${++n}`);
  const fdsBefore = fdCount(process.pid);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
  return { path, waiting, fdsBefore };
}

/** A listening-socket stand-in to hand over: one end of a socketpair (any fd passes). */
function anFd(): { fd: number; close: () => void } {
  const [a, b] = socketpair();
  return { fd: a, close: () => [a, b].forEach((fd) => closeSync(fd)) };
}

t.test('a claim hands the spare an fd, the message and its environment; the claimant hears it was taken', async (t) => {
  const { path, waiting } = await aSpare();
  const claim = await SpareClaim.reserve(path);
  t.ok(claim, 'start finds the spare');
  const given = anFd();
  t.teardown(given.close);
  t.equal(await claim!.send(given.fd, message('c1')), true, 'the spare confirms');
  const handoff = await waiting;
  t.has(handoff?.message, message('c1'), 'the spare has the message');
  t.equal(handoff?.message.env?.PATH, process.env.PATH, "and the claimant's environment");
  t.same(fstatSync(handoff!.listenerFd).ino, fstatSync(given.fd).ino, 'and the very socket that was sent');
  closeSync(handoff!.listenerFd);
  t.notOk(existsSync(path), 'a claimed spare is a spare no more: its socket file is gone');
});

t.test('nobody claims it: the spare gives up after its idle time and leaves no socket file', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const started = Date.now();
  t.equal(await waitAsSpare(path, 300), undefined, 'resolves with nothing to serve');
  t.ok(Date.now() - started >= 300, 'not before the idle time');
  t.notOk(existsSync(path), 'socket file removed');
  t.equal(await SpareClaim.reserve(path), undefined, 'a later start finds no spare');
});

t.test('one spare per path: a second server finds one waiting and does not wait', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const first = waitAsSpare(path, 2_000);
  await until(() => existsSync(path));
  t.equal(await waitAsSpare(path, 2_000), undefined, 'the second returns at once');
  const claim = await reserveWhenFree(path);
  const given = anFd();
  t.teardown(given.close);
  t.equal(await claim!.send(given.fd, message('c2')), true, 'the first is still there to be claimed');
  closeSync((await first)!.listenerFd);
});

t.test('a stale socket file of a spare that died is replaced, and a claimant that finds it removes it', async (t) => {
  const path = join(dir, `spare-${++n}`);
  await bindDead(path);
  t.equal(await SpareClaim.reserve(path), undefined, 'nothing to claim');
  t.notOk(existsSync(path), 'and the dead spare socket file is gone');
  await bindDead(path);
  const waiting = waitAsSpare(path, 2_000);
  const claim = await reserveWhenFree(path);
  const given = anFd();
  t.teardown(given.close);
  t.equal(await claim!.send(given.fd, message('c3')), true, 'the new spare took over the path');
  closeSync((await waiting)!.listenerFd);
});

t.test('one claimant at a time: another is turned away while the spare is reserved, and taken once that one leaves', async (t) => {
  const { path, waiting, fdsBefore } = await aSpare();
  const [a, b] = await Promise.all([SpareClaim.reserve(path), SpareClaim.reserve(path)]);
  t.equal([a, b].filter(Boolean).length, 1, 'exactly one claimant reserves the spare');
  (a ?? b)!.close();
  await claimAndCount(t, path, waiting, anFd(), fdsBefore, 'ca', 'no fd of any claim is left open');
});

t.test('a claim the spare cannot take is answered NAK, with its copy of the socket closed, and the wait goes on', async (t) => {
  const { path, waiting, fdsBefore } = await aSpare();
  const given = anFd();
  const bad = await SpareClaim.reserve(path);
  t.equal(await bad!.send(given.fd, { ...message('x'), bundle: 'relative/path' }), false, 'a message with a relative bundle is refused');
  t.equal(await claimByHand(path, given.fd, { ...message('y'), build: 'flint of another build' }), SPARE_NAK, 'a claim of another build is answered NAK');
  await claimAndCount(t, path, waiting, given, fdsBefore, 'c4', 'the spare kept no copy of a socket it refused');
});

t.test('a claimant gone once it has sent the socket: the spare does not serve it, and waits on', async (t) => {
  const { path, waiting, fdsBefore } = await aSpare();
  const given = anFd();
  t.equal(await claimByHand(path, given.fd, { ...message('gone'), build: buildId() }, { leave: true }), undefined, 'the claimant left without an answer');
  await claimAndCount(t, path, waiting, given, fdsBefore, 'c5', 'no copy of the abandoned socket is kept');
});

t.test('a spare of another build is not reserved', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const other = net.createServer((socket) => socket.end(encodeReady({ build: 'flint of another build' })));
  await new Promise<void>((resolve) => other.listen(path, resolve));
  t.teardown(() => other.close());
  t.equal(await SpareClaim.reserve(path), undefined);
});

t.test('the spare socket path: per containerd and its events address, under the shim socket dir, short', (t) => {
  const a = spareSocketPath('/run/containerd/containerd.sock', {});
  t.match(a, /^\/run\/containerd\/s\/flint-spare-[0-9a-f]{32}$/);
  t.ok(Buffer.byteLength(a) < 108, 'fits sun_path');
  t.not(spareSocketPath('/tmp/other/c.sock', {}), a, 'another containerd, another spare');
  t.not(spareSocketPath('/run/containerd/containerd.sock', { TTRPC_ADDRESS: '/x.ttrpc' }), a, 'another events address, another spare');
  t.equal(spareSocketPath('/run/containerd/containerd.sock', { TTRPC_ADDRESS: '/run/containerd/containerd.sock.ttrpc' }), a, 'the default events address is the same as unset');
  t.end();
});

/**
 * A claim made by hand, as another build or a claimant that dies would make
 * it: reads READY, sends `fd` with `sent`, and resolves with the spare's
 * answer byte, or undefined when the connection closed without one (at
 * once, with `leave`: the claimant goes away as soon as it has sent).
 */
async function claimByHand(path: string, fd: number, sent: HandoffMessage, options: { leave?: boolean } = {}): Promise<number | undefined> {
  const socket = net.createConnection({ path });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('data', resolve));
  sendFd((socket as unknown as { _handle: { fd: number } })._handle.fd, fd, Buffer.from(JSON.stringify(sent)));
  if (options.leave) {
    socket.destroy();
    return undefined;
  }
  return new Promise((resolve) => {
    socket.once('data', (data: Buffer) => resolve(data[0]));
    socket.once('close', () => resolve(undefined));
  });
}

/**
 * The spare at `path` is still waiting: a good claim (`id`) is taken and is
 * what `waiting` resolves with. Then every fd is closed again, the spare's
 * copies included (`what`).
 */
async function claimAndCount(t: Test, path: string, waiting: Promise<Handoff | undefined>, given: { fd: number; close: () => void }, fdsBefore: number, id: string, what: string): Promise<void> {
  const claim = await reserveWhenFree(path);
  t.ok(claim, 'the spare is free for the next claimant');
  t.equal(await claim!.send(given.fd, message(id)), true, 'whose claim is taken');
  const handoff = (await waiting)!;
  t.equal(handoff.message.id, id, 'the spare serves the claim it confirmed');
  closeSync(handoff.listenerFd);
  given.close();
  await until(() => fdCount(process.pid) <= fdsBefore);
  t.ok(fdCount(process.pid) <= fdsBefore, what, { before: fdsBefore, now: fdTargets(process.pid) });
}

/** Reserves the spare at `path` once it is free (a probe or a claimant that left may hold it a moment). */
async function reserveWhenFree(path: string): Promise<SpareClaim | undefined> {
  let claim: SpareClaim | undefined;
  await until(async () => (claim = await SpareClaim.reserve(path)) !== undefined);
  return claim;
}

/**
 * A socket file nobody listens on: what a killed spare leaves. Bound under
 * another name and linked into place, as the spare binds its own, because
 * libuv unlinks the bound name when the listener closes.
 */
async function bindDead(path: string): Promise<void> {
  const dead = net.createServer();
  await new Promise<void>((resolve) => dead.listen(`${path}.dead`, resolve));
  linkSync(`${path}.dead`, path);
  await new Promise((resolve) => dead.close(resolve));
}

/** `ctr run -d` of `sleep 1000` under flint. */
async function runDetached(c: Containerd, id: string): Promise<void> {
  const r = await c.ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sleep', '1000']);
  if (r.code !== 0) throw new Error(`ctr run -d ${id}: ${r.stderr}`);
}

async function remove(c: Containerd, id: string): Promise<void> {
  await c.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
  await c.ctr(['task', 'delete', id]);
  await c.ctr(['container', 'delete', id]);
}

t.test('through containerd: the server of a finished container serves the next one, then exits when idle', async (t) => {
  const config = join(dir, 'spare.json');
  writeFileSync(config, JSON.stringify({ spareServerMs: 4_000 }));
  const c = await startContainerd({ env: { FLINT_CONFIG: config } });
  t.teardown(() => c.stop());
  const first = c.newId('sp1');
  await runDetached(c, first);
  const pid = shimPidOf(shimSocketOf(c, first));
  await remove(c, first);
  const spare = spareSocketPath(c.address, { TTRPC_ADDRESS: `${c.address}.ttrpc` });
  await until(() => existsSync(spare));
  t.ok(isRunning(pid), 'after its last container the server stays, as the spare');

  const second = c.newId('sp2');
  await runDetached(c, second);
  t.equal(shimPidOf(shimSocketOf(c, second)), pid, 'the next container is served by that same process');
  t.notOk(existsSync(spare), 'which is no longer a spare');
  const exec = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'e', second, 'sh', '-c', 'echo $0; exit 3', 'hi']);
  t.same({ code: exec.code, out: exec.stdout.toString() }, { code: 3, out: 'hi\n' }, 'exec works in the container the spare took');
  const log = readFileSync(c.logPath, 'utf8');
  t.match(log, new RegExp(`"pid":${pid}[^\\n]*"id":"${second}"[^\\n]*"msg":"shim serving"`), "the server logs into the new container's log FIFO");
  await remove(c, second);

  await until(() => !isRunning(pid), 15_000);
  t.notOk(isRunning(pid), 'an unclaimed spare exits by itself');
  t.notOk(existsSync(spare), 'and so does its socket');
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'nothing left', { report });
});

t.test('through containerd: spareServerMs 0 ends the server with its last container, as the runc shim does', async (t) => {
  const config = join(dir, 'nospare.json');
  writeFileSync(config, JSON.stringify({ spareServerMs: 0 }));
  const c = await startContainerd({ env: { FLINT_CONFIG: config } });
  t.teardown(() => c.stop());
  const id = c.newId('ns0');
  await runDetached(c, id);
  const pid = shimPidOf(shimSocketOf(c, id));
  await remove(c, id);
  await until(() => !isRunning(pid), 5_000);
  t.notOk(isRunning(pid), 'the server exits at once');
  t.notOk(existsSync(spareSocketPath(c.address, { TTRPC_ADDRESS: `${c.address}.ttrpc` })), 'no spare socket');
});

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
}

/*
 * `start` against spares, without containerd: the shim run from dist/ as
 * containerd runs it (in the bundle, options on stdin, output read as the
 * address), so a spare that is a real server, or a hand-made one, is of the
 * very build of `start`. Each test has a containerd address of its own, and
 * so a spare socket of its own.
 */
const NS = 'flint-spare-test';
const shimScript = join(repoRoot(), 'dist', 'cmd', 'shim', 'main.js');

class Site {
  readonly address: string;
  readonly ttrpc: string;
  readonly sparePath: string;
  private readonly sockets = new Set<string>();

  constructor(
    t: Test,
    readonly name: string,
  ) {
    this.address = join(dir, `${name}-containerd.sock`);
    this.ttrpc = join(dir, `${name}-no-containerd.ttrpc`);
    this.sparePath = spareSocketPath(this.address, { TTRPC_ADDRESS: this.ttrpc });
    t.teardown(() => {
      for (const p of processesOwnedBy(dir).filter((p) => p.argv.includes(this.address))) signal(p.pid, 'SIGKILL');
      for (const socket of [...this.sockets, this.sparePath]) {
        for (const pid of listenerPids(socket)) signal(pid, 'SIGKILL');
        rmSync(socket, { force: true });
      }
    });
  }

  /** The environment containerd would give the shim, with flint's config file. */
  env(config: object): Record<string, string> {
    const path = join(dir, `${this.name}-${++n}.json`);
    writeFileSync(path, JSON.stringify(config));
    return { PATH: process.env.PATH!, FLINT_CONFIG: path, TTRPC_ADDRESS: this.ttrpc };
  }

  bundle(id: string, annotations: Record<string, string> = {}): string {
    const bundle = join(dir, id);
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    writeFileSync(join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', process: { args: ['true'], cwd: '/' }, root: { path: 'rootfs' }, annotations }));
    return bundle;
  }

  socketOf(group: string): string {
    const socket = socketPath(shimSocketAddress(this.address, NS, group));
    this.sockets.add(socket);
    return socket;
  }

  /** `<shim> start` for container `id`, with exactly `env` (none of the test runner's). */
  start(id: string, bundle: string, env: Record<string, string>): Promise<CommandResult> {
    const assignments = Object.entries(env).map(([key, value]) => `${key}=${value}`);
    const args = ['-i', ...assignments, process.execPath, shimScript, '-namespace', NS, '-address', this.address, '-publish-binary', '/usr/bin/containerd', '-id', id, 'start'];
    return runCommand('/usr/bin/env', args, { cwd: bundle, input: '', timeoutMs: 120_000 });
  }

  /** Runs container `id`'s server, then ends its group: with spareServerMs in `env`'s config it waits as the spare. */
  async spare(t: Test, id: string, env: Record<string, string>): Promise<number> {
    const r = await this.start(id, this.bundle(id), env);
    t.equal(r.code, 0, `start ${id}`, { stderr: r.stderr });
    const [pid] = await settledListeners(this.socketOf(id), id);
    const { client, task } = await taskClientAt(this.socketOf(id), NS);
    await task.shutdown({ id }).catch(() => {});
    client.close();
    await until(() => existsSync(this.sparePath), 15_000);
    t.ok(existsSync(this.sparePath), `the server of ${id} waits as the spare`);
    return pid!;
  }
}

/** Servers spawned for container `id` of this test run (by argv): the one pre-spawned, or a fresh one. */
function serversFor(id: string): number[] {
  return listProcesses()
    .filter((p) => p.argv[1] === shimScript && p.argv.includes(id) && p.argv.some((arg) => arg.startsWith(`${dir}/`)) && !p.argv.includes('start') && isRunning(p.pid))
    .map((p) => p.pid);
}

/**
 * The pids holding the listening socket at `socket`, once every server
 * spawned for `id` holds it too or is gone: a listening socket in flight to
 * a server that is still booting is in no process's fd table.
 */
async function settledListeners(socket: string, id: string): Promise<number[]> {
  await until(() => {
    const holders = listenerPids(socket);
    return holders.length > 0 && serversFor(id).every((pid) => holders.includes(pid));
  }, 30_000);
  return listenerPids(socket);
}

/**
 * Once the spare at `path` has dealt with the connections it had queued:
 * 'ready' when it answers a new claimant (it is still a spare), 'gone' when
 * nothing listens there any more (it took a group and serves).
 */
async function spareSettled(path: string): Promise<'ready' | 'gone'> {
  for (;;) {
    const outcome = await new Promise<'ready' | 'gone' | 'busy'>((resolve) => {
      const socket = net.createConnection({ path });
      socket.once('data', () => (socket.destroy(), resolve('ready')));
      socket.once('error', () => resolve('gone'));
      socket.once('close', () => resolve('busy'));
    });
    if (outcome !== 'busy') return outcome;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A spare made by hand, of `start`'s build: answers READY, takes the
 * listening socket and serves it at once, and acknowledges after
 * `ackAfterMs` (never when negative).
 */
async function handMadeSpare(t: Test, path: string, ackAfterMs: number): Promise<ChildProcess> {
  const fdpass = pathToFileURL(join(repoRoot(), 'dist', 'src', 'native', 'fdpass.js')).href;
  const script = `import net from 'node:net';
import { receiveFdFromSocket } from ${JSON.stringify(fdpass)};
const { path, build, ackAfterMs } = JSON.parse(process.env.HAND_MADE_SPARE);
net.createServer({ pauseOnConnect: true }, async (socket) => {
  socket.on('error', () => {});
  socket.write(JSON.stringify({ build }) + '\\n');
  const { fd } = await receiveFdFromSocket(socket);
  net.createServer().listen({ fd });
  if (ackAfterMs >= 0) setTimeout(() => socket.write(Buffer.from([${SPARE_ACK}])), ackAfterMs);
}).listen(path, () => process.stdout.write('listening\\n'));`;
  const child = spawnFlint(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    extraEnv: { HAND_MADE_SPARE: JSON.stringify({ path, build: buildId(), ackAfterMs }) },
  });
  t.teardown(() => signal(child.pid!, 'SIGKILL'));
  await new Promise((resolve) => child.stdout!.once('data', resolve));
  return child;
}

t.test('start against a spare that stops while it is claimed: the socket gets one server, never two', async (t) => {
  const site = new Site(t, 'stopped');
  const env = site.env({ spareServerMs: 60_000 });
  const spare = await site.spare(t, 'stopped-a', env);
  process.kill(spare, 'SIGSTOP');
  t.teardown(() => signal(spare, 'SIGCONT'));
  const r = await site.start('stopped-b', site.bundle('stopped-b'), env);
  t.equal(r.code, 0, 'start answers', { stderr: r.stderr });
  process.kill(spare, 'SIGCONT');
  const spareNow = await spareSettled(site.sparePath);
  const servers = await settledListeners(site.socketOf('stopped-b'), 'stopped-b');
  t.equal(servers.length, 1, 'one server listens on the socket', { servers, spare });
  t.notOk(servers.includes(spare), 'not the stopped spare, which got nothing');
  t.equal(spareNow, 'ready', 'which, resumed, is a spare still');
});

t.test('start against a spare slow to acknowledge: start waits for its answer and starts no server of its own', async (t) => {
  const site = new Site(t, 'slow');
  // Later than the 2 s that start once waited before it started a server of its own anyway.
  const spare = await handMadeSpare(t, site.sparePath, 2_500);
  const r = await site.start('slow-b', site.bundle('slow-b'), site.env({ spareServerMs: 0 }));
  t.equal(r.code, 0, 'start answers', { stderr: r.stderr });
  t.same(serversFor('slow-b'), [], 'no server was started for the container');
  t.same(listenerPids(site.socketOf('slow-b')), [spare.pid], 'the spare alone serves the socket');
});

t.test('start against a spare that never acknowledges: start kills it before the socket goes to a server of its own', async (t) => {
  const site = new Site(t, 'mute');
  const spare = await handMadeSpare(t, site.sparePath, -1);
  const r = await site.start('mute-b', site.bundle('mute-b'), site.env({ spareServerMs: 0 }));
  t.equal(r.code, 0, 'start answers', { stderr: r.stderr });
  const servers = await settledListeners(site.socketOf('mute-b'), 'mute-b');
  t.equal(servers.length, 1, 'one server listens on the socket', { servers, spare: spare.pid });
  t.notOk(servers.includes(spare.pid!), 'a fresh one');
  await until(() => spare.signalCode !== null || spare.exitCode !== null);
  t.equal(spare.signalCode, 'SIGKILL', 'the spare that held the socket without a word was killed');
  t.notOk(existsSync(site.sparePath), 'and its socket file removed');
});

t.test('start does not hand the socket to a "spare" of another user (SO_PEERCRED)', async (t) => {
  const site = new Site(t, 'uid');
  // Outside the test's own dir, which only root may enter.
  const fakeDir = mkdtempSync('/tmp/fspare-uid-');
  chmodSync(fakeDir, 0o777);
  t.teardown(() => rmSync(fakeDir, { recursive: true, force: true }));
  // Speaks like a spare of start's build; records what each claimant sent.
  const script = `const net = require('node:net');
net.createServer((socket) => {
  let bytes = 0;
  socket.on('error', () => {});
  socket.on('data', (data) => (bytes += data.length));
  socket.on('close', () => process.stdout.write('claimant sent ' + bytes + '\\n'));
  socket.write(JSON.stringify({ build: ${JSON.stringify(buildId())} }) + '\\n');
}).listen(${JSON.stringify(join(fakeDir, 'spare'))}, () => process.stdout.write('listening\\n'));`;
  const fake = spawnFlint(process.execPath, ['-e', script], { cwd: fakeDir, uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => signal(fake.pid!, 'SIGKILL'));
  const lines: string[] = [];
  fake.stdout!.on('data', (data: Buffer) => lines.push(...data.toString().trim().split('\n')));
  await until(() => lines.includes('listening'));
  t.ok(lines.includes('listening'), 'a "spare" of uid 65534 listens');
  // Into the spare's place, as a socket only a process of that user could be listening on.
  mkdirSync(dirname(site.sparePath), { recursive: true });
  linkSync(join(fakeDir, 'spare'), site.sparePath);
  const r = await site.start('uid-b', site.bundle('uid-b'), site.env({ spareServerMs: 0 }));
  t.equal(r.code, 0, 'start answers', { stderr: r.stderr });
  await until(() => lines.some((line) => line.startsWith('claimant sent')));
  t.same(lines.filter((line) => line.startsWith('claimant sent')), ['claimant sent 0'], 'the claimant sent it nothing');
  const servers = await settledListeners(site.socketOf('uid-b'), 'uid-b');
  t.equal(servers.length, 1, 'a server of our own serves the container');
  t.notOk(servers.includes(fake.pid!));
});

t.test("a spare serves with the claiming start's PATH and config, not those it was started with", async (t) => {
  const site = new Site(t, 'env');
  const spare = await site.spare(t, 'env-a', site.env({ spareServerMs: 60_000 }));
  // A runc found only on the second start's PATH, which says it ran.
  const wrapDir = join(dir, 'env-path');
  const ran = join(dir, 'env-runc-ran');
  mkdirSync(wrapDir);
  writeFileSync(join(wrapDir, 'runc'), `#!/bin/sh\necho "$@" >> ${ran}\nexit 1\n`, { mode: 0o755 });
  const env = { ...site.env({ spareServerMs: 0 }), PATH: `${wrapDir}:${process.env.PATH}` };
  const bundle = site.bundle('env-b');
  const r = await site.start('env-b', bundle, env);
  t.equal(r.code, 0, 'start answers', { stderr: r.stderr });
  const socket = site.socketOf('env-b');
  t.same(await settledListeners(socket, 'env-b'), [spare], 'the spare serves the container');
  const { client, task } = await taskClientAt(socket, NS);
  await task.create({ id: 'env-b', bundle }).catch(() => {});
  t.ok(existsSync(ran), "runc is looked up on the PATH containerd gave the claiming start");
  await task.shutdown({ id: 'env-b' }).catch(() => {});
  client.close();
  await until(() => !isRunning(spare), 15_000);
  t.notOk(isRunning(spare), "and the claiming start's config holds: spareServerMs 0, the server ends with its last container");
  t.notOk(existsSync(site.sparePath), 'not waiting as a spare again');
});

t.test("a container joining its group's live server (a CRI app container) boots no server and reserves no spare", async (t) => {
  const site = new Site(t, 'join');
  const env = site.env({ spareServerMs: 0 });
  const r = await site.start('join-a', site.bundle('join-a'), env);
  t.equal(r.code, 0, 'the sandbox starts', { stderr: r.stderr });
  const sandboxSocket = site.socketOf('join-a');
  const [sandboxServer] = await settledListeners(sandboxSocket, 'join-a');
  // Any server booted for an app container says so as it starts.
  const booted = join(dir, 'join-booted');
  const preload = join(dir, 'join-preload.cjs');
  writeFileSync(preload, `if (process.env.${HANDOFF_ENV}) require('node:fs').appendFileSync(${JSON.stringify(booted)}, process.pid + '\\n');\n`);
  const joinSandbox = async (id: string): Promise<void> => {
    const app = site.bundle(id, { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'join-a' });
    const joined = await site.start(id, app, { ...env, NODE_OPTIONS: `--require ${preload}` });
    t.same({ code: joined.code, out: joined.stdout.toString() }, { code: 0, out: `unix://${sandboxSocket}` }, `${id} gets the sandbox's address`);
    // A server booted early and not needed leaves once start is done with it.
    await until(() => serversFor(id).length === 0, 30_000);
  };

  await joinSandbox('join-c');
  t.notOk(existsSync(booted), 'no server was booted for it', { booted: existsSync(booted) ? readFileSync(booted, 'utf8') : '' });

  // Something at the spare's place that counts who comes to claim it.
  let claimants = 0;
  const standIn = net.createServer((socket) => {
    claimants += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => standIn.listen(site.sparePath, resolve));
  t.teardown(() => standIn.close());
  await joinSandbox('join-d');
  t.equal(claimants, 0, 'with a spare waiting, none is reserved for it');
  t.notOk(existsSync(booted), 'nor a server booted');
  t.same(listenerPids(sandboxSocket), [sandboxServer], "the sandbox's server serves them");
});

t.test("a killed spare's socket file is removed by the next start", async (t) => {
  const site = new Site(t, 'killed');
  const env = site.env({ spareServerMs: 60_000 });
  const spare = await site.spare(t, 'killed-a', env);
  process.kill(spare, 'SIGKILL');
  await until(() => !isRunning(spare));
  t.ok(existsSync(site.sparePath), 'SIGKILL leaves the socket file');
  const r = await site.start('killed-b', site.bundle('killed-b'), env);
  t.equal(r.code, 0, 'start answers', { stderr: r.stderr });
  t.notOk(existsSync(site.sparePath), 'the next start removed it');
  t.equal((await settledListeners(site.socketOf('killed-b'), 'killed-b')).length, 1, 'and a server of its own serves the container');
});
