import { spawn } from 'node:child_process';
import { CTR_BIN, removeContainer, type Containerd } from '../test/harness/index.js';
import { errorText, median, nowMs, rootfsRunArgs, type BenchSettings, type RunTarget } from './common.js';
import { makeRow, type MeasureResult } from './report.js';
import { VM_LABEL, vmThroughputRow } from './vm-rows.js';

const MIB = 1024 * 1024;

/** One throughput run: bytes received, time from first to last byte, and ctr's exit. */
export interface ThroughputRun {
  readonly bytes: number;
  readonly streamMs: number;
  readonly wallMs: number;
  readonly mibPerSecond: number;
  readonly code: number;
  readonly stderr: string;
}

/**
 * `ctr run --rm ... head -c N /dev/zero` with ctr's stdout piped into this
 * process, counted and discarded. The rate is taken from the first byte to
 * the end of the stream, so container start-up is not part of it.
 */
export function throughputRun(c: Containerd, runtime: string, bytes: number): Promise<ThroughputRun> {
  const id = c.newId('tput');
  const args = ['--address', c.address, '--namespace', c.namespace, ...rootfsRunArgs(c, runtime, id, ['--rm']), 'head', '-c', String(bytes), '/dev/zero'];
  // Generous: even 20 MiB/s finishes 500 MiB in 25 s.
  const timeoutMs = 30_000 + (bytes / MIB) * 100;
  return new Promise((resolve, reject) => {
    const start = nowMs();
    // head never reads stdin, so /dev/null is enough (no held-open pipe needed).
    const child = spawn(CTR_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let received = 0;
    let first: number | undefined;
    let last: number | undefined;
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      first ??= nowMs();
      received += b.length;
    });
    child.stdout.on('end', () => (last = nowMs()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const end = nowMs();
      const streamMs = first === undefined ? 0 : (last ?? end) - first;
      const result: ThroughputRun = {
        bytes: received,
        streamMs,
        wallMs: end - start,
        mibPerSecond: streamMs > 0 ? received / MIB / (streamMs / 1000) : NaN,
        code: code ?? -1,
        stderr: timedOut ? `timed out after ${timeoutMs} ms; ${stderr.trim()}` : stderr.trim(),
      };
      if (timedOut) void removeContainer(c, id).then(() => resolve(result), () => resolve(result));
      else resolve(result);
    });
  });
}

/** Runs throughputRun `runs` times per target, alternating; keeps complete runs only. */
export async function sampleThroughput(
  targets: readonly RunTarget[],
  bytes: number,
  runs: number,
  signal: AbortSignal,
): Promise<{ rates: Record<string, number[]>; runs: Record<string, ThroughputRun[]>; errors: string[]; stoppedEarly: boolean }> {
  const rates: Record<string, number[]> = {};
  const all: Record<string, ThroughputRun[]> = {};
  const errors: string[] = [];
  for (const t of targets) {
    rates[t.label] = [];
    all[t.label] = [];
  }
  const failures: Record<string, number> = {};
  // A target that failed twice without a good run is dropped.
  const live = (t: RunTarget): boolean => rates[t.label]!.length > 0 || (failures[t.label] ?? 0) < 2;
  for (let i = 0; i < runs; i++) {
    if (signal.aborted) return { rates, runs: all, errors, stoppedEarly: true };
    for (const t of (i % 2 === 0 ? targets : [...targets].reverse()).filter(live)) {
      try {
        const r = await throughputRun(t.c, t.runtime, bytes);
        all[t.label]!.push(r);
        if (r.code === 0 && r.bytes === bytes) {
          rates[t.label]!.push(r.mibPerSecond);
          continue;
        }
        errors.push(`${t.label}: ctr exited ${r.code} after ${r.bytes} of ${bytes} bytes: ${r.stderr}`);
      } catch (err) {
        errors.push(`${t.label}: ${errorText(err)}`);
      }
      failures[t.label] = (failures[t.label] ?? 0) + 1;
    }
  }
  return { rates, runs: all, errors, stoppedEarly: false };
}

/**
 * Measure 3: stdout throughput through the shim to ctr, flint vs the runc
 * shim (and flint in VM mode, against embedded flint, when a VM_LABEL target
 * is given).
 */
export async function measureThroughput(targets: readonly RunTarget[], s: BenchSettings, signal: AbortSignal): Promise<MeasureResult> {
  const t0 = nowMs();
  const r = await sampleThroughput(targets, s.throughputBytes, s.throughputRuns, signal);
  const flint = r.rates.flint ?? [];
  const runc = r.rates.runc ?? [];
  const failed = (label: string): string[] => {
    const n = r.errors.filter((e) => e.startsWith(`${label}: `)).length;
    return n > 0 ? [`${label} failed ${n}x`] : [];
  };
  const notes = [`${s.throughputBytes / MIB} MiB, n=${flint.length}/${runc.length}`, ...failed('flint'), ...failed('runc')];
  if (r.stoppedEarly) notes.push('stopped early: time budget');
  const rows = [
    makeRow({
      measure: 'stdout throughput (median)',
      unit: 'MiB/s',
      subjectLabel: 'flint',
      subject: median(flint),
      referenceLabel: 'runc',
      reference: median(runc),
      target: { op: '>=', value: 1.0 },
      note: notes.join('; '),
    }),
  ];
  const vm = r.rates[VM_LABEL];
  if (vm !== undefined) {
    const vmErrors = r.errors.filter((e) => e.startsWith(`${VM_LABEL}: `));
    const note = vm.length === 0 ? `not available: every VM-mode run failed: ${vmErrors[0]?.split('\n')[0] ?? ''}` : [`n=${vm.length}`, ...failed(VM_LABEL)].join('; ');
    rows.push(vmThroughputRow(median(vm), median(flint), note));
  }
  return {
    name: 'throughput',
    rows,
    details: { command: `ctr run --rm ... head -c ${s.throughputBytes} /dev/zero`, runs: r.runs },
    errors: r.errors,
    seconds: (nowMs() - t0) / 1000,
  };
}
