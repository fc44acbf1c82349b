import { closeSync, constants, openSync } from 'node:fs';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { mkfifo, unreadBytes } from '../../src/native/fd.js';

/**
 * Reads a stream at a fixed, slow pace: `bytesPerTick` every `tickMs`, in
 * paused mode, so whatever writes into it is held back by backpressure
 * instead of being drained as fast as it comes. drain() switches to full
 * speed (to let the writer finish), stop() stops reading altogether.
 */
export class SlowReader {
  private timer: NodeJS.Timeout | undefined;
  private draining = false;
  /** Bytes consumed so far. */
  consumed = 0;

  constructor(
    private readonly stream: Readable,
    private readonly bytesPerTick: number,
    private readonly tickMs: number,
  ) {
    stream.pause();
    this.timer = setInterval(() => this.tick(), tickMs);
  }

  /** Reads as fast as the stream delivers from now on. */
  drain(): void {
    this.stop();
    this.draining = true;
    this.stream.on('data', (b: Buffer) => (this.consumed += b.length));
    this.stream.resume();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Bytes per second the reader takes at most. */
  get rate(): number {
    return (this.bytesPerTick * 1000) / this.tickMs;
  }

  private tick(): void {
    if (this.draining) return;
    let want = this.bytesPerTick;
    while (want > 0) {
      const chunk = this.stream.read(Math.min(want, this.stream.readableLength || want)) as Buffer | null;
      if (chunk === null) break;
      this.consumed += chunk.length;
      want -= chunk.length;
    }
  }
}

/** A FIFO read by a SlowReader, as a client that takes its output at its own pace. */
export interface PacedFifo {
  readonly path: string;
  /** What the FIFO holds that the reader has not taken yet. */
  unread(): number;
  /** Stops reading and closes the FIFO's ends; the file stays. */
  close(): void;
}

/** Makes a FIFO at `path` and reads it `bytesPerTick` every `tickMs`. */
export function openPacedFifo(path: string, bytesPerTick: number, tickMs: number): PacedFifo {
  mkfifo(path);
  const socket = new net.Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
  // A write end of our own: it keeps the FIFO open between writers, and FIONREAD on it tells what is unread.
  const probe = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const reader = new SlowReader(socket, bytesPerTick, tickMs);
  return {
    path,
    unread: () => unreadBytes(probe),
    close: () => {
      reader.stop();
      socket.destroy();
      closeSync(probe);
    },
  };
}
