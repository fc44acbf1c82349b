import { constants, openSync } from 'node:fs';
import pino, { type Logger } from 'pino';

/**
 * The level the server logs at: the configured one, raised to `debug` by
 * containerd's `-debug` flag (given when containerd itself logs at debug or
 * trace). The flag only ever adds detail: a configured `trace` stays.
 */
export function shimLogLevel(configured: string, debug: boolean): string {
  if (!debug) return configured;
  const value = pino.levels.values[configured];
  return value !== undefined && value <= pino.levels.values.debug! ? configured : 'debug';
}

/**
 * The shim server's logger: JSON lines (pino) into the bundle's `log` FIFO,
 * which containerd opened before running `start` and copies into its own
 * log. With no FIFO (run by hand) logs are dropped rather than written to
 * stdio, which containerd reads as the shim's answer.
 */
export function createShimLogger(fifoPath: string, level: string, bindings: Record<string, string>): Logger {
  let fd: number;
  try {
    fd = openSync(fifoPath, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return pino({ level, enabled: false });
  }
  // Synchronous writes that never retry: an asynchronous destination is
  // flushed at exit by sonic-boom's flushSync, which retries forever once the
  // FIFO has no reader (EPIPE: containerd closes it after Shutdown), so the
  // server would never exit; and a full FIFO (EAGAIN) must not block the
  // shim either. A line that cannot be written now is kept for the next write.
  const destination = pino.destination({ dest: fd, sync: true, retryEAGAIN: () => false });
  // containerd goes away (or deletes the bundle) before we do: never die of a log write.
  destination.on('error', () => {});
  const log = pino({ level, base: { pid: process.pid, ...bindings } }, destination);
  fifoDestinations.set(log, destination);
  return log;
}

type Destination = ReturnType<typeof pino.destination>;
const fifoDestinations = new WeakMap<Logger, Destination>();

/**
 * Closes the logger's FIFO, for a server that serves on (as a spare) after
 * its group's bundle is gone. Lines that cannot be written now are dropped.
 */
export function closeShimLogger(log: Logger): void {
  const destination = fifoDestinations.get(log);
  if (!destination) return;
  fifoDestinations.delete(log);
  try {
    destination.flushSync();
  } catch {
    // EAGAIN or EPIPE: containerd stopped reading.
  }
  destination.destroy();
}
