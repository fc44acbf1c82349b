import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { CRI_NAMESPACE } from './harness/config.js';
import type { ContainerConfig, ContainerStatus, NamespaceOption, PodSandboxConfig } from './harness/cri-client.js';
import { parseCriLog, readCriLog } from './harness/cri-log.js';
import { criLeftovers, startCriHarness, type CriLeftoverReport } from './harness/cri.js';
import { containerCgroups, flintServers, runcShims, safeReadlink } from './harness/host-state.js';
import { isClean, pollUntilClean } from './harness/leftovers.js';
import type { ProcInfo } from './harness/procfs.js';
import type { RuntimeName } from './harness/scenario.js';
import { shimPidOf, shimSocketOf } from './harness/shim-server.js';

/**
 * A pod through containerd's CRI plugin, as the kubelet drives it, under
 * flint and under containerd-shim-runc-v2 (the oracle): host-network
 * sandbox, containers sharing the pod's shim, CRI log files, ExecSync,
 * ContainerStats, UpdateContainerResources, an OOM kill, and the pod's
 * removal leaving nothing behind. Each runtime is checked against the
 * expected values, then flint's observations against runc's.
 */

const h = await startCriHarness();
t.teardown(() => h.stop());
const { cri, containerd: c } = h;

/** How long to wait for a state the test drives to (a container exiting, logs drained, a pod gone). */
const SETTLE_MS = 20_000;
const MiB = 1024 * 1024;

// The writers: ~1.3 MB on stdout, mostly short lines (a counter), which CRI
// copies more slowly than awk writes them, so a backlog is left at the exit;
// four lines longer than CRI's 16 KiB line limit (logged as P entries) name
// the writer; ~33 KB on stderr interleaved.
const WRITER_LINES = 170_000;
const LONG_LINE_EVERY = 42_500;
const STDERR_EVERY = 100;
const LONG_LINE_BYTES = 65_536;

/** The awk program a writer runs; writerOutput is what it prints. */
function writerProgram(name: string): string {
  return [
    'BEGIN {',
    `  x = "x"; while (length(x) < ${LONG_LINE_BYTES}) x = x x`,
    `  for (i = 1; i <= ${WRITER_LINES}; i++) {`,
    "    print i",
    `    if (i % ${LONG_LINE_EVERY} == 0) print "${name}", "long", i, x`,
    `    if (i % ${STDERR_EVERY} == 0) print "${name}", "err", i > "/dev/stderr"`,
    '  }',
    '}',
  ].join('\n');
}

function writerOutput(name: string): { stdout: Buffer; stderr: Buffer } {
  const out: string[] = [];
  const err: string[] = [];
  const long = 'x'.repeat(LONG_LINE_BYTES);
  for (let i = 1; i <= WRITER_LINES; i++) {
    out.push(`${i}\n`);
    if (i % LONG_LINE_EVERY === 0) out.push(`${name} long ${i} ${long}\n`);
    if (i % STDERR_EVERY === 0) err.push(`${name} err ${i}\n`);
  }
  return { stdout: Buffer.from(out.join('')), stderr: Buffer.from(err.join('')) };
}

/**
 * The tail of a log the oracle may lose: containerd 1.6's CRI handles the
 * exit event with Task.Delete, whose client side closes CRI's ends of the
 * FIFOs first, so whatever the FIFO (64 KiB), the runc shim's copy buffer
 * (4 KiB) and the container's pipe to the shim (64 KiB) still hold is
 * dropped. flint hands the container the FIFOs themselves and must report the
 * exit only once CRI has read them dry: it must lose nothing.
 */
const RUNC_SHIM_MAX_LOST_TAIL = (64 + 4 + 64) * 1024;

/** What one runtime showed; flint's must equal runc's. */
interface PodObservation {
  readonly sandbox: { readonly state: string; readonly onRequestedRuntime: boolean };
  /** Distinct shim processes serving the sandbox and its containers. */
  readonly shimsServingPod: number;
  readonly writers: ReadonlyArray<{
    readonly state: string;
    readonly exitCode: number;
    readonly reason: string;
    /** The log holds a prefix of what the writer wrote, nothing else (completeness is asserted per runtime). */
    readonly logsIntact: boolean;
    readonly malformedLogEntries: number;
    readonly longLinesSplit: boolean;
  }>;
  readonly execSync: { readonly stdout: string; readonly stderr: string; readonly exitCode: number };
  readonly stats: { readonly cpuUsed: boolean; readonly memoryWorkingSet: boolean };
  readonly memoryLimitAfterUpdate: number | undefined;
  readonly oom: { readonly state: string; readonly exitCode: number; readonly reason: string };
  readonly stopped: { readonly state: string; readonly exitCode: number; readonly reason: string };
  readonly leftAfterRemoval: CriLeftoverReport;
}

