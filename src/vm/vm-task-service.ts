import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { NotFoundError } from '../errdefs/errors.js';
import { containerd, type google, type TaskService } from '../generated/index.js';
import { dateOf, timestampOf } from '../sys/exit-status.js';
import { writeDeleteMarker } from '../taskapi/delete-marker.js';
import { OUTPUT_READ_TIMEOUT_MS } from '../taskapi/process/process-base.js';
import { taskEvents, type EventPublisher } from '../taskapi/events.js';
import type { CallContext, CallOptions } from '../ttrpc/context.js';
import { Metadata, NAMESPACE_KEY } from '../ttrpc/metadata.js';
import { isAgentOnlyIO } from './agent-only-io.js';
import { AgentConnection } from './agent-connection.js';
import { wrapExtraData, type StdioPorts } from './extra-data.js';
import { HostStdio } from './host-stdio.js';
import { EventRelay } from './event-relay.js';

type Empty = google.protobuf.Empty.$Properties;

/** What containerd sees for a process whose agent went away: like a crashed shim. */
const AGENT_LOST_EXIT_STATUS = 255;
const DRAIN_TIMEOUT_MS = 5_000;
/** How long an ending shim waits for the events still in the agent's log. */
const RELAY_DRAIN_MS = 2_000;

interface HostProcess {
  readonly namespace: string;
  readonly id: string;
  readonly execId: string;
  readonly stdio: HostStdio | undefined;
  readonly paths: { stdin: string; stdout: string; stderr: string; terminal: boolean };
  /** The host bundle, for a task (empty for an exec). */
  readonly bundle: string;
  pid: number;
  lostExit: { status: number; exitedAt: Date } | undefined;
  readonly lostWaiters: (() => void)[];
}

/** A process's stdio ports, and the host's end of them (none for agent-only IO or no stdio). */
interface DialedStdio {
  readonly ports: StdioPorts;
  readonly host: HostStdio | undefined;
}

export interface VmTaskServiceOptions {
  /**
   * The shim's -namespace. containerd 1.6 sets the ttrpc namespace header on
   * only some calls, so like the runc shim this is the default.
   */
  readonly namespace: string;
  /** The agent's dial address: vsock://CID:PORT or hvsock://PATH:PORT. */
  readonly address: string;
  readonly dialTimeoutMs: number;
  readonly events: EventPublisher;
  readonly log: Logger;
  /** Called by Shutdown once no task is left. */
  readonly onShutdown: () => void;
  /**
   * Called once the agent is gone. The server gives up its socket then, so
   * the next container of its group starts a new shim, which reaches the
   * agent once it is back, while this one still answers for its lost tasks.
   */
  readonly onAgentLost?: () => void;
}

/**
 * VM mode: every task call goes to the agent inside the VM. Create and Exec
 * wrap the spec, the runtime options and the stdio ports the agent handed
 * out in the envelope; containerd's FIFOs are joined to those ports here; State
 * reports the host's FIFO paths; the agent's events are long-polled and
 * republished to containerd in order. When the agent goes away, calls fail
 * at once with Unavailable and every running process reports an exit.
 */
export class VmTaskService implements TaskService {
  private readonly agent: AgentConnection;
  private readonly relay: EventRelay;
  private readonly processes = new Map<string, HostProcess>();
  private creating = 0;

  constructor(private readonly options: VmTaskServiceOptions) {
    this.agent = new AgentConnection(options.address, options.dialTimeoutMs, options.log);
    this.relay = new EventRelay(this.agent, options.events, options.log, (namespace, exit) => this.outputRead(namespace, exit.containerId, exit.id === exit.containerId ? '' : exit.id));
    void this.agent.lost.then(() => {
      this.settleAfterAgentLoss();
      options.onAgentLost?.();
    });
  }

  /** Tasks served, those being created included: a Shutdown must not end the shim under a Create. */
  get size(): number {
    return [...this.processes.values()].filter((p) => !p.execId).length + this.creating;
  }

  async create(request: containerd.task.v2.CreateTaskRequest, ctx: CallContext): Promise<containerd.task.v2.CreateTaskResponse.$Properties> {
    this.creating++;
    try {
      return await this.createTask(request, ctx);
    } finally {
      this.creating--;
    }
  }

