import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError } from '../../errdefs/errors.js';
import { CleanupStack } from '../../sys/cleanup-stack.js';
import { taskEvents } from '../events.js';
import { openProcessIO } from '../io/index.js';
import type { StdioPaths } from '../io/stdio-uri.js';
import { withConsoleSocket } from './console.js';
import type { ProcessContext } from './context.js';
import { ProcessBase, type ExitHandler } from './process-base.js';
import { runtimeStep } from './runtime-error.js';
import { EXEC_LIFECYCLE, type ExecOp } from './state-machine.js';

/**
 * An extra process in a running container. Exec only records it (and
 * announces exec-added); Start runs `runc exec --detach`, pushing each
 * piece it sets up (stdio, the pid file) on the exec's own cleanup stack.
 */
export class ExecProcess extends ProcessBase<ExecOp> {
  /** What Start set up for this exec; unwound if Start fails, run by Delete. */
  private readonly cleanup = new CleanupStack();

  constructor(
    private readonly ctx: ProcessContext,
    readonly execId: string,
    private readonly spec: { terminal?: boolean } & Record<string, unknown>,
    stdio: StdioPaths,
  ) {
    super(`exec ${execId}`, EXEC_LIFECYCLE, stdio);
  }

  private get pidFile(): string {
    return join(this.ctx.bundle, `${this.execId}.pid`);
  }

  /**
   * Runs the process. `onExit` handles its exit (see exitSeen), after the
   * exec-started event: the exit is handled under the lock Start holds.
   */
  start(onExit: ExitHandler): Promise<number> {
    return this.lock.run(async () => {
      this.machine.assert('start');
      const { runc, containerId } = this.ctx;
      // Watched from before runc runs: the process may die before its pid file is read.
      const exits = this.ctx.reaper.watchExits();
      try {
        const io = await openProcessIO(this.stdio, { id: containerId, namespace: this.ctx.namespace }, this.ctx.ioOwner);
        this.io = io;
        io.holdStdinOpen?.();
        this.cleanup.push('stdio', () => this.closeStdio());
        this.cleanup.push('pid file', () => rm(this.pidFile, { force: true }));
        const execOptions = { pidFile: this.pidFile, stdio: io.stdio, detach: true };
        const what = 'OCI runtime exec failed';
        if (this.stdio.terminal) {
          this.console = await withConsoleSocket((consoleSocket) => runtimeStep(what, runc.exec(containerId, this.spec, { ...execOptions, consoleSocket })));
        } else {
          await runtimeStep(what, runc.exec(containerId, this.spec, execOptions));
        }
        await this.adopt(io, this.pidFile, exits, onExit);
      } catch (err) {
        return this.cleanup.unwind(err);
      } finally {
        exits.close();
      }
      this.machine.transition('running');
      this.ctx.events.publish(taskEvents.execStarted(containerId, this.execId, this.pidValue));
      return this.pidValue;
    });
  }

  /** Signals the process directly, as the runc shim does for execs. */
  async kill(signal: number): Promise<void> {
    this.machine.assert('kill');
    if (this.machine.is('stopped')) throw new NotFoundError('process already finished');
    try {
      process.kill(this.pidValue, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') throw new NotFoundError('process already finished');
      throw err;
    }
  }

  delete(): Promise<void> {
    return this.lock.run(async () => {
      this.machine.assert('delete');
      const failure = await this.cleanup.run();
      if (failure) throw failure;
      this.machine.transition('deleted');
    });
  }
}
