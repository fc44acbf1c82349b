import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { repoRoot, RUNTIMES, startContainerd, type Containerd, type StopReport } from '../test/harness/index.js';
import { embeddedTargets, errorText, nowMs, readSettings, type BenchSettings, type RunTarget } from './common.js';
import { writeChart } from './chart.js';
import { measureExecLatency } from './exec-latency.js';
import { measureMemory, nodeBaselinePss } from './memory.js';
import { renderTable, writeJson, type MeasureResult, type Row } from './report.js';
import { COLD_LABEL, measureStartLatency } from './start-latency.js';
import { measureThroughput } from './throughput.js';
import { measureTtrpcRate } from './ttrpc-rate.js';
import { startVmMode, unavailableVmRows } from './vm.js';

/**
 * `make bench`: flint against containerd-shim-runc-v2 on private containerds,
 * measure by measure, each within a time budget; then a table on stdout and
 * bench/results.json + bench/results.svg. Nothing here asserts: a failing
 * runtime is reported in the table and the errors list.
 */

/** Per-measure time budgets; loops stop between samples when one runs out (cleanup still runs). */
const BUDGET_MS = {
  start: 240_000,
  exec: 90_000,
  ttrpc: 90_000,
  throughput: 300_000,
  memory: 420_000,
} as const;

const log = (msg: string): void => void process.stderr.write(`bench: ${msg}\n`);

const live = new Set<Containerd>();

