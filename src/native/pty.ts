import { native } from './addon.js';

/** A pseudo-terminal pair; both fds are close-on-exec and not our controlling tty. */
export interface PtyPair {
  readonly master: number;
  readonly slave: number;
  /** The slave's path, e.g. /dev/pts/3. */
  readonly name: string;
}

/** Terminal size in character cells. */
export interface Winsize {
  readonly rows: number;
  readonly cols: number;
}

/** Opens a new pty pair (posix_openpt + grantpt + unlockpt + open slave). */
export function openPty(): PtyPair {
  return native.openPty();
}

/** ioctl(TIOCSWINSZ): resizes the terminal (the foreground group gets SIGWINCH). */
export function setWinsize(fd: number, rows: number, cols: number): void {
  native.setWinsize(fd, rows, cols);
}

/** ioctl(TIOCGWINSZ). */
export function getWinsize(fd: number): Winsize {
  return native.getWinsize(fd);
}
