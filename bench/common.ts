import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  busyboxRootfs,
  CONTAINER_PATH,
  removeContainer,
  RUNTIMES,
  type Containerd,
  type RuntimeName,
} from '../test/harness/index.js';
import { isRunning, listProcesses, type ProcInfo } from '../test/harness/procfs.js';

/** Knobs read from the environment once; defaults keep `make bench` near 10 minutes on 2 cores. */
export interface BenchSettings {
  /** Start and exec samples per runtime (BENCH_RUNS). */
  readonly runs: number;
  /** Running containers per memory configuration (BENCH_CONTAINERS). */
  readonly containers: number;
  /** Bytes written to stdout per throughput run (BENCH_THROUGHPUT_MB, MiB). */
  readonly throughputBytes: number;
  /** Throughput runs per runtime (BENCH_THROUGHPUT_RUNS). */
  readonly throughputRuns: number;
  /** Seconds per ttrpc rate sample (BENCH_TTRPC_SECONDS). */
  readonly ttrpcSeconds: number;
  /** False when FLINT_BENCH_VM=0. */
  readonly vm: boolean;
  /** Measures to run (BENCH_ONLY, comma-separated names); null runs them all. */
  readonly only: ReadonlySet<string> | null;
  /** vsock port the agent serves ttrpc on (FLINT_BENCH_AGENT_PORT). */
  readonly agentPort: number;
}

function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

/** Reads the BENCH_* / FLINT_BENCH_* environment. */
export function readSettings(): BenchSettings {
  return {
    runs: Math.round(envNumber('BENCH_RUNS', 20, 1)),
    containers: Math.round(envNumber('BENCH_CONTAINERS', 50, 1)),
    throughputBytes: Math.round(envNumber('BENCH_THROUGHPUT_MB', 500, 1) * 1024 * 1024),
    throughputRuns: Math.round(envNumber('BENCH_THROUGHPUT_RUNS', 3, 1)),
    ttrpcSeconds: envNumber('BENCH_TTRPC_SECONDS', 3, 0.1),
    vm: process.env.FLINT_BENCH_VM !== '0',
    agentPort: Math.round(envNumber('FLINT_BENCH_AGENT_PORT', 10789, 1)),
    only: onlyMeasures(process.env.BENCH_ONLY),
  };
}

export const MEASURE_NAMES = ['start', 'throughput', 'exec', 'ttrpc', 'memory'] as const;

