import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TaskClient } from '../src/generated/services.js';
import { Client } from '../src/ttrpc/client.js';
import { Metadata, NAMESPACE_KEY } from '../src/ttrpc/metadata.js';
import type { Containerd, RuntimeName } from '../test/harness/index.js';
import { errorText, nowMs, removeContainers, runSleeper, type BenchSettings } from './common.js';
import { makeRow, type MeasureResult, type Row } from './report.js';

/** Concurrent callers per sample. */
export const CONCURRENCY = [1, 32] as const;
const WARMUP_CALLS = 200;
const CALL_TIMEOUT_MS = 5_000;

/** The address containerd recorded for a task's shim (unix:///run/containerd/s/<hash>). */
export function shimAddress(c: Containerd, namespace: string, id: string): string {
  return readFileSync(join(c.state, 'io.containerd.runtime.v2.task', namespace, id, 'address'), 'utf8').trim();
}

/** Calls Task/Connect from `callers` loops sharing one connection until `seconds` pass; returns calls per second. */
async function rate(task: TaskClient, id: string, callers: number, seconds: number): Promise<number> {
  const start = nowMs();
  const deadline = start + seconds * 1000;
  let calls = 0;
  const loop = async (): Promise<void> => {
    while (nowMs() < deadline) {
      await task.connect({ id }, { timeoutMs: CALL_TIMEOUT_MS });
      calls++;
    }
  };
  await Promise.all(Array.from({ length: callers }, loop));
  return calls / ((nowMs() - start) / 1000);
}

/**
 * Measure 4: round trips per second of Task/Connect from the project's ttrpc
 * client straight to each shim's socket (bypassing containerd), each shim
 * serving one running container, with 1 and 32 concurrent callers.
 */
export async function measureTtrpcRate(c: Containerd, s: BenchSettings, signal: AbortSignal): Promise<MeasureResult> {
  const t0 = nowMs();
  const names: RuntimeName[] = ['flint', 'runc'];
  const ids: Record<string, string> = {};
  const clients: Client[] = [];
  const tasks: Partial<Record<RuntimeName, TaskClient>> = {};
  const rps: Record<string, Record<number, number>> = { flint: {}, runc: {} };
  const addresses: Record<string, string> = {};
  const errors: string[] = [];
  try {
    for (const rt of names) {
      ids[rt] = c.newId(`ttrpc-${rt}`);
      try {
        await runSleeper(c, rt, ids[rt]!);
        addresses[rt] = shimAddress(c, c.namespace, ids[rt]!);
        const client = await Client.connect(addresses[rt]!, { metadata: new Metadata({ [NAMESPACE_KEY]: c.namespace }) });
        clients.push(client);
        const task = new TaskClient(client);
        for (let i = 0; i < WARMUP_CALLS; i++) await task.connect({ id: ids[rt]! }, { timeoutMs: CALL_TIMEOUT_MS });
        tasks[rt] = task;
      } catch (err) {
        errors.push(`${rt}: ${errorText(err)}`);
      }
    }
    for (const callers of CONCURRENCY) {
      for (const rt of names) {
        const task = tasks[rt];
        if (task === undefined || signal.aborted) continue;
        try {
          rps[rt]![callers] = await rate(task, ids[rt]!, callers, s.ttrpcSeconds);
        } catch (err) {
          errors.push(`${rt}, ${callers} caller(s): ${errorText(err)}`);
        }
      }
    }
  } finally {
    await Promise.all(clients.map((cl) => cl.close()));
    await removeContainers(c, Object.values(ids));
  }
  const rows: Row[] = CONCURRENCY.map((callers) =>
    makeRow({
      measure: `ttrpc Task/Connect, ${callers} caller${callers === 1 ? '' : 's'}`,
      unit: 'calls/s',
      subjectLabel: 'flint',
      subject: rps.flint![callers],
      referenceLabel: 'runc',
      reference: rps.runc![callers],
      target: { op: '>=', value: 1.0 },
      note: errors.length > 0 ? `${errors.length} failure(s), see results.json` : '',
    }),
  );
  return {
    name: 'ttrpc',
    rows,
    details: { method: 'containerd.task.v2.Task/Connect', seconds: s.ttrpcSeconds, addresses, callsPerSecond: rps },
    errors,
    seconds: (nowMs() - t0) / 1000,
  };
}
