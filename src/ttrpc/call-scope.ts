import { DEADLINE_EXCEEDED, MAX_TIMER_MS } from './deadline.js';
import { errorFromStatus } from './errors.js';

/**
 * The cancellation of one server-side call: its deadline, and an
 * AbortSignal aborted when that deadline passes or the connection goes
 * away. The signal and its timer exist only once a handler asks for the
 * signal; most calls (State, Connect, Kill...) never do, and an
 * AbortController per call is a measurable share of a small call's cost.
 */
export class CallScope {
  private controller: AbortController | undefined;
  private reason: unknown;
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;

  /** `deadline`: absolute, in ms since the epoch, if the caller set one. */
  constructor(readonly deadline: number | undefined) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
      else this.armDeadline();
    }
    return this.controller.signal;
  }

  /** Aborts the call (the signal, whenever it is asked for, is aborted with `reason`). */
  abort(reason: unknown): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    clearTimeout(this.timer);
    this.controller?.abort(reason);
  }

  /** The call has ended: no timer may outlive it. */
  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
  }

  private armDeadline(): void {
    if (this.deadline === undefined || this.disposed) return;
    const ms = this.deadline - Date.now();
    // Like context.WithTimeout, a deadline already past gives a done signal.
    if (ms <= 0) this.abort(errorFromStatus(DEADLINE_EXCEEDED));
    else if (ms <= MAX_TIMER_MS) {
      this.timer = setTimeout(() => this.abort(errorFromStatus(DEADLINE_EXCEEDED)), Math.ceil(ms));
      this.timer.unref();
    }
  }
}
