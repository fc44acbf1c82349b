import { setTimeout as sleep } from 'node:timers/promises';

import { CanceledError, InvalidArgumentError, UnavailableError } from '../errdefs/errors.js';

/** How retryUntilDeadline paces and bounds its attempts. */
export interface RetryOptions {
  /** Overall deadline, from the call, for all attempts together. */
  readonly timeoutMs: number;
  /** Upper bound for one attempt; the last attempt gets only what is left of the deadline. */
  readonly attemptTimeoutMs: number;
  /** Minimum time between the starts of two attempts. */
  readonly intervalMs: number;
  readonly signal?: AbortSignal;
  /** True for "not yet" failures; any other failure ends the loop at once. */
  readonly isRetryable: (err: unknown) => boolean;
  /** Names the target in errors, e.g. `hybrid vsock /run/a.vsock port 10789`. */
  readonly target: string;
}

/**
 * Runs `attempt` until it succeeds, a failure is not retryable, the deadline
 * passes (UnavailableError naming the last cause) or `signal` aborts
 * (CanceledError). An attempt gets its own time budget and the signal, and
 * must release whatever it opened when it fails or is aborted.
 */
export async function retryUntilDeadline<T>(
  attempt: (attemptTimeoutMs: number, signal: AbortSignal | undefined) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { timeoutMs, attemptTimeoutMs, intervalMs, signal, isRetryable, target } = options;
  for (const [name, value] of Object.entries({ timeoutMs, attemptTimeoutMs, intervalMs })) {
    if (!Number.isFinite(value) || value < 0) throw new InvalidArgumentError(`${target}: ${name} must be a non-negative number, got ${value}`);
  }
  const started = Date.now();
  const deadline = started + timeoutMs;
  let attempts = 0;
  let last: unknown;
  for (;;) {
    if (signal?.aborted) throw canceled(target, signal);
    const attemptStart = Date.now();
    if (attempts > 0 && attemptStart >= deadline) {
      throw new UnavailableError(
        `${target}: not available after ${attemptStart - started} ms (${attempts} attempt${attempts === 1 ? '' : 's'}); last error: ${describe(last)}`,
        { cause: last },
      );
    }
    // Always at least one attempt, and never one with a zero budget (that would time out unseen).
    const budget = Math.max(1, Math.min(attemptTimeoutMs, deadline - attemptStart));
    attempts++;
    try {
      return await attempt(budget, signal);
    } catch (err) {
      if (signal?.aborted) throw canceled(target, signal);
      if (!isRetryable(err)) throw new UnavailableError(`${target}: ${describe(err)}`, { cause: err });
      last = err;
    }
    const pause = Math.min(deadline, attemptStart + intervalMs) - Date.now();
    if (pause > 0) {
      try {
        await sleep(pause, undefined, { signal });
      } catch {
        throw canceled(target, signal);
      }
    }
  }
}

/** An error's message, falling back to String() for non-errors. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function canceled(target: string, signal: AbortSignal | undefined): CanceledError {
  return new CanceledError(`${target}: dial canceled`, { cause: signal?.reason });
}
