import { ProtocolError } from './errors.js';

/**
 * ttrpc framing: a 10-byte header (data length and stream id as big-endian
 * uint32, then a type byte and a flags byte) followed by the data. This file
 * knows nothing about sockets or protobuf; see PROTOCOL.md.
 */

/** Bytes in a frame header. */
export const MESSAGE_HEADER_LENGTH = 10;
/** Largest frame data ttrpc accepts (4 MiB). */
export const MESSAGE_LENGTH_MAX = 4 << 20;

/** The frame (message) types on the wire. Data exists only in ttrpc >= 1.2 (streaming). */
export enum FrameType {
  Request = 1,
  Response = 2,
  Data = 3,
}

/** A complete frame whose data fit within MESSAGE_LENGTH_MAX. */
export interface MessageFrame {
  readonly streamId: number;
  readonly type: FrameType;
  readonly flags: number;
  readonly data: Buffer;
  readonly oversized?: undefined;
}

/**
 * A frame whose data was longer than MESSAGE_LENGTH_MAX. Its data has been
 * skipped, never buffered; the receiver answers ResourceExhausted on its
 * stream and the connection stays usable.
 */
export interface OversizedFrame {
  readonly streamId: number;
  readonly type: FrameType;
  readonly flags: number;
  /** The length the header announced. */
  readonly oversized: number;
  readonly data?: undefined;
}

export type Frame = MessageFrame | OversizedFrame;

enum ReadState {
  Header,
  Body,
  Discard,
  Failed,
}

interface Header {
  readonly length: number;
  readonly streamId: number;
  readonly type: FrameType;
  readonly flags: number;
}

function isFrameType(value: number): value is FrameType {
  return value === FrameType.Request || value === FrameType.Response || value === FrameType.Data;
}

/**
 * Turns an arbitrary byte stream into frames. Push chunks as they arrive and
 * get back the frames they completed. Headers and data may be split anywhere
 * across chunks.
 *
 * A header with an unknown frame type means the peer does not speak ttrpc
 * (or the stream is out of step); push() throws ProtocolError then and on
 * every later call, and the caller should drop the connection.
 */
export class FrameDecoder {
  private state = ReadState.Header;
  private readonly headerBuf = Buffer.alloc(MESSAGE_HEADER_LENGTH);
  private headerFilled = 0;
  private header: Header | undefined;
  private body: Buffer | undefined;
  private bodyFilled = 0;
  private discardLeft = 0;
  private failure: ProtocolError | undefined;

  /** True when the decoder holds part of a frame (so an EOF now truncates it). */
  get midFrame(): boolean {
    return this.state !== ReadState.Header || this.headerFilled > 0;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.failure) throw this.failure;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const frames: Frame[] = [];
    let offset = 0;
    while (offset < buf.length) {
      switch (this.state) {
        case ReadState.Header:
          offset = this.readHeader(buf, offset, frames);
          break;
        case ReadState.Body:
          offset = this.readBody(buf, offset, frames);
          break;
        case ReadState.Discard:
          offset = this.discard(buf, offset, frames);
          break;
        case ReadState.Failed:
          throw this.failure;
      }
    }
    return frames;
  }

  private readHeader(buf: Buffer, offset: number, frames: Frame[]): number {
    let source = buf;
    let at = offset;
    let next: number;
    if (this.headerFilled === 0 && buf.length - offset >= MESSAGE_HEADER_LENGTH) {
      next = offset + MESSAGE_HEADER_LENGTH;
    } else {
      const n = Math.min(MESSAGE_HEADER_LENGTH - this.headerFilled, buf.length - offset);
      buf.copy(this.headerBuf, this.headerFilled, offset, offset + n);
      this.headerFilled += n;
      next = offset + n;
      if (this.headerFilled < MESSAGE_HEADER_LENGTH) return next;
      source = this.headerBuf;
      at = 0;
      this.headerFilled = 0;
    }
    const header: Header = {
      length: source.readUInt32BE(at),
      streamId: source.readUInt32BE(at + 4),
      type: source[at + 8]!,
      flags: source[at + 9]!,
    };
    if (!isFrameType(header.type)) {
      this.state = ReadState.Failed;
      this.failure = new ProtocolError(`unknown frame type ${header.type} on stream ${header.streamId}`);
      throw this.failure;
    }
    this.header = header;
    if (header.length > MESSAGE_LENGTH_MAX) {
      this.state = ReadState.Discard;
      this.discardLeft = header.length;
    } else if (header.length === 0) {
      this.finishFrame(Buffer.alloc(0), frames);
    } else {
      this.state = ReadState.Body;
      this.body = undefined;
      this.bodyFilled = 0;
    }
    return next;
  }

  private readBody(buf: Buffer, offset: number, frames: Frame[]): number {
    const length = this.header!.length;
    const available = buf.length - offset;
    if (this.body === undefined && available >= length) {
      // Whole frame in this chunk: hand out a view, no copy.
      this.finishFrame(buf.subarray(offset, offset + length), frames);
      return offset + length;
    }
    this.body ??= Buffer.allocUnsafe(length);
    const n = Math.min(length - this.bodyFilled, available);
    buf.copy(this.body, this.bodyFilled, offset, offset + n);
    this.bodyFilled += n;
    if (this.bodyFilled === length) {
      const body = this.body;
      this.body = undefined;
      this.finishFrame(body, frames);
    }
    return offset + n;
  }

  private discard(buf: Buffer, offset: number, frames: Frame[]): number {
    const n = Math.min(this.discardLeft, buf.length - offset);
    this.discardLeft -= n;
    if (this.discardLeft === 0) {
      const { streamId, type, flags, length } = this.header!;
      frames.push({ streamId, type, flags, oversized: length });
      this.header = undefined;
      this.state = ReadState.Header;
    }
    return offset + n;
  }

  private finishFrame(data: Buffer, frames: Frame[]): void {
    const { streamId, type, flags } = this.header!;
    frames.push({ streamId, type, flags, data });
    this.header = undefined;
    this.state = ReadState.Header;
  }
}

/** One buffer holding a frame's header and data, so it is written whole. */
export function encodeFrame(streamId: number, type: FrameType, data: Uint8Array, flags = 0): Buffer {
  const frame = Buffer.allocUnsafe(MESSAGE_HEADER_LENGTH + data.length);
  frame.writeUInt32BE(data.length, 0);
  frame.writeUInt32BE(streamId >>> 0, 4);
  frame[8] = type;
  frame[9] = flags;
  frame.set(data, MESSAGE_HEADER_LENGTH);
  return frame;
}
