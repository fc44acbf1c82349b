import type { ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { pipe } from '../../native/fd.js';
import { Reaper } from '../../sys/reaper.js';
import { CopyGroup } from './copy-group.js';
import type { ProcessIO, RuncStdio } from './process-io.js';

const LOGGER_READY_TIMEOUT_MS = 10_000;
const LOGGER_EXIT_TIMEOUT_MS = 5_000;

/**
 * `binary:///path?k=v`: output goes to a logger process, containerd's
 * shim-logger protocol: CONTAINER_ID and CONTAINER_NAMESPACE in its
 * environment, the read ends of stdout and stderr pipes as fds 3 and 4, and
 * fd 5 a pipe it closes once it is ready to read.
 */
export class BinaryIO implements ProcessIO {
  readonly stdio: RuncStdio = ['ignore', 'ignore', 'ignore'];
  private readonly processEnds: number[] = [];
  private readonly copies = new CopyGroup();
  private logger: ChildProcess | undefined;
  private loggerExit: Promise<void> | undefined;

  static async start(path: string, args: readonly string[], terminal: boolean, env: { id: string; namespace: string }): Promise<BinaryIO> {
    const io = new BinaryIO(terminal);
    try {
      await io.startLogger(path, args, env);
      return io;
    } catch (err) {
      await io.close();
      throw err;
    }
  }

  private constructor(private readonly terminal: boolean) {}

  private async startLogger(path: string, args: readonly string[], env: { id: string; namespace: string }): Promise<void> {
    const [outR, outW] = pipe();
    const [errR, errW] = pipe();
    const [readyR, readyW] = pipe();
    this.processEnds.push(outW, errW);
    if (!this.terminal) {
      this.stdio[1] = outW;
      this.stdio[2] = errW;
    }
    const logger = Reaper.get().spawn(path, [...args], {
      stdio: ['ignore', 'ignore', 'ignore', outR, errR, readyW],
      env: { ...process.env, CONTAINER_ID: env.id, CONTAINER_NAMESPACE: env.namespace },
      detached: false,
    });
    this.logger = logger;
    this.loggerExit = new Promise((resolve) => {
      logger.once('exit', () => resolve());
      logger.once('error', () => resolve());
    });
    for (const fd of [outR, errR, readyW]) closeSync(fd);
    await waitReady(readyR, logger, path);
  }

  releaseProcessEnds(): void {
    if (this.terminal) return;
    for (const fd of this.processEnds.splice(0)) closeSync(fd);
  }

  attachConsole(master: Duplex): void {
    const fd = this.processEnds.shift();
    if (fd === undefined) return;
    this.copies.pipe(master, new net.Socket({ fd, readable: false, writable: true }), { endTarget: true });
  }

  closeStdin(): void {}

  drain(timeoutMs: number): Promise<void> {
    return this.copies.drain(timeoutMs);
  }

  async close(): Promise<void> {
    for (const fd of this.processEnds.splice(0)) closeSync(fd);
    this.copies.destroy();
    // The logger exits once every writer of its pipes is gone.
    if (this.logger && this.loggerExit) {
      const timer = setTimeout(() => this.logger?.kill('SIGKILL'), LOGGER_EXIT_TIMEOUT_MS);
      await this.loggerExit;
      clearTimeout(timer);
    }
  }
}

function waitReady(readyFd: number, logger: ChildProcess, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ready = new net.Socket({ fd: readyFd, readable: true, writable: false });
    const timer = setTimeout(() => finish(new Error(`logger ${path} was not ready within ${LOGGER_READY_TIMEOUT_MS} ms`)), LOGGER_READY_TIMEOUT_MS);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      ready.destroy();
      logger.off('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onError = (err: Error) => finish(new Error(`cannot start logger ${path}: ${err.message}`));
    logger.once('error', onError);
    ready.resume();
    ready.once('close', () => finish());
  });
}
