import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startContainerd, type Containerd, type RuntimeName } from '../test/harness/index.js';
import { signal as sendSignal } from '../test/harness/procfs.js';
import {
  errorText,
  mapLimit,
  memoryOf,
  nowMs,
  removeContainers,
  runSleeper,
  shimProcesses,
  waitShimsGone,
  type BenchSettings,
} from './common.js';
import { makeRow, type MeasureResult, type Row } from './report.js';

/** Containers started at once; more only queues up behind containerd on 2 cores. */
const START_PARALLEL = 4;
/** Give up on a configuration after this many failed starts. */
const MAX_START_FAILURES = 5;
/** Let the shims finish start-up work (lazy module loads, first GC) before reading memory. */
const SETTLE_MS = 3_000;

/** Shim memory with N running containers under one configuration. */
export interface ShimMemory {
  /** e.g. "flint (group=sandbox)". */
  readonly label: string;
  readonly runtime: RuntimeName;
  readonly requested: number;
  readonly running: number;
  readonly shimProcesses: number;
  readonly totalPssKiB: number;
  readonly perContainerPssKiB: number;
  readonly totalRssKiB: number;
  readonly processes: ReadonlyArray<{ pid: number; pssKiB: number; rssKiB: number }>;
  readonly startSeconds: number;
  readonly errors: string[];
  /** Shim servers still alive 20 s after their containers were removed. */
  readonly shimsLeftAfterCleanup: number;
}

/**
 * Starts `count` `sleep 1000` containers under `runtime` in `c`, sums the
 * Pss of every shim server process (smaps_rollup, so shared pages are split
 * between the processes sharing them), then removes the containers and
 * waits for the shims to exit. Cleanup runs even when the budget runs out.
 */
export async function measureShimMemory(
  c: Containerd,
  runtime: RuntimeName,
  label: string,
  s: BenchSettings,
  signal: AbortSignal,
): Promise<ShimMemory> {
  const errors: string[] = [];
  const started: string[] = [];
  const ids = Array.from({ length: s.containers }, (_, i) => c.newId(`mem${i}`));
  const t0 = nowMs();
  const processes: Array<{ pid: number; pssKiB: number; rssKiB: number }> = [];
  let startSeconds = 0;
  let shimsLeftAfterCleanup = 0;
  try {
    await mapLimit(ids, START_PARALLEL, async (id) => {
      if (signal.aborted || errors.length >= MAX_START_FAILURES) return;
      try {
        await runSleeper(c, runtime, id);
        started.push(id);
      } catch (err) {
        errors.push(errorText(err));
      }
    });
    startSeconds = (nowMs() - t0) / 1000;
    if (signal.aborted) errors.push(`time budget ran out after ${started.length} containers`);
    await sleep(SETTLE_MS);
    for (const p of shimProcesses(c, runtime)) {
      const m = memoryOf(p.pid);
      if (m) processes.push({ pid: p.pid, ...m });
    }
  } finally {
    // Every id, not only started ones: a failed start can still leave a container record.
    await removeContainers(c, ids);
    shimsLeftAfterCleanup = await waitShimsGone(c, runtime);
  }
  processes.sort((a, b) => b.pssKiB - a.pssKiB);
  const totalPssKiB = processes.reduce((a, p) => a + p.pssKiB, 0);
  return {
    label,
    runtime,
    requested: s.containers,
    running: started.length,
    shimProcesses: processes.length,
    totalPssKiB,
    perContainerPssKiB: started.length > 0 ? totalPssKiB / started.length : NaN,
    totalRssKiB: processes.reduce((a, p) => a + p.rssKiB, 0),
    processes,
    startSeconds,
    errors,
    shimsLeftAfterCleanup,
  };
}

/** Pss of an idle `node -e 'setInterval(()=>{},1000)'`, as a floor for any node-based shim. */
export async function nodeBaselinePss(): Promise<{ pssKiB: number; rssKiB: number } | undefined> {
  const child = spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore' });
  try {
    await sleep(1_000);
    return child.pid === undefined ? undefined : memoryOf(child.pid);
  } finally {
    if (child.pid !== undefined) sendSignal(child.pid, 'SIGKILL');
  }
}

const MIB_KIB = 1024;

