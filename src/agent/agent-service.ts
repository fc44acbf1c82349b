import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { assertSafeMountTarget } from '../bundle/mount.js';
import { safeJoin } from '../bundle/safe-join.js';
import { writeFileAtomic } from '../bundle/write-file-atomic.js';
import { validateId } from '../bundle/identifiers.js';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../errdefs/errors.js';
import type { containerd, google, TaskService } from '../generated/index.js';
import { CleanupStack } from '../sys/cleanup-stack.js';
import type { RuncTaskService } from '../taskapi/service.js';
import type { CallContext } from '../ttrpc/context.js';
import { NAMESPACE_KEY } from '../ttrpc/metadata.js';
import { isAgentOnlyIO, stripVmLocalPrefix } from '../vm/agent-only-io.js';
import { unwrapExtraData, type StdioPorts } from '../vm/extra-data.js';
import { taskExecId } from '../vm/task-exec-id.js';
import { AgentStdio } from './agent-stdio.js';

type Empty = google.protobuf.Empty.$Properties;

/** How long the agent waits for the host to dial a process's stdio ports. */
const STDIO_CONNECT_TIMEOUT_MS = 10_000;
const DRAIN_TIMEOUT_MS = 5_000;
const OCI_PROCESS_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

interface AgentProcess {
  readonly stdio: AgentStdio | undefined;
  readonly cleanup: CleanupStack;
}

export interface AgentTaskServiceOptions {
  /** Bundles live under <root>/<namespace>/<task id>. */
  readonly root: string;
  /** Where stdio ports are opened: the agent's own listen address. */
  readonly listenAddress: string;
  readonly log: Logger;
  /** Called when Shutdown asks the agent to exit. */
  readonly onShutdown: (now: boolean) => void;
  /** Called after the Delete of the last task, if the agent exits when empty. */
  readonly onEmpty?: () => void;
}

/**
 * The task API inside the VM: it unwraps the shim's envelope (spec, runc
 * options, stdio ports), lays out the bundle and the FIFO set the way a host
 * would, and hands the call to the same RuncTaskService the embedded shim
 * uses. What each task and exec set up is undone LIFO from a stack keyed by
 * base64url(taskID/execID), on failure and on Delete.
 */
export class AgentTaskService implements TaskService {
  private readonly processes = new Map<string, AgentProcess>();

  constructor(
    private readonly inner: RuncTaskService,
    private readonly options: AgentTaskServiceOptions,
  ) {}

  get taskCount(): number {
    return this.inner.size;
  }

  async create(request: containerd.task.v2.CreateTaskRequest, ctx: CallContext): Promise<containerd.task.v2.CreateTaskResponse.$Properties> {
    validateId(request.id);
    const key = this.key(ctx, request.id, '');
    const extra = unwrapExtraData(request.options, 'create options');
    const namespace = ctx.metadata.getFirst(NAMESPACE_KEY) || 'default';
    validateId(namespace);
    const bundle = safeJoin(this.options.root, namespace, request.id);
    // Checked before anything is created, so a root under /proc, /sys or /dev gets not even a directory.
    assertSafeMountTarget(join(bundle, 'rootfs'), bundle);
    const cleanup = new CleanupStack();
    try {
      const stdio = await this.listenStdio(request, extra.ports, cleanup);
      await mkdir(dirname(bundle), { recursive: true, mode: 0o711 });
      await mkdirExclusive(bundle, request.id);
      cleanup.push('bundle', () => rm(bundle, { recursive: true, force: true }));
      await mkdir(join(bundle, 'rootfs'), { mode: 0o711 });
      await writeFileAtomic(join(bundle, 'config.json'), specJson(extra.jsonSpec, 'create'), 0o600);
      stdio?.makeFifos(bundle, taskExecId(request.id, ''));
      request.bundle = bundle;
      request.rootfs = request.rootfs.map(stripVmLocalPrefix);
      if (stdio) Object.assign(request, stdio.paths);
      request.options = (extra.runcOptions ?? null) as google.protobuf.Any | null;
      const response = await this.inner.create(request, ctx);
      cleanup.push('task', () => this.forceDelete(request.id, '', ctx));
      if (stdio) {
        await stdio.connect(STDIO_CONNECT_TIMEOUT_MS);
        this.onExit(ctx, request.id, '', () => stdio.processExited());
      }
      this.processes.set(key, { stdio, cleanup });
      return response;
    } catch (err) {
      return cleanup.unwind(err);
    }
  }

