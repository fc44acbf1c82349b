import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  removeNamespaceCgroups,
  removeRuncRoot,
  removeSockets,
  shimIdentities,
  shimSocketPath,
} from './cleanup.js';
import { criPaths, renderConfig } from './config.js';
import { runCommand, spawnCommand, type CommandResult, type RunningCommand } from './exec.js';
import { isRunning, processesOwnedBy, signal, unmountUnder, type ProcInfo } from './procfs.js';
import { repoBinDir, spawnFlint } from './repo.js';
import { spareSocketPath } from '../../src/shim/socket-address.js';

/** The containerd under test (Debian package, 1.6.20). */
export const CONTAINERD_BIN = '/usr/bin/containerd';
/** ctr from the same package. */
export const CTR_BIN = '/usr/bin/ctr';
const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 10_000;
/** Per-call bound for the ctr calls stop() makes; a wedged shim must not wedge teardown. */
const TEARDOWN_CTR_TIMEOUT_MS = 5_000;

/** Options for startContainerd. */
export interface ContainerdOptions {
  /** containerd log level; default "debug" when FLINT_TEST_DEBUG is set, else "info". */
  readonly logLevel?: string;
  /** Extra TOML appended to config.toml (full `[plugins."..."]` headers). */
  readonly extraToml?: string;
  /** Extra environment for containerd, inherited by the shims it starts. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Enables the CRI plugin, every path it uses inside the temp dir (see
   * criPaths); test/harness/cri.ts starts one with its images imported.
   */
  readonly cri?: boolean;
}

/** Options for Containerd.ctr. */
export interface CtrOptions {
  readonly input?: string | Buffer;
  /** Keep stdin open after `input` until endStdin() (spawnCtr only). */
  readonly holdStdin?: boolean;
  readonly timeoutMs?: number;
  /** Overrides the harness namespace for this call. */
  readonly namespace?: string;
}

/** What stop() had to clean up; all empty after a tidy test. */
export interface StopReport {
  /** containerd ignored SIGTERM for 10 s and was SIGKILLed. */
  readonly containerdKilled: boolean;
  /** Processes (shims, containers, stray ctr) killed after containerd exited. */
  readonly killed: readonly ProcInfo[];
  readonly unmounted: readonly string[];
  /** Sockets of dead shims removed from /run/containerd/s. */
  readonly removedSockets: readonly string[];
}

/** A private containerd rooted in a temp dir. */
export interface Containerd {
  /** The temp dir holding config, root, state, sockets, FIFOs and the log. */
  readonly dir: string;
  readonly address: string;
  readonly ttrpcAddress: string;
  /**
   * Namespace unique to this containerd, used by ctr() by default. runc names
   * cgroups and its state dir after it, so stop() removes those for this
   * namespace and for `<namespace>-*` ones (use those for extra namespaces).
   */
  readonly namespace: string;
  readonly root: string;
  readonly state: string;
  /** FIFO dir for `ctr run/exec --fifo-dir`, so ctr stays out of /run/containerd/fifo. */
  readonly fifoDir: string;
  readonly logPath: string;
  readonly pid: number;
  /**
   * Runs `ctr --address <sock> -n <ns> ...args`. Never rejects on a non-zero exit.
   * Beware: `ctr run`/`ctr tasks exec` in 1.6 drop stdin EOF that arrives
   * before the task exists, so the container never sees EOF; scenario.runRm
   * works around that, raw calls with stdin-reading commands do not.
   */
  ctr(args: readonly string[], opts?: CtrOptions): Promise<CommandResult>;
  /** Starts a ctr command without waiting for it (for holding stdin open, or concurrent clients). */
  spawnCtr(args: readonly string[], opts?: CtrOptions): RunningCommand;
  /** Returns a fresh container id and remembers it, so leftover shim sockets can be found. */
  newId(prefix?: string): string;
  /** Container ids handed out by newId or seen in bundles. */
  readonly knownIds: ReadonlySet<string>;
  /** containerd's log so far. */
  readLog(): string;
  /** Tears everything down; idempotent. */
  stop(): Promise<StopReport>;
  /**
   * Stops only the containerd process (SIGTERM, or `signal`; SIGKILL after
   * 10 s), waits `downMs` (default 0), and starts it again with the same
   * config and environment, keeping its dirs, shims and containers;
   * resolves once it answers again. `pid` is the new process afterwards.
   */
  restart(opts?: RestartOptions): Promise<void>;
}

/** Options for Containerd.restart. */
export interface RestartOptions {
  readonly signal?: NodeJS.Signals;
  /** How long containerd stays down. */
  readonly downMs?: number;
}

let idCounter = 0;
const live = new Set<ContainerdInstance>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test forgets teardown or crashes: nothing async runs here.
  process.on('exit', () => {
    for (const c of live) c.stopSync();
  });
}

class ContainerdInstance implements Containerd {
  readonly root: string;
  readonly state: string;
  readonly fifoDir: string;
  readonly logPath: string;
  readonly knownIds = new Set<string>();
  private exited!: Promise<void>;
  private hasExited = false;
  private stopping: Promise<StopReport> | undefined;

