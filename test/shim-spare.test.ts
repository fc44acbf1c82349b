import { closeSync, existsSync, fstatSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { sendFd } from '../src/native/fdpass.js';
import { socketpair } from '../src/native/socket.js';
import type { HandoffMessage } from '../src/shim/handoff.js';
import { spareSocketPath } from '../src/shim/socket-address.js';
import { SpareClaim } from '../src/shim/spare-claim.js';
import { encodeReady, SPARE_NAK } from '../src/shim/spare-protocol.js';
import { waitAsSpare } from '../src/shim/spare-wait.js';
import { buildId } from '../src/shim/version.js';
import { busyboxRootfs, CONTAINER_PATH, isClean, startContainerd, waitForClean, type Containerd } from './harness/index.js';
import { fdCount, fdTargets } from './harness/host-state.js';
import { isRunning } from './harness/procfs.js';
import { RUNTIMES } from './harness/scenario.js';
import { shimPidOf, shimSocketOf } from './harness/shim-server.js';

/**
 * Spare servers: a server whose last container is gone waits, for
 * spareServerMs, for the next container's `start` to hand it a group
 * instead of a new Node process being started. First the handoff between
 * spare-wait.ts and spare-claim.ts in this process, then through containerd.
 */
const dir = mkdtempSync('/tmp/fspare-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function message(id: string): HandoffMessage {
  return { namespace: 'ns', id, address: '/run/c.sock', socket: `unix://${dir}/${id}.sock`, bundle: dir, debug: false, configPath: undefined };
}

/** A listening-socket stand-in to hand over: one end of a socketpair (any fd passes). */
function anFd(): { fd: number; close: () => void } {
  const [a, b] = socketpair();
  return { fd: a, close: () => [a, b].forEach((fd) => closeSync(fd)) };
}

t.test('a claim hands the spare an fd, the message and its environment; the claimant hears it was taken', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
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
  const path = join(dir, `spare-${++n}`);
  const fdsBefore = fdCount(process.pid);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
  const [a, b] = await Promise.all([SpareClaim.reserve(path), SpareClaim.reserve(path)]);
  t.equal([a, b].filter(Boolean).length, 1, 'exactly one claimant reserves the spare');
  (a ?? b)!.close();
  const next = await reserveWhenFree(path);
  t.ok(next, 'a claimant that leaves without sending frees the spare');
  const given = anFd();
  t.equal(await next!.send(given.fd, message('ca')), true);
  const handoff = (await waiting)!;
  t.equal(handoff.message.id, 'ca', 'the spare serves the claim it confirmed');
  closeSync(handoff.listenerFd);
  given.close();
  await until(() => fdCount(process.pid) <= fdsBefore);
  t.ok(fdCount(process.pid) <= fdsBefore, 'no fd of any claim is left open', { before: fdsBefore, now: fdTargets(process.pid) });
});

t.test('a claim the spare cannot take is answered NAK, with its copy of the socket closed, and the wait goes on', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const fdsBefore = fdCount(process.pid);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
  const given = anFd();
  const bad = await SpareClaim.reserve(path);
  t.equal(await bad!.send(given.fd, { ...message('x'), bundle: 'relative/path' }), false, 'a message with a relative bundle is refused');
  t.equal(await claimByHand(path, given.fd, { ...message('y'), build: 'flint of another build' }), SPARE_NAK, 'a claim of another build is answered NAK');
  const good = await reserveWhenFree(path);
  t.equal(await good!.send(given.fd, message('c4')), true, 'the next good claim is taken');
  const handoff = (await waiting)!;
  t.equal(handoff.message.id, 'c4');
  closeSync(handoff.listenerFd);
  given.close();
  await until(() => fdCount(process.pid) <= fdsBefore);
  t.ok(fdCount(process.pid) <= fdsBefore, 'the spare kept no copy of a socket it refused', { before: fdsBefore, now: fdTargets(process.pid) });
});

t.test('a claimant gone once it has sent the socket: the spare does not serve it, and waits on', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const fdsBefore = fdCount(process.pid);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
  const given = anFd();
  t.equal(await claimByHand(path, given.fd, { ...message('gone'), build: buildId() }, { leave: true }), undefined, 'the claimant left without an answer');
  const good = await reserveWhenFree(path);
  t.ok(good, 'the spare is still waiting');
  t.equal(await good!.send(given.fd, message('c5')), true);
  t.equal((await waiting)!.message.id, 'c5', 'and serves the next claim, not the abandoned one');
  closeSync((await waiting)!.listenerFd);
  given.close();
  await until(() => fdCount(process.pid) <= fdsBefore);
  t.ok(fdCount(process.pid) <= fdsBefore, 'no copy of the abandoned socket is kept', { before: fdsBefore, now: fdTargets(process.pid) });
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
