import net from 'node:net';
import { FrameDecoder, FrameType, MESSAGE_HEADER_LENGTH, encodeFrame } from '../../src/ttrpc/channel.js';
import { decodeResponse, encodeRequest } from '../../src/ttrpc/codec.js';
import type { KeyValue } from '../../src/ttrpc/metadata.js';
import type { Status } from '../../src/ttrpc/status.js';

/**
 * Byte-level ttrpc for robustness tests: a connection that writes whatever
 * it is given and records every frame the server sends back, so a test can
 * say "stream 7 got InvalidArgument" or "the server hung up" without a
 * well-behaved Client in the way.
 */

/** The guest port flint-agent serves its API on. */
export const AGENT_API_PORT = 10789;

/** One frame the server sent, with its Response decoded when it decodes. */
export interface RawResponse {
  readonly streamId: number;
  readonly type: number;
  /** Absent on success (or when the frame is not a decodable Response). */
  readonly status?: Status;
  readonly payload: Uint8Array;
  /** False when the frame's data is not a ttrpc.Response. */
  readonly decoded: boolean;
}

/** What waitFor() saw first. */
export type WaitOutcome = RawResponse | 'closed' | 'timeout';

/** A unix-socket connection that speaks raw bytes and parses the server's frames. */
export class RawConnection {
  /** Every frame received so far, in arrival order. */
  readonly responses: RawResponse[] = [];
  /** Set when the server sent something that is not ttrpc framing. */
  protocolError: Error | undefined;
  private readonly decoder = new FrameDecoder();
  private readonly waiters = new Set<() => void>();
  private isClosed = false;
  /** Resolves when the socket is fully closed. */
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket, initial?: Buffer) {
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      });
    });
    // EPIPE/ECONNRESET after the server hung up are outcomes, not test errors.
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    if (initial !== undefined && initial.length > 0) this.receive(initial);
  }

  /** Connects to a unix socket (a shim socket, or any ttrpc server). */
  static unix(path: string, timeoutMs = 5_000): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect ${path}: timed out`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RawConnection(socket));
      });
    });
  }

  /**
   * Connects to a hybrid vsock unix socket and does the handshake by hand:
   * `CONNECT <port>\n`, then `OK <n>\n` must come back. Bytes after the ack
   * are treated as ttrpc frames.
   */
  static hybrid(path: string, port = AGENT_API_PORT, timeoutMs = 5_000): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      let received = Buffer.alloc(0);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`hybrid handshake on ${path}: no ack within ${timeoutMs} ms`)), timeoutMs);
      const onData = (chunk: Buffer): void => {
        received = Buffer.concat([received, chunk]);
        const nl = received.indexOf(0x0a);
        if (nl < 0) return;
        const line = received.subarray(0, nl).toString('latin1');
        if (!/^OK \d+$/.test(line)) return fail(new Error(`hybrid handshake on ${path}: unexpected reply ${JSON.stringify(line)}`));
        clearTimeout(timer);
        socket.off('data', onData);
        socket.removeAllListeners('error');
        socket.off('close', onClose);
        resolve(new RawConnection(socket, received.subarray(nl + 1)));
      };
      const onClose = (): void => fail(new Error(`hybrid handshake on ${path}: closed before the ack`));
      socket.on('data', onData);
      socket.once('error', fail);
      socket.once('close', onClose);
      socket.write(`CONNECT ${port}\n`);
    });
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Writes bytes as they are; errors (the peer is gone) are ignored. */
  write(bytes: Uint8Array): Promise<void> {
    if (this.isClosed || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.write(bytes, () => resolve());
    });
  }

  /** Resolves with the first response on `streamId` not yet returned, 'closed' or 'timeout'. */
  async waitFor(streamId: number, timeoutMs: number): Promise<WaitOutcome> {
    const taken = new Set<RawResponse>();
    return this.waitUntil(timeoutMs, () => {
      const r = this.responses.find((x) => x.streamId === streamId && !taken.has(x));
      if (r) taken.add(r);
      return r;
    });
  }

  /** Resolves true once the connection is closed, false after `timeoutMs`. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    const r = await this.waitUntil(timeoutMs, () => undefined);
    return r === 'closed';
  }

  /** Resolves when `count` responses on `streamId` have arrived (true), or closed/timeout (false). */
  async waitForCount(streamId: number, count: number, timeoutMs: number): Promise<boolean> {
    const has = (): boolean => this.responses.filter((x) => x.streamId === streamId).length >= count;
    if (has()) return true;
    const r = await this.waitUntil(timeoutMs, () => (has() ? this.responses[0] : undefined));
    return typeof r === 'object';
  }

  /** Resolves when a frame arrives, the connection closes, or `timeoutMs` passes. */
  async waitChange(timeoutMs: number): Promise<void> {
    const n = this.responses.length;
    await this.waitUntil(timeoutMs, () => (this.responses.length > n ? this.responses[n] : undefined));
  }

  /** Half-closes our side (FIN), keeping the read side open. */
  end(): void {
    if (!this.socket.destroyed) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private waitUntil(timeoutMs: number, check: () => RawResponse | undefined): Promise<WaitOutcome> {
    return new Promise((resolve) => {
      const attempt = (): boolean => {
        const r = check();
        if (r !== undefined) {
          finish(r);
          return true;
        }
        if (this.isClosed) {
          finish('closed');
          return true;
        }
        return false;
      };
      const finish = (outcome: WaitOutcome): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(outcome);
      };
      const wake = (): void => void attempt();
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      if (attempt()) return;
      this.waiters.add(wake);
    });
  }

  private receive(chunk: Buffer): void {
    if (this.protocolError) return;
    try {
      for (const frame of this.decoder.push(chunk)) {
        if (frame.oversized !== undefined) {
          this.responses.push({ streamId: frame.streamId, type: frame.type, payload: new Uint8Array(), decoded: false });
          continue;
        }
        try {
          const r = decodeResponse(frame.data);
          this.responses.push({ streamId: frame.streamId, type: frame.type, ...(r.status ? { status: r.status } : {}), payload: r.payload, decoded: true });
        } catch {
          this.responses.push({ streamId: frame.streamId, type: frame.type, payload: frame.data, decoded: false });
        }
      }
    } catch (err) {
      this.protocolError = err as Error;
    }
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** A ttrpc.Request as plain data for requestFrame(). */
export interface RawRequest {
  readonly service: string;
  readonly method: string;
  readonly payload?: Uint8Array;
  readonly metadata?: readonly KeyValue[];
  readonly timeoutNano?: number;
}

/** The bytes of one Request frame. */
export function requestFrame(streamId: number, request: RawRequest): Buffer {
  const data = encodeRequest({
    service: request.service,
    method: request.method,
    payload: request.payload ?? new Uint8Array(),
    timeoutNano: request.timeoutNano ?? 0,
    metadata: request.metadata ?? [],
  });
  return encodeFrame(streamId, FrameType.Request, data);
}

/** A frame header announcing `length` bytes (which need not follow). */
export function frameHeader(length: number, streamId: number, type: number, flags = 0): Buffer {
  const header = Buffer.alloc(MESSAGE_HEADER_LENGTH);
  header.writeUInt32BE(length >>> 0, 0);
  header.writeUInt32BE(streamId >>> 0, 4);
  header[8] = type & 0xff;
  header[9] = flags & 0xff;
  return header;
}

/** A frame with `data` and an arbitrary type byte (valid or not). */
export function rawFrame(streamId: number, type: number, data: Uint8Array, flags = 0): Buffer {
  return Buffer.concat([frameHeader(data.length, streamId, type, flags), data]);
}

/**
 * A small, seeded PRNG (mulberry32), so a failing fuzz run can be replayed
 * from the seed it printed.
 */
export class SeededRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let x = this.state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  uint32(): number {
    return (this.int(0x10000) * 0x10000 + this.int(0x10000)) >>> 0;
  }
}

/** The seed from FLINT_FUZZ_SEED, or a fresh one. */
export function fuzzSeed(): number {
  const fromEnv = process.env.FLINT_FUZZ_SEED;
  if (fromEnv !== undefined && fromEnv !== '') return Number(fromEnv) >>> 0;
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}
