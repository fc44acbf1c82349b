import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { readSpec, type OciSpec } from '../bundle/spec.js';
import { mountAll, unmountAll } from '../bundle/mount.js';
import { safeJoin } from '../bundle/safe-join.js';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../errdefs/errors.js';
import type { containerd, google } from '../generated/index.js';
import { Runc } from '../runc/runc.js';
import { CleanupStack } from '../sys/cleanup-stack.js';
import type { ExitStatus } from '../sys/exit-status.js';
import type { Reaper } from '../sys/reaper.js';
import { cgroupsOf, type ProcessCgroups } from './cgroup.js';
import { readCgroupStats } from './cgroup-stats.js';
import { taskEvents, type EventSink } from './events.js';
import type { IoOwner } from './io/index.js';
import { metricsAny } from './metrics.js';
import type { StdioPaths } from './io/stdio-uri.js';
import { OomWatcher } from './oom.js';
import { RUNC_SETTINGS_FILE, writeRuncSettings } from './runc-settings.js';
import type { ProcessContext } from './process/context.js';
import { ExecProcess } from './process/exec.js';
import { InitProcess } from './process/init.js';

/** The runc settings a container runs with (config file merged with runtime options). */
export interface RuncSettings {
  readonly binary: string;
  readonly root: string;
  readonly systemdCgroup: boolean;
  readonly noPivotRoot: boolean;
  readonly noNewKeyring: boolean;
  readonly criuPath: string | undefined;
  /** Who owns the process's stdio pipes and FIFOs (io_uid/io_gid); unchanged when absent. */
  readonly ioOwner?: IoOwner | undefined;
  /** Where checkpoints go when a Checkpoint request names no path (criu_image_path). */
  readonly criuImagePath?: string | undefined;
  /** criu's work directory for checkpoints (criu_work_path); runc's default when absent. */
  readonly criuWorkPath?: string | undefined;
}

export interface ContainerCreateRequest {
  readonly id: string;
  readonly bundle: string;
  readonly rootfs: readonly containerd.types.IMount[];
  readonly stdio: StdioPaths;
  readonly runc: RuncSettings;
}

export interface ContainerDeps {
  readonly namespace: string;
  readonly events: EventSink;
  readonly reaper: Reaper;
  /** For what goes wrong without failing a call (an OOM monitor that cannot be set up). */
  readonly log: Logger;
}

/**
 * One container: its init process, its execs, and the stack of undo steps
 * (rootfs mounts, stdio, runc state) that its creation pushed. Delete, or a
 * failed Create, runs the stack last-in-first-out.
 */
export class Container {
  readonly init: InitProcess;
  private readonly execs = new Map<string, ExecProcess>();
  private readonly oom: OomWatcher;
  /** The init's cgroups, found at Create; Stats reads them after the init is gone too. */
  private cgroups: ProcessCgroups | undefined;
  /** One promise per exec started and not yet reported exited; the init's exit is reported after them. */
  private readonly liveExecs = new Set<Promise<unknown>>();
  /** Set once the delete event is out: nothing about this container is published after it. */
  private deleted = false;

  private constructor(
    private readonly ctx: ProcessContext,
    readonly rootfs: readonly containerd.types.IMount[],
    private readonly cleanup: CleanupStack,
    /** The runc settings it was created with. */
    readonly settings: RuncSettings,
    stdio: StdioPaths,
    private readonly killAllOnExit: boolean,
    log: Logger,
  ) {
    this.init = new InitProcess(ctx, stdio);
    this.oom = new OomWatcher(() => ctx.events.publish(taskEvents.oom(ctx.containerId)), log.child({ id: ctx.containerId, namespace: ctx.namespace }));
  }

  get id(): string {
    return this.ctx.containerId;
  }

  get bundle(): string {
    return this.ctx.bundle;
  }

  get runc(): Runc {
    return this.ctx.runc;
  }

  static async create(request: ContainerCreateRequest, deps: ContainerDeps): Promise<Container> {
    const { id, bundle } = request;
    await assertBundle(bundle);
    const spec = await readSpec(join(bundle, 'config.json'));
    const terminal = request.stdio.terminal || spec.process?.terminal === true;
    const runc = new Runc({
      binary: request.runc.binary,
      root: join(request.runc.root, deps.namespace),
      log: join(bundle, 'log.json'),
      systemdCgroup: request.runc.systemdCgroup,
      ...(request.runc.criuPath ? { criu: request.runc.criuPath } : {}),
      spawn: (command, args, options) => deps.reaper.spawnHelper(command, args, options),
    });
    const ctx: ProcessContext = { containerId: id, namespace: deps.namespace, bundle, runc, events: deps.events, reaper: deps.reaper, ioOwner: request.runc.ioOwner };
    const rootfs = join(bundle, 'rootfs');
    // Checked before anything is written: a rootfs that is a symlink out of the bundle would take the mounts with it.
    if (request.rootfs.length > 0) safeJoin(bundle, 'rootfs');
    const cleanup = new CleanupStack();
    try {
      await writeRuncSettings(bundle, request.runc);
      cleanup.push('runc settings', () => rm(join(bundle, RUNC_SETTINGS_FILE), { force: true }));
      if (request.rootfs.length > 0) {
        await mkdir(rootfs, { recursive: true, mode: 0o711 });
        cleanup.push('rootfs mounts', () => unmountAll(rootfs));
        await mountAll(request.rootfs.map(toMount), rootfs);
      }
      const container = new Container(ctx, request.rootfs, cleanup, request.runc, { ...request.stdio, terminal }, !hasOwnPidNamespace(spec), deps.log);
      await container.init.create(cleanup, { noPivot: request.runc.noPivotRoot, noNewKeyring: request.runc.noNewKeyring }, {
        settle: () => container.settleInitExit(),
        report: (exit) => ctx.events.publish(taskEvents.exit(id, id, exit)),
      });
      container.cgroups = cgroupsOf(container.init.pid);
      // Watched from Create, so an OOM right after Start is counted from a baseline taken before it.
      container.oom.watch(container.init.pid);
      return container;
    } catch (err) {
      return cleanup.unwind(err);
    }
  }

