import { native, type NativePoller, type PollCallback } from './addon.js';

export type { PollCallback };

/** Watches a nonblocking fd on Node's event loop; see NativePoller. */
export type Poller = NativePoller;

/** new Poller(fd, (err, events) => ...). Closing the poller leaves the fd open. */
export const Poller: new (fd: number, callback: PollCallback) => Poller = native.Poller;

/** Bits of the `events` argument of a PollCallback. */
export const POLL_READABLE: number = native.constants.POLL_READABLE;
export const POLL_WRITABLE: number = native.constants.POLL_WRITABLE;