const observed: Partial<Record<RuntimeName, PodObservation>> = {};

async function containerStatus(id: string): Promise<ContainerStatus> {
  return (await cri.runtime('ContainerStatus', { containerId: id })).status;
}

/** Polls the container's status until `done` holds or SETTLE_MS passes; returns the last status. */
async function waitForStatus(id: string, done: (s: ContainerStatus) => boolean): Promise<ContainerStatus> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const s = await containerStatus(id);
    if (done(s) || Date.now() >= deadline) return s;
    await sleep(50);
  }
}

const exited = (s: ContainerStatus): boolean => s.state === 'CONTAINER_EXITED';

/** How long an exited container's log must stay the same before it counts as final. */
const LOG_QUIET_MS = 2_000;

/**
 * Reads an exited container's CRI log until it holds `want`, or has not
 * grown for LOG_QUIET_MS (CRI closes its ends of the FIFOs when it handles
 * the exit, so nothing more comes), or SETTLE_MS passes.
 */
async function waitForLog(path: string, want: { stdout: Buffer; stderr: Buffer }): Promise<ReturnType<typeof readCriLog>> {
  const deadline = Date.now() + SETTLE_MS;
  let size = -1;
  let sizeSince = Date.now();
  for (;;) {
    const log = readCriLog(path);
    if (log.stdout.equals(want.stdout) && log.stderr.equals(want.stderr)) return log;
    const now = Date.now();
    const grown = log.stdout.length + log.stderr.length;
    if (grown !== size) [size, sizeSince] = [grown, now];
    if (now - sizeSince >= LOG_QUIET_MS || now >= deadline) return log;
    await sleep(100);
  }
}

/** Polls the runtime's shim processes of this containerd (flint: servers but the spare) until `done` holds or SETTLE_MS passes. */
async function waitForShims(runtime: RuntimeName, done: (pids: ReadonlySet<number>) => boolean): Promise<ProcInfo[]> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const shims = runtime === 'flint' ? flintServers(c) : runcShims(c);
    if (done(new Set(shims.map((p) => p.pid))) || Date.now() >= deadline) return shims;
    await sleep(50);
  }
}

const sameSet = <T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean => a.size === b.size && [...a].every((x) => b.has(x));

/** Where `got` first differs from `want`, for the failure message. */
function firstDifference(got: Buffer, want: Buffer): number {
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) if (got[i] !== want[i]) return i;
  return n;
}

/** The memory limit the kernel enforces on a container's cgroup (v1 memory.limit_in_bytes or v2 memory.max). */
function cgroupMemoryLimit(id: string): number | undefined {
  for (const dir of containerCgroups(h.cgroupParent.slice(1), id)) {
    for (const file of ['memory.limit_in_bytes', 'memory.max']) {
      try {
        return Number(readFileSync(join(dir, file), 'utf8').trim());
      } catch {
        // not this hierarchy
      }
    }
  }
  return undefined;
}