  constructor(
    readonly dir: string,
    readonly address: string,
    readonly ttrpcAddress: string,
    readonly namespace: string,
    private child: ChildProcess,
    /** Spawns containerd again with the same config and environment (restart). */
    private readonly launch?: () => ChildProcess,
  ) {
    this.root = join(dir, 'root');
    this.state = join(dir, 'state');
    this.fifoDir = join(dir, 'fifo');
    this.logPath = join(dir, 'containerd.log');
    this.watchExit(child);
  }

  private watchExit(child: ChildProcess): void {
    this.hasExited = false;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        this.hasExited = true;
        resolve();
      });
    });
  }

  async restart(opts: RestartOptions = {}): Promise<void> {
    if (this.stopping) throw new Error('containerd is being stopped');
    if (!this.launch) throw new Error('this containerd cannot be restarted');
    if (!this.hasExited) {
      signal(this.pid, opts.signal ?? 'SIGTERM');
      const timedOut = await Promise.race([this.exited.then(() => false), sleep(STOP_GRACE_MS).then(() => true)]);
      if (timedOut) {
        signal(this.pid, 'SIGKILL');
        await this.exited;
      }
    }
    if (opts.downMs) await sleep(opts.downMs);
    const child = this.launch();
    child.unref();
    this.child = child;
    this.watchExit(child);
    await Promise.race([this.waitReady(), new Promise<never>((_, reject) => child.once('error', reject))]);
  }

  get pid(): number {
    return this.child.pid!;
  }

  ctr(args: readonly string[], opts: CtrOptions = {}): Promise<CommandResult> {
    return this.spawnCtr(args, { ...opts, holdStdin: false }).result;
  }

  spawnCtr(args: readonly string[], opts: CtrOptions = {}): RunningCommand {
    const ns = opts.namespace ?? this.namespace;
    return spawnCommand(CTR_BIN, ['--address', this.address, '--namespace', ns, ...args], {
      input: opts.input,
      holdStdin: opts.holdStdin,
      timeoutMs: opts.timeoutMs,
    });
  }

  newId(prefix = 't'): string {
    const id = `${prefix}-${process.pid}-${++idCounter}-${Math.random().toString(36).slice(2, 6)}`;
    this.knownIds.add(id);
    return id;
  }

  readLog(): string {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  async waitReady(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.hasExited) throw new Error(`containerd exited during startup:\n${tail(this.readLog())}`);
      if (existsSync(this.address)) {
        const r = await runCommand(CTR_BIN, ['--address', this.address, 'version'], { timeoutMs: 2_000 });
        if (r.code === 0) return;
      }
      await sleep(50);
    }
    throw new Error(`containerd not ready after ${READY_TIMEOUT_MS} ms:\n${tail(this.readLog())}`);
  }

  stop(): Promise<StopReport> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<StopReport> {
    const namespaces = new Set([this.namespace]);
    if (!this.hasExited) {
      for (const ns of await this.listNamespaces()) namespaces.add(ns);
      for (const ns of namespaces) await this.removeAll(ns);
    }
    this.rememberBundleIds(namespaces);

    let containerdKilled = false;
    if (!this.hasExited) {
      signal(this.pid, 'SIGTERM');
      const timedOut = await Promise.race([this.exited.then(() => false), sleep(STOP_GRACE_MS).then(() => true)]);
      if (timedOut) {
        containerdKilled = true;
        signal(this.pid, 'SIGKILL');
        await this.exited;
      }
    }

    const killed = processesOwnedBy(this.dir);
    const sockets = this.candidateSockets(namespaces, killed);
    for (const p of killed) signal(p.pid, 'SIGKILL');
    await waitGone(killed.map((p) => p.pid), 5_000);

    const report: StopReport = {
      containerdKilled,
      killed,
      removedSockets: removeSockets(sockets),
      unmounted: unmountUnder(this.dir),
    };
    this.cleanupHostState(namespaces);
    this.keepLogIfDebugging();
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
    live.delete(this);
    return report;
  }

  /** Synchronous best effort for process exit: no ctr calls, just kill, unmount, remove. */
  stopSync(): void {
    if (!this.hasExited) signal(this.pid, 'SIGKILL');
    const owned = processesOwnedBy(this.dir);
    const sockets = this.candidateSockets(new Set([this.namespace]), owned);
    for (const p of owned) signal(p.pid, 'SIGKILL');
    // Cgroups cannot be removed until their processes are gone.
    waitGoneSync([this.pid, ...owned.map((p) => p.pid)], 2_000);
    removeSockets(sockets);
    unmountUnder(this.dir);
    this.cleanupHostState(new Set([this.namespace]));
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // a process may still hold a mount busy; nothing more can be done synchronously
    }
    live.delete(this);
  }

  private async listNamespaces(): Promise<string[]> {
    const r = await this.ctr(['namespaces', 'ls', '-q'], { timeoutMs: TEARDOWN_CTR_TIMEOUT_MS });
    return r.code === 0 ? lines(r.stdout) : [];
  }

  private async removeAll(ns: string): Promise<void> {
    const opts = { namespace: ns, timeoutMs: TEARDOWN_CTR_TIMEOUT_MS };
    const tasks = await this.ctr(['tasks', 'ls', '-q'], opts);
    for (const id of tasks.code === 0 ? lines(tasks.stdout) : []) {
      this.knownIds.add(id);
      await this.ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id], opts);
      await this.ctr(['tasks', 'delete', '-f', id], opts);
    }
    const containers = await this.ctr(['containers', 'ls', '-q'], opts);
    const ids = containers.code === 0 ? lines(containers.stdout) : [];
    if (ids.length > 0) await this.ctr(['containers', 'rm', ...ids], opts);
  }

  private rememberBundleIds(namespaces: Set<string>): void {
    const base = join(this.state, 'io.containerd.runtime.v2.task');
    for (const ns of safeReaddir(base)) {
      namespaces.add(ns);
      for (const id of safeReaddir(join(base, ns))) this.knownIds.add(id);
    }
  }

  private candidateSockets(namespaces: ReadonlySet<string>, procs: readonly ProcInfo[]): string[] {
    const out: string[] = [];
    for (const ns of namespaces) for (const id of this.knownIds) out.push(shimSocketPath(this.address, ns, id));
    for (const { namespace, id } of shimIdentities(procs)) out.push(shimSocketPath(this.address, namespace, id));
    // A spare server killed here leaves its socket too.
    out.push(spareSocketPath(this.address, { TTRPC_ADDRESS: this.ttrpcAddress }));
    return out;
  }

  private cleanupHostState(namespaces: ReadonlySet<string>): void {
    for (const ns of namespaces) {
      if (ns !== this.namespace && !ns.startsWith(`${this.namespace}-`)) continue;
      try {
        removeNamespaceCgroups(ns);
        removeRuncRoot(ns);
      } catch {
        // best effort
      }
    }
  }

  private keepLogIfDebugging(): void {
    if (!process.env.FLINT_TEST_DEBUG) return;
    const keep = join(tmpdir(), `flint-containerd-${this.namespace}.log`);
    try {
      copyFileSync(this.logPath, keep);
      process.stderr.write(`harness: containerd log kept at ${keep}\n`);
    } catch {
      // no log
    }
  }
}

