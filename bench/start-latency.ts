import { removeContainer } from '../test/harness/index.js';
import { ctrFailure, errorText, median, nowMs, rootfsRunArgs, summary, type BenchSettings, type RunTarget } from './common.js';
import { makeRow, type MeasureResult } from './report.js';
import { VM_LABEL, vmStartRow } from './vm-rows.js';

/** Label of flint with spareServerMs 0: every start boots a server. */
export const COLD_LABEL = 'flint no spare';

/** Per-run bound; a healthy start takes a few seconds at most, even on a loaded machine. */
const RUN_TIMEOUT_MS = 30_000;
/** A target that fails this often without one success is dropped, so the budget is not spent on timeouts. */
const GIVE_UP_AFTER = 3;

/** Samples of one target, plus the failures verbatim. */
export interface StartSamples {
  readonly ms: number[];
  readonly errors: string[];
}

/**
 * Times one `ctr run --rm --runtime R --rootfs <busybox> <id> /bin/true`
 * from spawn to exit. ctr is called directly rather than through runRm,
 * whose task-status polling would add load during the measurement; stdin is
 * closed at once, which is fine because /bin/true never reads it.
 */
export async function timeOneStart(t: RunTarget, samples: StartSamples): Promise<void> {
  const id = t.c.newId('start');
  const t0 = nowMs();
  let r;
  try {
    r = await t.c.ctr([...rootfsRunArgs(t.c, t.runtime, id, ['--rm']), '/bin/true'], { timeoutMs: RUN_TIMEOUT_MS });
  } catch (err) {
    samples.errors.push(`${id}: ${errorText(err)}`);
    return;
  }
  const ms = nowMs() - t0;
  if (r.code === 0) samples.ms.push(ms);
  else {
    samples.errors.push(ctrFailure(t.c, `ctr run --rm ${id}`, id, r, RUN_TIMEOUT_MS));
    if (r.timedOut) await removeContainer(t.c, id);
  }
}

/**
 * Collects up to `runs` samples per target, one round at a time with every
 * target in it (the order reversed every other round), until `signal` aborts.
 */
export async function sampleStarts(
  targets: readonly RunTarget[],
  runs: number,
  signal: AbortSignal,
): Promise<{ samples: Record<string, StartSamples>; stoppedEarly: boolean }> {
  const samples: Record<string, StartSamples> = {};
  for (const t of targets) samples[t.label] = { ms: [], errors: [] };
  const live = (t: RunTarget): boolean => samples[t.label]!.ms.length > 0 || samples[t.label]!.errors.length < GIVE_UP_AFTER;
  // One unrecorded warm-up each (page cache, first shim load); a failure there counts.
  for (const t of targets) {
    const warm: StartSamples = { ms: [], errors: [] };
    await timeOneStart(t, warm);
    samples[t.label]!.errors.push(...warm.errors);
  }
  for (let i = 0; i < runs; i++) {
    if (signal.aborted) return { samples, stoppedEarly: true };
    const round = (i % 2 === 0 ? targets : [...targets].reverse()).filter(live);
    if (round.length === 0) break;
    for (const t of round) await timeOneStart(t, samples[t.label]!);
  }
  return { samples, stoppedEarly: false };
}

function noteFor(label: string, s: StartSamples | undefined): string[] {
  if (s === undefined) return [];
  return s.errors.length > 0 ? [`${label} failed ${s.errors.length}x`] : [];
}

/**
 * Measure 1: container start latency, flint vs the runc shim (and flint in VM
 * mode when a VM_LABEL target is given), medians of BENCH_RUNS alternating
 * runs. The VM row's reference is embedded flint from the same rounds.
 */
export async function measureStartLatency(
  targets: readonly RunTarget[],
  s: BenchSettings,
  signal: AbortSignal,
): Promise<MeasureResult> {
  const t0 = nowMs();
  const { samples, stoppedEarly } = await sampleStarts(targets, s.runs, signal);
  const get = (label: string): StartSamples | undefined => samples[label];
  const flint = get('flint');
  const runc = get('runc');
  const vm = get(VM_LABEL);
  const notes = [`n=${flint?.ms.length ?? 0}/${runc?.ms.length ?? 0}`, ...noteFor('flint', flint), ...noteFor('runc', runc)];
  if (stoppedEarly) notes.push('stopped early: time budget');
  const rows = [
    makeRow({
      measure: 'start latency (median)',
      unit: 'ms',
      subjectLabel: 'flint',
      subject: median(flint?.ms ?? []),
      referenceLabel: 'runc',
      reference: median(runc?.ms ?? []),
      target: { op: '<=', value: 1.5 },
      note: notes.join('; '),
    }),
  ];
  const cold = get(COLD_LABEL);
  if (cold !== undefined) {
    rows.push(
      makeRow({
        measure: 'start latency, spareServerMs 0 (median)',
        unit: 'ms',
        subjectLabel: COLD_LABEL,
        subject: median(cold.ms),
        referenceLabel: 'runc',
        reference: median(runc?.ms ?? []),
        note: [`n=${cold.ms.length}`, ...noteFor(COLD_LABEL, cold)].join('; '),
      }),
    );
  }
  if (vm !== undefined) {
    const vmNote = vm.ms.length === 0 ? `not available: every VM-mode run failed: ${vm.errors[0]?.split('\n')[0] ?? ''}` : [`n=${vm.ms.length}`, ...noteFor(VM_LABEL, vm)].join('; ');
    rows.push(vmStartRow(median(vm.ms), median(flint?.ms ?? []), vmNote));
  }
  const details: Record<string, unknown> = { command: 'ctr run --rm --runtime R --env PATH=... --rootfs <busybox> <id> /bin/true' };
  for (const [label, x] of Object.entries(samples)) details[label] = { ...summary(x.ms), samples: x.ms };
  return {
    name: 'start',
    rows,
    details,
    errors: Object.entries(samples).flatMap(([label, x]) => x.errors.map((e) => `${label}: ${e}`)),
    seconds: (nowMs() - t0) / 1000,
  };
}
