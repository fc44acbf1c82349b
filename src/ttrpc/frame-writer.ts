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
  private afterFlush: (() => void) | undefined;

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
    if (this.waiting) this.queue.push(frame);
    else if (!this.stream.write(frame)) this.setWaiting(true);
    return true;
  }

  /** Ends the stream once every queued frame has been handed to it; `callback` runs on 'finish'. */
  end(callback: () => void): void {
    if (this.ending) return;
    this.ending = true;
    if (this.waiting) this.afterFlush = () => this.stream.end(callback);
    else this.stream.end(callback);
  }

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
    const next = this.afterFlush;
    this.afterFlush = undefined;
    next?.();
  }

  private setWaiting(waiting: boolean): void {
    this.waiting = waiting;
    this.onBlocked?.(waiting);
  }
}
