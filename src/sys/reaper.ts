import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { setChildSubreaper, waitpidNoHang } from '../native/process.js';
import type { ExitStatus } from './exit-status.js';

/** How long an exit nobody asked for is kept, for a pid learnt late (the exec pid-file race). */
const UNCLAIMED_TTL_MS = 60_000;
const UNCLAIMED_MAX = 4096;
/**
 * Strays (zombies nobody watches) are looked for at most this often: it
 * costs a /proc walk, and a process someone waits for is reaped by pid
 * at once anyway, so only truly unclaimed zombies wait for it.
 */
const STRAY_SCAN_DELAY_MS = 1_000;

type Waiter = (exit: ExitStatus) => void;

/**
 * The one reaper of the process. As child subreaper the shim inherits every
 * container process whose parent (runc) exits; Node's libuv only reaps the
 * children it spawned itself, by pid. So on SIGCHLD the reaper reaps the pids
 * it was asked to watch, and, a little later, any other zombie child that
 * libuv does not own: its exit is kept for a while in case its pid is learnt
 * later (a process may die before runc's pid file is read).
 *
 * Every child_process spawn in flint goes through `spawn()` here, so the
 * reaper knows which children are libuv's and never steals their statuses.
 */
export class Reaper {
  private static instance: Reaper | undefined;
  private readonly waiters = new Map<number, Waiter[]>();
  private readonly unclaimed = new Map<number, ExitStatus>();
  private readonly nodeOwned = new Set<number>();
  private strayTimer: NodeJS.Timeout | undefined;

  /** The process-wide reaper; the first call makes this process a child subreaper. */
  static get(): Reaper {
    if (!Reaper.instance) {
      Reaper.instance = new Reaper();
    }
    return Reaper.instance;
  }

  private constructor() {
    setChildSubreaper();
    process.on('SIGCHLD', () => this.onSigchld());
  }

  /** child_process.spawn, with the child marked as libuv's until it exits. */
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    const child = spawn(command, args, options);
    const pid = child.pid;
    if (pid !== undefined) {
      this.nodeOwned.add(pid);
      child.once('exit', () => this.nodeOwned.delete(pid));
      child.once('error', () => this.nodeOwned.delete(pid));
    }
    return child;
  }

  /** Resolves when `pid`, a child of this process (directly or by reparenting), exits. */
  wait(pid: number): Promise<ExitStatus> {
    const early = this.unclaimed.get(pid);
    if (early) {
      this.unclaimed.delete(pid);
      return Promise.resolve(early);
    }
    const promise = new Promise<ExitStatus>((resolve) => {
      const list = this.waiters.get(pid) ?? [];
      list.push(resolve);
      this.waiters.set(pid, list);
    });
    // It may already be a zombie: SIGCHLD came before anyone asked.
    this.tryReap(pid);
    return promise;
  }

  /** Reaps now instead of waiting for SIGCHLD (tests and shutdown use it). */
  reapNow(): void {
    this.onSigchld();
    this.scanStrays();
  }

  private onSigchld(): void {
    for (const pid of [...this.waiters.keys()]) this.tryReap(pid);
    this.strayTimer ??= setTimeout(() => {
      this.strayTimer = undefined;
      this.scanStrays();
    }, STRAY_SCAN_DELAY_MS);
    this.strayTimer.unref();
  }

  private tryReap(pid: number): void {
    let result: { pid: number; status: number } | null;
    try {
      result = waitpidNoHang(pid);
    } catch (err) {
      // ECHILD: not (yet) our child, e.g. runc has not exited so no reparenting
      // happened yet; the next SIGCHLD tries again.
      if ((err as NodeJS.ErrnoException).code === 'ECHILD') return;
      throw err;
    }
    if (result) this.deliver({ pid: result.pid, status: result.status, exitedAt: new Date() });
  }

  private deliver(exit: ExitStatus): void {
    const list = this.waiters.get(exit.pid);
    if (list) {
      this.waiters.delete(exit.pid);
      for (const resolve of list) resolve(exit);
      return;
    }
    this.unclaimed.set(exit.pid, exit);
    this.pruneUnclaimed();
  }

  private pruneUnclaimed(): void {
    const cutoff = Date.now() - UNCLAIMED_TTL_MS;
    for (const [pid, exit] of this.unclaimed) {
      if (this.unclaimed.size <= UNCLAIMED_MAX && exit.exitedAt.getTime() >= cutoff) break;
      this.unclaimed.delete(pid);
    }
  }

  /** Reaps zombie children that neither libuv nor a waiter owns. */
  private scanStrays(): void {
    for (const pid of zombieChildren(process.pid)) {
      if (this.nodeOwned.has(pid) || this.waiters.has(pid)) continue;
      this.tryReap(pid);
    }
  }
}

/**
 * The start of a /proc/<pid>/stat line: the pid, the comm in parentheses
 * (at most 15 bytes, which may hold spaces and parentheses), the state and
 * the ppid. Only that much is read, into one buffer for the whole walk.
 */
const STAT_HEAD = Buffer.allocUnsafe(128);
const CLOSE_PAREN = 0x29;
const ZOMBIE = 0x5a;

/**
 * Zombie children of `parent`, found by walking /proc (no CONFIG_PROC_CHILDREN
 * needed). The walk runs after SIGCHLDs and costs a few syscalls per process
 * on the host, so it reads only the head of each stat file into a shared
 * buffer and parses the bytes: readFileSync would allocate 64 KiB for each
 * (proc files have no size), which made the walk the shim's largest CPU cost
 * on a busy host.
 */
export function zombieChildren(parent: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    const first = name.charCodeAt(0);
    if (first < 0x30 || first > 0x39) continue;
    const n = readHead(`/proc/${name}/stat`);
    if (n === 0) continue;
    // The comm field may contain ')': the state follows the last one.
    const close = STAT_HEAD.lastIndexOf(CLOSE_PAREN, n - 1);
    if (close < 0 || STAT_HEAD[close + 2] !== ZOMBIE) continue;
    let ppid = 0;
    for (let i = close + 4; i < n && STAT_HEAD[i]! >= 0x30 && STAT_HEAD[i]! <= 0x39; i++) ppid = ppid * 10 + STAT_HEAD[i]! - 0x30;
    if (ppid === parent) found.push(Number(name));
  }
  return found;
}

/** Reads up to STAT_HEAD.length bytes of `path` into STAT_HEAD; 0 if it is gone. */
function readHead(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return 0;
  }
  try {
    return readSync(fd, STAT_HEAD, 0, STAT_HEAD.length, 0);
  } catch {
    return 0;
  } finally {
    closeSync(fd);
  }
}
