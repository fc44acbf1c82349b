import { closeSync, constants, openSync } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { setNonblocking } from '../../native/fd.js';
import { CopyGroup } from './copy-group.js';
import type { ProcessIO, RuncStdio } from './process-io.js';
import { StdinKeepAlive } from './stdin-keep-alive.js';
import { outputRead } from './unread-output.js';

const { O_RDONLY, O_RDWR, O_NONBLOCK } = constants;

/**
 * Stdio over the client's FIFOs.
 *
 * Without a terminal the FIFOs themselves become the process's stdio: the
 * shim copies nothing, so output costs the shim no CPU or memory and needs
 * no drain. Output FIFOs are opened read-write, which never blocks and never
 * raises EPIPE when the client's reader goes away, like the runc shim's own
 * extra reader. Stdin is opened for reading, and once the process is
 * created the shim holds a writer (stdin-keep-alive.ts) so the process sees
 * EOF only after CloseIO.
 * Output FIFOs keep the kernel's default size, as under the runc shim: what
 * a FIFO holds when the process exits is what a client that stops reading
 * at the exit would lose, and the exit waits (bounded) until it is read.
 *
 * With a terminal, the pty master is copied to and from the FIFOs.
 */
export class FifoIO implements ProcessIO {
  readonly stdio: RuncStdio = ['ignore', 'ignore', 'ignore'];
  private readonly processEnds: number[] = [];
  private readonly stdinKeepAlive: StdinKeepAlive | undefined;
  private stdinReader: number | undefined;
  /** Read-only ends of the output FIFOs, never read from: they tell what the client has not read yet. */
  private readonly outputProbes: number[] = [];
  private readonly copies = new CopyGroup();
  private closed = false;

  constructor(
    private readonly paths: { stdin: string; stdout: string; stderr: string },
    private readonly terminal: boolean,
  ) {
    this.stdinKeepAlive = paths.stdin ? new StdinKeepAlive(paths.stdin) : undefined;
    try {
      if (paths.stdin) {
        // A non-blocking open for reading succeeds with no writer yet; the
        // keep-alive writer can then open without blocking either.
        const reader = openSync(paths.stdin, O_RDONLY | O_NONBLOCK);
        setNonblocking(reader, false);
        this.stdinReader = reader;
        this.holdProcessEnd(0, reader);
      }
      if (!terminal) {
        if (paths.stdout) this.holdProcessEnd(1, openSync(paths.stdout, O_RDWR));
        if (paths.stderr) this.holdProcessEnd(2, openSync(paths.stderr, O_RDWR));
      }
      for (const path of terminal ? [paths.stdout] : [paths.stdout, paths.stderr]) {
        if (path) this.outputProbes.push(openSync(path, O_RDONLY | O_NONBLOCK));
      }
    } catch (err) {
      this.closeFds();
      throw err;
    }
  }

  private holdProcessEnd(index: 0 | 1 | 2, fd: number): void {
    this.processEnds.push(fd);
    if (!this.terminal) this.stdio[index] = fd;
  }

  holdStdinOpen(): void {
    this.stdinKeepAlive?.hold(this.stdinReader);
  }

  releaseProcessEnds(): void {
    if (this.terminal) return; // the stdin reader feeds the console copy
    for (const fd of this.processEnds.splice(0)) closeSync(fd);
    this.stdinReader = undefined;
  }

  attachConsole(master: Duplex): void {
    if (this.processEnds.length > 0) {
      const stdin = new net.Socket({ fd: this.processEnds.splice(0, 1)[0]!, readable: true, writable: false });
      this.copies.pipe(stdin, master, { endTarget: false });
    }
    if (this.paths.stdout) {
      const stdout = new net.Socket({ fd: openSync(this.paths.stdout, O_RDWR | O_NONBLOCK), readable: false, writable: true });
      this.copies.pipe(master, stdout, { endTarget: true });
    } else {
      master.resume();
    }
  }

  closeStdin(): void {
    this.stdinKeepAlive?.release();
  }

  drain(timeoutMs: number): Promise<void> {
    return this.copies.drain(timeoutMs);
  }

  async outputRead(timeoutMs: number): Promise<void> {
    if (!this.closed) await outputRead(this.outputProbes, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closeFds();
    this.copies.destroy();
  }

  private closeFds(): void {
    for (const fd of [...this.processEnds.splice(0), ...this.outputProbes.splice(0)]) closeSync(fd);
    this.stdinReader = undefined;
    this.closeStdin();
  }
}
