import { MAX_VSOCK_PORT, MIN_VSOCK_PORT } from './address.js';

/**
 * The two text lines of Firecracker's hybrid vsock handshake, host → VMM
 * `CONNECT <guest port>\n` and VMM → host `OK <host port>\n`, with pure
 * incremental parsers: no sockets, no timers. A parser is fed whatever a read
 * returned and hands back the bytes that followed the '\n', because the peer
 * may send payload in the same segment as its handshake line.
 */

/** Longest handshake line accepted, '\n' included; both real lines are under 25 bytes. */
export const MAX_HANDSHAKE_LINE_BYTES = 64;

const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);
const ACK_LINE = /^OK ([0-9]{1,10})$/;
const CONNECT_LINE = /^CONNECT ([0-9]{1,10})$/;
const MAX_U32 = 0xffff_ffff;

/** `CONNECT <port>\n`, the line the host writes first. */
export function formatConnectLine(port: number): Buffer {
  return Buffer.from(`CONNECT ${port}\n`, 'latin1');
}

/** `OK <hostPort>\n`, the line the VMM answers once the guest accepted. */
export function formatAckLine(hostPort: number): Buffer {
  return Buffer.from(`OK ${hostPort}\n`, 'latin1');
}

/** Where a parser stands after push(). */
export type HandshakeState<T> =
  | { readonly done: false; readonly ok: false; readonly rest: Buffer }
  | { readonly done: true; readonly ok: true; readonly value: T; readonly rest: Buffer }
  | {
      readonly done: true;
      readonly ok: false;
      /** Why the line was refused. */
      readonly reason: string;
      /** What arrived, quoted and escaped for an error message. */
      readonly received: string;
      readonly rest: Buffer;
    };

/** An AckParser's state; hostPort is set when ok. */
export type AckState = HandshakeState<number> & { readonly hostPort?: number };
/** A ConnectParser's state; port is set when ok. */
export type ConnectState = HandshakeState<number> & { readonly port?: number };

/**
 * Collects one '\n'-terminated line of at most `maxLineBytes` (with the '\n')
 * and decodes it. Pushing after the line is complete is a programming error.
 */
export class HandshakeLineParser<T> {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private state: HandshakeState<T> = { done: false, ok: false, rest: EMPTY };

  /** `decode` returns the value, or a string saying what is wrong with the line. */
  constructor(
    private readonly decode: (line: string) => { value: T } | string,
    private readonly maxLineBytes: number = MAX_HANDSHAKE_LINE_BYTES,
  ) {}

  /** Bytes gathered so far, quoted, for "closed before the line ended" errors. */
  get received(): string {
    return quote(Buffer.concat(this.chunks, this.length));
  }

  /** Feeds the bytes of one read. */
  push(chunk: Buffer): HandshakeState<T> {
    if (this.state.done) throw new Error('handshake line already complete');
    const room = this.maxLineBytes - this.length;
    const newline = chunk.subarray(0, room).indexOf(NEWLINE);
    if (newline < 0) {
      if (chunk.length >= room) {
        this.append(chunk.subarray(0, room));
        this.state = this.refuse(`line longer than ${this.maxLineBytes} bytes without a newline`, EMPTY);
      } else {
        this.append(chunk);
      }
      return this.state;
    }
    this.append(chunk.subarray(0, newline + 1));
    const rest = chunk.subarray(newline + 1);
    const line = Buffer.concat(this.chunks, this.length).subarray(0, this.length - 1).toString('latin1');
    const decoded = this.decode(line);
    this.state = typeof decoded === 'string' ? this.refuse(decoded, rest) : { done: true, ok: true, value: decoded.value, rest };
    return this.state;
  }

  private append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private refuse(reason: string, rest: Buffer): HandshakeState<T> {
    return { done: true, ok: false, reason, received: this.received, rest };
  }
}

/** Parses the VMM's `OK <hostPort>\n`. */
export class AckParser {
  private readonly line = new HandshakeLineParser<number>(decodeAck);

  /** Bytes gathered so far, quoted. */
  get received(): string {
    return this.line.received;
  }

  push(chunk: Buffer): AckState {
    const state = this.line.push(chunk);
    return state.ok ? { ...state, hostPort: state.value } : state;
  }
}

/** Parses the host's `CONNECT <port>\n`. */
export class ConnectParser {
  private readonly line = new HandshakeLineParser<number>(decodeConnect);

  /** Bytes gathered so far, quoted. */
  get received(): string {
    return this.line.received;
  }

  push(chunk: Buffer): ConnectState {
    const state = this.line.push(chunk);
    return state.ok ? { ...state, port: state.value } : state;
  }
}

function decodeAck(line: string): { value: number } | string {
  const match = ACK_LINE.exec(line);
  if (match === null) return line === 'OK' || line === 'OK ' ? 'OK without a host port' : 'not an "OK <port>" ack';
  const hostPort = Number(match[1]);
  if (hostPort > MAX_U32) return `host port ${match[1]} does not fit in 32 bits`;
  return { value: hostPort };
}

function decodeConnect(line: string): { value: number } | string {
  const match = CONNECT_LINE.exec(line);
  if (match === null) return 'not a "CONNECT <port>" line';
  const port = Number(match[1]);
  if (port < MIN_VSOCK_PORT || port > MAX_VSOCK_PORT) return `port ${match[1]} out of range ${MIN_VSOCK_PORT}..${MAX_VSOCK_PORT}`;
  return { value: port };
}

/** Quotes raw bytes readably: latin1 so each byte is one char, JSON escapes for control bytes. */
function quote(bytes: Buffer): string {
  return JSON.stringify(bytes.toString('latin1'));
}