  private async createTask(request: containerd.task.v2.CreateTaskRequest, ctx: CallContext): Promise<containerd.task.v2.CreateTaskResponse.$Properties> {
    const task = await this.agent.task();
    const spec = await readFile(join(request.bundle, 'config.json'));
    const paths = { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal };
    const claim = await this.relay.claim(this.namespace(ctx), request.id);
    let stdio: DialedStdio | undefined;
    try {
      stdio = await this.dialStdio(paths, ctx);
      const response = await task.create(
        { ...request, options: wrapExtraData({ jsonSpec: spec, runcOptions: request.options ?? undefined, ports: stdio.ports }) },
        this.callOptions(ctx),
      );
      await stdio.host?.connect();
      this.remember(ctx, request.id, '', request.bundle, stdio.host, paths, response.pid);
      await this.closeStdinIfClientLeft(stdio.host, { id: request.id }, ctx);
      return response;
    } catch (err) {
      stdio?.host?.close();
      claim.release();
      throw err;
    }
  }

  async exec(request: containerd.task.v2.ExecProcessRequest, ctx: CallContext): Promise<Empty> {
    const task = await this.agent.task();
    const paths = { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal };
    const stdio = await this.dialStdio(paths, ctx);
    try {
      await task.exec({ ...request, spec: wrapExtraData({ jsonSpec: request.spec?.value ?? new Uint8Array(), runcOptions: undefined, ports: stdio.ports }) }, this.callOptions(ctx));
      await stdio.host?.connect();
      this.remember(ctx, request.id, request.execId, '', stdio.host, paths, 0);
      await this.closeStdinIfClientLeft(stdio.host, { id: request.id, execId: request.execId }, ctx);
      return {};
    } catch (err) {
      stdio.host?.close();
      throw err;
    }
  }

  async start(request: containerd.task.v2.StartRequest, ctx: CallContext): Promise<containerd.task.v2.StartResponse.$Properties> {
    const response = await (await this.agent.task()).start(request, this.callOptions(ctx));
    const process = this.processes.get(this.key(ctx, request.id, request.execId));
    if (process) process.pid = response.pid;
    return response;
  }

  async delete(request: containerd.task.v2.DeleteRequest, ctx: CallContext): Promise<containerd.task.v2.DeleteResponse.$Properties> {
    const key = this.key(ctx, request.id, request.execId);
    const process = this.processes.get(key);
    let response: containerd.task.v2.DeleteResponse.$Properties;
    if (process?.lostExit) {
      response = { pid: process.pid, exitStatus: process.lostExit.status, exitedAt: timestampOf(process.lostExit.exitedAt) };
    } else {
      response = await (await this.agent.task()).delete(request, this.callOptions(ctx));
    }
    this.processes.delete(key);
    await process?.stdio?.drain(DRAIN_TIMEOUT_MS);
    process?.stdio?.close();
    if (!request.execId) {
      if (process?.bundle) {
        const exitedAt = dateOf(response.exitedAt);
        await writeDeleteMarker(process.bundle, response.pid ?? 0, exitedAt ? { pid: response.pid ?? 0, status: response.exitStatus ?? 0, exitedAt } : undefined);
      }
      for (const [other, exec] of [...this.processes]) {
        if (exec.namespace === process?.namespace && exec.id === request.id) {
          exec.stdio?.close();
          this.processes.delete(other);
        }
      }
    }
    return response;
  }

  async state(request: containerd.task.v2.StateRequest, ctx: CallContext): Promise<containerd.task.v2.StateResponse.$Properties> {
    const process = this.processes.get(this.key(ctx, request.id, request.execId));
    if (process?.lostExit) {
      return {
        id: request.execId || request.id,
        bundle: '',
        pid: process.pid,
        status: containerd.v1.types.Status.STOPPED,
        ...process.paths,
        exitStatus: process.lostExit.status,
        exitedAt: timestampOf(process.lostExit.exitedAt),
        execId: request.execId,
      };
    }
    const response = await (await this.agent.task()).state(request, this.callOptions(ctx));
    // The agent's FIFOs live in the VM; containerd knows its own.
    return process ? { ...response, ...process.paths } : response;
  }

