import t from 'tap';

import {
  AckParser,
  ConnectParser,
  formatAckLine,
  formatConnectLine,
  HandshakeLineParser,
  MAX_HANDSHAKE_LINE_BYTES,
} from '../src/vsock/hybrid-handshake.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

t.test('format: the exact bytes Firecracker reads and writes', async (t) => {
  t.same(formatConnectLine(10789), bytes('CONNECT 10789\n'));
  t.same(formatAckLine(1073741824), bytes('OK 1073741824\n'));
});

t.test('ack in one chunk', async (t) => {
  const state = new AckParser().push(bytes('OK 1073741824\n'));
  t.match(state, { done: true, ok: true, hostPort: 1073741824 });
  t.equal(state.rest.length, 0);
});

t.test('ack split byte by byte', async (t) => {
  const parser = new AckParser();
  const line = bytes('OK 1073741999\n');
  for (let i = 0; i < line.length - 1; i++) {
    const state = parser.push(line.subarray(i, i + 1));
    t.notOk(state.done, `not done after byte ${i}`);
    t.equal(state.rest.length, 0);
  }
  t.match(parser.push(line.subarray(line.length - 1)), { done: true, ok: true, hostPort: 1073741999 });
});

t.test('ack split at every position into two reads', async (t) => {
  const line = bytes('OK 42\n');
  for (let cut = 0; cut <= line.length; cut++) {
    const parser = new AckParser();
    const first = parser.push(line.subarray(0, cut));
    const state = first.done ? first : parser.push(line.subarray(cut));
    t.match(state, { done: true, ok: true, hostPort: 42 }, `cut at ${cut}`);
  }
});

t.test('bytes after the newline in the same chunk are handed back', async (t) => {
  const parser = new AckParser();
  t.notOk(parser.push(bytes('OK ')).done);
  const state = parser.push(bytes('7\n\x00\x01payload\nmore'));
  t.match(state, { done: true, ok: true, hostPort: 7 });
  t.same(state.rest, bytes('\x00\x01payload\nmore'));
});

t.test('empty pushes change nothing', async (t) => {
  const parser = new AckParser();
  t.notOk(parser.push(Buffer.alloc(0)).done);
  parser.push(bytes('OK 1'));
  t.notOk(parser.push(Buffer.alloc(0)).done);
  t.match(parser.push(bytes('\n')), { done: true, ok: true, hostPort: 1 });
});

t.test('garbage reply is refused and quoted', async (t) => {
  const state = new AckParser().push(bytes('HTTP/1.1 400 Bad Request\r\nrest'));
  t.match(state, { done: true, ok: false, reason: /not an "OK <port>" ack/, received: '"HTTP/1.1 400 Bad Request\\r\\n"' });
  t.same(state.rest, bytes('rest'));
});

t.test('"OK" without a port is refused', async (t) => {
  t.match(new AckParser().push(bytes('OK\n')), { done: true, ok: false, reason: 'OK without a host port', received: '"OK\\n"' });
  t.match(new AckParser().push(bytes('OK \n')), { done: true, ok: false, reason: 'OK without a host port' });
  t.match(new AckParser().push(bytes('OK x\n')), { done: true, ok: false });
  t.match(new AckParser().push(bytes('OK 12 \n')), { done: true, ok: false }, 'trailing space');
  t.match(new AckParser().push(bytes('ok 12\n')), { done: true, ok: false }, 'case matters');
  t.match(new AckParser().push(bytes('OK 99999999999\n')), { done: true, ok: false });
  t.match(new AckParser().push(bytes('OK 4294967296\n')), { done: true, ok: false, reason: /32 bits/ });
  t.match(new AckParser().push(bytes('OK 4294967295\n')), { done: true, ok: true, hostPort: 4294967295 });
});

t.test('overlong line without a newline is refused at the limit', async (t) => {
  const parser = new AckParser();
  let state = parser.push(bytes('O'.repeat(MAX_HANDSHAKE_LINE_BYTES - 1)));
  t.notOk(state.done, 'one byte short of the limit is still pending');
  state = parser.push(bytes('OO\nOK 1\n'));
  t.match(state, { done: true, ok: false, reason: /longer than 64 bytes/ });
  if (state.done && !state.ok) t.equal(JSON.parse(state.received).length, MAX_HANDSHAKE_LINE_BYTES, 'quotes only what the limit kept');

  const byByte = new AckParser();
  let last = byByte.push(bytes('x'));
  for (let i = 1; i < 1000 && !last.done; i++) last = byByte.push(bytes('x'));
  t.match(last, { done: true, ok: false }, 'byte-by-byte garbage ends at the limit');
});

t.test('a line of exactly the limit, newline included, is accepted', async (t) => {
  const parser = new HandshakeLineParser((line) => ({ value: line }), 8);
  t.match(parser.push(bytes('1234567\nX')), { done: true, ok: true, value: '1234567' });
  const tooLong = new HandshakeLineParser((line) => ({ value: line }), 8);
  t.match(tooLong.push(bytes('12345678\n')), { done: true, ok: false });
});

t.test('pushing after completion throws', async (t) => {
  const parser = new AckParser();
  parser.push(bytes('OK 1\n'));
  t.throws(() => parser.push(bytes('x')), /already complete/);
});

t.test('received reports partial input', async (t) => {
  const parser = new AckParser();
  parser.push(bytes('OK'));
  t.equal(parser.received, '"OK"');
});

t.test('CONNECT lines', async (t) => {
  t.match(new ConnectParser().push(bytes('CONNECT 10789\n')), { done: true, ok: true, port: 10789 });
  const split = new ConnectParser();
  t.notOk(split.push(bytes('CONN')).done);
  const state = split.push(bytes('ECT 5\nhello'));
  t.match(state, { done: true, ok: true, port: 5 });
  t.same(state.rest, bytes('hello'));
  t.match(new ConnectParser().push(bytes('CONNECT 0\n')), { done: true, ok: false, reason: /out of range/ });
  t.match(new ConnectParser().push(bytes('CONNECT 4294967295\n')), { done: true, ok: false, reason: /out of range/ });
  t.match(new ConnectParser().push(bytes('CONNECT 4294967294\n')), { done: true, ok: true, port: 4294967294 });
  t.match(new ConnectParser().push(bytes('connect 1\n')), { done: true, ok: false });
  t.match(new ConnectParser().push(bytes('CONNECT\n')), { done: true, ok: false });
  t.match(new ConnectParser().push(bytes('CONNECT 1 \n')), { done: true, ok: false });
});
