import { Code } from './codes.js';
import type { Status } from './status.js';

/**
 * The error a caller sees when a call ends with a non-OK status. Inside the
 * module a status travels as plain data (Status); it becomes an RpcError only
 * at the call surface, through errorFromStatus().
 */
export class RpcError extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RpcError';
    this.code = code;
  }

  /** The code's name, e.g. "NotFound". */
  get codeName(): string {
    return Code[this.code] ?? `Code(${this.code})`;
  }

  toStatus(): Status {
    return { code: this.code, message: this.message };
  }
}

/**
 * Builds the RpcError for a failed call. `callerStack` is an `Error().stack`
 * captured where the call was made, so the trace points at the caller rather
 * than at the socket's data handler.
 */
export function errorFromStatus(status: Status, callerStack?: string): RpcError {
  const err = new RpcError(status.code, status.message);
  if (callerStack !== undefined) {
    const frames = callerStack.split('\n').slice(1).join('\n');
    err.stack = `${err.name}: ${err.message}\n${frames}`;
  }
  return err;
}

/**
 * The connection is gone: closed by us, by the peer, or broken. Every call
 * pending on it fails with this. Its code is Unavailable, so a server handler
 * that lets it escape answers Unavailable.
 */
export class ClosedError extends Error {
  readonly code = Code.Unavailable;

  constructor(options?: ErrorOptions) {
    super('ttrpc: closed', options);
    this.name = 'ClosedError';
  }
}

/** The peer sent bytes that are not ttrpc; the connection cannot continue. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(`ttrpc: protocol error: ${message}`);
    this.name = 'ProtocolError';
  }
}

/** Socket error codes that only mean "the other end went away". */
const CLOSE_CODES: ReadonlySet<string> = new Set([
  'EOF',
  'EPIPE',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTCONN',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_SOCKET_CLOSED',
]);

/** True for errors that just say the connection ended. */
export function isCloseError(err: unknown): boolean {
  if (err === undefined || err === null) return true;
  if (err instanceof ClosedError) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && CLOSE_CODES.has(code);
}

/**
 * Reduces the many ways a connection can end (EOF, EPIPE, ECONNRESET, a
 * destroyed stream) to one ClosedError; any other error is returned as an
 * Error unchanged.
 */
export function normalizeCloseError(err: unknown): Error {
  if (err instanceof ClosedError) return err;
  if (isCloseError(err)) return err === undefined || err === null ? new ClosedError() : new ClosedError({ cause: err });
  return err instanceof Error ? err : new Error(String(err));
}
