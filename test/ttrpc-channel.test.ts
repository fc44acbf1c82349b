import { createHash } from 'node:crypto';
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
import { frameHeader, fuzzSeed, SeededRandom } from './harness/raw-ttrpc.js';

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
  const frames = decoder.push(Buffer.concat([frameHeader(0, 1, FrameType.Response), frameHeader(0, 3, FrameType.Data, 4)]));
  t.same(summary(frames), [
    { streamId: 1, type: FrameType.Response, flags: 0, data: '' },
    { streamId: 3, type: FrameType.Data, flags: 4, data: '' },
  ]);
});

t.test('oversized frame is skipped across chunks, then a valid frame follows', async (t) => {
  const decoder = new FrameDecoder();
  const length = MESSAGE_LENGTH_MAX + 1000;
  t.same(decoder.push(frameHeader(length, 5, FrameType.Request)), []);
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

t.test('an absurd length is skipped without buffering: 4 GiB streamed through, memory flat', async (t) => {
  const decoder = new FrameDecoder();
  const length = 0xffffffff;
  t.same(decoder.push(frameHeader(length, 11, FrameType.Request)), []);
  // One 1 MiB chunk pushed again and again: if the decoder kept what it skips, 4 GiB could not fit.
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const before = process.memoryUsage().arrayBuffers;
  let left = length;
  let events = 0;
  while (left > chunk.length) {
    events += decoder.push(chunk).length;
    left -= chunk.length;
  }
  const grown = process.memoryUsage().arrayBuffers - before;
  t.equal(events, 0, 'nothing emitted while skipping');
  t.ok(grown < 8 << 20, `array buffers grew ${grown} bytes over 4 GiB of skipped data`);
  const frames = decoder.push(Buffer.concat([chunk.subarray(0, left), encodeFrame(13, FrameType.Request, Buffer.from('after'))]));
  t.same(summary(frames), [
    { streamId: 11, type: FrameType.Request, oversized: length },
    { streamId: 13, type: FrameType.Request, flags: 0, data: 'after' },
  ]);
  t.notOk(decoder.midFrame);
});

// ---- seeded fuzz: arbitrary bytes against an independent reading of the framing rules ----

/** What one frame decoded to; data by digest, so 4 MiB frames compare cheaply. */
type FrameSummary = { streamId: number; type: number; flags: number; data?: string; oversized?: number };

function frameSummary(f: Frame): FrameSummary {
  const { streamId, type, flags } = f;
  if (f.oversized !== undefined) return { streamId, type, flags, oversized: f.oversized };
  return { streamId, type, flags, data: `${f.data.length}:${createHash('sha1').update(f.data).digest('hex')}` };
}

/** The framing rules read straight off the bytes: each frame with the offset it ends at, and where a bad header ends, if any. */
interface SpecReading {
  readonly frames: ReadonlyArray<{ end: number; frame: FrameSummary }>;
  readonly failure?: { end: number; type: number; streamId: number };
  /** The bytes stop inside a header or a frame. */
  readonly partial: boolean;
}

const FRAME_TYPES = new Set<number>([FrameType.Request, FrameType.Response, FrameType.Data]);

function specReading(bytes: Buffer): SpecReading {
  const frames: Array<{ end: number; frame: FrameSummary }> = [];
  let at = 0;
  while (bytes.length - at >= MESSAGE_HEADER_LENGTH) {
    const length = bytes.readUInt32BE(at);
    const streamId = bytes.readUInt32BE(at + 4);
    const type = bytes[at + 8]!;
    const flags = bytes[at + 9]!;
    if (!FRAME_TYPES.has(type)) return { frames, failure: { end: at + MESSAGE_HEADER_LENGTH, type, streamId }, partial: false };
    const end = at + MESSAGE_HEADER_LENGTH + length;
    if (end > bytes.length) return { frames, partial: true };
    const frame = length > MESSAGE_LENGTH_MAX ? { streamId, type, flags, oversized: length } : frameSummary({ streamId, type, flags, data: bytes.subarray(end - length, end) });
    frames.push({ end, frame });
    at = end;
  }
  return { frames, partial: at < bytes.length };
}

/** A fuzz stream: pieces of well-formed and broken frames run together. */
function fuzzStream(rng: SeededRandom): { bytes: Buffer; kinds: string[] } {
  const parts: Buffer[] = [];
  const kinds: string[] = [];
  const anyStreamId = (): number => (rng.chance(0.1) ? rng.pick([0, 1, 2, 0x7fffffff, 0xfffffffe, 0xffffffff]) : rng.uint32());
  const validType = (): number => rng.range(FrameType.Request, FrameType.Data);
  const frame = (): Buffer => encodeFrame(anyStreamId(), validType(), rng.bytes(rng.chance(0.2) ? 0 : rng.range(1, 300)), rng.int(256));
  // Oversized frames carry their megabytes for real, so at most one a stream.
  let bigLeft = rng.chance(0.15) ? 1 : 0;
  for (let i = rng.range(1, 12); i > 0; i--) {
    const kind = rng.pick(['frame', 'frame', 'frame', 'frame', 'frame', 'frame', 'random', 'bad-type', 'truncated', 'length-lie', 'absurd-length', 'big']);
    switch (kind) {
      case 'frame':
        parts.push(frame());
        break;
      case 'random':
        parts.push(rng.bytes(rng.range(1, 64)));
        break;
      case 'bad-type': {
        const type = rng.chance(0.5) ? 0 : rng.range(FrameType.Data + 1, 255);
        const data = rng.bytes(rng.range(0, 40));
        parts.push(Buffer.concat([frameHeader(data.length, anyStreamId(), type, rng.int(256)), data]));
        break;
      }
      case 'truncated': {
        const whole = frame();
        parts.push(whole.subarray(0, rng.range(1, whole.length - 1)));
        break;
      }
      case 'length-lie': {
        const whole = frame();
        whole.writeUInt32BE(Math.max(0, whole.length - MESSAGE_HEADER_LENGTH + rng.range(-8, 8)), 0);
        parts.push(whole);
        break;
      }
      case 'absurd-length':
        // Never completes: whatever follows is swallowed as its data.
        parts.push(frameHeader(rng.range(MESSAGE_LENGTH_MAX + 1, 0xffffffff), anyStreamId(), validType()));
        break;
      case 'big': {
        if (bigLeft === 0) continue;
        bigLeft--;
        const length = rng.chance(0.5) ? MESSAGE_LENGTH_MAX : rng.range(MESSAGE_LENGTH_MAX + 1, MESSAGE_LENGTH_MAX + 8192);
        parts.push(frameHeader(length, anyStreamId(), validType()), Buffer.alloc(length, rng.int(256)));
        break;
      }
    }
    kinds.push(kind);
  }
  return { bytes: Buffer.concat(parts), kinds };
}

/** Cut points: one byte at a time, the whole, or random sizes from 1 byte to 1 MiB. */
function cuts(rng: SeededRandom, length: number, how: 'bytes' | 'whole' | 'random'): number[] {
  if (how === 'whole') return [0];
  if (how === 'bytes') return Array.from({ length }, (_, i) => i);
  const starts = [0];
  for (let at = 0; ; ) {
    at += rng.chance(0.7) ? rng.range(1, 32) : rng.range(1, 1 << 20);
    if (at >= length) return starts;
    starts.push(at);
  }
}

/** Feeds `bytes` in chunks starting at `starts`; stops at the first throw. */
function decodeInChunks(bytes: Buffer, starts: readonly number[]) {
  const decoder = new FrameDecoder();
  const frames: FrameSummary[] = [];
  for (let i = 0; i < starts.length; i++) {
    try {
      frames.push(...decoder.push(bytes.subarray(starts[i], starts[i + 1] ?? bytes.length)).map(frameSummary));
    } catch (error) {
      return { frames, error, failedChunk: starts[i]!, decoder };
    }
  }
  return { frames, decoder };
}

const FUZZ_STREAMS = Number(process.env.FLINT_FUZZ_CASES ?? 400);
const seed = fuzzSeed();

t.test(`frame decoder: seeded fuzz over valid and invalid byte streams, ${FUZZ_STREAMS} streams (FLINT_FUZZ_SEED=${seed})`, async (t) => {
  t.comment(`seed ${seed}: replay with FLINT_FUZZ_SEED=${seed}`);
  const rng = new SeededRandom(seed);
  const problems: string[] = [];
  const seen = { frames: 0, failures: 0, partial: 0, oversized: 0 };
  for (let n = 0; n < FUZZ_STREAMS && problems.length < 5; n++) {
    const { bytes, kinds } = fuzzStream(rng);
    const spec = specReading(bytes);
    seen.frames += spec.frames.length;
    seen.oversized += spec.frames.filter((f) => f.frame.oversized !== undefined).length;
    if (spec.failure) seen.failures++;
    else if (spec.partial) seen.partial++;
    // Byte-at-a-time only for streams without a multi-megabyte frame.
    const ways = bytes.length < 1 << 16 ? (['whole', 'bytes', 'random', 'random'] as const) : (['whole', 'random', 'random'] as const);
    for (const how of ways) {
      const starts = cuts(rng, bytes.length, how);
      const got = decodeInChunks(bytes, starts);
      const where = `stream ${n} [${kinds.join(' ')}] (${bytes.length} bytes, ${how}, ${starts.length} chunks)`;
      if (spec.failure) {
        // The chunk holding the bad header's last byte throws; frames it completed before that go down with it.
        const failedChunk = starts.filter((s) => s < spec.failure!.end).at(-1)!;
        const want = spec.frames.filter((f) => f.end <= failedChunk).map((f) => f.frame);
        const message = `ttrpc: protocol error: unknown frame type ${spec.failure.type} on stream ${spec.failure.streamId}`;
        if (!(got.error instanceof ProtocolError) || got.error.message !== message) problems.push(`${where}: want ProtocolError "${message}", got ${String(got.error)}`);
        else if (got.failedChunk !== failedChunk) problems.push(`${where}: threw on the chunk at ${got.failedChunk}, not at ${failedChunk}`);
        else if (JSON.stringify(got.frames) !== JSON.stringify(want)) problems.push(`${where}: frames before the failure differ: ${JSON.stringify(got.frames)} vs ${JSON.stringify(want)}`);
        else {
          let again: unknown;
          try {
            got.decoder.push(encodeFrame(1, FrameType.Request, Buffer.from('late')));
          } catch (err) {
            again = err;
          }
          if (again !== got.error) problems.push(`${where}: after a failure push() must throw the same error, got ${String(again)}`);
        }
      } else if (got.error !== undefined) {
        problems.push(`${where}: threw ${String(got.error)} on bytes the rules accept`);
      } else if (JSON.stringify(got.frames) !== JSON.stringify(spec.frames.map((f) => f.frame))) {
        problems.push(`${where}: frames differ: ${JSON.stringify(got.frames)} vs ${JSON.stringify(spec.frames.map((f) => f.frame))}`);
      } else if (got.decoder.midFrame !== spec.partial) {
        problems.push(`${where}: midFrame ${got.decoder.midFrame}, want ${spec.partial}`);
      }
    }
  }
  t.comment(`decoded ${seen.frames} frames (${seen.oversized} oversized); ${seen.failures} streams hit a bad frame type, ${seen.partial} ended mid-frame`);
  t.same(problems, [], `every split decodes as the framing rules say (seed ${seed})`);
  t.ok(seen.failures > 0 && seen.partial > 0 && seen.frames > FUZZ_STREAMS, 'the streams exercised failures, truncation and many frames');
});