function onlyMeasures(value: string | undefined): ReadonlySet<string> | null {
  if (value === undefined || value.trim() === '') return null;
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const unknown = names.filter((n) => !(MEASURE_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new Error(`BENCH_ONLY names unknown measure(s) ${unknown.join(', ')}; known: ${MEASURE_NAMES.join(', ')}`);
  }
  return new Set(names);
}

/** Names a shim server's program has in argv[0] or argv[1]: flint's launcher execs node on its bundled entry point. */
export const SHIM_PROGRAMS: Readonly<Record<RuntimeName, readonly string[]>> = {
  flint: ['containerd-shim-flint-v2', 'shim.js'],
  runc: ['containerd-shim-runc-v2'],
};

/** Median of a non-empty sample; NaN for an empty one. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The q-quantile (0..1) by nearest rank; NaN for an empty sample. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** min / median / p90 / max of a sample, for the JSON report. */
export function summary(xs: readonly number[]): { n: number; min: number; median: number; p90: number; max: number } {
  return { n: xs.length, min: Math.min(...xs), median: median(xs), p90: quantile(xs, 0.9), max: Math.max(...xs) };
}

/** Milliseconds since an arbitrary origin, monotonic. */
export function nowMs(): number {
  return performance.now();
}

/**
 * The flags `ctr run` needs for a busybox --rootfs container: ctr sets no
 * environment without an image, so PATH is passed explicitly (as runRm does).
 */
export function rootfsRunArgs(c: Containerd, runtime: string, id: string, extra: readonly string[] = []): string[] {
  return ['run', '--runtime', runtime, '--fifo-dir', c.fifoDir, ...extra, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id];
}

/** A runtime in a particular containerd: what the start and throughput measures alternate between. */
export interface RunTarget {
  /** Key in results, e.g. "flint", "runc", "flint vm". */
  readonly label: string;
  readonly c: Containerd;
  /** Full runtime name for `ctr run --runtime`. */
  readonly runtime: string;
}

/** The main containerd's two runtimes as run targets. */
export function embeddedTargets(c: Containerd): RunTarget[] {
  return [
    { label: 'flint', c, runtime: RUNTIMES.flint },
    { label: 'runc', c, runtime: RUNTIMES.runc },
  ];
}

/**
 * containerd's recent log lines about container `id` (info and above) plus
 * any recent errors and shim warnings/errors (the shims' JSON records), so a
 * failed run is reported with what containerd saw, not only ctr's summary.
 */
export function logExcerpt(c: Containerd, id: string, max = 10): string[] {
  // Read right after the failure, so the tail covers it; shims' own records may not name the container.
  const lines = c.readLog().split('\n').slice(-300);
  const relevant = lines.filter(
    (l) =>
      (l.includes(id) && !/level=debug/.test(l) && !/"level":[12]\d,/.test(l)) ||
      /"level":[456]\d,/.test(l) ||
      /level=(error|fatal)/.test(l),
  );
  return relevant.slice(-max).map((l) => l.slice(0, 600));
}

/** An error message for a failed ctr call on container `id`, with containerd's log lines about it. */
export function ctrFailure(c: Containerd, what: string, id: string, r: { code: number; timedOut: boolean; stderr: string }, timeoutMs: number): string {
  const head = `${what} ${r.timedOut ? `timed out after ${timeoutMs} ms` : `exited ${r.code}`}: ${r.stderr.trim()}`;
  const log = logExcerpt(c, id);
  return log.length === 0 ? head : `${head}\n  containerd log:\n    ${log.join('\n    ')}`;
}

const SLEEPER_TIMEOUT_MS = 60_000;

/** Starts `sleep 1000` detached; throws with ctr's stderr and containerd's log lines when it fails. */
export async function runSleeper(c: Containerd, runtime: RuntimeName, id: string): Promise<void> {
  const args = [...rootfsRunArgs(c, RUNTIMES[runtime], id, ['-d']), 'sleep', '1000'];
  const r = await c.ctr(args, { timeoutMs: SLEEPER_TIMEOUT_MS });
  if (r.code !== 0) throw new Error(ctrFailure(c, `ctr run -d ${id} (${runtime})`, id, r, SLEEPER_TIMEOUT_MS));
}

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Kills and removes containers, a few at a time; every ctr call is bounded by the harness (5 s). */
export async function removeContainers(c: Containerd, ids: readonly string[]): Promise<void> {
  await mapLimit(ids, 8, (id) => removeContainer(c, id));
}

/**
 * Long-lived shim server processes of `runtime` that belong to `c`: argv
 * names c's address or dir, argv[0] or argv[1] is one of the shim's programs, and it is
 * not a one-shot `start` / `delete` invocation.
 */
export function shimProcesses(c: Containerd, runtime: RuntimeName): ProcInfo[] {
  const programs = SHIM_PROGRAMS[runtime];
  return listProcesses().filter(
    (p) =>
      p.argv.some((a) => a === c.address || a.includes(`${c.dir}/`)) &&
      p.argv.slice(0, 2).some((a) => programs.includes(basename(a))) &&
      !p.argv.includes('start') &&
      !p.argv.includes('delete') &&
      isRunning(p.pid),
  );
}

/** Waits (bounded) until no shim server of `runtime` for `c` is left; returns how many remain. */
export async function waitShimsGone(c: Containerd, runtime: RuntimeName, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let left = shimProcesses(c, runtime).length;
  while (left > 0 && Date.now() < deadline) {
    await sleep(100);
    left = shimProcesses(c, runtime).length;
  }
  return left;
}

/** Memory figures of one process from /proc/PID/smaps_rollup, in KiB; undefined when it is gone. */
export function memoryOf(pid: number): { pssKiB: number; rssKiB: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { pssKiB: field('Pss'), rssKiB: field('Rss') };
}

/** The text of an error, for the report. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Thrown by checkAbort when the measure ran out of its time budget. */
export class BudgetExceededError extends Error {}

/** Throws when the measure's time budget is used up, so loops stop between steps. */
export function checkAbort(signal: AbortSignal): void {
  if (signal.aborted) throw new BudgetExceededError('time budget exceeded');
}
