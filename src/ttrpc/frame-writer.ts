import type { Writable } from 'node:stream';

/**
 * Serialises frames onto a stream. Each frame is one buffer handed to one
 * write(), so frames never interleave. Once the stream reports backpressure
 * (write() returned false) further frames wait in a queue until 'drain';
 * `onBlocked` lets the owner stop producing meanwhile.
 */
export class FrameWriter {
  private queue: Buffer[] = [];
  private waiting = false;
  private ending = false;

  constructor(
    private readonly stream: Writable,
    private readonly onBlocked?: (blocked: boolean) => void,
  ) {
    stream.on('drain', () => this.flush());
  }

  /** True while frames wait for the stream to drain. */
  get blocked(): boolean {
    return this.waiting;
  }

  /** Queues a frame; false if the stream can no longer be written. */
  write(frame: Buffer): boolean {
    if (this.ending || !this.writable()) return false;
    if (this.waiting) {
      this.queue.push(frame);
      return true;
    }
    if (!this.stream.write(frame)) this.setWaiting(true);
    return true;
  }

  /** Ends the stream once every queued frame has been handed to it. */
  end(callback: () => void): void {
    this.ending = true;
    if (!this.waiting) this.stream.end(callback);
    else this.endCallback = callback;
  }

  private endCallback: (() => void) | undefined;

  private writable(): boolean {
    return !this.stream.destroyed && !this.stream.writableEnded;
  }

  private flush(): void {
    if (!this.waiting) return;
    const queue = this.queue;
    this.queue = [];
    for (let i = 0; i < queue.length; i++) {
      if (!this.writable()) return;
      if (!this.stream.write(queue[i]!)) {
        this.queue = queue.slice(i + 1);
        return;
      }
    }
    this.setWaiting(false);
    if (this.endCallback) {
      const cb = this.endCallback;
      this.endCallback = undefined;
      this.stream.end(cb);
    }
  }

  private setWaiting(waiting: boolean): void {
    this.waiting = waiting;
    this.onBlocked?.(waiting);
  }
}
