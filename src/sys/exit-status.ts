/** How a process ended, as the task API reports it. */
export interface ExitStatus {
  readonly pid: number;
  /** The exit code, or 128+signal for a signal death. */
  readonly status: number;
  /** The signal that ended it, when the reaper knows one (null or absent for an exit). */
  readonly signal?: number | null;
  readonly exitedAt: Date;
}

/** containerd's "not exited" time: Go's zero time.Time, seconds since 1970. */
export const GO_ZERO_TIME_SECONDS = -62135596800;

export function timestampOf(date: Date | undefined): { seconds: number; nanos: number } {
  if (!date) return { seconds: GO_ZERO_TIME_SECONDS, nanos: 0 };
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

export function dateOf(ts: { seconds?: number | null; nanos?: number | null } | null | undefined): Date | undefined {
  if (!ts || ts.seconds == null || Number(ts.seconds) === GO_ZERO_TIME_SECONDS) return undefined;
  return new Date(Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1_000_000));
}
