import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError, UnknownError } from '../../errdefs/errors.js';
import { RuncError, type CheckpointOptions } from '../../runc/runc.js';
import { CleanupStack } from '../../sys/cleanup-stack.js';
import { taskEvents } from '../events.js';
import { openProcessIO } from '../io/index.js';
import type { StdioPaths } from '../io/stdio-uri.js';
import { withConsoleSocket } from './console.js';
import type { ProcessContext } from './context.js';
import { ProcessBase, type ExitHandler } from './process-base.js';
import { runtimeStep } from './runtime-error.js';
import { INIT_LIFECYCLE, type InitOp } from './state-machine.js';

/** criu's work directory when the caller names none; removed after each checkpoint. */
const CRIU_WORK_DIR = 'criu-work';
/** Where a failed checkpoint's criu log is kept, in the bundle. */
const CRIU_DUMP_LOG = 'criu-dump.log';

export interface InitCreateOptions {
  readonly noPivot?: boolean;
  readonly noNewKeyring?: boolean;
}

/**
 * A container's init process: `runc create` makes it, `runc start` lets it
 * run. Its exit is the container's exit.
 */
export class InitProcess extends ProcessBase<InitOp> {
  /** Set once Delete has run `runc delete`, so the cleanup stack does not run it again. */
  private runcDeleted = false;

  constructor(private readonly ctx: ProcessContext, stdio: StdioPaths) {
    super(`container ${ctx.containerId}`, INIT_LIFECYCLE, stdio);
  }

  get pidFile(): string {
    return join(this.ctx.bundle, 'init.pid');
  }

  /**
   * Opens stdio and runs `runc create`. Each piece it sets up is pushed on
   * `cleanup`, which the caller unwinds if this or any later step fails.
   * `onExit` handles the process's exit (see exitSeen): after its start,
   * if any, has been announced, so exit events never overtake start events.
   */
  async create(cleanup: CleanupStack, options: InitCreateOptions, onExit: ExitHandler): Promise<void> {
    const { runc, containerId: id, bundle } = this.ctx;
    const io = await openProcessIO(this.stdio, { id, namespace: this.ctx.namespace }, this.ctx.ioOwner);
    this.io = io;
    cleanup.push('stdio', () => this.closeStdio());

    const createOptions = { bundle, pidFile: this.pidFile, stdio: io.stdio, noPivot: options.noPivot ?? false, noNewKeyring: options.noNewKeyring ?? false };
    const what = 'OCI runtime create failed';
    // Watched from before runc runs: the process may die before its pid file is read.
    const exits = this.ctx.reaper.watchExits();
    try {
      if (this.stdio.terminal) {
        this.console = await withConsoleSocket((consoleSocket) => runtimeStep(what, runc.create(id, { ...createOptions, consoleSocket })));
      } else {
        await runtimeStep(what, runc.create(id, createOptions));
      }
      // Delete runs `runc delete` itself; the stack's copy is for the paths that never get there.
      cleanup.push('runc container', () => (this.runcDeleted ? undefined : runc.delete(id, { force: true }).catch(ignoreNotFound)));
      io.holdStdinOpen?.();
      await this.adopt(io, this.pidFile, exits, onExit);
    } finally {
      exits.close();
    }
  }

  start(): Promise<number> {
    return this.lock.run(async () => {
      this.machine.assert('start');
      await runtimeStep('OCI runtime start failed', this.ctx.runc.start(this.ctx.containerId));
      this.machine.transition('running');
      this.ctx.events.publish(taskEvents.start(this.ctx.containerId, this.pidValue));
      return this.pidValue;
    });
  }

  pause(): Promise<void> {
    return this.lock.run(async () => {
      this.machine.assert('pause');
      await runtimeStep('OCI runtime pause failed', this.ctx.runc.pause(this.ctx.containerId));
      this.machine.transition('paused');
      this.ctx.events.publish(taskEvents.paused(this.ctx.containerId));
    });
  }

  resume(): Promise<void> {
    return this.lock.run(async () => {
      this.machine.assert('resume');
      await runtimeStep('OCI runtime resume failed', this.ctx.runc.resume(this.ctx.containerId));
      this.machine.transition('running');
      this.ctx.events.publish(taskEvents.resumed(this.ctx.containerId));
    });
  }

  async kill(signal: number, all: boolean): Promise<void> {
    this.machine.assert('kill');
    if (this.machine.is('stopped') && !all) throw new NotFoundError('process already finished');
    await this.ctx.runc.kill(this.ctx.containerId, signal, { all });
  }

  update(resources: object): Promise<void> {
    return this.lock.run(async () => {
      this.machine.assert('update');
      await this.ctx.runc.update(this.ctx.containerId, resources);
    });
  }

  /**
   * `runc checkpoint`. As with the runc shim, criu works in a private
   * directory of the bundle unless the caller named one, and when it fails
   * its dump.log is kept as `criu-dump.log` in the bundle (the image
   * directory is usually a temporary one, gone when the call returns), and
   * the error names it.
   */
  checkpoint(options: CheckpointOptions): Promise<void> {
    return this.lock.run(async () => {
      this.machine.assert('checkpoint');
      const workPath = options.workPath ?? join(this.ctx.bundle, CRIU_WORK_DIR);
      try {
        await this.ctx.runc.checkpoint(this.ctx.containerId, { ...options, workPath });
      } catch (err) {
        throw await withCriuLog(err, workPath, join(this.ctx.bundle, CRIU_DUMP_LOG));
      } finally {
        if (options.workPath === undefined) await rm(workPath, { recursive: true, force: true });
      }
    });
  }

  assertCanExec(): void {
    this.machine.assert('exec');
  }

  /** `runc delete`, then drains and closes stdio. */
  delete(): Promise<void> {
    return this.lock.run(async () => {
      this.machine.assert('delete');
      await runtimeStep('failed to delete task', this.ctx.runc.delete(this.ctx.containerId, { force: this.machine.is('created') }).catch(ignoreNotFound));
      this.runcDeleted = true;
      await this.closeStdio();
      this.machine.transition('deleted');
    });
  }
}

/**
 * A failed checkpoint's error, once criu's log is kept at `keptLog`. runc's
 * own text stops at its first line: the next names the log relative to a
 * work directory that may be gone.
 */
async function withCriuLog(err: unknown, workPath: string, keptLog: string): Promise<unknown> {
  if (!(err instanceof RuncError)) return err;
  try {
    await copyFile(join(workPath, 'dump.log'), keptLog);
  } catch {
    return err; // criu never ran far enough to log
  }
  return new UnknownError(`${err.message.split('\n')[0]} (criu's log: ${keptLog})`, { cause: err });
}

function ignoreNotFound(err: unknown): void {
  if (!(err instanceof NotFoundError)) throw err;
}
