import type { Duplex } from 'node:stream';

import { dialVsock } from '../native/vsock.js';
import { checkVsockPort, parseDialAddress, type DialAddress } from './address.js';
import { DEFAULT_ATTEMPT_TIMEOUT_MS, DEFAULT_DIAL_TIMEOUT_MS, DEFAULT_RETRY_INTERVAL_MS, dialHybrid, type DialHybridOptions } from './hybrid-dial.js';
import { retryUntilDeadline } from './retry.js';

/** Options for dialAgent; the same knobs for both transports. */
export type DialAgentOptions = DialHybridOptions;

/** connect(2) errors on AF_VSOCK that mean the guest is not listening yet. */
const VSOCK_NOT_YET_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAGAIN', 'EINTR']);

/**
 * Dials the agent (or one of its stdio ports) at a dial address, retrying
 * until the deadline while it is not listening yet. `port` replaces the
 * address's port: the shim reaches every port of a VM through one address.
 * Rejects with UnavailableError or CanceledError.
 */
export async function dialAgent(address: string | DialAddress, port?: number, options: DialAgentOptions = {}): Promise<Duplex> {
  const parsed = typeof address === 'string' ? parseDialAddress(address) : address;
  const target = port ?? parsed.port;
  if (parsed.kind === 'hvsock-dial') return dialHybrid(parsed.path, target, options);
  return dialVsockWithRetry(parsed.cid, target, options);
}

async function dialVsockWithRetry(cid: number, port: number, options: DialAgentOptions): Promise<Duplex> {
  const target = `vsock ${cid}:${port}`;
  checkVsockPort(port, target);
  return retryUntilDeadline((budget, signal) => dialVsock(cid, port, { signal, timeoutMs: budget }), {
    timeoutMs: options.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
    attemptTimeoutMs: options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
    intervalMs: options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS,
    signal: options.signal,
    isRetryable: (err) => VSOCK_NOT_YET_CODES.has(String((err as NodeJS.ErrnoException | undefined)?.code)),
    target,
  });
}