  async wait(request: containerd.task.v2.WaitRequest, ctx: CallContext): Promise<containerd.task.v2.WaitResponse.$Properties> {
    const process = this.processes.get(this.key(ctx, request.id, request.execId));
    if (!process && this.agent.isLost) throw new NotFoundError(`container ${request.id}: not created`);
    const lost = process ? this.waitLost(process) : new Promise<never>(() => {});
    const forwarded = this.agent.task().then(async (task) => {
      const exit = await task.wait(request, this.callOptions(ctx));
      await process?.stdio?.outputRead(OUTPUT_READ_TIMEOUT_MS);
      return exit;
    });
    try {
      return await Promise.race([forwarded, lost]);
    } catch (err) {
      if (process?.lostExit) return this.waitLost(process);
      throw err;
    }
  }

  /**
   * Before an exit is reported, the output that came before it is waited
   * for until the client has read it, as in embedded mode (process-base.ts).
   */
  private async outputRead(namespace: string, id: string, execId: string): Promise<void> {
    await this.processes.get(processKey(namespace, id, execId))?.stdio?.outputRead(OUTPUT_READ_TIMEOUT_MS);
  }

  /**
   * The client's stdin ended while the process was being created (see
   * stdin-keep-alive.ts): the agent holds its own end open until CloseIO,
   * which this client will never send, so it is sent here.
   */
  private async closeStdinIfClientLeft(host: HostStdio | undefined, process: { id: string; execId?: string }, ctx: CallContext): Promise<void> {
    if (!host || host.holdStdinOpen()) return;
    await (await this.agent.task()).closeIO({ ...process, stdin: true }, this.callOptions(ctx));
  }

  async closeIO(request: containerd.task.v2.CloseIORequest, ctx: CallContext): Promise<Empty> {
    const process = this.processes.get(this.key(ctx, request.id, request.execId));
    if (request.stdin) process?.stdio?.closeStdin();
    return (await this.agent.task()).closeIO(request, this.callOptions(ctx));
  }

  /**
   * The task pid is the agent's answer, as it runs the task; the shim pid is
   * this shim's own. With the agent gone the shim answers alone: containerd
   * calls Connect before every Wait, and that Wait must still get the exit
   * the shim reports for a lost agent.
   */
  async connect(request: containerd.task.v2.ConnectRequest, ctx: CallContext): Promise<containerd.task.v2.ConnectResponse.$Properties> {
    const process = this.processes.get(this.key(ctx, request.id, ''));
    const local = { shimPid: globalThis.process.pid, taskPid: process?.pid ?? 0, version: '' };
    if (this.agent.isLost) return local;
    try {
      const response = await (await this.agent.task()).connect(request, this.callOptions(ctx));
      return { ...response, shimPid: local.shimPid };
    } catch (err) {
      if (this.agent.isLost) return local;
      throw err;
    }
  }

  /**
   * Ends this shim once it serves no task; it is not forwarded. In
   * firecracker-containerd a shim owns its VM, so its teardown stops the VM
   * with the agent's Shutdown{now}. A flint shim owns no VM: the agent may
   * serve other shims (other namespaces, an old shim still exiting, another
   * containerd) and outlives each of them. The agent ends when whoever runs
   * the VM stops it, or by itself with --exit-when-empty. `now` is ignored,
   * as by the runc shim: live tasks are never left without their shim.
   */
  async shutdown(_request: containerd.task.v2.ShutdownRequest, _ctx: CallContext): Promise<Empty> {
    if (this.size === 0) this.options.onShutdown();
    return {};
  }

