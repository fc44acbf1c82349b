import { EventEmitter } from 'node:events';
import { createConnection } from 'node:net';
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder, MESSAGE_LENGTH_MAX, FrameType, type Frame } from './channel.js';
import { decodeResponse, encodeRequest, type ResponseEnvelope } from './codec.js';
import { Code } from './codes.js';
import type { CallOptions } from './context.js';
import { CANCELED, DEADLINE_EXCEEDED, MAX_TIMER_MS, timeoutNanoFromMs } from './deadline.js';
import type { MethodDescriptor } from './descriptor.js';
import { ClosedError, errorFromStatus, isCloseError, RpcError } from './errors.js';
import { FrameWriter } from './frame-writer.js';
import { Metadata } from './metadata.js';
import { oversizedStatus, type Status } from './status.js';

export interface ClientOptions {
  /** Sent with every call (e.g. the containerd namespace); per-call metadata replaces it key by key. */
  readonly metadata?: Metadata;
}

/** Stream ids are uint32 and odd; after the last one the count starts over. */
const MAX_STREAM_ID = 0xffff_ffff;

interface PendingCall {
  /** Settles the call with a response frame's data. */
  complete(data: Uint8Array): void;
  fail(err: Error): void;
  /** Fails the call with a status, as an RpcError carrying the caller's stack. */
  failStatus(status: Status): void;
}

/**
 * A ttrpc client over one connected stream. Calls are multiplexed: each gets
 * the next odd stream id, many can be outstanding, and responses settle them
 * in whatever order they arrive. When the connection ends, for whatever
 * reason, every pending call fails with ClosedError and 'close' is emitted
 * (with the error that broke the connection, or nothing for a plain close).
 */
export class Client extends EventEmitter {
  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  private readonly pending = new Map<number, PendingCall>();
  private readonly defaultMetadata: Metadata;
  private nextStreamId = 1;
  private closeError: ClosedError | undefined;
  private resolveClosed!: () => void;
  /** Resolves once the connection is gone. */
  readonly closed: Promise<void> = new Promise((resolve) => (this.resolveClosed = resolve));

  constructor(
    private readonly stream: Duplex,
    options: ClientOptions = {},
  ) {
    super();
    this.defaultMetadata = options.metadata?.clone() ?? new Metadata();
    this.writer = new FrameWriter(stream);
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    stream.on('error', (err: Error) => this.teardown(err));
    stream.once('end', () => this.teardown());
    stream.once('close', () => this.teardown());
    if (stream.destroyed) this.teardown();
  }

