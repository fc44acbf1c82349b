import { readdirSync } from 'node:fs';
import { PassThrough, Duplex } from 'node:stream';
import t from 'tap';
import { encodeFrame, FrameType, MESSAGE_LENGTH_MAX } from '../src/ttrpc/channel.js';
import { Code } from '../src/ttrpc/codes.js';
import { ClosedError, RpcError } from '../src/ttrpc/errors.js';
import { Metadata, NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import { Server } from '../src/ttrpc/server.js';
import { requireSameUser, requireUidGid, socketFd } from '../src/ttrpc/unix-creds.js';
import { google, ttrpc } from '../src/generated/index.js';
import { Client } from '../src/ttrpc/client.js';
import { connectClient, delay, RawPeer, startServer, Tester, TesterDescriptor, TEST_SERVICE, until } from './ttrpc-fixture.js';

const { Echo, Fail, Block, Sleep, Metadata: MetadataMethod, Big } = TesterDescriptor.methods;

function kvPayload(key: string, value: string): Uint8Array {
  return ttrpc.KeyValue.encode({ key, value }).finish();
}

t.test('round trip', async (t) => {
  const { path } = await startServer(t);
  const client = await connectClient(t, path);
  const res = await client.call(TEST_SERVICE, Echo, { key: 'k', value: 'v' });
  t.same({ key: res.key, value: res.value }, { key: 'k', value: 'v' });
});

t.test('100 concurrent calls; a blocked one holds up nothing', async (t) => {
  const { path, tester } = await startServer(t);
  const client = await connectClient(t, path);
  const blocked = client.call(TEST_SERVICE, Block, { key: 'gate' });
  await until(() => tester.waiting('gate'));
  const calls = Array.from({ length: 99 }, (_, i) => client.call(TEST_SERVICE, Echo, { key: `k${i}`, value: String(i) }));
  const results = await Promise.all(calls);
  t.same(
    results.map((r) => r.value),
    Array.from({ length: 99 }, (_, i) => String(i)),
  );
  t.equal(client.pendingCalls, 1, 'only the blocked call is still pending');
  tester.release('gate');
  t.equal((await blocked).value, 'released');
});

t.test('unknown service and method are Unimplemented', async (t) => {
  const { path } = await startServer(t);
  const client = await connectClient(t, path);
  await t.rejects(client.call('flint.test.v1.Nope', Echo, {}), { name: 'RpcError', code: Code.Unimplemented, message: 'service flint.test.v1.Nope' });
  await t.rejects(client.call(TEST_SERVICE, { ...Echo, name: 'Nope' }, {}), { code: Code.Unimplemented, message: 'method Nope' });
});

t.test('a handler throwing {code: 5} is NotFound at the client', async (t) => {
  const { path } = await startServer(t);
  const client = await connectClient(t, path);
  const err = await client.call(TEST_SERVICE, Fail, { key: 'container not created: not found', value: '5' }).catch((e: unknown) => e);
  t.type(err, RpcError);
  t.match(err, { code: Code.NotFound, message: 'container not created: not found' });
  t.match((err as Error).stack, /ttrpc-server\.test/, 'stack points at the caller');
  // Errors without a code are Unknown; errno-style ones map like Go's convertCode.
  await t.rejects(client.call(TEST_SERVICE, Fail, { key: 'plain', value: 'x' }), { code: Code.Unknown, message: 'plain' });
});

t.test('wire-level answers', async (t) => {
  const { path } = await startServer(t);
  const peer = await RawPeer.connect(t, path);

  t.test('even stream id is InvalidArgument on that stream', async (t) => {
    peer.sendRequest(2, { service: TEST_SERVICE, method: 'Echo' });
    const { streamId, response } = await peer.nextResponse();
    t.equal(streamId, 2);
    t.same(response.status, { code: Code.InvalidArgument, message: 'StreamID must be odd for client initiated streams' });
  });

  t.test('an undecodable Request is InvalidArgument', async (t) => {
    peer.write(encodeFrame(5, FrameType.Request, Buffer.from([0x0a, 0x10, 0x61])));
    const { streamId, response } = await peer.nextResponse();
    t.equal(streamId, 5);
    t.equal(response.status?.code, Code.InvalidArgument);
    t.match(response.status?.message, /^unmarshal request error: /);
  });

  t.test('an undecodable payload is Internal', async (t) => {
    peer.sendRequest(7, { service: TEST_SERVICE, method: 'Echo', payload: Buffer.from([0x0a, 0x10, 0x61]) });
    const { streamId, response } = await peer.nextResponse();
    t.equal(streamId, 7);
    t.equal(response.status?.code, Code.Internal);
    t.match(response.status?.message, /^ttrpc: error unmarshalling payload: /);
  });

  t.test('non-Request frames are ignored', async (t) => {
    peer.write(encodeFrame(9, FrameType.Response, Buffer.from('ignored')));
    peer.write(encodeFrame(11, FrameType.Data, Buffer.alloc(0)));
    peer.sendRequest(13, { service: TEST_SERVICE, method: 'Echo', payload: kvPayload('a', 'b') });
    const { streamId, response } = await peer.nextResponse();
    t.equal(streamId, 13, 'the next response answers the next request');
    t.equal(response.status, undefined, 'success carries no status');
    const kv = ttrpc.KeyValue.decode(response.payload);
    t.same({ key: kv.key, value: kv.value }, { key: 'a', value: 'b' });
  });

  t.test('an oversized frame is ResourceExhausted and the connection goes on', async (t) => {
    const length = MESSAGE_LENGTH_MAX + 1;
    const frame = Buffer.alloc(10 + length);
    frame.writeUInt32BE(length, 0);
    frame.writeUInt32BE(15, 4);
    frame[8] = FrameType.Request;
    peer.write(frame);
    const { streamId, response } = await peer.nextResponse();
    t.equal(streamId, 15);
    t.same(response.status, {
      code: Code.ResourceExhausted,
      message: `message length ${length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
    });
    peer.sendRequest(17, { service: TEST_SERVICE, method: 'Echo', payload: kvPayload('still', 'here') });
    const next = await peer.nextResponse();
    t.equal(next.streamId, 17);
    t.equal(ttrpc.KeyValue.decode(next.response.payload).value, 'here');
  });

  t.test('responses come back in completion order, not request order', async (t) => {
    peer.sendRequest(19, { service: TEST_SERVICE, method: 'Sleep', timeoutNano: 200e6 });
    peer.sendRequest(21, { service: TEST_SERVICE, method: 'Echo' });
    t.equal((await peer.nextResponse()).streamId, 21);
    t.equal((await peer.nextResponse()).streamId, 19);
  });
});

t.test('timeout_nano aborts the handler signal; the client sees DeadlineExceeded', async (t) => {
  const { path, tester } = await startServer(t);
  const client = await connectClient(t, path);
  const before = Date.now();
  await t.rejects(client.call(TEST_SERVICE, Sleep, {}, { timeoutMs: 100 }), {
    code: Code.DeadlineExceeded,
    message: 'context deadline exceeded',
  });
  t.ok(Date.now() - before >= 90, 'not before the deadline');
  await until(() => tester.aborts.length === 1);
  t.match(tester.aborts[0], { code: Code.DeadlineExceeded });

  // Seen from the wire: the handler's deadline and its answer after expiry.
  const peer = await RawPeer.connect(t, path);
  const sent = Date.now();
  peer.sendRequest(1, { service: TEST_SERVICE, method: 'Sleep', timeoutNano: 150e6 });
  const { response } = await peer.nextResponse();
  const seconds = Number(google.protobuf.Timestamp.decode(response.payload).seconds);
  t.ok(Math.abs(seconds * 1000 - (sent + 150)) < 2000, 'ctx.deadline is now + timeout');
});

t.test('a negative timeout_nano means the deadline already passed', async (t) => {
  const { path, tester } = await startServer(t);
  const peer = await RawPeer.connect(t, path);
  peer.sendRequest(1, { service: TEST_SERVICE, method: 'Sleep', timeoutNano: -1 });
  const { response } = await peer.nextResponse();
  t.equal(response.status, undefined);
  t.match(tester.aborts[0], { code: Code.DeadlineExceeded });
});

t.test('metadata reaches the handler, namespace included', async (t) => {
  const { path } = await startServer(t);
  const client = await connectClient(t, path, { metadata: new Metadata({ [NAMESPACE_KEY]: 'default' }) });
  const res = await client.call(TEST_SERVICE, MetadataMethod, {}, { metadata: new Metadata([['X-Trace', 'a'], ['x-trace', 'b']]) });
  t.equal(res.key, `${TEST_SERVICE}/Metadata`);
  t.same(JSON.parse(res.value!), { [NAMESPACE_KEY]: ['default'], 'x-trace': ['a', 'b'] });
});

t.test('garbage bytes drop that connection only', async (t) => {
  const errors: Error[] = [];
  const { path, server } = await startServer(t, { onError: (err) => errors.push(err) });
  const good = await connectClient(t, path);
  const pending = good.call(TEST_SERVICE, Block, { key: 'x' });
  const peer = await RawPeer.connect(t, path);
  peer.write(Buffer.from('GET / HTTP/1.1\r\nHost: flint\r\n\r\n'));
  await peer.closed;
  t.equal(await peer.next(), undefined, 'no answer, just a closed connection');
  t.match(errors, [{ name: 'ProtocolError' }]);
  t.equal((await good.call(TEST_SERVICE, Echo, { value: 'alive' })).value, 'alive');
  t.equal(server.stats().connections, 1);
  good.close();
  await t.rejects(pending, ClosedError);
});

t.test('random bytes never take the server down (bounded fuzz)', async (t) => {
  const { path, server } = await startServer(t, { onError: () => {} });
  let seed = 0xf1a7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 40; i++) {
    const peer = await RawPeer.connect(t, path);
    const body = Buffer.from(Array.from({ length: rand(200) }, () => rand(256)));
    // Half the time behind a plausible header, so the bytes reach the Request decoder.
    const bytes = i % 2 === 0 ? encodeFrame(1 + 2 * rand(1000), FrameType.Request, body) : body;
    peer.write(bytes);
    if (i % 2 === 0) await peer.next();
    peer.socket.destroy();
    await peer.closed;
  }
  const client = await connectClient(t, path);
  t.equal((await client.call(TEST_SERVICE, Echo, { value: 'still up' })).value, 'still up');
  await until(() => server.stats().connections === 1);
  t.pass('fuzzed connections are all gone');
});

t.test('responses are written whole under backpressure', async (t) => {
  const { path } = await startServer(t);
  const client = await connectClient(t, path);
  const size = 1 << 20;
  const results = await Promise.all(Array.from({ length: 24 }, (_, i) => client.call(TEST_SERVICE, Big, { key: String(i), value: String(size) })));
  t.same(
    results.map((r) => [r.key, r.value!.length]),
    Array.from({ length: 24 }, (_, i) => [String(i), size]),
  );
  t.ok(results.every((r) => /^x+$/.test(r.value!)), 'no interleaved bytes');
});

t.test('a response over 4 MiB becomes ResourceExhausted', async (t) => {
  const { path } = await startServer(t);
  const client = await connectClient(t, path);
  await t.rejects(client.call(TEST_SERVICE, Big, { value: String(MESSAGE_LENGTH_MAX) }), { code: Code.ResourceExhausted });
  t.equal((await client.call(TEST_SERVICE, Echo, { value: 'ok' })).value, 'ok');
});

t.test('graceful close lets in-flight calls finish', async (t) => {
  const { path, server, tester } = await startServer(t);
  const busy = await connectClient(t, path);
  const idle = await connectClient(t, path);
  await idle.call(TEST_SERVICE, Echo, {});
  const blocked = busy.call(TEST_SERVICE, Block, { key: 'g' });
  await until(() => tester.waiting('g'));

  let closed = false;
  const closing = server.close().then(() => (closed = true));
  await idle.closed;
  t.pass('the idle connection is closed at once');
  await delay(50);
  t.notOk(closed, 'close() waits for the call in flight');
  t.notOk(busy.isClosed);
  await t.rejects(Client.connect(path), { code: /^(ECONNREFUSED|ENOENT)$/ }, 'no longer accepting');

  tester.release('g');
  t.equal((await blocked).value, 'released', 'the in-flight call gets its response');
  await closing;
  t.ok(closed);
  await busy.closed;
  t.same(tester.aborts, [], 'no handler was aborted');
});

t.test('destroy drops connections and aborts handlers', async (t) => {
  const { path, server, tester } = await startServer(t);
  const client = await connectClient(t, path);
  const blocked = client.call(TEST_SERVICE, Block, { key: 'd' });
  await until(() => tester.waiting('d'));
  server.destroy();
  await t.rejects(blocked, ClosedError);
  await until(() => tester.aborts.length === 1);
  t.type(tester.aborts[0], ClosedError);
  t.equal(server.stats().connections, 0);
  await server.close();
  t.pass('close() after destroy() resolves');
});

t.test('handshake can refuse a connection before reading it', async (t) => {
  const errors: Error[] = [];
  const { path } = await startServer(t, {
    handshake: requireUidGid(() => ({ uid: 4242, gid: 4242 }), process.getuid!(), -1),
    onError: (err) => errors.push(err),
  });
  const client = await connectClient(t, path);
  await t.rejects(client.call(TEST_SERVICE, Echo, {}), ClosedError);
  t.match(errors, [{ message: 'ttrpc: refusing connection after handshake', cause: { code: Code.PermissionDenied } }]);

  const { path: okPath } = await startServer(t, { handshake: requireUidGid(() => ({ uid: 1, gid: 2 }), 1, 2) });
  const ok = await connectClient(t, okPath);
  t.equal((await ok.call(TEST_SERVICE, Echo, { value: 'in' })).value, 'in');
});

// Loaded at run time so the ttrpc tests build and run without the native addon.
type PeerCredModule = { peerCred(fd: number): { pid: number; uid: number; gid: number } };
const peerCredModule = (await import(new URL('../src/native/peercred.js', import.meta.url).href).catch(() => undefined)) as
  | PeerCredModule
  | undefined;

t.test('requireSameUser with the real SO_PEERCRED addon', { skip: peerCredModule ? false : 'native addon not built' }, async (t) => {
  const { peerCred } = peerCredModule!;
  const seen: number[] = [];
  const { path } = await startServer(t, {
    handshake: (stream) => {
      const fd = socketFd(stream);
      if (fd !== undefined) seen.push(peerCred(fd).pid);
      return requireSameUser(peerCred)(stream);
    },
  });
  const client = await connectClient(t, path);
  t.equal((await client.call(TEST_SERVICE, Echo, { value: 'me' })).value, 'me');
  t.same(seen, [process.pid], 'the peer is this process');
});

t.test('an async handshake holds requests until it is done', async (t) => {
  let admit!: () => void;
  const { path } = await startServer(t, { handshake: () => new Promise<void>((resolve) => (admit = resolve)) });
  const client = await connectClient(t, path);
  let done = false;
  const call = client.call(TEST_SERVICE, Echo, { value: 'later' }).then((r) => ((done = true), r));
  await delay(30);
  t.notOk(done);
  admit();
  t.equal((await call).value, 'later');
});

t.test('handleConnection serves any Duplex', async (t) => {
  const server = new Server();
  server.register(TesterDescriptor, new Tester());
  t.teardown(() => server.destroy());
  const toServer = new PassThrough();
  const fromServer = new PassThrough();
  const serverSide = Duplex.from({ readable: toServer, writable: fromServer });
  const clientSide = Duplex.from({ readable: fromServer, writable: toServer });
  server.handleConnection(serverSide);
  const client = new Client(clientSide);
  t.teardown(() => client.close());
  t.equal((await client.call(TEST_SERVICE, Echo, { value: 'duplex' })).value, 'duplex');
});

t.test('no fds leak across many connections', async (t) => {
  const { path } = await startServer(t);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let i = 0; i < 20; i++) {
    const client = await Client.connect(path);
    await client.call(TEST_SERVICE, Echo, {});
    await client.close();
  }
  await delay(50);
  t.ok(fds() <= before + 1, `fds before ${before}, after ${fds()}`);
});