/** Ctrl-C / SIGTERM: tear down what is running, then exit (the harness's exit hook catches the rest). */
function installSignalHandlers(): void {
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping containerd(s)`);
    void Promise.allSettled([...live].map((c) => c.stop())).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

async function stopContainerd(c: Containerd): Promise<void> {
  let report: StopReport;
  try {
    report = await c.stop();
  } catch (err) {
    log(`stopping containerd ${c.dir} failed: ${errorText(err)}`);
    return;
  } finally {
    live.delete(c);
  }
  if (report.containerdKilled || report.killed.length > 0 || report.unmounted.length > 0) {
    log(
      `teardown of ${c.dir} had leftovers: containerd killed=${report.containerdKilled}, ` +
        `${report.killed.length} process(es) killed, ${report.unmounted.length} mount(s) detached`,
    );
  }
}

/** Runs one measure under its budget; an exception becomes an error entry with the given fallback rows. */
async function runMeasure(
  name: keyof typeof BUDGET_MS,
  fn: (signal: AbortSignal) => Promise<MeasureResult>,
  fallbackRows: () => Row[] = () => [],
): Promise<MeasureResult> {
  if (!wanted(name)) {
    return { name, rows: [], details: null, errors: [], seconds: 0 };
  }
  log(`${name}: running (budget ${BUDGET_MS[name] / 1000} s)`);
  const t0 = nowMs();
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), BUDGET_MS[name]);
  let result: MeasureResult;
  try {
    result = await fn(ac.signal);
  } catch (err) {
    result = { name, rows: fallbackRows(), details: null, errors: [errorText(err)], seconds: (nowMs() - t0) / 1000 };
  } finally {
    clearTimeout(timer);
  }
  log(`${name}: done in ${result.seconds.toFixed(1)} s${result.errors.length > 0 ? `, ${result.errors.length} error(s)` : ''}`);
  for (const e of result.errors.slice(0, 3)) log(`  ${name} error: ${e.split('\n')[0]}`);
  return result;
}

function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5_000 });
  return (r.stdout ?? '').split('\n')[0]?.trim() || `unknown (${cmd})`;
}

function environment(): Record<string, string | number> {
  return {
    node: process.version,
    containerd: versionOf('containerd', ['--version']),
    runc: versionOf('runc', ['--version']),
    kernel: versionOf('uname', ['-r']),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
  };
}

const settings: BenchSettings = readSettings();

const wanted = (...names: string[]): boolean => settings.only === null || names.some((n) => settings.only!.has(n));

/** A containerd whose flint runs with spareServerMs 0, as the start measure's cold target. */
async function startColdTarget(workDir: string): Promise<RunTarget> {
  const config = join(workDir, 'cold.json');
  writeFileSync(config, JSON.stringify({ spareServerMs: 0 }));
  const c = await startContainerd({ env: { FLINT_CONFIG: config } });
  live.add(c);
  return { label: COLD_LABEL, c, runtime: RUNTIMES.flint };
}

async function main(): Promise<void> {
  installSignalHandlers();
  const startedAt = new Date();
  const t0 = nowMs();
  const benchDir = join(repoRoot(), 'bench');
  const workDir = mkdtempSync('/tmp/flint-bench-');
  const measures: MeasureResult[] = [];
  let unavailableVm: Row[] = [];
  log(`settings ${JSON.stringify(settings, (_k, v: unknown) => (v instanceof Set ? [...v] : v))}`);

  try {
    // Before any shim runs, so no node shim shares its pages.
    const node = await nodeBaselinePss();

    const c = await startContainerd();
    live.add(c);
    try {
      // VM mode runs alongside, so its ratios compare against embedded runs from the same rounds.
      const vmSetup = await startVmMode(workDir, { ...settings, vm: settings.vm && wanted('start', 'throughput') });
      if ('vm' in vmSetup) {
        live.add(vmSetup.vm.target.c);
        log(`vm: agent at ${vmSetup.vm.agentAddress}`);
      } else {
        log(`vm: not available: ${vmSetup.unavailable}`);
        if (wanted('start', 'throughput')) unavailableVm = unavailableVmRows(vmSetup.unavailable);
      }
      const targets = [...embeddedTargets(c), ...('vm' in vmSetup ? [vmSetup.vm.target] : [])];
      // flint without spare servers, in the same rounds: every start boots a server.
      const cold = wanted('start') ? await startColdTarget(workDir) : undefined;
      try {
        measures.push(await runMeasure('start', (signal) => measureStartLatency([...targets, ...(cold ? [cold] : [])], settings, signal)));
        if (cold) await stopContainerd(cold.c);
        measures.push(await runMeasure('throughput', (signal) => measureThroughput(targets, settings, signal)));
      } finally {
        if ('vm' in vmSetup) {
          await vmSetup.vm.stop();
          live.delete(vmSetup.vm.target.c);
        }
      }
      measures.push(await runMeasure('exec', (signal) => measureExecLatency(c, settings, signal)));
      measures.push(await runMeasure('ttrpc', (signal) => measureTtrpcRate(c, settings, signal)));
      measures.push(await runMeasure('memory', (signal) => measureMemory(c, workDir, settings, signal, node)));
    } finally {
      await stopContainerd(c);
    }
  } finally {
    await Promise.allSettled([...live].map(stopContainerd));
    rmSync(workDir, { recursive: true, force: true });
  }

  // Table order follows the measure list in bench/README.md; VM rows sit next to their embedded ones.
  const byName = (n: string): Row[] => measures.find((m) => m.name === n)?.rows ?? [];
  const rows: Row[] = [
    ...byName('start'),
    ...unavailableVm.filter((r) => r.unit === 'ms'),
    ...byName('memory'),
    ...byName('throughput'),
    ...unavailableVm.filter((r) => r.unit !== 'ms'),
    ...byName('ttrpc'),
    ...byName('exec'),
  ];

  const finishedAt = new Date();
  const wallSeconds = (nowMs() - t0) / 1000;
  process.stdout.write(`\nflint (io.containerd.flint.v2) vs containerd-shim-runc-v2 (io.containerd.runc.v2)\n\n`);
  process.stdout.write(`${renderTable(rows)}\n\n`);
  const errorCount = measures.reduce((n, m) => n + m.errors.length, 0);
  if (errorCount > 0) {
    process.stdout.write(`${errorCount} error(s) during the run (first per measure; all in results.json):\n`);
    for (const m of measures) if (m.errors.length > 0) process.stdout.write(`  ${m.name}: ${m.errors[0]}\n`);
    process.stdout.write('\n');
  }
  writeJson(join(benchDir, 'results.json'), {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    wallSeconds,
    environment: environment(),
    settings,
    rows,
    measures,
  });
  writeChart(join(benchDir, 'results.svg'), rows, `flint vs containerd-shim-runc-v2 — ${finishedAt.toISOString().slice(0, 10)}`);
  process.stdout.write(`wrote ${join(benchDir, 'results.json')} and ${join(benchDir, 'results.svg')} (${wallSeconds.toFixed(0)} s)\n`);
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
}