  async pids(request: containerd.task.v2.PidsRequest, ctx: CallContext) {
    return (await this.agent.task()).pids(request, this.callOptions(ctx));
  }
  async pause(request: containerd.task.v2.PauseRequest, ctx: CallContext) {
    return (await this.agent.task()).pause(request, this.callOptions(ctx));
  }
  async resume(request: containerd.task.v2.ResumeRequest, ctx: CallContext) {
    return (await this.agent.task()).resume(request, this.callOptions(ctx));
  }
  async checkpoint(request: containerd.task.v2.CheckpointTaskRequest, ctx: CallContext) {
    return (await this.agent.task()).checkpoint(request, this.callOptions(ctx));
  }
  async kill(request: containerd.task.v2.KillRequest, ctx: CallContext) {
    // A process lost with its agent has exited; `ctr task delete -f` kills before it deletes.
    if (this.processes.get(this.key(ctx, request.id, request.execId))?.lostExit) throw new NotFoundError('process already finished');
    return (await this.agent.task()).kill(request, this.callOptions(ctx));
  }
  async resizePty(request: containerd.task.v2.ResizePtyRequest, ctx: CallContext) {
    return (await this.agent.task()).resizePty(request, this.callOptions(ctx));
  }
  async update(request: containerd.task.v2.UpdateTaskRequest, ctx: CallContext) {
    return (await this.agent.task()).update(request, this.callOptions(ctx));
  }
  async stats(request: containerd.task.v2.StatsRequest, ctx: CallContext) {
    return (await this.agent.task()).stats(request, this.callOptions(ctx));
  }

  /** Ends the service when the shim ends: the events its tasks left in the agent's log go out first. */
  async close(): Promise<void> {
    await this.relay.drain(RELAY_DRAIN_MS).catch(() => {});
    this.relay.stop();
    for (const process of this.processes.values()) process.stdio?.close();
    this.agent.close();
  }

  /**
   * Gets the process's stdio ports from the agent, which hands them out to
   * every shim it serves, and starts dialing them: the agent listens on them
   * during Create/Exec and answers once the host is connected.
   */
  private async dialStdio(paths: HostProcess['paths'], ctx: CallContext): Promise<DialedStdio> {
    const streams = { stdin: !!paths.stdin, stdout: !!paths.stdout, stderr: !!paths.stderr && !paths.terminal };
    if (isAgentOnlyIO(paths.stdout) || !(streams.stdin || streams.stdout || streams.stderr)) return { ports: { stdin: 0, stdout: 0, stderr: 0 }, host: undefined };
    const allocated = await (await this.agent.ports()).allocate(streams, this.callOptions(ctx));
    const ports = { stdin: allocated.stdinPort, stdout: allocated.stdoutPort, stderr: allocated.stderrPort };
    return { ports, host: HostStdio.dial(this.options.address, ports, paths, this.options.dialTimeoutMs) };
  }

  private remember(ctx: CallContext, id: string, execId: string, bundle: string, stdio: HostStdio | undefined, paths: HostProcess['paths'], pid: number): void {
    this.processes.set(this.key(ctx, id, execId), { namespace: this.namespace(ctx), id, execId, bundle, stdio, paths, pid, lostExit: undefined, lostWaiters: [] });
  }

  /** The agent is gone: every process that has not been deleted reports an exit, so nothing waits forever. */
  private settleAfterAgentLoss(): void {
    const exitedAt = new Date();
    for (const process of this.processes.values()) {
      if (process.lostExit) continue;
      process.lostExit = { status: AGENT_LOST_EXIT_STATUS, exitedAt };
      this.options.events.publish(process.namespace, taskEvents.exit(process.id, process.execId || process.id, { pid: process.pid, status: AGENT_LOST_EXIT_STATUS, exitedAt }));
      process.stdio?.close();
      for (const resolve of process.lostWaiters.splice(0)) resolve();
    }
  }

  private async waitLost(process: HostProcess): Promise<containerd.task.v2.WaitResponse.$Properties> {
    if (!process.lostExit) await new Promise<void>((resolve) => process.lostWaiters.push(resolve));
    const exit = process.lostExit!;
    return { exitStatus: exit.status, exitedAt: timestampOf(exit.exitedAt) };
  }

  private callOptions(ctx: CallContext): CallOptions {
    return { signal: ctx.signal, metadata: new Metadata({ [NAMESPACE_KEY]: this.namespace(ctx) }) };
  }

  private namespace(ctx: CallContext): string {
    return ctx.metadata.getFirst(NAMESPACE_KEY) || this.options.namespace;
  }

  private key(ctx: CallContext, id: string, execId: string): string {
    return processKey(this.namespace(ctx), id, execId);
  }
}

function processKey(namespace: string, id: string, execId: string): string {
  return `${namespace}/${id}/${execId}`;
}