  async exec(request: containerd.task.v2.ExecProcessRequest, ctx: CallContext): Promise<Empty> {
    validateId(request.id);
    validateId(request.execId);
    const key = this.key(ctx, request.id, request.execId);
    const extra = unwrapExtraData(request.spec, 'exec spec');
    const init = this.processes.get(this.key(ctx, request.id, ''));
    if (!init) throw new NotFoundError(`container ${request.id}: not created`);
    const bundle = safeJoin(this.options.root, ctx.metadata.getFirst(NAMESPACE_KEY) || 'default', request.id);
    const cleanup = new CleanupStack();
    try {
      const stdio = await this.listenStdio(request, extra.ports, cleanup);
      stdio?.makeFifos(bundle, taskExecId(request.id, request.execId));
      if (stdio) Object.assign(request, stdio.paths);
      request.spec = { typeUrl: OCI_PROCESS_TYPE, value: Buffer.from(specJson(extra.jsonSpec, 'exec')) } as google.protobuf.Any;
      await this.inner.exec(request, ctx);
      // Undone here if the stdio never connects: the shim then reports the
      // exec as failed, so containerd never deletes it.
      cleanup.push('exec', () => this.forceDelete(request.id, request.execId, ctx));
      if (stdio) await stdio.connect(STDIO_CONNECT_TIMEOUT_MS);
      this.processes.set(key, { stdio, cleanup });
      return {};
    } catch (err) {
      return cleanup.unwind(err);
    }
  }

  async start(request: containerd.task.v2.StartRequest, ctx: CallContext): Promise<containerd.task.v2.StartResponse.$Properties> {
    const stdio = request.execId ? this.processes.get(this.key(ctx, request.id, request.execId))?.stdio : undefined;
    let response: containerd.task.v2.StartResponse.$Properties;
    try {
      response = await this.inner.start(request, ctx);
    } catch (err) {
      // The exec never ran: its output ends now, as the runc shim closes its
      // stdio when a start fails. containerd's client waits for that EOF
      // before it deletes the exec, which runs the rest of the exec's stack.
      stdio?.processExited();
      throw err;
    }
    if (stdio) this.onExit(ctx, request.id, request.execId, () => stdio.processExited());
    return response;
  }

  async delete(request: containerd.task.v2.DeleteRequest, ctx: CallContext): Promise<containerd.task.v2.DeleteResponse.$Properties> {
    const key = this.key(ctx, request.id, request.execId);
    let response: containerd.task.v2.DeleteResponse.$Properties;
    try {
      response = await this.inner.delete(request, ctx);
    } catch (err) {
      // Gone from the task service already (deleted with its container, or
      // undone): what the agent set up for it goes too, or nothing ever removes it.
      if (err instanceof NotFoundError) await this.forget(key);
      throw err;
    }
    const process = this.processes.get(key);
    this.processes.delete(key);
    await process?.stdio?.drain(DRAIN_TIMEOUT_MS);
    const failure = await process?.cleanup.run();
    if (!request.execId) await this.cleanupExecs(ctx, request.id);
    if (failure) this.options.log.warn({ err: failure, id: request.id }, 'cleanup after delete failed');
    if (!request.execId && this.inner.size === 0) setImmediate(() => this.options.onEmpty?.());
    return response;
  }

  async shutdown(request: containerd.task.v2.ShutdownRequest, ctx: CallContext): Promise<Empty> {
    await this.inner.shutdown({ ...request, now: false } as containerd.task.v2.ShutdownRequest, ctx);
    if (request.now) this.options.onShutdown(true);
    return {};
  }

  /** Kills and deletes every task, for the agent's own exit. */
  async deleteAll(): Promise<void> {
    for (const [key, process] of [...this.processes]) {
      this.processes.delete(key);
      await process.cleanup.run();
    }
  }