  /** Connects to a unix socket ("unix://" prefix allowed). */
  static connect(path: string, options: ClientOptions = {}): Promise<Client> {
    const socketPath = path.startsWith('unix://') ? path.slice('unix://'.length) : path;
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path: socketPath });
      const onError = (err: Error): void => reject(err);
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new Client(socket, options));
      });
    });
  }

  get isClosed(): boolean {
    return this.closeError !== undefined;
  }

  /** Number of calls awaiting a response. */
  get pendingCalls(): number {
    return this.pending.size;
  }

  /**
   * Makes one unary call. Resolves with the decoded response; rejects with
   * RpcError for a non-OK status (DeadlineExceeded / Canceled for a local
   * timeout or abort, after which a late response is dropped), and with
   * ClosedError when the connection ends first.
   */
  call<Req, Res>(service: string, method: MethodDescriptor<Req, Res>, request: Req, options: CallOptions = {}): Promise<Res> {
    const callerStack = new Error().stack;
    return new Promise<Res>((resolve, reject) => {
      if (this.closeError) return reject(this.closeError);
      const { signal } = options;
      if (signal?.aborted) return reject(abortError(signal, callerStack));

      const timeoutNano = timeoutNanoFromMs(options.timeoutMs);
      const data = encodeRequest({
        service,
        method: method.name,
        payload: method.requestType.encode(request).finish(),
        timeoutNano,
        metadata: this.defaultMetadata.merge(options.metadata).toKeyValues(),
      });
      if (data.length > MESSAGE_LENGTH_MAX) return reject(errorFromStatus(oversizedStatus(data.length), callerStack));

      // Allocation and write happen in one synchronous step, so stream ids
      // increase on the wire in the order calls were made.
      const streamId = this.allocateStreamId();
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => settle(() => reject(abortError(signal!, callerStack)));
      const settle = (action: () => void): void => {
        if (this.pending.get(streamId) !== call) return;
        this.pending.delete(streamId);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        action();
      };
      const call: PendingCall = {
        complete: (payload) => settle(() => settleResponse(payload, method, callerStack, resolve, reject)),
        fail: (err) => settle(() => reject(err)),
        failStatus: (status) => settle(() => reject(errorFromStatus(status, callerStack))),
      };
      this.pending.set(streamId, call);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutNano !== 0 && options.timeoutMs! <= MAX_TIMER_MS) {
        timer = setTimeout(() => call.failStatus(DEADLINE_EXCEEDED), options.timeoutMs);
        timer.unref();
      }
      if (!this.writer.write(encodeFrame(streamId, FrameType.Request, data))) call.fail(this.closeError ?? new ClosedError());
    });
  }

  /** Closes the connection; pending calls fail with ClosedError. Resolves once it is closed. */
  close(): Promise<void> {
    this.teardown();
    return this.closed;
  }

  private allocateStreamId(): number {
    const id = this.nextStreamId;
    this.nextStreamId = id + 2 > MAX_STREAM_ID ? 1 : id + 2;
    return id;
  }

  private receive(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.teardown(err);
      return;
    }
    for (const frame of frames) {
      const call = this.pending.get(frame.streamId);
      // Unknown ids are calls we already gave up on (timeout, abort).
      if (!call) continue;
      if (frame.oversized !== undefined) call.failStatus(oversizedStatus(frame.oversized));
      else if (frame.type !== FrameType.Response) {
        call.failStatus({ code: Code.Internal, message: `ttrpc: unexpected message type ${frame.type} on stream ${frame.streamId}` });
      } else call.complete(frame.data);
    }
  }

  private teardown(cause?: unknown): void {
    if (this.closeError) return;
    this.closeError = isCloseError(cause) ? new ClosedError() : new ClosedError({ cause });
    this.stream.destroy();
    const calls = [...this.pending.values()];
    for (const call of calls) call.fail(this.closeError);
    this.resolveClosed();
    // Never from inside close() or the constructor: listeners run on a clean stack.
    process.nextTick(() => this.emit('close', isCloseError(cause) ? undefined : cause));
  }
}

/** Canceled for a plain abort, DeadlineExceeded for AbortSignal.timeout(); an RpcError reason keeps its code. */
function abortError(signal: AbortSignal, callerStack: string | undefined): RpcError {
  const reason: unknown = signal.reason;
  let status = CANCELED;
  if (reason instanceof RpcError) status = reason.toStatus();
  else if ((reason as { name?: unknown } | undefined)?.name === 'TimeoutError') status = DEADLINE_EXCEEDED;
  return errorFromStatus(status, callerStack);
}

function settleResponse<Res>(
  data: Uint8Array,
  method: MethodDescriptor<unknown, Res>,
  callerStack: string | undefined,
  resolve: (value: Res) => void,
  reject: (err: Error) => void,
): void {
  let response: ResponseEnvelope;
  try {
    response = decodeResponse(data);
  } catch (err) {
    reject(internal(`ttrpc: error unmarshalling response: ${(err as Error).message}`, callerStack));
    return;
  }
  const status: Status | undefined = response.status;
  if (status !== undefined && status.code !== Code.OK) {
    reject(errorFromStatus(status, callerStack));
    return;
  }
  try {
    resolve(method.responseType.decode(response.payload));
  } catch (err) {
    reject(internal(`ttrpc: error unmarshalling payload: ${(err as Error).message}`, callerStack));
  }
}

function internal(message: string, callerStack: string | undefined): RpcError {
  return errorFromStatus({ code: Code.Internal, message }, callerStack);
}
