import type { Readable } from 'node:stream';

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