  state(request: containerd.task.v2.StateRequest, ctx: CallContext) {
    return this.inner.state(request, ctx);
  }
  pids(request: containerd.task.v2.PidsRequest, ctx: CallContext) {
    return this.inner.pids(request, ctx);
  }
  pause(request: containerd.task.v2.PauseRequest, ctx: CallContext) {
    return this.inner.pause(request, ctx);
  }
  resume(request: containerd.task.v2.ResumeRequest, ctx: CallContext) {
    return this.inner.resume(request, ctx);
  }
  checkpoint(request: containerd.task.v2.CheckpointTaskRequest, ctx: CallContext) {
    return this.inner.checkpoint(request, ctx);
  }
  kill(request: containerd.task.v2.KillRequest, ctx: CallContext) {
    return this.inner.kill(request, ctx);
  }
  resizePty(request: containerd.task.v2.ResizePtyRequest, ctx: CallContext) {
    return this.inner.resizePty(request, ctx);
  }
  closeIO(request: containerd.task.v2.CloseIORequest, ctx: CallContext) {
    return this.inner.closeIO(request, ctx);
  }
  update(request: containerd.task.v2.UpdateTaskRequest, ctx: CallContext) {
    return this.inner.update(request, ctx);
  }
  wait(request: containerd.task.v2.WaitRequest, ctx: CallContext) {
    return this.inner.wait(request, ctx);
  }
  stats(request: containerd.task.v2.StatsRequest, ctx: CallContext) {
    return this.inner.stats(request, ctx);
  }
  connect(request: containerd.task.v2.ConnectRequest, ctx: CallContext) {
    return this.inner.connect(request, ctx);
  }

  private async listenStdio(request: { stdout: string }, ports: StdioPorts, cleanup: CleanupStack): Promise<AgentStdio | undefined> {
    if (isAgentOnlyIO(request.stdout) || (!ports.stdin && !ports.stdout && !ports.stderr)) return undefined;
    const stdio = await AgentStdio.listen(this.options.listenAddress, ports);
    cleanup.push('stdio', () => stdio.close());
    return stdio;
  }

  /** Runs `then` once the process has exited (or is gone), without holding up the caller. */
  private onExit(ctx: CallContext, id: string, execId: string, then: () => void): void {
    const detached: CallContext = { ...ctx, signal: new AbortController().signal, deadline: undefined };
    void this.inner.wait({ id, execId } as containerd.task.v2.WaitRequest, detached).then(then, then);
  }

  /** Kills and deletes a task or exec in the task service; one that is gone already is fine. */
  private async forceDelete(id: string, execId: string, ctx: CallContext): Promise<void> {
    await this.inner.kill({ id, execId, signal: 9, all: !execId } as containerd.task.v2.KillRequest, ctx).catch(() => {});
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      try {
        await this.inner.delete({ id, execId } as containerd.task.v2.DeleteRequest, ctx);
        return;
      } catch (err) {
        if (err instanceof NotFoundError) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  private async cleanupExecs(ctx: CallContext, id: string): Promise<void> {
    const prefix = `${this.namespaceOf(ctx)}\0`;
    for (const key of [...this.processes.keys()]) {
      if (!key.startsWith(prefix)) continue;
      const [taskId] = Buffer.from(key.slice(prefix.length), 'base64url').toString().split('/');
      if (taskId === id) await this.forget(key);
    }
  }

  /** Undoes what the agent set up for a process the task service no longer has. */
  private async forget(key: string): Promise<void> {
    const process = this.processes.get(key);
    if (!process) return;
    this.processes.delete(key);
    await process.stdio?.close();
    const failure = await process.cleanup.run();
    if (failure) this.options.log.warn({ err: failure }, 'cleanup of a removed process failed');
  }

  private namespaceOf(ctx: CallContext): string {
    return ctx.metadata.getFirst(NAMESPACE_KEY) || 'default';
  }

  private key(ctx: CallContext, id: string, execId: string): string {
    return `${this.namespaceOf(ctx)}\0${taskExecId(id, execId)}`;
  }
}

/**
 * Creates a task's bundle dir, refusing one that exists: it belongs to a
 * live task (a second Create must not overwrite its config.json and then
 * remove it while unwinding), or was left there by someone else, and
 * anything in it, such as a rootfs symlink leading out, would be used as found.
 */
async function mkdirExclusive(bundle: string, id: string): Promise<void> {
  try {
    await mkdir(bundle, { mode: 0o711 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`task ${id}: bundle ${bundle} already exists`);
    throw err;
  }
}

function specJson(bytes: Uint8Array, what: string): string {
  const text = Buffer.from(bytes).toString('utf8');
  try {
    JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`${what}: the spec in the envelope is not valid JSON: ${(err as Error).message}`);
  }
  return text;
}
