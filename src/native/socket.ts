import { native } from './addon.js';

/** Accepts one pending connection as a nonblocking, close-on-exec fd; null when none is queued. */
export function accept4(fd: number): number | null {
  return native.accept4(fd);
}

/** The socket's pending error (SO_ERROR) as a positive errno; 0 when none. Clears it. */
export function socketError(fd: number): number {
  return native.socketError(fd);
}

/** shutdown(SHUT_WR): tells the peer we will write no more. */
export function shutdownWrite(fd: number): void {
  native.shutdownWrite(fd);
}

/** A connected pair of AF_UNIX stream sockets (blocking, close-on-exec). */
export function socketpair(): [number, number] {
  return native.socketpair();
}
