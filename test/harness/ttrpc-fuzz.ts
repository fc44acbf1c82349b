import { FrameDecoder, FrameType, MESSAGE_HEADER_LENGTH, type Frame } from '../../src/ttrpc/channel.js';
import { decodeRequest } from '../../src/ttrpc/codec.js';
import { Code } from '../../src/ttrpc/codes.js';
import { frameHeader, rawFrame, requestFrame, type RawConnection, type RawRequest, type SeededRandom } from './raw-ttrpc.js';

/**
 * A seeded generator of bad ttrpc byte streams, and the oracle that says
 * what a correct server must do with each: answer every complete Request
 * frame on its stream, drop the connection on a frame type that is not
 * ttrpc, and otherwise wait for the rest of a frame cut short.
 *
 * The live servers under test serve real containers, and a mutation could
 * turn a harmless call into a valid Kill or Shutdown. Cases whose frames
 * decode to a registered method outside `safeMethods` are therefore thrown
 * away and generated again: the point is bad bytes, not authorised calls.
 */

/** What a correct server does with one case's bytes. */
export interface Expectation {
  /** Stream id → how many responses it must get. */
  readonly answers: ReadonlyMap<number, number>;
  /** A header with an unknown frame type: the server must hang up. */
  readonly drop: boolean;
  /** The bytes end inside a frame: the server waits for the rest. */
  readonly partial: boolean;
}

export interface FuzzCase {
  readonly kind: string;
  readonly bytes: Buffer;
  readonly expect: Expectation;
}

/** The methods a fuzz case may reach, and the seeds it mutates. */
export interface FuzzTarget {
  /** Well-formed requests to mutate (harmless ones). */
  readonly seeds: readonly RawRequest[];
  /** "service/method" pairs the server has registered. */
  readonly registered: ReadonlySet<string>;
  /** Registered "service/method" pairs that may be called with any payload. */
  readonly safeMethods: ReadonlySet<string>;
}

/** Statuses a bad frame may legitimately earn (plus OK for one that happens to be a valid harmless call). */
export const BAD_INPUT_CODES: ReadonlySet<number> = new Set([
  Code.OK,
  Code.InvalidArgument,
  Code.NotFound,
  Code.ResourceExhausted,
  Code.Unimplemented,
  Code.Internal,
]);

/**
 * Runs `bytes` through a FrameDecoder one byte at a time (so frames before a
 * bad header are seen too, whatever the socket's chunking) and derives what
 * the server must do. `unsafe` is set when a frame would reach a registered
 * method outside the safe set.
 */
export function analyze(bytes: Buffer, target: FuzzTarget): { expect: Expectation; unsafe: boolean } {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let drop = false;
  for (let i = 0; i < bytes.length && !drop; i++) {
    try {
      frames.push(...decoder.push(bytes.subarray(i, i + 1)));
    } catch {
      drop = true;
    }
  }
  const answers = new Map<number, number>();
  let unsafe = false;
  for (const frame of frames) {
    if (frame.oversized !== undefined) {
      answers.set(frame.streamId, (answers.get(frame.streamId) ?? 0) + 1);
      continue;
    }
    if (frame.type !== FrameType.Request) continue;
    answers.set(frame.streamId, (answers.get(frame.streamId) ?? 0) + 1);
    try {
      const request = decodeRequest(frame.data);
      const name = `${request.service}/${request.method}`;
      if (target.registered.has(name) && !target.safeMethods.has(name)) unsafe = true;
    } catch {
      // Does not decode: answered with InvalidArgument, reaches no handler.
    }
  }
  return { expect: { answers, drop, partial: !drop && decoder.midFrame }, unsafe };
}

const KINDS = ['random', 'flip', 'flip-body', 'random-body', 'random-payload', 'header', 'truncate', 'length', 'multi'] as const;

/** A stream id: mostly odd, sometimes even, sometimes an edge value. */
function streamId(rng: SeededRandom): number {
  const roll = rng.int(10);
  if (roll === 0) return rng.pick([0, 1, 2, 0x7fffffff, 0xfffffffe, 0xffffffff]);
  const id = rng.uint32();
  return roll < 8 ? (id | 1) >>> 0 : (id & ~1) >>> 0;
}

function flip(rng: SeededRandom, bytes: Buffer, from: number, count: number): Buffer {
  const out = Buffer.from(bytes);
  if (out.length <= from) return out;
  for (let i = 0; i < count; i++) out[rng.range(from, out.length - 1)] = rng.int(256);
  return out;
}

