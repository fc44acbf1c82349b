import { closeSync, existsSync, fstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { sendFd } from '../src/native/fdpass.js';
import { socketpair } from '../src/native/socket.js';
import type { HandoffMessage } from '../src/shim/handoff.js';
import { spareSocketPath } from '../src/shim/socket-address.js';
import { SpareClaim } from '../src/shim/spare-claim.js';
import { waitAsSpare } from '../src/shim/spare-wait.js';
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

t.test('a claim hands the spare an fd and the message; the claimant hears it was taken', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
  const claim = await SpareClaim.connect(path);
  t.ok(claim, 'start finds the spare');
  const given = anFd();
  t.teardown(given.close);
  t.equal(await claim!.send(given.fd, message('c1')), true, 'the spare confirms');
  const handoff = await waiting;
  t.has(handoff?.message, message('c1'), 'the spare has the message');
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
  t.equal(await SpareClaim.connect(path), undefined, 'a later start finds no spare');
});

t.test('one spare per path: a second server finds one waiting and does not wait', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const first = waitAsSpare(path, 2_000);
  await until(() => existsSync(path));
  t.equal(await waitAsSpare(path, 2_000), undefined, 'the second returns at once');
  const claim = await SpareClaim.connect(path);
  const given = anFd();
  t.teardown(given.close);
  t.equal(await claim!.send(given.fd, message('c2')), true, 'the first is still there to be claimed');
  closeSync((await first)!.listenerFd);
});

t.test('a stale socket file of a spare that died is replaced', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const dead = net.createServer();
  await new Promise<void>((resolve) => dead.listen(path, resolve));
  // Bound but no longer listening: what a killed spare leaves.
  (dead as unknown as { _handle: { close: () => void } })._handle.close();
  const waiting = waitAsSpare(path, 2_000);
  await until(async () => (await SpareClaim.connect(path).then((c) => (c?.close(), c !== undefined))) === true);
  const claim = await SpareClaim.connect(path);
  const given = anFd();
  t.teardown(given.close);
  t.equal(await claim!.send(given.fd, message('c3')), true, 'the new spare took over the path');
  closeSync((await waiting)!.listenerFd);
});

t.test('two claims at once: one wins, the other is told no and nothing of it stays with the spare', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const fdsBefore = fdCount(process.pid);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
  const [a, b] = await Promise.all([SpareClaim.connect(path), SpareClaim.connect(path)]);
  const [fa, fb] = [anFd(), anFd()];
  const answers = await Promise.all([a!.send(fa.fd, message('ca')), b!.send(fb.fd, message('cb'))]);
  t.same(answers.filter(Boolean).length, 1, 'exactly one claim is taken');
  const handoff = (await waiting)!;
  t.equal(handoff.message.id, answers[0] ? 'ca' : 'cb', 'the spare serves the claim it confirmed');
  closeSync(handoff.listenerFd);
  fa.close();
  fb.close();
  await until(() => fdCount(process.pid) <= fdsBefore);
  t.ok(fdCount(process.pid) <= fdsBefore, 'no fd of either claim is left open', { before: fdsBefore, now: fdTargets(process.pid) });
});

t.test('a claimant that leaves without a word, or says something malformed, does not end the wait', async (t) => {
  const path = join(dir, `spare-${++n}`);
  const waiting = waitAsSpare(path, 5_000);
  await until(() => existsSync(path));
  (await SpareClaim.connect(path))!.close();
  const bad = await SpareClaim.connect(path);
  const given = anFd();
  t.teardown(given.close);
  t.equal(await bad!.send(given.fd, { ...message('x'), bundle: 'relative/path' }), false, 'a message with a relative bundle is refused');
  t.equal(await claimAs(path, given.fd, { ...message('y'), build: 'flint of another build' }), undefined, 'a claim of another build gets no answer');
  const good = await SpareClaim.connect(path);
  t.equal(await good!.send(given.fd, message('c4')), true, 'the next good claim is taken');
  const handoff = (await waiting)!;
  t.equal(handoff.message.id, 'c4');
  closeSync(handoff.listenerFd);
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

/** A claim sent by hand, as another build would: the spare's answer byte, or undefined when it closed without one. */
async function claimAs(path: string, fd: number, sent: HandoffMessage): Promise<number | undefined> {
  const socket = net.createConnection({ path });
  await new Promise((resolve) => socket.once('connect', resolve));
  sendFd((socket as unknown as { _handle: { fd: number } })._handle.fd, fd, Buffer.from(JSON.stringify(sent)));
  return new Promise((resolve) => {
    socket.once('data', (data: Buffer) => resolve(data[0]));
    socket.once('close', () => resolve(undefined));
  });
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

  const report = await waitForClean(c, 15_000);
  t.ok(isClean(report), 'an unclaimed spare exits: nothing left', { report });
  t.notOk(isRunning(pid), 'the server is gone');
  t.notOk(existsSync(spare), 'and so is the spare socket');
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
