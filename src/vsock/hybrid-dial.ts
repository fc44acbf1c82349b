import { lstatSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';

import { checkVsockPort } from './address.js';
import { AckParser, formatConnectLine } from './hybrid-handshake.js';
import { retryUntilDeadline } from './retry.js';

/** Overall deadline when the caller gives none. */
export const DEFAULT_DIAL_TIMEOUT_MS = 10_000;
/** Budget of one connect + CONNECT + ack attempt (Firecracker's Go SDK waits 1 s for the ack). */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 1_000;
/** Pace of attempts while the guest is not listening yet. */
export const DEFAULT_RETRY_INTERVAL_MS = 100;

/** Errors from connect(2) on the unix socket that mean the VMM or agent is not up yet. */
const NOT_YET_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOENT', 'EAGAIN', 'ECONNRESET', 'EPIPE']);

/** Options for dialHybrid. */
export interface DialHybridOptions {
  /** Overall deadline for all attempts (default 10 s). */
  readonly timeoutMs?: number;
  /** Budget of one attempt, connect to ack (default 1 s). */
  readonly attemptTimeoutMs?: number;
  /** Pace of retries (default 100 ms). */
  readonly retryIntervalMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * A failed handshake on a connected socket: no ack in time, the peer closed
 * first (what Firecracker does when the guest is not listening), or a reply
 * that is not `OK <port>`. All mean "maybe later", so they are retried.
 */
export class HybridHandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HybridHandshakeError';
  }
}

/**
 * Dials guest `port` through the hybrid vsock unix socket at `path`: connect,
 * write `CONNECT <port>\n`, wait for `OK <hostPort>\n`, retrying every
 * ~100 ms until the deadline while the other end is not ready. Resolves with
 * the connected socket, positioned right after the ack line: bytes the peer
 * sent along with the ack are put back into its read buffer. Rejects with
 * UnavailableError (path, port, last cause) or CanceledError on abort.
 */
export async function dialHybrid(path: string, port: number, options: DialHybridOptions = {}): Promise<Socket> {
  const target = `hybrid vsock ${path} port ${port}`;
  checkVsockPort(port, target);
  return retryUntilDeadline((budget, signal) => attemptHybrid(path, port, budget, signal), {
    timeoutMs: options.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
    attemptTimeoutMs: options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
    intervalMs: options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS,
    signal: options.signal,
    isRetryable: isNotYet,
    target,
  });
}

function isNotYet(err: unknown): boolean {
  if (err instanceof HybridHandshakeError) return true;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && NOT_YET_CODES.has(code);
}

/**
 * connect(2) says ECONNREFUSED both for a socket nobody accepts on (retry)
 * and for a path that is not a socket at all (never going to work).
 */
function notASocket(path: string, err: Error): Error | undefined {
  if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED') return undefined;
  try {
    if (lstatSync(path).isSocket()) return undefined;
  } catch {
    return undefined;
  }
  return new Error(`${path} is not a socket`, { cause: err });
}

/** One connect + handshake. The socket is read in paused mode so no byte is consumed past the ack. */
function attemptHybrid(path: string, port: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    // Half-close like an AF_VSOCK FdStream: the peer's EOF does not end our side.
    const socket = createConnection({ path, allowHalfOpen: true });
    const parser = new AckParser();
    let settled = false;

    const onAbort = (): void => fail(signal?.reason);
    const onError = (err: Error): void => fail(notASocket(path, err) ?? err);
    const onEnd = (): void => fail(new HybridHandshakeError(`connection closed before the ack (received ${parser.received})`));
    const onReadable = (): void => {
      for (let chunk: Buffer | null = socket.read(); chunk !== null && !settled; chunk = socket.read()) {
        const state = parser.push(chunk);
        if (!state.done) continue;
        if (!state.ok) {
          fail(new HybridHandshakeError(`unexpected reply ${state.received}: ${state.reason}`));
          return;
        }
        settled = true;
        // Our 'readable' listener must go before unshift, so the bytes wait for the caller's reader.
        detach();
        if (state.rest.length > 0) socket.unshift(state.rest);
        resolve(socket);
        return;
      }
    };
    const timer = setTimeout(() => fail(new HybridHandshakeError(`no ack within ${timeoutMs} ms (received ${parser.received})`)), timeoutMs);

    function detach(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('readable', onReadable);
    }
    function fail(err: unknown): void {
      if (settled) return;
      settled = true;
      detach();
      // A late error from the torn-down socket must not become an uncaught 'error'.
      socket.on('error', () => {});
      socket.destroy();
      reject(err);
    }

    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('readable', onReadable);
    // net.Socket queues this until the connect completes.
    socket.write(formatConnectLine(port));
  });
}
