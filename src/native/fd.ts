import { native } from './addon.js';

/** pipe2(O_CLOEXEC): [readFd, writeFd], both blocking. */
export function pipe(): [number, number] {
  return native.pipe();
}

/** Sets or clears O_NONBLOCK (fcntl F_SETFL). */
export function setNonblocking(fd: number, on: boolean): void {
  native.setNonblocking(fd, on);
}

/** mkfifo(3): creates a named pipe at `path`. */
export function mkfifo(path: string, mode = 0o600): void {
  native.mkfifo(path, mode);
}

/** The pipe buffer size flint asks for on output FIFOs (the default pipe-max-size). */
export const OUTPUT_PIPE_SIZE = 1 << 20;

/**
 * Grows a pipe's or FIFO's buffer (F_SETPIPE_SZ), best effort: output then
 * streams with fewer wake-ups of writer and reader. Returns the size in
 * force, or undefined when the kernel refused (the default size stays).
 */
export function growPipe(fd: number, size = OUTPUT_PIPE_SIZE): number | undefined {
  try {
    return native.setPipeSize(fd, size);
  } catch {
    return undefined;
  }
}

/** FIONREAD: how many bytes a pipe or FIFO holds that no reader has taken yet. */
export function unreadBytes(fd: number): number {
  return native.unreadBytes(fd);
}

/**
 * True once the writers of a FIFO have come and gone: one opened it after
 * the reader `fd` did, and none holds it now (POLLHUP). A FIFO no writer has
 * opened yet says false.
 */
export function writersLeft(fd: number): boolean {
  return native.writersLeft(fd);
}
