import { Writable } from 'node:stream';
import t from 'tap';
import { FrameWriter } from '../src/ttrpc/frame-writer.js';
import { delay } from './ttrpc-fixture.js';

/** A writable that takes one chunk per tick, so backpressure builds up. */
function slowSink(highWaterMark: number): { stream: Writable; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      setImmediate(callback);
    },
  });
  return { stream, chunks };
}

t.test('frames queue behind backpressure and keep their order', async (t) => {
  const { stream, chunks } = slowSink(16);
  const blocked: boolean[] = [];
  const writer = new FrameWriter(stream, (b) => blocked.push(b));
  for (let i = 0; i < 20; i++) t.ok(writer.write(Buffer.from(`frame-${i}-${'x'.repeat(10)}`)));
  t.ok(writer.blocked, 'blocked after the stream said stop');
  await new Promise<void>((resolve) => writer.end(resolve));
  t.same(
    chunks.map((c) => c.toString().split('-')[1]),
    Array.from({ length: 20 }, (_, i) => String(i)),
  );
  t.same(blocked, [true, false], 'owner told when writes block and when they resume');
  t.notOk(writer.write(Buffer.from('late')), 'nothing is written after end');
});

t.test('writes to a destroyed stream are refused', async (t) => {
  const { stream } = slowSink(1024);
  stream.on('error', () => {});
  const writer = new FrameWriter(stream);
  stream.destroy();
  await delay(1);
  t.notOk(writer.write(Buffer.from('x')));
});
