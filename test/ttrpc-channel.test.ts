import t from 'tap';
import {
  encodeFrame,
  FrameDecoder,
  FrameType,
  MESSAGE_HEADER_LENGTH,
  MESSAGE_LENGTH_MAX,
  type Frame,
} from '../src/ttrpc/channel.js';
import { ProtocolError } from '../src/ttrpc/errors.js';

function header(length: number, streamId: number, type: number, flags = 0): Buffer {
  const h = Buffer.alloc(MESSAGE_HEADER_LENGTH);
  h.writeUInt32BE(length, 0);
  h.writeUInt32BE(streamId, 4);
  h[8] = type;
  h[9] = flags;
  return h;
}

function summary(frames: Frame[]): unknown[] {
  return frames.map((f) =>
    f.oversized !== undefined
      ? { streamId: f.streamId, type: f.type, oversized: f.oversized }
      : { streamId: f.streamId, type: f.type, flags: f.flags, data: f.data.toString('latin1') },
  );
}

t.test('encodeFrame lays out the 10-byte header', async (t) => {
  const frame = encodeFrame(0x01020304, FrameType.Response, Buffer.from('abc'), 5);
  t.same([...frame], [0, 0, 0, 3, 1, 2, 3, 4, 2, 5, 0x61, 0x62, 0x63]);
  t.equal(MESSAGE_LENGTH_MAX, 4 * 1024 * 1024);
});

t.test('a frame pushed one byte at a time', async (t) => {
  const decoder = new FrameDecoder();
  const bytes = encodeFrame(7, FrameType.Request, Buffer.from('hello'));
  const frames: Frame[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const out = decoder.push(bytes.subarray(i, i + 1));
    if (i < bytes.length - 1) t.equal(out.length, 0, `no frame after byte ${i}`);
    frames.push(...out);
    t.equal(decoder.midFrame, i < bytes.length - 1);
  }
  t.same(summary(frames), [{ streamId: 7, type: FrameType.Request, flags: 0, data: 'hello' }]);
});

t.test('header split across pushes at every position', async (t) => {
  const bytes = Buffer.concat([encodeFrame(1, FrameType.Request, Buffer.from('one')), encodeFrame(3, FrameType.Request, Buffer.from('two'))]);
  for (let cut = 1; cut < bytes.length; cut++) {
    const decoder = new FrameDecoder();
    const frames = [...decoder.push(bytes.subarray(0, cut)), ...decoder.push(bytes.subarray(cut))];
    t.same(
      frames.map((f) => f.data?.toString()),
      ['one', 'two'],
      `cut at ${cut}`,
    );
  }
});

t.test('many frames in one chunk', async (t) => {
  const decoder = new FrameDecoder();
  const parts: Buffer[] = [];
  for (let i = 0; i < 50; i++) parts.push(encodeFrame(2 * i + 1, FrameType.Response, Buffer.from(`m${i}`), i % 4));
  const frames = decoder.push(Buffer.concat(parts));
  t.equal(frames.length, 50);
  t.same(frames[49], { streamId: 99, type: FrameType.Response, flags: 1, data: Buffer.from('m49') });
  t.notOk(decoder.midFrame);
});

t.test('zero-length frames', async (t) => {
  const decoder = new FrameDecoder();
  const frames = decoder.push(Buffer.concat([header(0, 1, FrameType.Response), header(0, 3, FrameType.Data, 4)]));
  t.same(summary(frames), [
    { streamId: 1, type: FrameType.Response, flags: 0, data: '' },
    { streamId: 3, type: FrameType.Data, flags: 4, data: '' },
  ]);
});

t.test('oversized frame is skipped across chunks, then a valid frame follows', async (t) => {
  const decoder = new FrameDecoder();
  const length = MESSAGE_LENGTH_MAX + 1000;
  t.same(decoder.push(header(length, 5, FrameType.Request)), []);
  // Stream the oversized data in 64 KiB chunks; nothing is emitted until the last byte.
  const chunk = Buffer.alloc(64 * 1024, 0xaa);
  let left = length;
  let events = 0;
  while (left > chunk.length) {
    events += decoder.push(chunk).length;
    left -= chunk.length;
  }
  t.equal(events, 0, 'no event while skipping');
  t.ok(decoder.midFrame);
  const tail = Buffer.concat([chunk.subarray(0, left), encodeFrame(7, FrameType.Request, Buffer.from('ok'))]);
  const frames = decoder.push(tail);
  t.same(summary(frames), [
    { streamId: 5, type: FrameType.Request, oversized: length },
    { streamId: 7, type: FrameType.Request, flags: 0, data: 'ok' },
  ]);
});

t.test('a frame of exactly the maximum size is delivered', async (t) => {
  const decoder = new FrameDecoder();
  const data = Buffer.alloc(MESSAGE_LENGTH_MAX, 1);
  const bytes = encodeFrame(9, FrameType.Response, data);
  const frames = [...decoder.push(bytes.subarray(0, 1000)), ...decoder.push(bytes.subarray(1000))];
  t.equal(frames.length, 1);
  t.equal(frames[0]!.data?.length, MESSAGE_LENGTH_MAX);
});

t.test('data delivered without copying when a frame sits whole in one chunk', async (t) => {
  const decoder = new FrameDecoder();
  const bytes = encodeFrame(1, FrameType.Request, Buffer.from('view'));
  const [frame] = decoder.push(bytes);
  t.equal(frame!.data!.buffer, bytes.buffer);
});

t.test('an unknown frame type is a protocol error, and stays one', async (t) => {
  const decoder = new FrameDecoder();
  t.throws(() => decoder.push(Buffer.from('GET / HTTP/1.1\r\n\r\n')), ProtocolError);
  t.throws(() => decoder.push(encodeFrame(1, FrameType.Request, Buffer.from('late'))), ProtocolError);
});

t.test('plain Uint8Array chunks are accepted', async (t) => {
  const decoder = new FrameDecoder();
  const bytes = new Uint8Array(encodeFrame(3, FrameType.Request, Buffer.from('u8')));
  t.same(summary(decoder.push(bytes)), [{ streamId: 3, type: FrameType.Request, flags: 0, data: 'u8' }]);
});

t.test('random frames split at random points decode the same (bounded fuzz)', async (t) => {
  // A fixed-seed generator keeps failures reproducible.
  let seed = 0x5eed;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 50; round++) {
    const sent: Array<{ streamId: number; data: string }> = [];
    const parts: Buffer[] = [];
    for (let i = 0; i < 1 + rand(20); i++) {
      const data = 'd'.repeat(rand(300));
      const streamId = rand(1 << 30);
      sent.push({ streamId, data });
      parts.push(encodeFrame(streamId, FrameType.Request, Buffer.from(data)));
    }
    const bytes = Buffer.concat(parts);
    const decoder = new FrameDecoder();
    const got: Frame[] = [];
    for (let at = 0; at < bytes.length; ) {
      const n = 1 + rand(64);
      got.push(...decoder.push(bytes.subarray(at, at + n)));
      at += n;
    }
    t.same(
      got.map((f) => ({ streamId: f.streamId, data: f.data?.toString() })),
      sent,
      `round ${round}`,
    );
  }
});
