import type { Logger } from 'pino';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, UnimplementedError } from '../errdefs/errors.js';
import { validateId } from '../bundle/identifiers.js';
import type { FlintConfig } from '../config/config.js';
import { containerd, type google, type TaskService } from '../generated/index.js';
import type { CallContext } from '../ttrpc/context.js';
import { NAMESPACE_KEY } from '../ttrpc/metadata.js';
import type { Reaper } from '../sys/reaper.js';
import { timestampOf } from '../sys/exit-status.js';
import { Container, type RuncSettings } from './container.js';
import { sinkFor, taskEvents, type EventPublisher } from './events.js';
import { writeDeleteMarker } from './delete-marker.js';
import { decodeTaskOptions } from './options.js';
import type { StateName } from './process/state-machine.js';

type Empty = google.protobuf.Empty.$Properties;

const STATUS: Readonly<Record<StateName, containerd.v1.types.Status>> = {
  created: containerd.v1.types.Status.CREATED,
  running: containerd.v1.types.Status.RUNNING,
  paused: containerd.v1.types.Status.PAUSED,
  stopped: containerd.v1.types.Status.STOPPED,
  deleted: containerd.v1.types.Status.STOPPED,
};

export const OCI_PROCESS_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
const OCI_RESOURCES_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';

export interface RuncTaskServiceOptions {
  /** The namespace to use when a call carries none (the shim's -namespace). */
  readonly namespace: string;
  readonly events: EventPublisher;
  readonly reaper: Reaper;
  readonly log: Logger;
  /** The configuration the process started with. */
  readonly config: FlintConfig;
  /** Reads a config_path named by a task's runtime options. */
  readonly loadConfig: (path: string) => FlintConfig;
  /** Called by Shutdown once no container is left. */
  readonly onShutdown: () => void;
}

/**
 * containerd.task.v2.Task carried out with runc on this machine. The shim
 * (embedded mode) and the agent (inside a VM) both serve this one class.
 * It routes each call by container id, since one server may serve many
 * containers; the ttrpc server maps the typed errors it throws to statuses.
 */
export class RuncTaskService implements TaskService {
  private readonly containers = new Map<string, Container>();
  private readonly creating = new Set<string>();

  constructor(private readonly options: RuncTaskServiceOptions) {}

  get size(): number {
    return this.containers.size + this.creating.size;
  }

  async create(request: containerd.task.v2.CreateTaskRequest, ctx: CallContext): Promise<containerd.task.v2.CreateTaskResponse.$Properties> {
    validateId(request.id);
    const key = this.key(ctx, request.id);
    if (this.containers.has(key) || this.creating.has(key)) throw new AlreadyExistsError(`container ${request.id}: already exists`);
    if (request.checkpoint) throw new UnimplementedError('restoring from a checkpoint is not supported by flint');
    this.creating.add(key);
    try {
      const container = await Container.create(
        {
          id: request.id,
          bundle: request.bundle,
          rootfs: request.rootfs,
          stdio: { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal },
          runc: this.runcSettings(request.options),
        },
        { namespace: this.namespace(ctx), events: sinkFor(this.options.events, this.namespace(ctx)), reaper: this.options.reaper, log: this.options.log },
      );
      this.containers.set(key, container);
      this.options.events.publish(
        this.namespace(ctx),
        taskEvents.create({
          containerId: request.id,
          bundle: request.bundle,
          rootfs: request.rootfs,
          io: { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal },
          checkpoint: request.checkpoint,
          pid: container.init.pid,
        }),
      );
      return { pid: container.init.pid };
    } finally {
      this.creating.delete(key);
    }
  }

  async start(request: containerd.task.v2.StartRequest, ctx: CallContext): Promise<containerd.task.v2.StartResponse.$Properties> {
    const pid = await this.container(ctx, request.id).start(request.execId);
    return { pid };
  }

