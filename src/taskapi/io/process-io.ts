import type { Duplex } from 'node:stream';

/** The stdio fds runc hands the process: a number is an open fd, 'ignore' is /dev/null. */
export type RuncStdio = [number | 'ignore', number | 'ignore', number | 'ignore'];

/**
 * One process's stdio, from the shim's side. The order of use is:
 * `stdio` goes to runc create/exec; `releaseProcessEnds()` once runc has
 * returned (the process holds its own copies); `attachConsole()` for a
 * terminal; `closeStdin()` on CloseIO; `drain()` and `outputRead()` before
 * the exit is reported; `drain()` before Delete answers; `close()` last,
 * always.
 */
export interface ProcessIO {
  readonly stdio: RuncStdio;
  releaseProcessEnds(): void;
  attachConsole(master: Duplex): void;
  /**
   * Holds stdin open until CloseIO (see stdin-keep-alive.ts): after `runc
   * create` for an init, whose process reads nothing before Start; before
   * `runc exec` for an exec, whose process may read at once.
   */
  holdStdinOpen?(): void;
  closeStdin(): void;
  /** Waits until the output copies (a console's) have finished; at most `timeoutMs`. */
  drain(timeoutMs: number): Promise<void>;
  /**
   * Waits until the client has read the output written so far, at most
   * `timeoutMs`; only the client's FIFOs tell (file and logger output has
   * no reader that could stop early).
   */
  outputRead?(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}
