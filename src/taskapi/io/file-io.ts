import { closeSync, constants, createWriteStream, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import { CopyGroup } from './copy-group.js';
import type { ProcessIO, RuncStdio } from './process-io.js';

/**
 * `file:///path`: stdout and stderr are appended to one file. The file is
 * the process's own stdout/stderr, so nothing is copied; a terminal's
 * output is copied from the pty master.
 */
export class FileIO implements ProcessIO {
  readonly stdio: RuncStdio = ['ignore', 'ignore', 'ignore'];
  private fd: number | undefined;
  private readonly copies = new CopyGroup();

  constructor(path: string, private readonly terminal: boolean) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
    if (!terminal) this.stdio[1] = this.stdio[2] = this.fd;
  }

  releaseProcessEnds(): void {
    if (this.terminal) return;
    this.closeFd();
  }

  attachConsole(master: Duplex): void {
    if (this.fd === undefined) return;
    const out = createWriteStream('', { fd: this.fd });
    this.fd = undefined; // the socket owns it now
    this.copies.pipe(master, out, { endTarget: true });
  }

  closeStdin(): void {}

  drain(timeoutMs: number): Promise<void> {
    return this.copies.drain(timeoutMs);
  }

  async close(): Promise<void> {
    this.closeFd();
    this.copies.destroy();
  }

  private closeFd(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
