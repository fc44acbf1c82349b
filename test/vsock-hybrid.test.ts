import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, lstatSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import { AlreadyExistsError, CanceledError, UnavailableError } from '../src/errdefs/errors.js';
import { dialHybrid } from '../src/vsock/hybrid-dial.js';
import { FIRST_HOST_PORT, HybridVsockServer } from '../src/vsock/hybrid-server.js';

type Teardown = Pick<Test, 'teardown'>;

/** A short private directory (sun_path is 108 bytes), removed at teardown. */
function scratchDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'fv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Reads until 'end' (or until `bytes` bytes when given), without destroying the stream. */
function collect(stream: Duplex, bytes?: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      if (bytes !== undefined && length >= bytes) finish();
    };
    const finish = (): void => {
      stream.off('data', onData);
      stream.off('end', finish);
      stream.off('error', reject);
      resolve(Buffer.concat(chunks, length));
    };
    stream.on('data', onData);
    stream.once('end', finish);
    stream.once('error', reject);
  });
}

/** Reads from a raw socket until '\n'; resolves with the line (without '\n') and any bytes after it. */
function readLine(socket: Socket): Promise<{ line: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0) return;
      socket.off('data', onData);
      socket.off('error', reject);
      socket.pause();
      resolve({ line: buf.subarray(0, nl).toString('latin1'), rest: buf.subarray(nl + 1) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

/**
 * A stand-in for Firecracker's hybrid vsock endpoint that reads CONNECT and
 * then lets `behave` answer however the test wants. Everything is torn down.
 */
async function fakeVmm(t: Teardown, path: string, behave: (socket: Socket, line: string, rest: Buffer) => void): Promise<{ server: Server; connections: () => number }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createServer((socket) => {
    count++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    readLine(socket).then(
      ({ line, rest }) => behave(socket, line, rest),
      () => socket.destroy(),
    );
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  server.listen(path);
  await once(server, 'listening');
  return { server, connections: () => count };
}

/**
 * Leaves a socket file nobody listens on: bind elsewhere, rename it into
 * place, then close (libuv unlinks only the name it bound).
 */
async function makeStaleSocket(path: string): Promise<void> {
  const server = createServer();
  server.listen(`${path}.tmp`);
  await once(server, 'listening');
  renameSync(`${path}.tmp`, path);
  server.close();
  await once(server, 'close');
  if (!lstatSync(path).isSocket()) throw new Error(`could not make a stale socket at ${path}`);
}

/** Destroys every stream a test dialed. */
function track<T extends Duplex>(t: Teardown, stream: T): T {
  t.teardown(() => {
    stream.destroy();
  });
  return stream;
}

/**
 * Awaits a rejection of type `ctor` and checks it came no sooner than
 * `minMs` (a retry or a deadline really waited). There is no upper bound:
 * on a loaded machine any wall-clock ceiling is noise; what a fast failure
 * means is asserted from the error itself.
 */
async function rejectsAfter<E extends Error>(t: Test, promise: Promise<unknown>, ctor: new (...args: never[]) => E, minMs: number): Promise<E> {
  const started = Date.now();
  const err = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  const elapsed = Date.now() - started;
  t.type(err, ctor);
  t.ok(elapsed >= minMs, `rejected after ${elapsed} ms, not before ${minMs}`);
  return err as E;
}

// ---- against a fake Firecracker ----

t.test('ack split over several delayed writes, then payload', async (t) => {
  const path = join(scratchDir(t), 'fc.vsock');
  const seen: string[] = [];
  await fakeVmm(t, path, async (socket, line) => {
    seen.push(line);
    for (const piece of ['O', 'K', ' 10737', '41824', '\n']) {
      socket.write(piece);
      await sleep(15);
    }
    socket.end('after-ack');
  });
  const conn = track(t, await dialHybrid(path, 10789, { timeoutMs: 3000 }));
  t.same(seen, ['CONNECT 10789']);
  t.equal((await collect(conn)).toString(), 'after-ack');
});

t.test('payload in the same write as the ack is not swallowed', async (t) => {
  const path = join(scratchDir(t), 'fc.vsock');
  const big = randomBytes(300 * 1024);
  await fakeVmm(t, path, (socket, line) => {
    if (line === 'CONNECT 1') socket.end(Buffer.concat([Buffer.from('OK 1073741824\nhello\n'), Buffer.from('world')]));
    else socket.end(Buffer.concat([Buffer.from('OK 1073741825\n'), big]));
  });

  const small = track(t, await dialHybrid(path, 1, { timeoutMs: 3000 }));
  await sleep(50); // nothing may be lost while nobody reads
  t.equal((await collect(small)).toString(), 'hello\nworld');

  const large = track(t, await dialHybrid(path, 2, { timeoutMs: 3000 }));
  const chunks: Buffer[] = [];
  for await (const chunk of large) chunks.push(chunk as Buffer);
  t.equal(sha256(Buffer.concat(chunks)), sha256(big), '300 KiB sent with the ack arrive intact');
});

t.test('client bytes written right after the dial reach the guest', async (t) => {
  const path = join(scratchDir(t), 'fc.vsock');
  const received = new Promise<Buffer>((resolve) => {
    void fakeVmm(t, path, (socket) => {
      socket.resume();
      socket.write('OK 5\n');
      void collect(socket).then(resolve);
    });
  });
  await sleep(20);
  const conn = track(t, await dialHybrid(path, 3, { timeoutMs: 3000 }));
  conn.end('ping');
  t.equal((await received).toString(), 'ping');
});

t.test('no socket file yet: retries until a late listener appears', async (t) => {
  const path = join(scratchDir(t), 'late.vsock');
  const started = Date.now();
  setTimeout(() => {
    void fakeVmm(t, path, (socket) => socket.write('OK 9\nlate'));
  }, 300);
  const conn = track(t, await dialHybrid(path, 10789, { timeoutMs: 3000 }));
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 250, `connected after ${elapsed} ms, once the listener was there`);
  t.equal((await collect(conn, 4)).toString(), 'late');
});

t.test('stale socket file (ECONNREFUSED): retries until a late listener appears', async (t) => {
  const path = join(scratchDir(t), 'stale.vsock');
  await makeStaleSocket(path);
  const refused = await dialHybrid(path, 1, { timeoutMs: 150 }).catch((e: unknown) => e);
  t.type(refused, UnavailableError);
  t.match((refused as Error).message, /ECONNREFUSED/);
  t.match((refused as Error).message, new RegExp(`${path} port 1`));

  const started = Date.now();
  setTimeout(() => {
    unlinkSync(path);
    void fakeVmm(t, path, (socket) => socket.write('OK 9\n'));
  }, 300);
  track(t, await dialHybrid(path, 2, { timeoutMs: 3000 }));
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 250, `connected after ${elapsed} ms, once the listener was there`);
});

t.test('a guest that is not listening yet (closed before the ack) is retried', async (t) => {
  const path = join(scratchDir(t), 'fc.vsock');
  const vmm = await fakeVmm(t, path, (socket) => {
    // The first three attempts find no guest listener, like Firecracker's RST.
    if (vmm.connections() <= 3) socket.destroy();
    else socket.write('OK 1\n');
  });
  track(t, await dialHybrid(path, 7, { timeoutMs: 3000 }));
  t.equal(vmm.connections(), 4);
});

t.test('garbage reply: retried, and the final error says what came back', async (t) => {
  const path = join(scratchDir(t), 'fc.vsock');
  const vmm = await fakeVmm(t, path, (socket) => socket.write('ERR guest said no\n'));
  const err = await rejectsAfter(t, dialHybrid(path, 10789, { timeoutMs: 500 }), UnavailableError, 450);
  t.match(err.message, /"ERR guest said no\\n"/);
  t.match(err.message, /port 10789/);
  t.match(err.message, path);
  t.ok(vmm.connections() >= 3, `retried (${vmm.connections()} connections)`);
});

t.test('no answer at all: UnavailableError by the deadline', async (t) => {
  const path = join(scratchDir(t), 'fc.vsock');
  await fakeVmm(t, path, () => {});
  const err = await rejectsAfter(t, dialHybrid(path, 10789, { timeoutMs: 600, attemptTimeoutMs: 250 }), UnavailableError, 550);
  t.match(err.message, /no ack within/);
  // An attempt budget beyond the deadline is cut to the deadline.
  const cut = await rejectsAfter(t, dialHybrid(path, 10789, { timeoutMs: 300, attemptTimeoutMs: 5000 }), UnavailableError, 250);
  const attemptMs = Number(/no ack within (\d+) ms/.exec(cut.message)?.[1]);
  t.ok(attemptMs <= 300, `the attempt waited at most the deadline's 300 ms, not 5000 (${cut.message})`);
});

t.test('abort: CanceledError, promptly, in every phase', async (t) => {
  const dir = scratchDir(t);
  const silent = join(dir, 'silent.vsock');
  await fakeVmm(t, silent, () => {});

  const waitingForAck = new AbortController();
  setTimeout(() => waitingForAck.abort(new Error('stop')), 100);
  const err = await rejectsAfter(t, dialHybrid(silent, 1, { timeoutMs: 5000, signal: waitingForAck.signal }), CanceledError, 50);
  t.match(err.message, /canceled/);

  const betweenAttempts = new AbortController();
  setTimeout(() => betweenAttempts.abort(), 150);
  await rejectsAfter(t, dialHybrid(join(dir, 'missing.vsock'), 1, { timeoutMs: 5000, signal: betweenAttempts.signal }), CanceledError, 100);

  await rejectsAfter(t, dialHybrid(silent, 1, { signal: AbortSignal.abort() }), CanceledError, 0);
});

t.test('a path that is not a socket fails at once, not at the deadline', async (t) => {
  const path = join(scratchDir(t), 'plain-file');
  writeFileSync(path, '');
  const err = await rejectsAfter(t, dialHybrid(path, 1, { timeoutMs: 5000 }), UnavailableError, 0);
  t.match(err.message, /plain-file is not a socket/);
});

// ---- against our own HybridVsockServer ----

async function hybridServer(t: Teardown, path: string, handshakeTimeoutMs?: number): Promise<HybridVsockServer> {
  const server = await HybridVsockServer.listen(path, { handshakeTimeoutMs });
  t.teardown(() => server.close());
  return server;
}

t.test('HybridVsockServer: dial port 10789 and exchange 5 MB both ways', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path);
  t.equal(lstatSync(path).mode & 0o777, 0o600, 'socket file is private');
  const listener = server.listen(10789);
  const toGuest = randomBytes(5 * 1024 * 1024);
  const toHost = randomBytes(5 * 1024 * 1024);

  const guestGot = new Promise<Buffer>((resolve) => {
    listener.once('connection', (conn: Duplex) => {
      track(t, conn);
      void collect(conn).then(resolve);
      conn.end(toHost);
    });
  });
  const conn = track(t, await dialHybrid(path, 10789, { timeoutMs: 3000 }));
  const hostGot = collect(conn);
  conn.end(toGuest);
  t.equal(sha256(await guestGot), sha256(toGuest), 'host → guest intact');
  t.equal(sha256(await hostGot), sha256(toHost), 'guest → host intact');
});