  async delete(request: containerd.task.v2.DeleteRequest, ctx: CallContext): Promise<containerd.task.v2.DeleteResponse.$Properties> {
    const container = this.container(ctx, request.id);
    const process = container.process(request.execId);
    const exit = await container.delete(request.execId);
    if (!request.execId) {
      this.containers.delete(this.key(ctx, request.id));
      await writeDeleteMarker(container.bundle, process.pid, exit);
    }
    return { pid: process.pid, exitStatus: exit?.status ?? 0, exitedAt: timestampOf(exit?.exitedAt) };
  }

  async exec(request: containerd.task.v2.ExecProcessRequest, ctx: CallContext): Promise<Empty> {
    validateId(request.execId);
    const container = this.container(ctx, request.id);
    const spec = jsonAny(request.spec, OCI_PROCESS_TYPE, 'exec process spec');
    container.exec(request.execId, spec, { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal });
    return {};
  }

  async state(request: containerd.task.v2.StateRequest, ctx: CallContext): Promise<containerd.task.v2.StateResponse.$Properties> {
    const container = this.container(ctx, request.id);
    const snapshot = container.process(request.execId).snapshot();
    return {
      id: request.execId || request.id,
      bundle: container.bundle,
      pid: snapshot.pid,
      status: STATUS[snapshot.state],
      stdin: snapshot.stdio.stdin,
      stdout: snapshot.stdio.stdout,
      stderr: snapshot.stdio.stderr,
      terminal: snapshot.stdio.terminal,
      exitStatus: snapshot.exit?.status ?? 0,
      exitedAt: timestampOf(snapshot.exit?.exitedAt),
      execId: request.execId,
    };
  }

  async wait(request: containerd.task.v2.WaitRequest, ctx: CallContext): Promise<containerd.task.v2.WaitResponse.$Properties> {
    const process = this.container(ctx, request.id).process(request.execId);
    const exit = await abortable(process.wait(), ctx.signal);
    return { exitStatus: exit.status, exitedAt: timestampOf(exit.exitedAt) };
  }

  async kill(request: containerd.task.v2.KillRequest, ctx: CallContext): Promise<Empty> {
    const process = this.container(ctx, request.id).process(request.execId);
    await process.kill(request.signal, request.all);
    return {};
  }

  async pids(request: containerd.task.v2.PidsRequest, ctx: CallContext): Promise<containerd.task.v2.PidsResponse.$Properties> {
    const container = this.container(ctx, request.id);
    const pids = await container.runc.ps(container.id);
    const execs = container.execPids();
    return {
      processes: pids.map((pid) => {
        const execId = execs.get(pid);
        if (execId === undefined) return { pid };
        const info = { typeUrl: 'containerd.runc.v1.ProcessDetails', value: containerd.runc.v1.ProcessDetails.encode({ execId }).finish() };
        return { pid, info };
      }),
    };
  }

  async pause(request: containerd.task.v2.PauseRequest, ctx: CallContext): Promise<Empty> {
    await this.container(ctx, request.id).init.pause();
    return {};
  }

  async resume(request: containerd.task.v2.ResumeRequest, ctx: CallContext): Promise<Empty> {
    await this.container(ctx, request.id).init.resume();
    return {};
  }

  async checkpoint(request: containerd.task.v2.CheckpointTaskRequest, ctx: CallContext): Promise<Empty> {
    const container = this.container(ctx, request.id);
    const opts = decodeCheckpointOptions(request.options);
    await container.init.checkpoint({
      imagePath: opts.imagePath || request.path || container.settings.criuImagePath || '',
      ...(opts.workPath || container.settings.criuWorkPath ? { workPath: opts.workPath || container.settings.criuWorkPath } : {}),
      leaveRunning: !opts.exit,
      tcpEstablished: opts.openTcp,
      externalUnixSockets: opts.externalUnixSockets,
      terminal: opts.terminal,
      fileLocks: opts.fileLocks,
      emptyNamespaces: opts.emptyNamespaces,
      ...(opts.cgroupsMode ? { cgroupsMode: opts.cgroupsMode as 'soft' | 'full' | 'strict' } : {}),
    });
    return {};
  }

  async update(request: containerd.task.v2.UpdateTaskRequest, ctx: CallContext): Promise<Empty> {
    const container = this.container(ctx, request.id);
    const resources = jsonAny(request.resources, OCI_RESOURCES_TYPE, 'update resources');
    await container.init.update(resources);
    return {};
  }

