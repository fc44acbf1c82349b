import type { Duplex } from 'node:stream';
import { setWinsize } from '../../native/pty.js';
import type { ExitStatus } from '../../sys/exit-status.js';
import { Mutex } from '../../sys/mutex.js';
import type { ExitWatch } from '../../sys/reaper.js';
import type { ProcessIO } from '../io/index.js';
import type { StdioPaths } from '../io/stdio-uri.js';
import { readPidFile } from './pid-file.js';
import { StateMachine, type Lifecycle, type StateName } from './state-machine.js';

/** How long Delete, or an exit, waits for a process's output copies to finish. */
export const DRAIN_TIMEOUT_MS = 2_000;
/** How long an exit waits, then, for the client to read the output written before it. */
export const OUTPUT_READ_TIMEOUT_MS = 2_000;

/** What State reports about a process. */
export interface ProcessSnapshot {
  readonly pid: number;
  readonly state: StateName;
  readonly stdio: StdioPaths;
  readonly exit: ExitStatus | undefined;
}

/** What the owner of a process does with its exit. */
export interface ExitHandler {
  /** What must be done before the exit is reported, e.g. killing what the process left behind; never rejects. */
  readonly settle?: () => Promise<void>;
  /** Publishes the exit. */
  readonly report: (exit: ExitStatus) => void;
}

/** A pty master as the shim holds it: the stream and the fd resize needs. */
export interface ConsoleHandle {
  readonly stream: Duplex;
  readonly fd: number;
}

/**
 * What init and exec processes share: the state machine, the lock that
 * serialises their operations, the exit record with its many waiters, and
 * the stdio (with a console, when there is a terminal).
 */
export abstract class ProcessBase<Op extends string> {
  protected readonly machine: StateMachine<Op>;
  protected readonly lock = new Mutex();
  protected pidValue = 0;
  protected io: ProcessIO | undefined;
  protected console: ConsoleHandle | undefined;
  private exitValue: ExitStatus | undefined;
  private readonly exited: Promise<ExitStatus>;
  private resolveExited!: (exit: ExitStatus) => void;

  protected constructor(noun: string, lifecycle: Lifecycle<Op>, readonly stdio: StdioPaths) {
    this.machine = new StateMachine(noun, lifecycle);
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
  }

  get pid(): number {
    return this.pidValue;
  }

  get state(): StateName {
    return this.machine.state;
  }

  get exit(): ExitStatus | undefined {
    return this.exitValue;
  }

  snapshot(): ProcessSnapshot {
    return { pid: this.pidValue, state: this.machine.state, stdio: this.stdio, exit: this.exitValue };
  }

  /** Resolves once the process has exited; any number of callers may wait. */
  wait(): Promise<ExitStatus> {
    return this.exited;
  }

  /**
   * Records the exit the reaper saw. Output copies keep running until they
   * drain; Delete waits for them.
   */
  private setExited(exit: ExitStatus): void {
    if (this.exitValue) return;
    this.exitValue = exit;
    if (!this.machine.is('deleted')) this.machine.transition('stopped');
    this.resolveExited(exit);
  }

  /**
   * Takes over the process runc has just started (create or exec): the
   * process holds its stdio ends now, a console's copies begin, its pid
   * comes from `pidFile`, and its exit, kept by `exits` if it came already,
   * goes to exitSeen.
   */
  protected async adopt(io: ProcessIO, pidFile: string, exits: ExitWatch, onExit: ExitHandler): Promise<void> {
    io.releaseProcessEnds();
    if (this.console) io.attachConsole(this.console.stream);
    this.pidValue = await readPidFile(pidFile);
    void exits.wait(this.pidValue).then((exit) => this.exitSeen(exit, onExit));
  }

  /**
   * Handles the exit the reaper saw as one more operation of the process,
   * under its lock: after a Start in flight has announced the process, and
   * before a Delete in line. `settle` runs first, then the output the
   * process wrote is waited for until the client has read it (bounded), then
   * Wait answers and `report` publishes: a client may stop reading as soon
   * as it learns of the exit, as containerd 1.6's CRI does, and the runc
   * shim too reports an exit only once it has done what the exit calls for.
   * A process deleted first (Delete of a created process kills it) has its
   * exit recorded but not reported: that death must not surface after the
   * delete event.
   */
  protected exitSeen(exit: ExitStatus, handler: ExitHandler): Promise<void> {
    return this.lock.run(async () => {
      const deleted = this.machine.is('deleted');
      if (!deleted) {
        await handler.settle?.();
        await this.io?.drain(DRAIN_TIMEOUT_MS);
        await this.io?.outputRead?.(OUTPUT_READ_TIMEOUT_MS);
      }
      this.setExited(exit);
      if (!deleted) handler.report(exit);
    });
  }

  async resize(width: number, height: number): Promise<void> {
    this.machine.assert('resize' as Op);
    // Like the runc shim: no console, nothing to resize.
    if (this.console) setWinsize(this.console.fd, height, width);
  }

  async closeIO(): Promise<void> {
    this.machine.assert('closeIO' as Op);
    this.io?.closeStdin();
  }

  /** Drains and closes stdio; safe to call more than once. */
  protected async closeStdio(): Promise<void> {
    const io = this.io;
    this.io = undefined;
    if (io) {
      await io.drain(DRAIN_TIMEOUT_MS);
      await io.close();
    }
    this.console?.stream.destroy();
    this.console = undefined;
  }
}
