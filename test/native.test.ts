import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import net from 'node:net';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { EFD_CLOEXEC, EFD_NONBLOCK, eventfd, readEventfd, writeEventfd } from '../src/native/eventfd.js';
import { mkfifo, pipe, setNonblocking, unreadBytes, writersLeft } from '../src/native/fd.js';
import { receiveFdFromSocket, recvFd, sendFd } from '../src/native/fdpass.js';
import { MNT_DETACH, MS_BIND, MS_NODEV, MS_NOSUID, MS_RDONLY, MS_REMOUNT, mount, umount2 } from '../src/native/mount.js';
import { peerCred } from '../src/native/peercred.js';
import { POLL_READABLE, Poller } from '../src/native/poll.js';
import { childPids, setChildSubreaper, waitpidNoHang, type WaitResult } from '../src/native/process.js';
import { getWinsize, openPty, setWinsize } from '../src/native/pty.js';
import { accept4, socketError, socketpair } from '../src/native/socket.js';
import { isVsockUnsupported, listenVsock, VMADDR_PORT_ANY, vsockListen, vsockLocalPort } from '../src/native/vsock.js';

function scratchDir(t: { teardown(fn: () => void): void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The flags line of /proc/self/fdinfo (octal; includes 0o2000000 for close-on-exec). */
function fdFlags(fd: number): number {
  const match = /flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return parseInt(match![1]!, 8);
}

/** An fd on /dev/null, closed at teardown. */
function devNull(t: { teardown(fn: () => void): void }): number {
  const fd = openSync('/dev/null', 'r');
  t.teardown(() => closeQuietly(fd));
  return fd;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed by the test
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Runs `script` in sh; returns the pid it prints (a background grandchild) once sh has exited. */
async function spawnOrphan(script: string): Promise<number> {
  const child = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`sh exited ${code}`);
  const pid = Number(out.trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid printed: ${JSON.stringify(out)}`);
  return pid;
}

async function reap(pid: number, timeoutMs = 10_000): Promise<WaitResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = waitpidNoHang(pid);
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`pid ${pid} not reaped within ${timeoutMs} ms`);
    await sleep(20);
  }
}

function mountPoints(): string[] {
  // mountinfo field 5 is the mount point (octal-escaped, fine for our temp paths).
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(' ')[4]!);
}

t.test('subreaper: an orphaned grandchild is reaped with its exit code', async (t) => {
  setChildSubreaper();
  const pid = await spawnOrphan('sh -c "sleep 0.2; exit 7" & echo $!');
  t.teardown(() => killQuietly(pid));
  t.ok(childPids().includes(pid), 'the grandchild was reparented to us');
  const result = await reap(pid);
  t.same(result, { pid, status: 7, signal: null });
  t.notOk(childPids().includes(pid), 'no longer a child once reaped');
  t.throws(() => waitpidNoHang(pid), { code: 'ECHILD', syscall: 'waitpid' }, 'reaped twice is ECHILD');
});

t.test('subreaper: a signal death is reported as 128 + signal', async (t) => {
  setChildSubreaper();
  const pid = await spawnOrphan('sleep 30 & echo $!');
  t.teardown(() => killQuietly(pid));
  t.equal(waitpidNoHang(pid), null, 'still running');
  process.kill(pid, 'SIGKILL');
  t.same(await reap(pid), { pid, status: 128 + 9, signal: 9 });
});

t.test('waitpidNoHang on a pid that is not our child throws ECHILD', async (t) => {
  t.throws(() => waitpidNoHang(1), { code: 'ECHILD', errno: -10 });
});

t.test('unreadBytes: what a pipe holds that its reader has not taken', async (t) => {
  const [r, w] = pipe();
  t.teardown(() => [r, w].forEach(closeQuietly));
  t.equal(unreadBytes(r), 0, 'an empty pipe');
  writeSync(w, Buffer.alloc(3000, 1));
  t.equal(unreadBytes(r), 3000, 'what was written');
  t.equal(unreadBytes(w), 3000, 'seen from the write end too');
  readSync(r, Buffer.alloc(1000));
  t.equal(unreadBytes(r), 2000, 'less what was read');
  t.throws(() => unreadBytes(1_000_000), { code: 'EBADF', syscall: 'ioctl' });
});

t.test('writersLeft: a FIFO\'s writers came and went, not merely never came', async (t) => {
  const path = join(scratchDir(t, 'flint-fifo-'), 'f');
  mkfifo(path);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  t.teardown(() => closeQuietly(reader));
  t.equal(writersLeft(reader), false, 'no writer yet: not left (read() would already say EOF)');
  const writer = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  writeSync(writer, 'x');
  t.equal(writersLeft(reader), false, 'a writer holds it');
  closeSync(writer);
  t.equal(writersLeft(reader), true, 'its writer closed it: left, though a byte is still unread');
  const again = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  t.equal(writersLeft(reader), false, 'a new writer: not left any more');
  closeSync(again);
  t.throws(() => writersLeft(1_000_000), { code: 'EBADF', syscall: 'poll' }, 'a bad fd is an error, not a guess');
});

t.test('fd passing over a socketpair carries the same pipe', async (t) => {
  const [a, b] = socketpair();
  const [pipeRead, pipeWrite] = pipe();
  t.teardown(() => [a, b, pipeRead, pipeWrite].forEach(closeQuietly));
  setNonblocking(b, true);
  t.ok(fdFlags(b) & 0o4000, 'O_NONBLOCK set');
  setNonblocking(b, false);
  t.notOk(fdFlags(b) & 0o4000, 'O_NONBLOCK cleared');
  setNonblocking(b, true);
  t.equal(recvFd(b), null, 'nothing queued yet');
  t.equal(sendFd(a, pipeWrite, Buffer.from('the write end')), 13);
  const received = recvFd(b);
  t.ok(received, 'a message arrived');
  const { fd, data } = received!;
  t.teardown(() => closeQuietly(fd));
  t.equal(data.toString(), 'the write end');
  t.not(fd, pipeWrite, 'a new fd number');
  t.equal(fstatSync(fd).ino, fstatSync(pipeWrite).ino, 'the same pipe');
  t.ok(fdFlags(fd) & 0o2000000, 'received close-on-exec (MSG_CMSG_CLOEXEC)');
  writeSync(fd, 'through the passed fd');
  const buf = Buffer.alloc(64);
  const n = readSync(pipeRead, buf, 0, buf.length, null);
  t.equal(buf.subarray(0, n).toString(), 'through the passed fd');

  closeSync(a);
  t.same(recvFd(b), { fd: -1, data: Buffer.alloc(0) }, 'EOF is fd -1 with no data');
});

t.test('receiveFdFromSocket takes a pty master from a paused connection, like runc --console-socket', async (t) => {
  const dir = scratchDir(t, 'flint-fdpass-');
  const path = join(dir, 'console.sock');
  const server = net.createServer({ pauseOnConnect: true });
  t.teardown(() => server.close());
  server.listen(path);
  await once(server, 'listening');

  const pty = openPty();
  t.teardown(() => [pty.master, pty.slave].forEach(closeQuietly));
  setWinsize(pty.master, 33, 111);

  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(path);
  t.teardown(() => client.destroy());
  await once(client, 'connect');
  const [conn] = await accepted;
  t.teardown(() => conn.destroy());
  const receiving = receiveFdFromSocket(conn);
  await sleep(50); // the receiver must be waiting before anything is sent
  const clientFd = (client as unknown as { _handle: { fd: number } })._handle.fd;
  sendFd(clientFd, pty.master, Buffer.from(pty.name));
  const { fd, data } = await receiving;
  t.teardown(() => closeQuietly(fd));
  t.equal(data.toString(), pty.name);
  t.same(getWinsize(fd), { rows: 33, cols: 111 }, 'the same terminal');
});

t.test('receiveFdFromSocket rejects with ECONNRESET when the peer hangs up without an fd', async (t) => {
  const dir = scratchDir(t, 'flint-fdpass-');
  const path = join(dir, 'console.sock');
  const server = net.createServer({ pauseOnConnect: true });
  t.teardown(() => server.close());
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(path);
  await once(client, 'connect');
  const [conn] = await accepted;
  t.teardown(() => conn.destroy());
  client.end();
  await t.rejects(receiveFdFromSocket(conn), { code: 'ECONNRESET' });
  await t.rejects(receiveFdFromSocket(conn, { timeoutMs: 5000 }), { code: 'ECONNRESET' }, 'still EOF on a retry');
});

t.test('pty: window size round trip', async (t) => {
  const pty = openPty();
  t.teardown(() => [pty.master, pty.slave].forEach(closeQuietly));
  t.match(pty.name, /^\/dev\/pts\/\d+$/);
  setWinsize(pty.master, 24, 80);
  t.same(getWinsize(pty.slave), { rows: 24, cols: 80 }, 'seen on the slave');
  setWinsize(pty.master, 50, 200);
  t.same(getWinsize(pty.master), { rows: 50, cols: 200 });
  t.throws(() => setWinsize(devNull(t), 1, 1), { code: 'ENOTTY', syscall: 'ioctl' });
});

/** A skip reason when the kernel has no AF_VSOCK; false when it does. */
function vsockSkipReason(): string | false {
  try {
    closeSync(vsockListen(VMADDR_PORT_ANY));
    return false;
  } catch (err) {
    if (isVsockUnsupported(err)) return 'kernel has no AF_VSOCK (EAFNOSUPPORT)';
    throw err;
  }
}

t.test('vsock: bind and listen on a kernel-chosen port (never connect)', { skip: vsockSkipReason() }, async (t) => {
  const server = listenVsock(VMADDR_PORT_ANY);
  t.teardown(() => server.close());
  const { port } = server.address();
  t.ok(port > 0 && port !== VMADDR_PORT_ANY, `bound port ${port}`);
  t.equal(vsockLocalPort(server.fd), port);
  t.equal(socketError(server.fd), 0);
  t.equal(accept4(server.fd), null, 'nobody is connecting');
  const closed = once(server, 'close');
  server.close();
  server.close(); // idempotent
  await closed;
  t.throws(() => fstatSync(server.fd), { code: 'EBADF' }, 'the listening fd is closed');

  const raw = vsockListen(VMADDR_PORT_ANY);
  t.teardown(() => closeQuietly(raw));
  t.ok(vsockLocalPort(raw) > 0);
  t.throws(() => vsockListen(vsockLocalPort(raw)), { code: 'EADDRINUSE', syscall: 'bind' });
});

t.test('peerCred on a connected unix socket names this process', async (t) => {
  const dir = scratchDir(t, 'flint-peercred-');
  const path = join(dir, 'cred.sock');
  const server = net.createServer();
  t.teardown(() => server.close());
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(path);
  t.teardown(() => client.destroy());
  const [conn] = await accepted;
  t.teardown(() => conn.destroy());
  const fd = (conn as unknown as { _handle: { fd: number } })._handle.fd;
  t.same(peerCred(fd), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  const [a, b] = socketpair();
  t.teardown(() => [a, b].forEach(closeQuietly));
  t.equal(peerCred(a).pid, process.pid);
  t.throws(() => peerCred(devNull(t)), { code: 'ENOTSOCK' });
});

t.test('mount and umount2: tmpfs and a read-only bind mount', async (t) => {
  const dir = scratchDir(t, 'flint-mount-');
  const tmpfs = join(dir, 'tmpfs');
  const source = join(dir, 'source');
  const bind = join(dir, 'bind');
  [tmpfs, source, bind].forEach((d) => mkdirSync(d));
  t.teardown(() => {
    for (const target of [bind, tmpfs]) {
      try {
        umount2(target, MNT_DETACH);
      } catch {
        // not mounted (the test unmounted it)
      }
    }
  });

  mount('tmpfs', tmpfs, 'tmpfs', MS_NOSUID | MS_NODEV, 'size=1m,mode=0700');
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === tmpfs);
  t.ok(line, 'listed in mountinfo');
  t.match(line!, / - tmpfs tmpfs /);
  t.match(line!, /nosuid,nodev/);
  writeFileSync(join(tmpfs, 'f'), 'x');
  umount2(tmpfs);
  t.notOk(mountPoints().includes(tmpfs), 'gone after umount2');
  t.same(readdirSync(tmpfs), [], 'the file lived on the tmpfs');

  writeFileSync(join(source, 'hello'), 'world');
  mount(source, bind, null, MS_BIND);
  t.equal(readFileSync(join(bind, 'hello'), 'utf8'), 'world');
  mount(null, bind, null, MS_BIND | MS_REMOUNT | MS_RDONLY);
  t.throws(() => writeFileSync(join(bind, 'new'), 'x'), { code: 'EROFS' }, 'read-only after remount');
  umount2(bind, MNT_DETACH);
  t.notOk(mountPoints().includes(bind));

  t.throws(() => mount('tmpfs', join(dir, 'missing'), 'tmpfs', 0), { code: 'ENOENT', syscall: 'mount' });
  t.throws(() => umount2(source), { code: 'EINVAL', syscall: 'umount2' }, 'not a mount point');
});

t.test('eventfd: counter round trip and readable polling', async (t) => {
  const efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  t.teardown(() => closeQuietly(efd));
  t.equal(readEventfd(efd), null, 'zero counter reads EAGAIN');
  const readable = new Promise<number>((resolve) => {
    const poller = new Poller(efd, (err, events) => {
      poller.close();
      if (err) throw err;
      resolve(events);
    });
    poller.start(true, false);
  });
  await sleep(20);
  writeEventfd(efd, 2);
  writeEventfd(efd, 3n);
  t.equal((await readable) & POLL_READABLE, POLL_READABLE);
  t.equal(readEventfd(efd), 5n);
  t.equal(readEventfd(efd), null, 'reset by the read');
  t.ok(fstatSync(efd), 'closing the poller left the fd open');
});

t.test('Poller: errors and lifecycle', async (t) => {
  t.throws(() => new Poller(-1, () => {}), { code: 'EBADF' });
  const file = openSync('/proc/self/stat', 'r');
  t.teardown(() => closeQuietly(file));
  t.throws(() => new Poller(file, () => {}), { code: 'EPERM', syscall: 'uv_poll_init' }, 'regular files cannot be polled');
  const [a, b] = socketpair();
  t.teardown(() => [a, b].forEach(closeQuietly));
  let calls = 0;
  const poller = new Poller(a, () => calls++);
  poller.start(false, true);
  await sleep(30);
  poller.stop();
  const afterStop = calls;
  t.ok(afterStop > 0, 'writable fired');
  await sleep(30);
  t.equal(calls, afterStop, 'no callbacks after stop');
  poller.close();
  poller.close();
  t.throws(() => poller.start(true, false), { code: 'ERR_POLLER_CLOSED' });
});

t.test('error paths carry Node-style codes', async (t) => {
  const bad = 1_000_000;
  t.throws(() => getWinsize(bad), { code: 'EBADF', errno: -osConstants.errno.EBADF, syscall: 'ioctl' });
  t.throws(() => peerCred(bad), { code: 'EBADF', syscall: 'getsockopt' });
  t.throws(() => setNonblocking(bad, true), { code: 'EBADF', syscall: 'fcntl' });
  t.throws(() => recvFd(bad), { code: 'EBADF', syscall: 'recvmsg' });
  t.throws(() => eventfd(0, -1), { code: 'EINVAL', syscall: 'eventfd' });
  const [a, b] = socketpair();
  t.teardown(() => [a, b].forEach(closeQuietly));
  t.throws(() => accept4(a), { code: 'EINVAL', syscall: 'accept4' }, 'not listening');
  t.throws(() => socketError(devNull(t)), { code: 'ENOTSOCK' });
  t.throws(() => getWinsize('x' as unknown as number), { code: 'ERR_INVALID_ARG_TYPE' });
  const err = (() => {
    try {
      getWinsize(bad);
    } catch (e) {
      return e as Error;
    }
    return undefined;
  })();
  t.ok(err instanceof Error);
  t.equal(err?.message, 'EBADF: bad file descriptor, ioctl');
});