t.test('HybridVsockServer: half-close works both ways, as on AF_VSOCK', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path);
  server.listen(7).on('connection', (conn: Duplex) => {
    track(t, conn);
    // Answer only after the host finished sending: its EOF must not close our side.
    void collect(conn).then((request) => conn.end(`got ${request.toString()}`));
  });
  const conn = track(t, await dialHybrid(path, 7, { timeoutMs: 2000 }));
  const reply = collect(conn);
  conn.end('request');
  t.equal((await reply).toString(), 'got request');
});

t.test('HybridVsockServer: exact ack bytes, host ports count up, early client bytes kept', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path);
  const listener = server.listen(42);
  const firstBytes: string[] = [];
  listener.on('connection', (conn: Duplex) => {
    track(t, conn);
    void collect(conn, 5).then((b) => firstBytes.push(b.toString()));
  });
  for (let i = 0; i < 2; i++) {
    const raw = track(t, connect(path));
    raw.write(`CONNECT 42\nearly`);
    const { line, rest } = await readLine(raw);
    t.equal(line, `OK ${FIRST_HOST_PORT + i}`);
    t.equal(rest.length, 0);
  }
  await t.resolveMatch(
    (async () => {
      while (firstBytes.length < 2) await sleep(10);
      return firstBytes;
    })(),
    ['early', 'early'],
  );
});

