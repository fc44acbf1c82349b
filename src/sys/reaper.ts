import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { childPids, procStat, setChildSubreaper, waitpidNoHang, type WaitResult } from '../native/process.js';
import type { ExitStatus } from './exit-status.js';
import { isReapedStdio, ReapedChild } from './reaped-child.js';

/**
 * Strays (zombies nobody watches) are looked for at most this often: it
 * costs a /proc walk, and a process someone waits for is reaped by pid
 * at once anyway, so only truly unclaimed zombies wait for it.
 */
const STRAY_SCAN_DELAY_MS = 1_000;

type Waiter = (exit: ExitStatus) => void;

/**
 * Exits kept for a process being started, whose pid is not known yet: runc
 * writes it to a pid file, and the process may die before the file is read.
 */
export interface ExitWatch {
  /** Like Reaper.wait, but first takes an exit of `pid` reaped while the watch was open. */
  wait(pid: number): Promise<ExitStatus>;
  /** Ends the watch: exits reaped from now on are not kept for it. */
  close(): void;
}

/**
 * The one reaper of the process. As child subreaper the shim inherits every
 * container process whose parent (runc) exits; Node's libuv only reaps the
 * children it spawned itself, by pid. So on SIGCHLD the reaper reaps the pids
 * it was asked to watch, and, a little later, any other zombie child that
 * libuv does not own. Such an exit is kept only for the starts in flight
 * (watchExits), whose process may die before runc's pid file is read; with
 * none, it is dropped. Kept longer, it would be handed to whichever later
 * process got the pid, as the runc shim's exit subscriptions avoid too.
 *
 * Every child_process spawn in flint goes through `spawn()` here, so the
 * reaper knows which children are libuv's and never steals their statuses.
 */
export class Reaper {
  private static instance: Reaper | undefined;
  private readonly waiters = new Map<number, Waiter[]>();
  /** The exits kept for each open ExitWatch, by pid. */
  private readonly watches = new Set<Map<number, ExitStatus>>();
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

  /**
   * Starts a short-lived helper (runc). With stdio of three fds, 'pipe's or
   * nothing it is spawned vfork-style and reaped here (ReapedChild), which
   * costs the same whatever this process's size; anything else goes to
   * spawn() above.
   */
  spawnHelper(command: string, args: readonly string[], options: SpawnOptions): ChildProcess | ReapedChild {
    if (!isReapedStdio(options.stdio)) return this.spawn(command, args, options);
    return new ReapedChild(command, args, { stdio: options.stdio, env: options.env }, (pid) => this.wait(pid));
  }

  /** Resolves when `pid`, a child of this process (directly or by reparenting), exits. */
  wait(pid: number): Promise<ExitStatus> {
    const promise = new Promise<ExitStatus>((resolve) => {
      const list = this.waiters.get(pid) ?? [];
      list.push(resolve);
      this.waiters.set(pid, list);
    });
    // It may already be a zombie: SIGCHLD came before anyone asked.
    this.tryReap(pid);
    return promise;
  }

  /**
   * Opens a watch for a process about to be started: open it before runc
   * runs, ask it for the pid once known, close it then.
   */
  watchExits(): ExitWatch {
    const kept = new Map<number, ExitStatus>();
    this.watches.add(kept);
    return {
      wait: (pid) => {
        const early = kept.get(pid);
        kept.delete(pid);
        return early ? Promise.resolve(early) : this.wait(pid);
      },
      close: () => {
        this.watches.delete(kept);
        kept.clear();
      },
    };
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
    let result: WaitResult | null;
    try {
      result = waitpidNoHang(pid);
    } catch (err) {
      // ECHILD: not (yet) our child, e.g. runc has not exited so no reparenting
      // happened yet; the next SIGCHLD tries again.
      if ((err as NodeJS.ErrnoException).code === 'ECHILD') return;
      throw err;
    }
    if (result) this.deliver({ pid: result.pid, status: result.status, signal: result.signal, exitedAt: new Date() });
  }

  private deliver(exit: ExitStatus): void {
    const list = this.waiters.get(exit.pid);
    if (list) {
      this.waiters.delete(exit.pid);
      for (const resolve of list) resolve(exit);
      return;
    }
    for (const kept of this.watches) kept.set(exit.pid, exit);
  }

  /** Reaps zombie children that neither libuv nor a waiter owns. */
  private scanStrays(): void {
    for (const pid of zombieChildren(process.pid)) {
      if (this.nodeOwned.has(pid) || this.waiters.has(pid)) continue;
      this.tryReap(pid);
    }
  }
}

/** Zombie children of `parent`: exited, not yet reaped. */
export function zombieChildren(parent: number): number[] {
  return childPids(parent).filter((pid) => procStat(pid)?.state === 'Z');
}
