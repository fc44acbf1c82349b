import { readSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';

import { native } from './addon.js';
import { isErrno } from './errno.js';

// The counter is a host-endian u64.
const LITTLE_ENDIAN = endianness() === 'LE';

/** eventfd(2) flags. */
export const EFD_CLOEXEC: number = native.constants.EFD_CLOEXEC;
export const EFD_NONBLOCK: number = native.constants.EFD_NONBLOCK;
export const EFD_SEMAPHORE: number = native.constants.EFD_SEMAPHORE;

/**
 * eventfd(2); nonblocking and close-on-exec by default. For cgroup v1 OOM
 * notification write "<efd> <memory.oom_control fd>" to cgroup.event_control,
 * then poll the eventfd readable and readEventfd() it.
 */
export function eventfd(initval = 0, flags: number = EFD_CLOEXEC | EFD_NONBLOCK): number {
  return native.eventfd(initval, flags);
}

/** Reads and resets the counter; null when it is zero (nonblocking fd). */
export function readEventfd(fd: number): bigint | null {
  const buf = Buffer.alloc(8);
  try {
    readSync(fd, buf, 0, 8, null);
  } catch (err) {
    if (isErrno(err, 'EAGAIN')) return null;
    throw err;
  }
  return LITTLE_ENDIAN ? buf.readBigUInt64LE(0) : buf.readBigUInt64BE(0);
}

/** Adds `value` to the counter. */
export function writeEventfd(fd: number, value: bigint | number = 1n): void {
  const buf = Buffer.alloc(8);
  if (LITTLE_ENDIAN) buf.writeBigUInt64LE(BigInt(value));
  else buf.writeBigUInt64BE(BigInt(value));
  writeSync(fd, buf, 0, 8);
}
