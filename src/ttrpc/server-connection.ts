import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder, MESSAGE_LENGTH_MAX, FrameType, type Frame } from './channel.js';
import { decodeRequest, encodeResponse, type RequestEnvelope, type ResponseEnvelope } from './codec.js';
import { Code } from './codes.js';
import type { CallContext } from './context.js';
import { CallScope } from './call-scope.js';
import { ClosedError, isCloseError } from './errors.js';
import { FrameWriter } from './frame-writer.js';
import { Metadata } from './metadata.js';
import type { ServiceSet } from './services.js';
import { oversizedStatus, type Status } from './status.js';

/** Where a server connection is in its life. */
export enum ConnState {
  /** Accepted, handshake not finished; nothing is read yet. */
  Handshake,
  /** No call in flight. */
  Idle,
  /** At least one call in flight. */
  Active,
  /** Ending: no more requests are read; the stream ends once the last response is out. */
  Draining,
  Closed,
}

export interface ConnectionHooks {
  onClose(conn: ServerConnection): void;
  onError(err: Error): void;
}

const EMPTY = new Uint8Array(0);

/**
 * One accepted connection: reads frames, runs each request concurrently
 * (a handler that blocks, such as Wait, holds up nothing else) and writes
 * each response as one frame. Bad input never escapes this class: a bad
 * frame is answered on its stream, a non-ttrpc byte stream drops only this
 * connection.
 */
export class ServerConnection {
  private state = ConnState.Handshake;
  private active = 0;
  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  /** The calls in flight, aborted together when the connection goes away. */
  private readonly inFlight = new Set<CallScope>();
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);

  constructor(
    private readonly stream: Duplex,
    private readonly services: ServiceSet,
    private readonly hooks: ConnectionHooks,
  ) {
    // Stop reading while responses back up, as Go's single writer loop does.
    this.writer = new FrameWriter(stream, (blocked) => (blocked ? stream.pause() : this.resumeReading()));
    stream.on('error', (err: Error) => {
      if (!isCloseError(err)) hooks.onError(err);
    });
    stream.once('close', () => this.teardown());
    stream.once('end', () => this.shutdown());
  }

  get connState(): ConnState {
    return this.state;
  }

  /** Starts reading requests (after the handshake). */
  start(): void {
    if (this.state !== ConnState.Handshake) return;
    this.state = ConnState.Idle;
    this.stream.on('data', this.onData);
  }

  /** Graceful: read no more requests, finish the calls in flight, then end the stream. */
  shutdown(): void {
    if (this.state === ConnState.Draining || this.state === ConnState.Closed) return;
    if (this.state === ConnState.Handshake) {
      // Nothing was read yet, so nothing is owed to the peer.
      this.destroy();
      return;
    }
    this.state = ConnState.Draining;
    this.stream.off('data', this.onData);
    this.stream.pause();
    if (this.active === 0) this.end();
  }

  /** Forced: drop the stream now; handlers in flight see their signal abort. */
  destroy(): void {
    this.stream.destroy();
    this.teardown();
  }

  private end(): void {
    this.writer.end(() => this.stream.destroy());
  }

  private resumeReading(): void {
    if (this.state === ConnState.Idle || this.state === ConnState.Active) this.stream.resume();
  }

  private teardown(): void {
    if (this.state === ConnState.Closed) return;
    this.state = ConnState.Closed;
    this.stream.off('data', this.onData);
    const reason = new ClosedError();
    for (const scope of this.inFlight) scope.abort(reason);
    this.inFlight.clear();
    this.hooks.onClose(this);
  }

  private receive(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.hooks.onError(err as Error);
      this.destroy();
      return;
    }
    for (const frame of frames) this.dispatch(frame);
  }

  private dispatch(frame: Frame): void {
    if (this.state === ConnState.Closed) return;
    if (frame.oversized !== undefined) {
      this.reply(frame.streamId, { status: oversizedStatus(frame.oversized), payload: EMPTY });
      return;
    }
    // ttrpc 1.1.1 serves unary calls only; any other frame is ignored.
    if (frame.type !== FrameType.Request) return;
    let request: RequestEnvelope;
    try {
      request = decodeRequest(frame.data);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      this.replyStatus(frame.streamId, { code: Code.InvalidArgument, message: `unmarshal request error: ${detail}` });
      return;
    }
    if (frame.streamId % 2 !== 1) {
      this.replyStatus(frame.streamId, {
        code: Code.InvalidArgument,
        message: 'StreamID must be odd for client initiated streams',
      });
      return;
    }
    this.serve(frame.streamId, request).catch((err: unknown) => this.hooks.onError(err as Error));
  }

  private async serve(streamId: number, request: RequestEnvelope): Promise<void> {
    this.callStarted();
    const scope = this.callScope(request.timeoutNano);
    let metadata: Metadata | undefined;
    try {
      // Own getters, so `{ ...ctx }` copies them; metadata too is built only when read.
      const ctx: CallContext = {
        service: request.service,
        method: request.method,
        get metadata() {
          return (metadata ??= Metadata.fromKeyValues(request.metadata));
        },
        get signal() {
          return scope.signal;
        },
        deadline: scope.deadline,
      };
      const result = await this.services.call(request.service, request.method, request.payload, ctx);
      if (result.status !== undefined) this.replyStatus(streamId, result.status);
      else this.reply(streamId, { payload: result.payload });
    } finally {
      scope.dispose();
      this.inFlight.delete(scope);
      this.callEnded();
    }
  }

  private callScope(timeoutNano: number): CallScope {
    const scope = new CallScope(timeoutNano === 0 ? undefined : Date.now() + timeoutNano / 1e6);
    if (this.state === ConnState.Closed) scope.abort(new ClosedError());
    else this.inFlight.add(scope);
    return scope;
  }

  private callStarted(): void {
    this.active++;
    if (this.state === ConnState.Idle) this.state = ConnState.Active;
  }

  private callEnded(): void {
    this.active--;
    if (this.active > 0) return;
    if (this.state === ConnState.Active) this.state = ConnState.Idle;
    else if (this.state === ConnState.Draining) this.end();
  }

  private replyStatus(streamId: number, status: Status): void {
    this.reply(streamId, { status, payload: EMPTY });
  }

  private reply(streamId: number, response: ResponseEnvelope): void {
    let data = encodeResponse(response);
    // The peer would discard a frame this large; tell it why instead.
    if (data.length > MESSAGE_LENGTH_MAX) data = encodeResponse({ status: oversizedStatus(data.length), payload: EMPTY });
    this.writer.write(encodeFrame(streamId, FrameType.Response, data));
  }
}