t.test('HybridVsockServer: unlisted port gets no ack, and the dial fails by its deadline', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path);
  server.listen(10789);
  const drops: string[] = [];
  server.on('drop', (reason) => drops.push(reason));
  const err = await rejectsAfter(t, dialHybrid(path, 11000, { timeoutMs: 400 }), UnavailableError, 350);
  t.match(err.message, /port 11000/);
  t.match(err.message, /closed before the ack/);
  t.ok(drops.length >= 2 && drops.every((d) => d === 'no listener on port 11000'), `dropped: ${drops[0]} (x${drops.length})`);
});

t.test('HybridVsockServer: many concurrent dials to different ports', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path);
  const ports = Array.from({ length: 24 }, (_, i) => 11000 + i);
  for (const port of ports) {
    server.listen(port).on('connection', (conn: Duplex) => {
      track(t, conn);
      conn.end(`port ${port}`);
    });
  }
  t.same(server.listeningPorts(), ports);
  const replies = await Promise.all(
    ports.map(async (port) => {
      const conn = track(t, await dialHybrid(path, port, { timeoutMs: 5000 }));
      return (await collect(conn)).toString();
    }),
  );
  t.same(replies, ports.map((p) => `port ${p}`));
});

t.test('HybridVsockServer: a dial may start before the port listens', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path);
  setTimeout(() => {
    server.listen(11500).on('connection', (conn: Duplex) => {
      track(t, conn);
      conn.end('ready');
    });
  }, 250);
  const conn = track(t, await dialHybrid(path, 11500, { timeoutMs: 3000 }));
  t.equal((await collect(conn)).toString(), 'ready');
});

