import t from 'tap';
import { containerd } from '../src/generated/index.js';
import { encodeFrame, FrameType } from '../src/ttrpc/channel.js';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from '../src/ttrpc/codec.js';
import { Code } from '../src/ttrpc/codes.js';
import { NAMESPACE_KEY } from '../src/ttrpc/metadata.js';

// The bytes Go ttrpc puts on the wire for Connect{id:"c1"} in namespace "default"
// (shim-v2-contract.md section 1).
const CONNECT_FRAME =
  '0000004f00000001' + '0100' +
  '0a17' + Buffer.from('containerd.task.v2.Task').toString('hex') +
  '1207' + Buffer.from('Connect').toString('hex') +
  '1a040a026331' +
  '2a250a1a' + Buffer.from(NAMESPACE_KEY).toString('hex') + '1207' + Buffer.from('default').toString('hex');

t.test('a request encodes byte for byte like Go ttrpc', async (t) => {
  const payload = containerd.task.v2.ConnectRequest.encode({ id: 'c1' }).finish();
  const body = encodeRequest({
    service: 'containerd.task.v2.Task',
    method: 'Connect',
    payload,
    timeoutNano: 0,
    metadata: [{ key: NAMESPACE_KEY, value: 'default' }],
  });
  t.equal(encodeFrame(1, FrameType.Request, body).toString('hex'), CONNECT_FRAME);
  const back = decodeRequest(body);
  t.same({ ...back, payload: [...back.payload] }, {
    service: 'containerd.task.v2.Task',
    method: 'Connect',
    payload: [...payload],
    timeoutNano: 0,
    metadata: [{ key: NAMESPACE_KEY, value: 'default' }],
  });
});

t.test('timeout_nano survives the round trip', async (t) => {
  const body = encodeRequest({ service: 's', method: 'm', payload: new Uint8Array(0), timeoutNano: 3e9, metadata: [] });
  t.equal(decodeRequest(body).timeoutNano, 3e9);
});

t.test('responses: error carries only status, success omits it', async (t) => {
  const err = encodeResponse({ status: { code: Code.NotFound, message: 'container not created: not found' }, payload: new Uint8Array(0) });
  t.equal(Buffer.from(err).toString('hex'), '0a2408051220' + Buffer.from('container not created: not found').toString('hex'));
  const ok = encodeResponse({ payload: Buffer.from([0x08, 0xd2, 0x09, 0x10, 0xae, 0x2c]) });
  t.equal(Buffer.from(ok).toString('hex'), '120608d20910ae2c');
  t.same(decodeResponse(ok).status, undefined);
  t.same(decodeResponse(err).status, { code: Code.NotFound, message: 'container not created: not found' });
  t.equal(encodeResponse({ payload: new Uint8Array(0) }).length, 0, 'an empty success is zero bytes');
});

t.test('undecodable envelopes throw', async (t) => {
  t.throws(() => decodeRequest(Buffer.from([0x0a, 0x10, 0x61])));
  t.throws(() => decodeResponse(Buffer.from([0x0a, 0x05])));
});
