/**
 * Shared pieces of the ttrpc tests: a test service described the way
 * generated code describes services (built from generated messages, so no
 * test .proto is needed), socket paths, and a raw frame-level peer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { google, ttrpc } from '../src/generated/index.js';
import { encodeFrame, FrameDecoder, FrameType, type Frame } from '../src/ttrpc/channel.js';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, type RequestEnvelope, type ResponseEnvelope } from '../src/ttrpc/codec.js';
import type { CallContext } from '../src/ttrpc/context.js';
import type { MessageType, MethodDescriptor } from '../src/ttrpc/descriptor.js';
import { Client, type ClientOptions } from '../src/ttrpc/client.js';
import { Server, type ServerOptions } from '../src/ttrpc/server.js';

export type KV = ttrpc.KeyValue.$Properties;
export type Empty = google.protobuf.Empty.$Properties;
export type Timestamp = google.protobuf.Timestamp.$Properties;

const KeyValueType: MessageType<KV> = ttrpc.KeyValue;
const EmptyType: MessageType<Empty> = google.protobuf.Empty;
const TimestampType: MessageType<Timestamp> = google.protobuf.Timestamp;

function method<Req, Res>(name: string, requestType: MessageType<Req>, responseType: MessageType<Res>): MethodDescriptor<Req, Res> {
  return { name, handler: name[0]!.toLowerCase() + name.slice(1), requestType, responseType };
}

export const TEST_SERVICE = 'flint.test.v1.Tester';

/** A service descriptor in the shape src/generated/services.ts uses. */
export const TesterDescriptor = {
  name: TEST_SERVICE,
  methods: {
    Echo: method('Echo', KeyValueType, KeyValueType),
    Fail: method('Fail', KeyValueType, EmptyType),
    Block: method('Block', KeyValueType, KeyValueType),
    Sleep: method('Sleep', TimestampType, TimestampType),
    Metadata: method('Metadata', EmptyType, KeyValueType),
    Big: method('Big', KeyValueType, KeyValueType),
  },
} as const;

/** Test handlers; Block waits until the test releases its key (or the call is aborted). */
export class Tester {
  private readonly gates = new Map<string, () => void>();
  readonly aborts: unknown[] = [];
  readonly started: string[] = [];

  echo(request: KV): KV {
    return { key: request.key ?? '', value: request.value ?? '' };
  }

  fail(request: KV): never {
    throw Object.assign(new Error(request.key ?? ''), { code: Number(request.value) });
  }

  async block(request: KV, ctx: CallContext): Promise<KV> {
    const key = request.key ?? '';
    this.started.push(key);
    await new Promise<void>((resolve, reject) => {
      this.gates.set(key, resolve);
      ctx.signal.addEventListener('abort', () => {
        this.aborts.push(ctx.signal.reason);
        reject(ctx.signal.reason);
      });
    });
    return { key, value: 'released' };
  }

  /** Waits for the call's signal, then answers with the deadline it saw (ms since the epoch). */
  async sleep(_request: Timestamp, ctx: CallContext): Promise<Timestamp> {
    if (!ctx.signal.aborted) await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    this.aborts.push(ctx.signal.reason);
    return { seconds: Math.floor((ctx.deadline ?? 0) / 1000) };
  }

  metadata(_request: Empty, ctx: CallContext): KV {
    return { key: ctx.service + '/' + ctx.method, value: JSON.stringify(ctx.metadata.toJSON()) };
  }

  big(request: KV): KV {
    return { key: request.key ?? '', value: 'x'.repeat(Number(request.value)) };
  }

  release(key: string): void {
    this.gates.get(key)?.();
  }

  waiting(key: string): boolean {
    return this.gates.has(key);
  }
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A fresh directory for sockets, removed at teardown. */
export function socketDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'flint-ttrpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Served {
  readonly server: Server;
  readonly listener: NetServer;
  readonly path: string;
  readonly tester: Tester;
}

/** A ttrpc Server with the Tester service on a unix socket; destroyed at teardown. */
export async function startServer(t: Teardown, options: ServerOptions = {}): Promise<Served> {
  const path = join(socketDir(t), 'ttrpc.sock');
  const server = new Server(options);
  const tester = new Tester();
  server.register(TesterDescriptor, tester);
  const listener = createServer();
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(path, () => resolve());
  });
  server.serve(listener);
  t.teardown(() => {
    server.destroy();
    listener.close();
  });
  return { server, listener, path, tester };
}

/** A Client on `path`, closed at teardown. */
export async function connectClient(t: Teardown, path: string, options?: ClientOptions): Promise<Client> {
  const client = await Client.connect(path, options);
  t.teardown(() => client.close());
  return client;
}

/** A peer that speaks raw frames, for what a well-behaved Client never sends. */
export class RawPeer {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];
  private readonly waiters: Array<() => void> = [];
  readonly closed: Promise<void>;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.decoder.push(chunk));
      for (const wake of this.waiters.splice(0)) wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => {
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  static async connect(t: Teardown, path: string): Promise<RawPeer> {
    const socket = createConnection({ path });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    t.teardown(() => socket.destroy());
    return new RawPeer(socket);
  }

  write(data: Uint8Array): void {
    this.socket.write(data);
  }

  sendRequest(streamId: number, request: Partial<RequestEnvelope> & { service: string; method: string }): void {
    const body = encodeRequest({ payload: new Uint8Array(0), timeoutNano: 0, metadata: [], ...request });
    this.write(encodeFrame(streamId, FrameType.Request, body));
  }

  /** The next frame, or undefined once the connection closed without one. */
  async next(): Promise<Frame | undefined> {
    for (;;) {
      const frame = this.frames.shift();
      if (frame) return frame;
      if (this.socket.destroyed) return undefined;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The next frame as a decoded Request (what a Client sent). */
  async nextRequest(): Promise<{ streamId: number; request: RequestEnvelope }> {
    const frame = await this.next();
    if (!frame || frame.data === undefined || frame.type !== FrameType.Request) throw new Error(`expected a request frame, got ${JSON.stringify(frame)}`);
    return { streamId: frame.streamId, request: decodeRequest(frame.data) };
  }

  /** Answers `streamId` with a Response frame. */
  respond(streamId: number, response: ResponseEnvelope): void {
    this.write(encodeFrame(streamId, FrameType.Response, encodeResponse(response)));
  }

  async nextResponse(): Promise<{ streamId: number; response: ResponseEnvelope }> {
    const frame = await this.next();
    if (!frame || frame.data === undefined) throw new Error(`expected a response frame, got ${JSON.stringify(frame)}`);
    return { streamId: frame.streamId, response: decodeResponse(frame.data) };
  }
}

/** A unix socket whose connections are handed out as RawPeers (a fake ttrpc server). */
export async function rawServer(t: Teardown): Promise<{ path: string; accept(): Promise<RawPeer> }> {
  const path = join(socketDir(t), 'raw.sock');
  const accepted: RawPeer[] = [];
  const waiters: Array<(peer: RawPeer) => void> = [];
  const listener = createServer((socket) => {
    t.teardown(() => socket.destroy());
    const peer = new RawPeer(socket);
    const waiter = waiters.shift();
    if (waiter) waiter(peer);
    else accepted.push(peer);
  });
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  t.teardown(() => listener.close());
  return {
    path,
    accept: () => {
      const peer = accepted.shift();
      return peer ? Promise.resolve(peer) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` every few ms until it holds (bounded). */
export async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await delay(5);
  }
}