/** Table rows for measure 2: total and per-container shim Pss of each flint configuration against the runc shim. */
export function memoryRows(
  flintConfigs: ReadonlyArray<{ memory: ShimMemory | undefined; group: string; target?: { op: '<='; value: number } }>,
  runc: ShimMemory | undefined,
  node: { pssKiB: number; rssKiB: number } | undefined,
): Row[] {
  const rows: Row[] = [];
  const mib = (kib: number | undefined): number | undefined => (kib === undefined ? undefined : kib / MIB_KIB);
  for (const { memory, group, target } of flintConfigs) {
    const note = [
      memory ? `flint: ${memory.running}/${memory.requested} containers, ${memory.shimProcesses} shim process(es)` : 'flint: not measured',
      runc ? `runc: ${runc.running}/${runc.requested} containers, ${runc.shimProcesses} shim process(es)` : 'runc: not measured',
    ];
    if (memory && memory.errors.length > 0) note.push(`flint failures: ${memory.errors.length}, first: ${memory.errors[0]}`);
    rows.push(
      makeRow({
        measure: `shim PSS total, group=${group}`,
        unit: 'MiB',
        subjectLabel: 'flint',
        subject: mib(memory?.totalPssKiB),
        referenceLabel: 'runc',
        reference: mib(runc?.totalPssKiB),
        note: note.join('; '),
      }),
      makeRow({
        measure: `shim PSS per container, group=${group}`,
        unit: 'MiB',
        subjectLabel: 'flint',
        subject: mib(memory?.perContainerPssKiB),
        referenceLabel: 'runc',
        reference: mib(runc?.perContainerPssKiB),
        ...(target ? { target } : {}),
      }),
    );
  }
  rows.push(
    makeRow({
      measure: "idle `node -e 'setInterval(()=>{},1000)'` PSS",
      unit: 'MiB',
      subjectLabel: 'node',
      subject: mib(node?.pssKiB),
      note: `reference point for one node process (RSS ${node ? (node.rssKiB / MIB_KIB).toFixed(1) : '-'} MiB; its Pss depends on other node processes sharing the binary's pages)`,
    }),
  );
  return rows;
}

/**
 * Measure 2: shim Pss with BENCH_CONTAINERS running containers for flint's
 * default config and the runc shim in `main`, then flint with
 * {"group":"namespace"} in a second containerd started with FLINT_CONFIG.
 */
export async function measureMemory(
  main: Containerd,
  configDir: string,
  s: BenchSettings,
  signal: AbortSignal,
  node: { pssKiB: number; rssKiB: number } | undefined,
): Promise<MeasureResult> {
  const t0 = nowMs();
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => Promise<ShimMemory>): Promise<ShimMemory | undefined> => {
    try {
      const m = await fn();
      errors.push(...m.errors.map((e) => `${what}: ${e}`));
      if (m.shimsLeftAfterCleanup > 0) errors.push(`${what}: ${m.shimsLeftAfterCleanup} shim process(es) still alive 20 s after cleanup`);
      return m;
    } catch (err) {
      errors.push(`${what}: ${errorText(err)}`);
      return undefined;
    }
  };
  const flintSandbox = await attempt('flint group=sandbox', () => measureShimMemory(main, 'flint', 'flint (default config, group=sandbox)', s, signal));
  const runc = await attempt('runc', () => measureShimMemory(main, 'runc', 'containerd-shim-runc-v2', s, signal));
  const configPath = join(configDir, 'namespace-group.json');
  writeFileSync(configPath, `${JSON.stringify({ group: 'namespace' })}\n`);
  const flintNamespace = await attempt('flint group=namespace', async () => {
    const c = await startContainerd({ env: { FLINT_CONFIG: configPath } });
    try {
      return await measureShimMemory(c, 'flint', 'flint ({"group":"namespace"})', s, signal);
    } finally {
      await c.stop();
    }
  });
  return {
    name: 'memory',
    rows: memoryRows(
      [
        { memory: flintSandbox, group: 'sandbox (default)' },
        { memory: flintNamespace, group: 'namespace', target: { op: '<=', value: 0.5 } },
      ],
      runc,
      node,
    ),
    details: { containers: s.containers, nodeIdle: node, flintSandbox, flintNamespace, runc },
    errors,
    seconds: (nowMs() - t0) / 1000,
  };
}
