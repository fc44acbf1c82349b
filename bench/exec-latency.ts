import type { Containerd, RuntimeName } from '../test/harness/index.js';
import { errorText, median, nowMs, removeContainers, runSleeper, summary, type BenchSettings } from './common.js';
import { makeRow, type MeasureResult } from './report.js';

const EXEC_TIMEOUT_MS = 30_000;

/**
 * Measure 5: `ctr task exec --exec-id X <id> /bin/true` against one running
 * container per runtime, alternating, median of BENCH_RUNS each.
 */
export async function measureExecLatency(c: Containerd, s: BenchSettings, signal: AbortSignal): Promise<MeasureResult> {
  const t0 = nowMs();
  const names: RuntimeName[] = ['flint', 'runc'];
  const ids: Record<string, string> = {};
  const ms: Record<string, number[]> = { flint: [], runc: [] };
  const errors: string[] = [];
  let stoppedEarly = false;
  try {
    for (const rt of names) {
      ids[rt] = c.newId(`exec-${rt}`);
      await runSleeper(c, rt, ids[rt]!);
    }
    let n = 0;
    const once = async (rt: RuntimeName, record: boolean): Promise<void> => {
      const execId = `x${++n}`;
      const start = nowMs();
      const r = await c.ctr(['tasks', 'exec', '--exec-id', execId, '--fifo-dir', c.fifoDir, ids[rt]!, '/bin/true'], { timeoutMs: EXEC_TIMEOUT_MS });
      const took = nowMs() - start;
      if (r.code !== 0) errors.push(`${rt}: exec ${execId} ${r.timedOut ? 'timed out' : `exited ${r.code}`}: ${r.stderr.trim()}`);
      else if (record) ms[rt]!.push(took);
    };
    for (const rt of names) await once(rt, false);
    for (let i = 0; i < s.runs; i++) {
      if (signal.aborted) {
        stoppedEarly = true;
        break;
      }
      for (const rt of i % 2 === 0 ? names : [...names].reverse()) await once(rt, true);
      if (errors.length >= 6 && (ms.flint!.length === 0 || ms.runc!.length === 0)) break;
    }
  } catch (err) {
    errors.push(errorText(err));
  } finally {
    await removeContainers(c, Object.values(ids));
  }
  const notes = [`n=${ms.flint!.length}/${ms.runc!.length}`];
  if (stoppedEarly) notes.push('stopped early: time budget');
  if (errors.length > 0) notes.push(`${errors.length} failure(s), see results.json`);
  return {
    name: 'exec',
    rows: [
      makeRow({
        measure: 'exec latency (median)',
        unit: 'ms',
        subjectLabel: 'flint',
        subject: median(ms.flint!),
        referenceLabel: 'runc',
        reference: median(ms.runc!),
        note: notes.join('; '),
      }),
    ],
    details: {
      command: 'ctr tasks exec --exec-id X --fifo-dir <dir> <id> /bin/true',
      flint: { ...summary(ms.flint!), samples: ms.flint },
      runc: { ...summary(ms.runc!), samples: ms.runc },
    },
    errors,
    seconds: (nowMs() - t0) / 1000,
  };
}
