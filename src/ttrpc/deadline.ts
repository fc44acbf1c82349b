import { Code } from './codes.js';
import type { Status } from './status.js';

/** setTimeout's ceiling; a longer timeout is treated as no timer at all (it would fire at once). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Go's context.DeadlineExceeded as a status. */
export const DEADLINE_EXCEEDED: Status = { code: Code.DeadlineExceeded, message: 'context deadline exceeded' };

/** Go's context.Canceled as a status. */
export const CANCELED: Status = { code: Code.Canceled, message: 'context canceled' };

/** Converts a relative timeout in ms into timeout_nano (0 = none). */
export function timeoutNanoFromMs(timeoutMs: number | undefined): number {
  if (timeoutMs === undefined || !Number.isFinite(timeoutMs) || timeoutMs <= 0) return 0;
  return Math.max(1, Math.round(timeoutMs * 1e6));
}