/**
 * Starts a private containerd in a fresh /tmp/fl-XXXXXX dir (short, so unix
 * socket paths stay under 108 bytes) with <repo>/bin first on its PATH, and
 * waits until it answers `ctr version`.
 */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  installExitHook();
  const dir = await mkdtemp('/tmp/fl-');
  const address = join(dir, 'c.sock');
  const ttrpcAddress = `${address}.ttrpc`;
  // mkdtemp's suffix is alphanumeric, so the dir name is a valid, unique namespace.
  const namespace = basename(dir);
  for (const sub of ['root', 'state', 'tmp', 'opt', 'fifo']) mkdirSync(join(dir, sub), { recursive: true });
  const logLevel = opts.logLevel ?? (process.env.FLINT_TEST_DEBUG ? 'debug' : 'info');
  if (opts.cri) prepareCriDirs(dir);
  const configPath = join(dir, 'config.toml');
  writeFileSync(configPath, renderConfig({ dir, address, ttrpcAddress, logLevel, extraToml: opts.extraToml, cri: opts.cri }));

  // node's own dir too: the flint launcher is `#!/usr/bin/env node`.
  const path = [repoBinDir(), dirname(process.execPath), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':');
  const launch = (): ChildProcess => {
    const logFd = openSync(join(dir, 'containerd.log'), 'a');
    try {
      return spawnFlint(CONTAINERD_BIN, ['--config', configPath], {
        stdio: ['ignore', logFd, logFd],
        extraEnv: { ...opts.env, PATH: path },
        cwd: dir,
      });
    } finally {
      closeSync(logFd);
    }
  };
  const child = launch();
  // Unref'd so a test that forgets stop() still exits, and the exit hook then kills it.
  child.unref();
  const c = new ContainerdInstance(dir, address, ttrpcAddress, namespace, child, launch);
  live.add(c);
  try {
    await Promise.race([
      c.waitReady(),
      new Promise<never>((_, reject) => child.once('error', reject)),
    ]);
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/** Creates the dirs criPaths(dir) names and flint's config file, which points runc's root into the temp dir. */
function prepareCriDirs(dir: string): void {
  const p = criPaths(dir);
  for (const d of [p.cniConfDir, p.cniBinDir, p.runcRoot, p.logDir]) mkdirSync(d, { recursive: true });
  writeFileSync(p.flintConfig, JSON.stringify({ runc: { root: p.runcRoot } }));
}

async function waitGone(pids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(20);
}

function waitGoneSync(pids: readonly number[], timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (pids.some(isRunning) && Date.now() < deadline) Atomics.wait(cell, 0, 0, 10);
}

function lines(b: Buffer): string[] {
  return b.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function tail(s: string, n = 30): string {
  return s.split('\n').slice(-n).join('\n');
}