async function podScenario(t: Test, runtime: RuntimeName): Promise<PodObservation> {
  // What the kubelet asks for a hostNetwork pod: the host's network, a pid namespace per container, the pod's IPC (and /dev/shm).
  const namespaceOptions: NamespaceOption = { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' };
  const logDirectory = join(h.paths.logDir, runtime);
  mkdirSync(logDirectory, { recursive: true });
  const sandboxConfig: PodSandboxConfig = {
    metadata: { name: `pod-${runtime}`, uid: randomUUID(), namespace: 'flint-test' },
    logDirectory,
    linux: {
      cgroupParent: h.cgroupParent,
      securityContext: { namespaceOptions },
    },
  };
  const { podSandboxId } = await cri.runtime('RunPodSandbox', { config: sandboxConfig, runtimeHandler: runtime });
  let removed = false;
  t.teardown(async () => {
    // A failed assertion must not leave the pod to the next runtime's scenario.
    if (removed) return;
    await cri.runtime('StopPodSandbox', { podSandboxId }).catch(() => undefined);
    await cri.runtime('RemovePodSandbox', { podSandboxId }).catch(() => undefined);
  });

  const sandboxStatus = (await cri.runtime('PodSandboxStatus', { podSandboxId })).status;
  const sandbox = { state: sandboxStatus.state, onRequestedRuntime: sandboxStatus.runtimeHandler === runtime };
  t.same(sandbox, { state: 'SANDBOX_READY', onRequestedRuntime: true }, 'the sandbox is ready, on the requested runtime');

  async function run(name: string, command: string[], memoryLimit: number): Promise<string> {
    const config: ContainerConfig = {
      metadata: { name },
      image: { image: h.image },
      command,
      logPath: `${name}.log`,
      linux: { resources: { memoryLimitInBytes: memoryLimit }, securityContext: { namespaceOptions } },
    };
    const { containerId } = await cri.runtime('CreateContainer', { podSandboxId, config, sandboxConfig });
    await cri.runtime('StartContainer', { containerId });
    return containerId;
  }

  // The writers wait for /dev/shm/go (the pod's shared shm), so all containers run at once for the shim count.
  const worker = await run('worker', ['sleep', 'inf'], 256 * MiB);
  const writerNames = ['writer-a', 'writer-b'];
  const writers: string[] = [];
  for (const name of writerNames) {
    writers.push(await run(name, ['sh', '-c', `until [ -e /dev/shm/go ]; do sleep 0.05; done; exec awk '${writerProgram(name)}'`], 256 * MiB));
  }

  const servingPids = new Set([podSandboxId, worker, ...writers].map((id) => shimPidOf(shimSocketOf(c, id, CRI_NAMESPACE))));
  t.equal(servingPids.size, 1, 'the sandbox and its three containers are served by one shim');
  // flint's `start` boots a server while it works out the group; one not needed leaves once told so.
  const shimProcesses = await waitForShims(runtime, (pids) => sameSet(pids, servingPids));
  t.same(shimProcesses.map((p) => p.pid), [...servingPids], 'and that shim is the only one of this containerd', {
    shimProcesses: shimProcesses.map((p) => ({ ...p, cwd: safeReadlink(`/proc/${p.pid}/cwd`) })),
  });

  const go = await cri.runtime('ExecSync', { containerId: worker, cmd: ['touch', '/dev/shm/go'], timeout: 10 });
  t.equal(go.exitCode, 0, 'ExecSync touch /dev/shm/go starts the writers');

  const writerObservations = [];
  for (const [i, id] of writers.entries()) {
    const name = writerNames[i]!;
    const status = await waitForStatus(id, exited);
    t.same({ state: status.state, exitCode: status.exitCode, reason: status.reason }, { state: 'CONTAINER_EXITED', exitCode: 0, reason: 'Completed' }, `${name} exits 0`);
    const want = writerOutput(name);
    const log = await waitForLog(status.logPath, want);
    let logsIntact = true;
    for (const stream of ['stdout', 'stderr'] as const) {
      const got = log[stream];
      const diag = { gotBytes: got.length, wantBytes: want[stream].length, firstDifference: firstDifference(got, want[stream]), gotTail: got.subarray(-80).toString() };
      const prefix = want[stream].subarray(0, got.length).equals(got);
      logsIntact &&= prefix;
      if (runtime === 'runc' && prefix && got.length < want[stream].length) {
        const lost = want[stream].length - got.length;
        t.ok(lost <= RUNC_SHIM_MAX_LOST_TAIL, `${name}: the last ${lost} bytes of ${stream} were lost at exit, no more than the FIFO, the runc shim's buffer and the pipe hold`, diag);
        continue;
      }
      t.ok(got.equals(want[stream]), `${name}: the CRI log holds every byte of ${stream} (${want[stream].length} bytes)`, diag);
    }
    t.same(log.malformed, [], `${name}: every log entry is "<time> <stream> <F|P> <line>"`);
    t.ok(log.partialEntries > 0, `${name}: lines longer than 16 KiB are split into P entries`);
    writerObservations.push({
      state: status.state,
      exitCode: status.exitCode,
      reason: status.reason,
      logsIntact,
      malformedLogEntries: log.malformed.length,
      longLinesSplit: log.partialEntries > 0,
    });
  }

  const exec = await cri.runtime('ExecSync', { containerId: worker, cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'], timeout: 10 });
  const execSync = { stdout: exec.stdout.toString(), stderr: exec.stderr.toString(), exitCode: exec.exitCode };
  t.same(execSync, { stdout: 'out\n', stderr: 'err\n', exitCode: 3 }, 'ExecSync: stdout, stderr and exit code apart');

  const { stats } = await cri.runtime('ContainerStats', { containerId: worker });
  const statsSeen = {
    cpuUsed: (stats.cpu?.usageCoreNanoSeconds?.value ?? 0) > 0,
    memoryWorkingSet: (stats.memory?.workingSetBytes?.value ?? 0) > 0,
  };
  t.same(statsSeen, { cpuUsed: true, memoryWorkingSet: true }, 'ContainerStats: CPU time and working set', { stats });

  t.equal(cgroupMemoryLimit(worker), 256 * MiB, 'the memory limit at create is the cgroup\'s');
  await cri.runtime('UpdateContainerResources', { containerId: worker, linux: { memoryLimitInBytes: 300 * MiB } });
  const memoryLimitAfterUpdate = cgroupMemoryLimit(worker);
  t.equal(memoryLimitAfterUpdate, 300 * MiB, 'UpdateContainerResources: the new memory limit reaches the cgroup');

  // awk doubles a string until the 32 MiB limit stops it; the kernel's OOM killer ends it.
  const hog = await run('oom', ['awk', 'BEGIN { s = "x"; while (1) s = s s }'], 32 * MiB);
  const oomStatus = await waitForStatus(hog, (s) => exited(s) && s.reason === 'OOMKilled');
  const oom = { state: oomStatus.state, exitCode: oomStatus.exitCode, reason: oomStatus.reason };
  t.same(oom, { state: 'CONTAINER_EXITED', exitCode: 137, reason: 'OOMKilled' }, 'a container past its memory limit is OOMKilled');

  // sleep is pid 1 of its pid namespace: SIGTERM does nothing, and the grace period ends in SIGKILL.
  await cri.runtime('StopContainer', { containerId: worker, timeout: 1 });
  const stoppedStatus = await containerStatus(worker);
  const stopped = { state: stoppedStatus.state, exitCode: stoppedStatus.exitCode, reason: stoppedStatus.reason };
  t.same(stopped, { state: 'CONTAINER_EXITED', exitCode: 137, reason: 'Error' }, 'StopContainer: SIGKILL once the grace period is over');
  await cri.runtime('RemoveContainer', { containerId: worker });

  // The sandbox and the containers still in it (the exited writers and the OOM one) go with the pod.
  await cri.runtime('StopPodSandbox', { podSandboxId });
  await cri.runtime('RemovePodSandbox', { podSandboxId });
  removed = true;
  const leftAfterRemoval = await pollUntilClean(() => criLeftovers(h), SETTLE_MS);
  t.ok(isClean(leftAfterRemoval), 'StopPodSandbox + RemovePodSandbox: no shim or container processes, mounts, tasks, containers, bundles, snapshots, cgroups or runc state left', {
    leftAfterRemoval,
  });
  t.same(await waitForShims(runtime, (pids) => pids.size === 0), [], 'no shim of the pod is left');

  return {
    sandbox,
    shimsServingPod: servingPids.size,
    writers: writerObservations,
    execSync,
    stats: statsSeen,
    memoryLimitAfterUpdate,
    oom,
    stopped,
    leftAfterRemoval,
  };
}

t.test('the CRI containerd keeps to its temp dir and serves runtime.v1', async (t) => {
  t.ok(Buffer.byteLength(c.ttrpcAddress) < 108, 'socket paths fit sun_path');
  const config = readFileSync(join(c.dir, 'config.toml'), 'utf8');
  t.notMatch(config, /\/var\/lib|\/run\/containerd|\/opt\/cni|\/etc\/cni/, 'no system paths in config');
  const version = await cri.runtime('Version', {});
  t.same(version.runtimeApiVersion, 'v1', 'CRI answers on runtime.v1');
  t.same(version.runtimeName, 'containerd');
});

t.test('CRI log files: P pieces join up to a line, F ends it, streams apart', async (t) => {
  const text = Buffer.from(
    [
      '2026-12-06T03:00:00.000000001Z stdout P ab',
      '2026-12-06T03:00:00.000000002Z stderr F e r r',
      '2026-12-06T03:00:00.000000003Z stdout F cd',
      '2026-12-06T03:00:00.000000004Z stdout F ',
      'not a log entry',
      '2026-12-06T03:00:00.000000005Z stdout F torn',
    ].join('\n'),
  );
  const log = parseCriLog(text);
  t.equal(log.stdout.toString(), 'abcd\n\n', 'pieces joined, an empty line kept');
  t.equal(log.stderr.toString(), 'e r r\n', 'content keeps its spaces');
  t.equal(log.partialEntries, 1);
  t.same(log.malformed, ['not a log entry', '2026-12-06T03:00:00.000000005Z stdout F torn'], 'a bad entry and an unterminated last one are reported');
});

for (const runtime of ['runc', 'flint'] as const) {
  t.test(`${runtime}: a host-network pod through CRI`, async (t) => {
    observed[runtime] = await podScenario(t, runtime);
  });
}

t.test('flint behaves like containerd-shim-runc-v2 through CRI', async (t) => {
  t.ok(observed.runc && observed.flint, 'both runtimes ran the scenario');
  t.same(observed.flint, observed.runc, 'same observations');
});
