import t from 'tap';
import { ttrpc } from '../src/generated/index.js';
import { encodeFrame, FrameType, MESSAGE_LENGTH_MAX } from '../src/ttrpc/channel.js';
import { Client } from '../src/ttrpc/client.js';
import { Code } from '../src/ttrpc/codes.js';
import { ClosedError, ProtocolError, RpcError } from '../src/ttrpc/errors.js';
import { Metadata, NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import { connectClient, delay, rawServer, startServer, TesterDescriptor, TEST_SERVICE, until } from './ttrpc-fixture.js';

const { Echo, Block } = TesterDescriptor.methods;

function kv(key: string, value: string): Uint8Array {
  return ttrpc.KeyValue.encode({ key, value }).finish();
}

t.test('requests on the wire: odd increasing ids, envelope, metadata, timeout', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path, { metadata: new Metadata({ [NAMESPACE_KEY]: 'default', 'x-a': '1' }) });
  const peer = await raw.accept();

  const calls = [
    client.call(TEST_SERVICE, Echo, { key: 'first' }),
    client.call(TEST_SERVICE, Echo, { key: 'second' }, { timeoutMs: 1500, metadata: new Metadata({ 'X-A': '2', 'x-b': ['3', '4'] }) }),
    client.call(TEST_SERVICE, Echo, { key: 'third' }, { metadata: new Metadata({ [NAMESPACE_KEY]: 'k8s.io' }) }),
  ];
  const seen = [await peer.nextRequest(), await peer.nextRequest(), await peer.nextRequest()];
  t.same(
    seen.map((s) => s.streamId),
    [1, 3, 5],
  );
  t.same(
    seen.map((s) => [s.request.service, s.request.method, ttrpc.KeyValue.decode(s.request.payload).key]),
    [
      [TEST_SERVICE, 'Echo', 'first'],
      [TEST_SERVICE, 'Echo', 'second'],
      [TEST_SERVICE, 'Echo', 'third'],
    ],
  );
  t.equal(seen[0]!.request.timeoutNano, 0, 'no deadline, no timeout_nano');
  t.equal(seen[1]!.request.timeoutNano, 1500e6);
  t.same(seen[0]!.request.metadata, [
    { key: NAMESPACE_KEY, value: 'default' },
    { key: 'x-a', value: '1' },
  ]);
  t.same(Metadata.fromKeyValues(seen[1]!.request.metadata).toJSON(), { [NAMESPACE_KEY]: ['default'], 'x-a': ['2'], 'x-b': ['3', '4'] }, 'per-call keys replace defaults');
  t.same(Metadata.fromKeyValues(seen[2]!.request.metadata).getFirst(NAMESPACE_KEY), 'k8s.io');

  // Answer out of order; each call gets its own response.
  peer.respond(5, { payload: kv('r5', '') });
  peer.respond(1, { status: { code: Code.OK, message: '' }, payload: kv('r1', '') });
  peer.respond(3, { status: { code: Code.NotFound, message: 'gone' }, payload: new Uint8Array(0) });
  const [r1, r3, r5] = await Promise.allSettled(calls);
  t.match(r1, { status: 'fulfilled', value: { key: 'r1' } }, 'code 0 is success');
  t.match(r3, { status: 'rejected', reason: { code: Code.NotFound, message: 'gone' } });
  t.match(r5, { status: 'fulfilled', value: { key: 'r5' } }, 'missing status is success');
});

t.test('a local timeout rejects with DeadlineExceeded and drops the late response', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path);
  const peer = await raw.accept();
  const started = Date.now();
  const late = client.call(TEST_SERVICE, Echo, { key: 'slow' }, { timeoutMs: 50 });
  const { streamId } = await peer.nextRequest();
  await t.rejects(late, { name: 'RpcError', code: Code.DeadlineExceeded, message: 'context deadline exceeded' });
  t.ok(Date.now() - started >= 45);
  t.equal(client.pendingCalls, 0);
  peer.respond(streamId, { payload: kv('too late', '') });

  const next = client.call(TEST_SERVICE, Echo, { key: 'next' });
  const req = await peer.nextRequest();
  t.equal(req.streamId, streamId + 2);
  peer.respond(req.streamId, { payload: kv('next', '') });
  t.equal((await next).key, 'next', 'the connection is still usable');
});

t.test('an AbortSignal cancels a call', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path);
  const peer = await raw.accept();

  const controller = new AbortController();
  const call = client.call(TEST_SERVICE, Echo, {}, { signal: controller.signal });
  const { streamId } = await peer.nextRequest();
  controller.abort();
  await t.rejects(call, { code: Code.Canceled, message: 'context canceled' });
  peer.respond(streamId, { payload: kv('ignored', '') });

  await t.rejects(client.call(TEST_SERVICE, Echo, {}, { signal: AbortSignal.abort() }), { code: Code.Canceled }, 'already aborted');
  const timed = client.call(TEST_SERVICE, Echo, {}, { signal: AbortSignal.timeout(20) });
  await peer.nextRequest();
  await t.rejects(timed, { code: Code.DeadlineExceeded }, 'AbortSignal.timeout is a deadline');

  const next = client.call(TEST_SERVICE, Echo, { key: 'after' });
  const req = await peer.nextRequest();
  t.equal(req.streamId, streamId + 4, 'the pre-aborted call never took a stream id');
  peer.respond(req.streamId, { payload: kv('after', '') });
  t.equal((await next).key, 'after');
});