  /** The init process for "", else the exec; NotFound like the runc shim. */
  process(execId: string): InitProcess | ExecProcess {
    if (!execId) return this.init;
    const exec = this.execs.get(execId);
    if (!exec) throw new NotFoundError(`process does not exist ${execId}`);
    return exec;
  }

  exec(execId: string, spec: Record<string, unknown>, stdio: StdioPaths): void {
    this.init.assertCanExec();
    if (this.execs.has(execId)) throw new AlreadyExistsError(`id ${execId}: already exists`);
    // The request decides, as in the runc shim: runc refuses a console socket for a
    // process spec without a terminal, and allocates none when one is not asked for.
    this.execs.set(execId, new ExecProcess(this.ctx, execId, { ...spec, terminal: stdio.terminal }, stdio));
    this.ctx.events.publish(taskEvents.execAdded(this.id, execId));
  }

  async start(execId: string): Promise<number> {
    if (!execId) return this.init.start();
    const exec = this.process(execId) as ExecProcess;
    const started = exec.start({
      report: (exit) => {
        if (!this.deleted) this.ctx.events.publish(taskEvents.exit(this.id, execId, exit));
      },
    });
    // Wait answers right after the exit event, in the same step (exitSeen).
    const live = started.then(() => exec.wait(), () => undefined).finally(() => this.liveExecs.delete(live));
    this.liveExecs.add(live);
    return started;
  }

  /** Deletes an exec, or the container itself (init) with all it set up. */
  async delete(execId: string): Promise<ExitStatus | undefined> {
    if (execId) {
      const exec = this.process(execId) as ExecProcess;
      await exec.delete();
      this.execs.delete(execId);
      return exec.exit;
    }
    await this.init.delete();
    this.oom.close();
    for (const exec of this.execs.values()) await exec.delete().catch(() => {});
    this.execs.clear();
    const failure = await this.cleanup.run();
    if (failure) throw failure;
    this.deleted = true;
    this.ctx.events.publish(taskEvents.delete(this.id, this.id, this.init.pid, this.init.exit));
    return this.init.exit;
  }

  /**
   * containerd's metrics of the container, read from its cgroup files as
   * the runc shim reads them: a stopped container's are there until Delete.
   */
  stats(): google.protobuf.IAny {
    if (!this.cgroups) throw new NotFoundError(`container ${this.id}: cgroup does not exist`);
    return metricsAny(readCgroupStats(this.cgroups), this.cgroups);
  }

  /** The pids of the execs that are running, for Pids. */
  execPids(): Map<number, string> {
    const pids = new Map<number, string>();
    for (const exec of this.execs.values()) if (exec.pid > 0) pids.set(exec.pid, exec.execId);
    return pids;
  }

  /**
   * What the init's death calls for before it is reported. Without its own
   * pid namespace nothing kills the init's fellow processes when it dies;
   * the runc shim kills them (ShouldKillAllOnExit) and waits for that before
   * it reports the exit, so a Wait that has returned means nothing of the
   * container runs, and so do we. Then, as the runc shim does, the exits of
   * the execs go out first: containerd takes the init's exit for the end of
   * the task. The execs are dead or dying by then (killed with the pid
   * namespace, or just now), so this wait is short. (A Delete first would
   * have skipped all this: `runc delete --force` kills what is left itself.)
   */
  private async settleInitExit(): Promise<void> {
    this.oom.close();
    if (this.killAllOnExit) await this.ctx.runc.kill(this.id, 'KILL', { all: true }).catch(() => {});
    // An exec whose start was in flight joins the set before its start settles.
    while (this.liveExecs.size > 0) await Promise.all(this.liveExecs);
  }
}

async function assertBundle(bundle: string): Promise<void> {
  if (!bundle.startsWith('/')) throw new InvalidArgumentError(`bundle path ${JSON.stringify(bundle)} must be absolute`);
  try {
    if (!(await stat(bundle)).isDirectory()) throw new InvalidArgumentError(`bundle ${bundle} is not a directory`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`bundle ${bundle} does not exist`);
    throw err;
  }
}

/** True when the spec gives the container a pid namespace of its own (a new one, not a joined path). */
function hasOwnPidNamespace(spec: OciSpec): boolean {
  return spec.linux?.namespaces?.some((ns) => ns.type === 'pid' && !ns.path) ?? false;
}

function toMount(mount: containerd.types.IMount): { type: string; source: string; options: string[] } {
  return { type: mount.type ?? '', source: mount.source ?? '', options: [...(mount.options ?? [])] };
}