function one(rng: SeededRandom, target: FuzzTarget, kind: (typeof KINDS)[number]): Buffer {
  const seed = (): Buffer => requestFrame(streamId(rng), rng.pick(target.seeds));
  switch (kind) {
    case 'random':
      return rng.bytes(rng.range(1, 160));
    case 'flip':
      return flip(rng, seed(), 0, rng.range(1, 4));
    case 'flip-body':
      return flip(rng, seed(), MESSAGE_HEADER_LENGTH, rng.range(1, 4));
    case 'random-body':
      return rawFrame(streamId(rng), FrameType.Request, rng.bytes(rng.range(0, 120)));
    case 'random-payload': {
      const base = rng.pick(target.seeds);
      return requestFrame(streamId(rng), { ...base, payload: rng.bytes(rng.range(0, 64)) });
    }
    case 'header': {
      const type = rng.chance(0.5) ? rng.range(1, 3) : rng.int(256);
      const data = rng.chance(0.5) ? rng.bytes(rng.range(0, 40)) : seed().subarray(MESSAGE_HEADER_LENGTH);
      return rawFrame(streamId(rng), type, data, rng.int(256));
    }
    case 'truncate': {
      const frame = seed();
      return frame.subarray(0, rng.range(1, frame.length - 1));
    }
    case 'length': {
      const frame = seed();
      const body = frame.subarray(MESSAGE_HEADER_LENGTH);
      const length = rng.chance(0.8) ? rng.range(0, body.length + 24) : rng.uint32();
      return Buffer.concat([frameHeader(length, frame.readUInt32BE(4), frame[8]!, frame[9]!), body]);
    }
    case 'multi': {
      const parts: Buffer[] = [];
      const n = rng.range(2, 4);
      for (let i = 0; i < n; i++) parts.push(one(rng, target, rng.pick(KINDS.slice(0, -1))));
      return Buffer.concat(parts);
    }
  }
}

/** One case; regenerated (bounded) while it would reach an unsafe method. */
export function generateCase(rng: SeededRandom, target: FuzzTarget): FuzzCase {
  for (let attempt = 0; attempt < 50; attempt++) {
    const kind = rng.pick(KINDS);
    const bytes = one(rng, target, kind);
    const { expect, unsafe } = analyze(bytes, target);
    if (!unsafe) return { kind, bytes, expect };
  }
  // Practically unreachable; plain garbage is always safe.
  const bytes = Buffer.from('not ttrpc at all, not even close');
  return { kind: 'fallback', bytes, ...analyze(bytes, target) };
}

/** The outcome of one case against a live server. */
export interface CaseResult {
  /** Everything the expectation asked for happened in time. */
  readonly ok: boolean;
  readonly detail: string;
  /** Status codes of the answers, for the summary. */
  readonly codes: readonly number[];
  /** The connection is still usable afterwards. */
  readonly reusable: boolean;
}

/**
 * Sends one case on `conn` and checks the server's behaviour against the
 * oracle: every expected answer arrives with a bad-input status (or OK), a
 * drop closes the connection, and a connection left on a frame boundary
 * still answers a probe request on `probeId`.
 */
export async function runCase(conn: RawConnection, c: FuzzCase, probe: RawRequest, probeId: number, timeoutMs: number): Promise<CaseResult> {
  const before = conn.responses.length;
  const tail = !c.expect.drop && !c.expect.partial ? requestFrame(probeId, probe) : Buffer.alloc(0);
  await conn.write(Buffer.concat([c.bytes, tail]));
  const since = (): typeof conn.responses => conn.responses.slice(before);
  const codes = (): number[] => since().map((r) => r.status?.code ?? 0);

  if (c.expect.drop) {
    const closed = await conn.waitClosed(timeoutMs);
    return { ok: closed, detail: closed ? 'dropped' : 'unknown frame type but the connection stayed open', codes: codes(), reusable: false };
  }

  const wanted = new Map(c.expect.answers);
  if (tail.length > 0) wanted.set(probeId, (wanted.get(probeId) ?? 0) + 1);
  const deadline = Date.now() + timeoutMs;
  for (const [id, n] of wanted) {
    const count = (): number => since().filter((r) => r.streamId === id).length;
    while (count() < n && conn.isOpen && Date.now() < deadline) {
      await conn.waitChange(Math.max(1, deadline - Date.now()));
    }
    if (count() < n) {
      return { ok: false, detail: `stream ${id}: ${count()}/${n} answers (${conn.isOpen ? 'timeout' : 'closed'})`, codes: codes(), reusable: false };
    }
  }
  const bad = since().filter((r) => !r.decoded || r.type !== FrameType.Response || !BAD_INPUT_CODES.has(r.status?.code ?? 0));
  if (bad.length > 0) {
    const r = bad[0]!;
    return { ok: false, detail: `stream ${r.streamId}: unexpected answer type=${r.type} status=${JSON.stringify(r.status)}`, codes: codes(), reusable: false };
  }
  const extra = since().filter((r) => !wanted.has(r.streamId));
  if (extra.length > 0) return { ok: false, detail: `answers on unexpected streams ${extra.map((r) => r.streamId).join(',')}`, codes: codes(), reusable: false };
  if (tail.length > 0) {
    const answer = since().find((r) => r.streamId === probeId);
    if (answer?.status !== undefined && answer.status.code !== Code.OK) {
      return { ok: false, detail: `probe failed: ${JSON.stringify(answer.status)}`, codes: codes(), reusable: false };
    }
  }
  return { ok: true, detail: 'answered', codes: codes(), reusable: tail.length > 0 && conn.isOpen };
}