t.test('HybridVsockServer: close() removes the socket file and closes the ports', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await HybridVsockServer.listen(path);
  const listener = server.listen(5);
  t.throws(() => server.listen(5), AlreadyExistsError);
  t.throws(() => server.listen(0), /out of range/);
  const listenerClosed = once(listener, 'close');
  const serverClosed = once(server, 'close');
  server.close();
  server.close();
  await Promise.all([listenerClosed, serverClosed]);
  t.ok(listener.closed);
  t.notOk(existsSync(path), 'socket file removed');
  t.throws(() => server.listen(6), /server closed/);
  await rejectsAfter(t, dialHybrid(path, 5, { timeoutMs: 200 }), UnavailableError, 150);
});

t.test('HybridVsockServer: closing a port stops its acks, other ports keep working', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path);
  const gone = server.listen(1);
  server.listen(2).on('connection', (conn: Duplex) => track(t, conn).end('two'));
  gone.close();
  t.same(server.listeningPorts(), [2]);
  await rejectsAfter(t, dialHybrid(path, 1, { timeoutMs: 200 }), UnavailableError, 150);
  t.equal((await collect(track(t, await dialHybrid(path, 2, { timeoutMs: 1000 })))).toString(), 'two');
  const again = server.listen(1);
  t.equal(again.port, 1, 'a closed port can be listened on again');
});

t.test('HybridVsockServer: stale socket file replaced; live socket or plain file refused', async (t) => {
  const dir = scratchDir(t);
  const stale = join(dir, 'stale.vsock');
  await makeStaleSocket(stale);
  const server = await hybridServer(t, stale);
  server.listen(3).on('connection', (conn: Duplex) => track(t, conn).end('fresh'));
  t.equal((await collect(track(t, await dialHybrid(stale, 3, { timeoutMs: 1000 })))).toString(), 'fresh');

  await t.rejects(HybridVsockServer.listen(stale), AlreadyExistsError, 'a live server keeps its path');
  t.ok(lstatSync(stale).isSocket(), 'and its socket file');
  t.equal((await collect(track(t, await dialHybrid(stale, 3, { timeoutMs: 1000 })))).toString(), 'fresh', 'still serving');

  const plain = join(dir, 'plain');
  writeFileSync(plain, 'data');
  await t.rejects(HybridVsockServer.listen(plain), AlreadyExistsError);
  t.ok(lstatSync(plain).isFile(), 'a plain file is never removed');
});

t.test('HybridVsockServer: survives garbage clients and keeps serving', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const server = await hybridServer(t, path, 300);
  server.listen(10789).on('connection', (conn: Duplex) => {
    track(t, conn);
    conn.pipe(conn);
  });
  const drops: string[] = [];
  server.on('drop', (reason) => drops.push(reason));

  const misbehave = async (write: (s: Socket) => void): Promise<void> => {
    const raw = track(t, connect(path));
    raw.on('error', () => {});
    raw.resume();
    write(raw);
    await once(raw, 'close');
  };
  await Promise.all([
    misbehave((s) => s.write(randomBytes(4096))),
    misbehave((s) => s.write('A'.repeat(100))),
    misbehave((s) => s.write('CONNECT 10789 please\n')),
    misbehave((s) => s.write('CONNECT 99999999999\n')),
    misbehave(() => {}), // says nothing: handshake timeout
    misbehave((s) => s.end('CONN')), // half a line, then EOF
    misbehave((s) => s.write('CONNECT 10')), // half a line, then silence
  ]);
  t.equal(drops.length, 7, 'every misbehaving client was dropped');
  t.match(drops.join('\n'), /longer than 64 bytes/);
  t.match(drops.join('\n'), /no CONNECT line within 300 ms/);
  t.match(drops.join('\n'), /closed before its CONNECT line \(received "CONN"\)/);
  t.match(drops.join('\n'), /bad CONNECT line "CONNECT 10789 please\\n"/);

  const conn = track(t, await dialHybrid(path, 10789, { timeoutMs: 1000 }));
  conn.write('still alive');
  t.equal((await collect(conn, 11)).toString(), 'still alive');
});
