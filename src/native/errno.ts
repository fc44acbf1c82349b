import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

let errorMap: Map<number, [string, string]> | undefined;

/**
 * A Node-style system error for a positive errno value (as returned by
 * socketError), shaped like the addon's own throws.
 */
export function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  errorMap ??= getSystemErrorMap();
  const negative = -Math.abs(errno);
  const [code, text] = errorMap.get(negative) ?? fallbackEntry(-negative);
  const err: NodeJS.ErrnoException = new Error(`${code}: ${text}, ${syscall}`);
  err.errno = negative;
  err.code = code;
  err.syscall = syscall;
  return err;
}

/** True when `err` is a system error with the given code, e.g. isErrno(err, 'EAGAIN'). */
export function isErrno(err: unknown, code: string): err is NodeJS.ErrnoException {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** libuv's map lacks some errnos (ECHILD, EBADMSG, ...); os.constants has their names. */
function fallbackEntry(errno: number): [string, string] {
  const name = Object.entries(constants.errno).find(([, value]) => value === errno)?.[0];
  return name ? [name, name] : [`Unknown system error -${errno}`, 'unknown error'];
}