t.test('an oversized request is refused locally', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path);
  const peer = await raw.accept();
  const err = await client.call(TEST_SERVICE, Echo, { value: 'x'.repeat(MESSAGE_LENGTH_MAX) }).catch((e: unknown) => e);
  t.type(err, RpcError);
  t.match(err, { code: Code.ResourceExhausted, message: /^message length \d+ exceed maximum message size of 4194304$/ });
  const ok = client.call(TEST_SERVICE, Echo, { key: 'small' });
  const req = await peer.nextRequest();
  t.equal(req.streamId, 1, 'nothing was sent for the oversized call');
  peer.respond(1, { payload: kv('small', '') });
  t.equal((await ok).key, 'small');
});

t.test('an oversized or unexpected response fails only its call', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path);
  const peer = await raw.accept();
  const a = client.call(TEST_SERVICE, Echo, {});
  const b = client.call(TEST_SERVICE, Echo, {});
  const c = client.call(TEST_SERVICE, Echo, {});
  await peer.nextRequest();
  await peer.nextRequest();
  await peer.nextRequest();
  const length = MESSAGE_LENGTH_MAX + 10;
  const big = Buffer.alloc(10 + length);
  big.writeUInt32BE(length, 0);
  big.writeUInt32BE(1, 4);
  big[8] = FrameType.Response;
  peer.write(big);
  peer.write(encodeFrame(3, FrameType.Data, Buffer.alloc(0)));
  peer.respond(5, { payload: kv('c', '') });
  await t.rejects(a, { code: Code.ResourceExhausted, message: `message length ${length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}` });
  await t.rejects(b, { code: Code.Internal, message: /unexpected message type 3/ });
  t.equal((await c).key, 'c');
});

t.test('losing the connection fails every pending call with ClosedError', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path);
  const peer = await raw.accept();
  let closeEvents = 0;
  client.on('close', () => closeEvents++);
  const calls = Array.from({ length: 10 }, () => client.call(TEST_SERVICE, Echo, {}));
  await peer.nextRequest();
  peer.socket.destroy();
  const results = await Promise.allSettled(calls);
  t.ok(
    results.every((r) => r.status === 'rejected' && r.reason instanceof ClosedError),
    'all pending calls fail with ClosedError',
  );
  t.equal((results[0] as PromiseRejectedResult).reason.message, 'ttrpc: closed');
  await client.closed;
  t.ok(client.isClosed);
  t.equal(closeEvents, 1);
  await t.rejects(client.call(TEST_SERVICE, Echo, {}), ClosedError, 'later calls fail at once');
});

t.test('close() fails pending calls and ends the connection', async (t) => {
  const { path, tester } = await startServer(t);
  const client = await connectClient(t, path);
  const blocked = client.call(TEST_SERVICE, Block, { key: 'c' });
  await until(() => tester.waiting('c'));
  await client.close();
  await t.rejects(blocked, ClosedError);
  await until(() => tester.aborts.length === 1);
  t.type(tester.aborts[0], ClosedError, 'the server saw the connection go');
  await client.close();
  t.pass('close() is idempotent');
});

t.test('garbage from the server closes the client', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path);
  const peer = await raw.accept();
  const call = client.call(TEST_SERVICE, Echo, {});
  await peer.nextRequest();
  let closeCause: unknown;
  client.on('close', (cause: unknown) => (closeCause = cause));
  peer.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
  const err = await call.catch((e: unknown) => e);
  t.type(err, ClosedError);
  t.type((err as Error).cause, ProtocolError);
  t.type(closeCause, ProtocolError);
});

t.test('connect() accepts unix:// and reports a missing socket', async (t) => {
  const { path } = await startServer(t);
  const client = await connectClient(t, `unix://${path}`);
  t.equal((await client.call(TEST_SERVICE, Echo, { value: 'u' })).value, 'u');
  await t.rejects(Client.connect(`${path}.missing`), { code: 'ENOENT' });
});

t.test('RpcError carries the status and the caller stack', async (t) => {
  const raw = await rawServer(t);
  const client = await connectClient(t, raw.path);
  const peer = await raw.accept();
  const call = client.call(TEST_SERVICE, Echo, {});
  const { streamId } = await peer.nextRequest();
  peer.respond(streamId, { status: { code: Code.FailedPrecondition, message: 'not running' }, payload: new Uint8Array(0) });
  const err = (await call.catch((e: unknown) => e)) as RpcError;
  t.equal(err.codeName, 'FailedPrecondition');
  t.same(err.toStatus(), { code: Code.FailedPrecondition, message: 'not running' });
  t.match(err.stack, /^RpcError: not running\n/);
  t.match(err.stack, /ttrpc-client\.test/);
});

t.test('many calls from many clients against one server', async (t) => {
  const { path } = await startServer(t);
  const clients = await Promise.all(Array.from({ length: 5 }, () => connectClient(t, path)));
  const results = await Promise.all(clients.flatMap((c, ci) => Array.from({ length: 40 }, (_, i) => c.call(TEST_SERVICE, Echo, { key: `${ci}`, value: `${i}` }))));
  t.equal(results.length, 200);
  t.ok(results.every((r, n) => r.key === String(Math.floor(n / 40)) && r.value === String(n % 40)));
  await delay(1);
});
