import type { Duplex } from 'node:stream';
import type { ProcessIO, RuncStdio } from './process-io.js';

/** No stdio at all: the process gets /dev/null, a console is read and dropped. */
export class NullIO implements ProcessIO {
  readonly stdio: RuncStdio = ['ignore', 'ignore', 'ignore'];
  private console: Duplex | undefined;
  releaseProcessEnds(): void {}
  attachConsole(master: Duplex): void {
    this.console = master;
    master.resume();
  }
  closeStdin(): void {}
  async drain(): Promise<void> {}
  async close(): Promise<void> {
    this.console?.destroy();
  }
}
