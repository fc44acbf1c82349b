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
