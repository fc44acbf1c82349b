import { Code, isCode } from './codes.js';
import { MESSAGE_LENGTH_MAX } from './channel.js';

/** A call's outcome as data (google.rpc.Status without details). */
export interface Status {
  readonly code: Code;
  readonly message: string;
}

/** Errno-style codes and what they mean on the wire, after Go ttrpc's convertCode. */
const ERRNO_CODES: ReadonlyMap<string, Code> = new Map([
  ['ENOENT', Code.NotFound],
  ['EEXIST', Code.AlreadyExists],
  ['ENOTEMPTY', Code.AlreadyExists],
  ['EACCES', Code.PermissionDenied],
  ['EPERM', Code.PermissionDenied],
  // Go maps io.EOF to OutOfRange and the closed-pipe family to FailedPrecondition.
  ['EOF', Code.OutOfRange],
  ['EPIPE', Code.FailedPrecondition],
  ['ERR_STREAM_PREMATURE_CLOSE', Code.FailedPrecondition],
  ['ERR_STREAM_WRITE_AFTER_END', Code.FailedPrecondition],
  ['ERR_STREAM_DESTROYED', Code.FailedPrecondition],
  // Node's nearest thing to os.ErrInvalid.
  ['ERR_INVALID_ARG_TYPE', Code.InvalidArgument],
  ['ERR_INVALID_ARG_VALUE', Code.InvalidArgument],
]);

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string') {
    return (err as { message: string }).message;
  }
  return String(err);
}

function codeOf(err: unknown, depth: number): Code {
  if (typeof err !== 'object' || err === null) return Code.Unknown;
  const { code, name, cause } = err as { code?: unknown; name?: unknown; cause?: unknown };
  // A thrown OK would read as success with an empty payload; it is a bug, so Unknown.
  if (isCode(code)) return code === Code.OK ? Code.Unknown : code;
  if (typeof code === 'string') {
    const mapped = ERRNO_CODES.get(code);
    if (mapped !== undefined) return mapped;
  }
  if (name === 'TimeoutError') return Code.DeadlineExceeded;
  if (name === 'AbortError') {
    // Node's AbortError carries the signal's reason as its cause; a deadline
    // we set is a DeadlineExceeded reason, a plain abort is Canceled.
    const inner = depth < 4 && cause !== undefined ? codeOf(cause, depth + 1) : Code.Unknown;
    return inner === Code.Unknown ? Code.Canceled : inner;
  }
  return Code.Unknown;
}

/**
 * The status a thrown value is answered with. An object with a numeric
 * `code` 1..16 (flint's domain errors, RpcError) keeps it; errno-style
 * errors map the way Go ttrpc's convertCode maps Go errors; AbortError is
 * Canceled (or its cause's code) and TimeoutError DeadlineExceeded; anything
 * else is Unknown. The message is kept as it is.
 */
export function statusFromError(err: unknown): Status {
  return { code: codeOf(err, 0), message: messageOf(err) };
}

/** The status for a frame longer than MESSAGE_LENGTH_MAX, worded like Go ttrpc. */
export function oversizedStatus(length: number): Status {
  return {
    code: Code.ResourceExhausted,
    message: `message length ${length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
  };
}
