import type { Duplex } from 'node:stream';

/** The stdio fds runc hands the process: a number is an open fd, 'ignore' is /dev/null. */
export type RuncStdio = [number | 'ignore', number | 'ignore', number | 'ignore'];

/**
 * One process's stdio, from the shim's side. The order of use is:
 * `stdio` goes to runc create/exec; `releaseProcessEnds()` once runc has
 * returned (the process holds its own copies); `attachConsole()` for a
 * terminal; `closeStdin()` on CloseIO; `drain()` before Delete answers;
 * `close()` last, always.
 */
export interface ProcessIO {
  readonly stdio: RuncStdio;
  releaseProcessEnds(): void;
  attachConsole(master: Duplex): void;
  closeStdin(): void;
  drain(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}
