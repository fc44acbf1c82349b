import { setTimeout as sleep } from 'node:timers/promises';
import { unreadBytes } from '../../native/fd.js';

/** How often the FIFOs are looked at while their reader catches up. */
const POLL_MS = 5;
/** A reader that has taken nothing for this long is taken to have stopped reading. */
const STALL_MS = 500;

/**
 * Waits until the FIFOs behind `fds` hold nothing unread: the client has
 * read all the output written so far. containerd 1.6's CRI closes its FIFO
 * readers once it learns of an exit, and what they have not read by then
 * never reaches the container's log. Bounded: see untilRead.
 */
export function outputRead(fds: readonly number[], timeoutMs: number): Promise<void> {
  return untilRead(() => totalUnread(fds), timeoutMs);
}

/**
 * Waits until `unread()` says 0. Bounded: it returns after `timeoutMs`, or
 * sooner once the reader has taken nothing for STALL_MS (a client that went
 * away, or one that never reads, must not hold the exit back).
 */
export async function untilRead(unread: () => number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let least = Infinity;
  let progressAt = Date.now();
  for (;;) {
    const left = unread();
    if (left === 0) return;
    const now = Date.now();
    if (left < least) {
      least = left;
      progressAt = now;
    }
    if (now >= deadline || now - progressAt >= STALL_MS) return;
    await sleep(POLL_MS);
  }
}

/** What the FIFOs behind `fds` hold that no reader has taken yet. */
export function totalUnread(fds: readonly number[]): number {
  let total = 0;
  for (const fd of fds) total += unreadBytes(fd);
  return total;
}
