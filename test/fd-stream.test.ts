import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, fstatSync, openSync, readdirSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { FdStream } from '../src/native/fd-stream.js';
import { openPty } from '../src/native/pty.js';
import { socketpair } from '../src/native/socket.js';

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed by the stream
  }
}

/** Resolves on 'close', or at once if it was already emitted. */
async function whenClosed(stream: FdStream): Promise<void> {
  if (!stream.closed) await once(stream, 'close');
}

function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Collects a readable to its end without destroying it (unlike for-await), so half-close stays testable. */
function collect(stream: FdStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Writes `data` in `chunkSize` pieces, waiting for 'drain' as a well-behaved producer does. */
async function writeAll(stream: FdStream, data: Buffer, chunkSize: number): Promise<void> {
  for (let off = 0; off < data.length; off += chunkSize) {
    if (!stream.write(data.subarray(off, off + chunkSize))) await once(stream, 'drain');
  }
}

/** A pair of connected FdStreams; both destroyed at teardown. */
function streamPair(t: { teardown(fn: () => void): void }): [FdStream, FdStream] {
  const [a, b] = socketpair();
  const left = new FdStream(a);
  const right = new FdStream(b);
  t.teardown(() => {
    left.destroy();
    right.destroy();
  });
  return [left, right];
}

t.test('20 MB echo round trip over a socketpair', async (t) => {
  const [client, server] = streamPair(t);
  server.pipe(server); // echo; pipe() applies backpressure both ways
  const data = randomBytes(20 * 1024 * 1024);
  const received = collect(client);
  await writeAll(client, data, 256 * 1024);
  client.end();
  const echoed = await received;
  t.equal(echoed.length, data.length, 'every byte came back');
  t.equal(sha256(echoed), sha256(data), 'in order and intact');
});

t.test('backpressure: a slow reader bounds what both sides hold', async (t) => {
  const [writer, reader] = streamPair(t);
  const data = randomBytes(8 * 1024 * 1024);
  // One huge write: the stream may hold this chunk, but must not read ahead unboundedly.
  let flushed = false;
  writer.write(data, () => (flushed = true));
  await sleep(100);
  t.notOk(flushed, 'the write is stuck while nobody reads');
  t.ok(reader.readableLength <= reader.readableHighWaterMark + 64 * 1024, `reader buffered ${reader.readableLength} bytes`);
  reader.read(0); // start the reader once, then leave it alone
  const cpuBefore = process.cpuUsage();
  await sleep(200);
  const cpu = process.cpuUsage(cpuBefore);
  t.ok(cpu.user + cpu.system < 100_000, `no busy loop while both sides wait (${cpu.user + cpu.system} µs CPU in 200 ms)`);
  t.ok(reader.readableLength <= reader.readableHighWaterMark + 64 * 1024, `reader buffered ${reader.readableLength} bytes after a read`);
  writer.end();
  const got = await collect(reader);
  t.ok(flushed, 'the write completed once the reader drained');
  t.equal(sha256(got), sha256(data));
});

t.test('end() half-closes a socket: the peer sees EOF and can still answer', async (t) => {
  const [a, b] = streamPair(t);
  a.end('question');
  t.equal((await collect(b)).toString(), 'question', 'EOF after the data');
  const answer = collect(a);
  b.end('answer');
  t.equal((await answer).toString(), 'answer');
  await Promise.all([whenClosed(a), whenClosed(b)]);
  t.ok(a.destroyed && b.destroyed, 'both sides done: auto-destroyed');
});

t.test('destroy() closes the fd; closeFd: false leaves it open', async (t) => {
  const before = openFdCount();
  const [x, y] = socketpair();
  const owned = new FdStream(x);
  const borrowed = new FdStream(y, { closeFd: false });
  t.teardown(() => closeQuietly(y));
  owned.resume();
  t.equal(openFdCount(), before + 2);
  owned.destroy();
  borrowed.destroy();
  await Promise.all([whenClosed(owned), whenClosed(borrowed)]);
  t.throws(() => fstatSync(x), { code: 'EBADF' }, 'owned fd closed');
  t.ok(fstatSync(y), 'borrowed fd still open');
  closeSync(y);
  t.equal(openFdCount(), before, 'no fd leaked');
});

t.test('a pending write fails and no error is emitted when destroyed without one', async (t) => {
  const [a, b] = streamPair(t);
  let errorEmitted = false;
  a.on('error', () => (errorEmitted = true));
  const writeResult = new Promise<Error | null | undefined>((resolve) => a.write(randomBytes(8 * 1024 * 1024), resolve));
  await sleep(20);
  a.destroy();
  const err = await writeResult;
  t.match(err, { code: 'ERR_STREAM_DESTROYED' });
  await whenClosed(a);
  t.notOk(errorEmitted);
  b.destroy();
});

t.test('writing after the peer closed errors with EPIPE', async (t) => {
  const [a, b] = streamPair(t);
  b.destroy();
  await whenClosed(b);
  a.write('x'.repeat(1024));
  const [err] = (await once(a, 'error')) as [NodeJS.ErrnoException];
  t.match(err, { code: /^(EPIPE|ECONNRESET)$/ });
});

t.test('pty master: reads what the slave writes, EOF (EIO) when the slave closes', async (t) => {
  const pty = openPty();
  t.teardown(() => closeQuietly(pty.slave));
  const master = new FdStream(pty.master);
  t.teardown(() => master.destroy());
  const output = collect(master);
  writeSync(pty.slave, 'hello\n');
  await sleep(20);
  writeSync(pty.slave, 'world\n');
  closeSync(pty.slave);
  t.equal((await output).toString(), 'hello\r\nworld\r\n', 'everything written, then end');
  t.notOk(master.destroyed, 'half-open by default: the write side is the owner’s to end');
  master.end();
  await whenClosed(master);
  t.throws(() => fstatSync(pty.master), { code: 'EBADF' }, 'master fd closed');
});

t.test('pty master: writes reach the slave', async (t) => {
  const pty = openPty();
  const slave = new FdStream(pty.slave);
  const master = new FdStream(pty.master);
  t.teardown(() => {
    slave.destroy();
    master.destroy();
  });
  master.resume(); // discard the echo
  const line = new Promise<string>((resolve) => {
    let text = '';
    slave.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('\n')) resolve(text);
    });
  });
  master.write('typed\n');
  t.equal(await line, 'typed\n');
});

t.test('construction fails for an fd that cannot be polled', async (t) => {
  const file = openSync('/proc/self/stat', 'r');
  t.teardown(() => closeQuietly(file));
  t.throws(() => new FdStream(file), { code: 'EPERM' });
  t.ok(fstatSync(file), 'the fd stays the caller’s');
  t.throws(() => new FdStream(1_000_000), { code: 'EBADF' });
});
