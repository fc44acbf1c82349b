import { closeSync, constants, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkfifo } from '../../src/native/fd.js';

/**
 * A FIFO a test made and reads, for stdio paths handed to a shim directly.
 * Opened read-only-nonblocking (never waits for a writer) plus a writer of
 * our own, so the reader sees no EOF between the shim's writers; callers
 * poll for the text with waitFor().
 */
export class FifoReader {
  private text = '';
  private readonly socket: net.Socket;
  private readonly keepAlive: number;
  private closed = false;

  constructor(readonly path: string) {
    // mkfifo(3) itself: a mkfifo(1) process per FIFO was a good part of a leak-test cycle.
    mkfifo(path, 0o600);
    const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    this.keepAlive = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    this.socket.setEncoding('utf8');
    this.socket.on('data', (chunk: string) => (this.text += chunk));
    this.socket.on('error', () => {});
  }

  get output(): string {
    return this.text;
  }

  /** Polls until the output contains `needle` or `timeoutMs` passes; returns the output. */
  async waitFor(needle: string, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.text.includes(needle) && Date.now() < deadline) await sleep(10);
    return this.text;
  }

  /** Closes both ends and removes the FIFO; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    closeSync(this.keepAlive);
    rmSync(this.path, { force: true });
  }
}
