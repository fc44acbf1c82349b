import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createShimLogger, shimLogLevel } from '../src/shim/logger.js';
import { FifoReader } from './harness/fifo-reader.js';

/**
 * The shim server's logger: JSON lines into the bundle's `log` FIFO, at the
 * configured level, which containerd's `-debug` raises but never lowers.
 */
const tmp = mkdtempSync(join(tmpdir(), 'flint-logger-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** The JSON lines read so far, once `last` has arrived. */
async function linesUpTo(fifo: FifoReader, last: string): Promise<Record<string, unknown>[]> {
  const text = await fifo.waitFor(last);
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
}

t.test('-debug raises the configured level to debug, and never lowers it', (t) => {
  const cases: [configured: string, debug: boolean, want: string][] = [
    ['info', false, 'info'],
    ['info', true, 'debug'],
    ['warn', true, 'debug'],
    ['error', true, 'debug'],
    ['debug', true, 'debug'],
    ['debug', false, 'debug'],
    ['trace', true, 'trace'],
    ['trace', false, 'trace'],
  ];
  for (const [configured, debug, want] of cases) t.equal(shimLogLevel(configured, debug), want, `${configured}${debug ? ' -debug' : ''}`);
  t.end();
});

t.test('JSON lines into the FIFO with the bindings, below-level lines dropped', async (t) => {
  const fifo = new FifoReader(join(tmp, 'log-info'));
  t.teardown(() => fifo.close());
  const log = createShimLogger(fifo.path, 'info', { runtime: 'flint', namespace: 'ns1' });
  log.debug('hidden');
  log.info({ id: 'c1' }, 'shown');
  log.warn('last');
  const lines = await linesUpTo(fifo, '"last"');
  t.same(lines.map((l) => l.msg), ['shown', 'last'], 'the debug line is dropped at info');
  t.match(lines[0], { level: 30, runtime: 'flint', namespace: 'ns1', pid: process.pid, id: 'c1' });
  t.equal(lines[1]!.level, 40);
});

t.test('at debug the debug lines are written too', async (t) => {
  const fifo = new FifoReader(join(tmp, 'log-debug'));
  t.teardown(() => fifo.close());
  const log = createShimLogger(fifo.path, shimLogLevel('info', true), { runtime: 'flint', namespace: 'ns1' });
  log.debug('detail');
  log.info('last');
  const lines = await linesUpTo(fifo, '"last"');
  t.same(lines.map((l) => [l.level, l.msg]), [[20, 'detail'], [30, 'last']]);
});

t.test('no FIFO (the server run by hand): logging is off, nothing thrown', (t) => {
  const log = createShimLogger(join(tmp, 'no-such-log'), 'debug', { runtime: 'flint', namespace: 'ns1' });
  t.equal(log.isLevelEnabled('error'), false);
  t.doesNotThrow(() => log.error('dropped'));
  t.end();
});
