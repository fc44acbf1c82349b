import { pipeline, type Readable, type Writable } from 'node:stream';
import { waitAtMost } from '../../sys/wait-at-most.js';

/**
 * The copy loops of one process (console ↔ FIFOs, logger pipes). Each is a
 * stream pipeline, so a slow reader slows the writer instead of growing a
 * buffer; drain() waits for the output copies to finish, bounded in time.
 */
export class CopyGroup {
  private readonly streams = new Set<Readable | Writable>();
  private readonly outputs: Promise<void>[] = [];

  pipe(source: Readable, target: Writable, { endTarget }: { endTarget: boolean }): void {
    this.streams.add(source);
    this.streams.add(target);
    const done = new Promise<void>((resolve) => {
      if (endTarget) {
        pipeline(source, target, () => resolve());
      } else {
        // Input side (stdin → console): the console must stay open when stdin ends.
        source.pipe(target, { end: false });
        source.once('close', resolve);
        source.once('end', resolve);
        source.once('error', resolve);
        target.once('error', () => source.destroy());
      }
    });
    if (endTarget) this.outputs.push(done);
  }

  async drain(timeoutMs: number): Promise<void> {
    if (this.outputs.length === 0) return;
    await waitAtMost(Promise.all(this.outputs), timeoutMs);
  }

  destroy(): void {
    for (const stream of this.streams) stream.destroy();
    this.streams.clear();
  }
}
