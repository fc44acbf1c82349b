import type { Metadata } from './metadata.js';

/** What a server-side handler learns about the call it serves. */
export interface CallContext {
  readonly service: string;
  readonly method: string;
  readonly metadata: Metadata;
  /** Aborted when the deadline (timeout_nano) passes or the connection goes away. */
  readonly signal: AbortSignal;
  /** Absolute deadline in ms since the epoch, if the caller set one. */
  readonly deadline: number | undefined;
}

/** Per-call options on the client side. */
export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Relative timeout in ms; sent as timeout_nano. */
  readonly timeoutMs?: number;
  readonly metadata?: Metadata;
}