  async resizePty(request: containerd.task.v2.ResizePtyRequest, ctx: CallContext): Promise<Empty> {
    await this.container(ctx, request.id).process(request.execId).resize(request.width, request.height);
    return {};
  }

  async closeIO(request: containerd.task.v2.CloseIORequest, ctx: CallContext): Promise<Empty> {
    const process = this.container(ctx, request.id).process(request.execId);
    if (request.stdin) await process.closeIO();
    return {};
  }

  async stats(request: containerd.task.v2.StatsRequest, ctx: CallContext): Promise<containerd.task.v2.StatsResponse.$Properties> {
    return { stats: this.container(ctx, request.id).stats() };
  }

  async connect(request: containerd.task.v2.ConnectRequest, ctx: CallContext): Promise<containerd.task.v2.ConnectResponse.$Properties> {
    const container = this.containers.get(this.key(ctx, request.id));
    return { shimPid: process.pid, taskPid: container?.init.pid ?? 0, version: '' };
  }

  /**
   * Ends the server once it serves no container. `now` is ignored, as by
   * the runc shim (containerd 1.6): a server shared by a group must outlive
   * a Shutdown sent on behalf of one of its containers.
   */
  async shutdown(_request: containerd.task.v2.ShutdownRequest, _ctx: CallContext): Promise<Empty> {
    if (this.size === 0) this.options.onShutdown();
    return {};
  }

  private runcSettings(options: google.protobuf.IAny | null | undefined): RuncSettings {
    const decoded = decodeTaskOptions(options);
    const config = decoded.configPath ? this.options.loadConfig(decoded.configPath) : this.options.config;
    const runc = decoded.runc;
    // shim_cgroup is `start`'s: it had the server placed there before this Create (shim-cgroup.ts).
    return {
      binary: runc?.binaryName || config.runc.binary,
      root: runc?.root || config.runc.root,
      systemdCgroup: runc?.systemdCgroup || config.runc.systemdCgroup,
      noPivotRoot: runc?.noPivotRoot ?? false,
      noNewKeyring: runc?.noNewKeyring ?? false,
      criuPath: runc?.criuPath || undefined,
      ioOwner: runc?.ioUid || runc?.ioGid ? { uid: runc.ioUid, gid: runc.ioGid } : undefined,
      criuImagePath: runc?.criuImagePath || undefined,
      criuWorkPath: runc?.criuWorkPath || undefined,
    };
  }

  private namespace(ctx: CallContext): string {
    return ctx.metadata.getFirst(NAMESPACE_KEY) || this.options.namespace;
  }

  private key(ctx: CallContext, id: string): string {
    return `${this.namespace(ctx)}/${id}`;
  }

  private container(ctx: CallContext, id: string): Container {
    const container = this.containers.get(this.key(ctx, id));
    if (!container) throw new NotFoundError(`container ${id}: not created`);
    return container;
  }
}

function jsonAny(any: google.protobuf.IAny | null | undefined, typeUrl: string, what: string): Record<string, unknown> {
  if (!any?.value) throw new InvalidArgumentError(`${what} is missing`);
  if (any.typeUrl !== typeUrl) throw new InvalidArgumentError(`${what} has type ${JSON.stringify(any.typeUrl)}, want ${typeUrl}`);
  try {
    const value = JSON.parse(Buffer.from(any.value).toString('utf8')) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new InvalidArgumentError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function decodeCheckpointOptions(any: google.protobuf.IAny | null | undefined): containerd.runc.v1.CheckpointOptions {
  if (!any?.value || any.value.length === 0) return containerd.runc.v1.CheckpointOptions.create();
  if (any.typeUrl !== 'containerd.runc.v1.CheckpointOptions') {
    throw new InvalidArgumentError(`checkpoint options have type ${JSON.stringify(any.typeUrl)}, want containerd.runc.v1.CheckpointOptions`);
  }
  return containerd.runc.v1.CheckpointOptions.decode(any.value);
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
