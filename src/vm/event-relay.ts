import type { Logger } from 'pino';
import { containerd, type flint } from '../generated/index.js';
import { waitAtMost } from '../sys/wait-at-most.js';
import type { EventPublisher } from '../taskapi/events.js';
import type { AgentConnection } from './agent-connection.js';
import { eventContainerId } from './event-owner.js';

/** What claim() returns: undo it when the Create it was made for fails. */
export interface EventClaim {
  release(): void;
}

/**
 * Republishes the agent's events to containerd, in order, for the containers
 * this shim serves. Other shims may follow the same agent (one per
 * namespace, or an old one still exiting), and the agent may have run a
 * container of the same id before, under this shim or an earlier one. So a
 * shim claims a container just before creating it, from the agent's newest
 * event on (its head): every event of the new container comes after that
 * point, every event of an earlier one with that id at or before it. The
 * relay starts at the first claim's head, so nothing older is ever read.
 *
 * A container's claim ends with its /tasks/delete. An id reused within this
 * shim may have a second claim before the relay has passed the first
 * container's delete; the events then go to the oldest open claim, whose
 * container they belong to.
 */
export class EventRelay {
  /** "<namespace>/<container id>" → where each open claim starts, oldest first. */
  private readonly claims = new Map<string, number[]>();
  private running = false;
  private stopped = false;
  /** The sequence number of the last event the relay has handled. */
  private position = 0;
  private readonly progressWaiters: (() => void)[] = [];

  /**
   * `beforeExit` runs before a /tasks/exit is republished, and the relay
   * waits for it: events keep their order.
   */
  constructor(
    private readonly agent: AgentConnection,
    private readonly events: EventPublisher,
    private readonly log: Logger,
    private readonly beforeExit: (namespace: string, exit: containerd.events.TaskExit) => Promise<void> = async () => {},
  ) {}

  async claim(namespace: string, id: string): Promise<EventClaim> {
    const { sequence } = await (await this.agent.events()).head({});
    const since = Number(sequence);
    const key = `${namespace}/${id}`;
    const starts = this.claims.get(key) ?? [];
    starts.push(since);
    starts.sort((a, b) => a - b);
    this.claims.set(key, starts);
    this.start(since);
    return { release: () => this.drop(key, since) };
  }

  /**
   * Waits until the relay has handled every event the agent has now, for at
   * most `timeoutMs`. A shim that ends calls this first: the events of its
   * last Delete are in the agent's log when Shutdown comes, maybe not yet
   * republished.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (!this.running || this.stopped || this.agent.isLost) return;
    const deadline = Date.now() + timeoutMs;
    const { sequence } = await (await this.agent.events()).head({}, { timeoutMs });
    while (this.position < Number(sequence) && !this.agent.isLost && Date.now() < deadline) {
      await waitAtMost(new Promise<void>((resolve) => this.progressWaiters.push(resolve)), deadline - Date.now());
    }
  }

  stop(): void {
    this.stopped = true;
  }

  private start(after: number): void {
    if (this.running) return;
    this.running = true;
    this.position = after;
    void this.relay(after).catch((err: unknown) => this.log.warn({ err }, 'event relay stopped'));
  }

  private async relay(after: number): Promise<void> {
    const bridge = await this.agent.events();
    while (!this.agent.isLost && !this.stopped) {
      let response;
      try {
        response = await bridge.getEvent({ after });
      } catch (err) {
        if (!this.agent.isLost && !this.stopped) this.log.warn({ err }, 'event relay failed');
        return;
      }
      after = Number(response.sequence);
      await this.handle(after, response.envelope);
      this.position = after;
      for (const wake of this.progressWaiters.splice(0)) wake();
    }
  }

  /** Republishes event `sequence` if it belongs to an open claim. */
  private async handle(sequence: number, envelope: flint.vm.v1.GetEventResponse['envelope']): Promise<void> {
    const event = envelope?.event;
    if (!envelope || !event?.typeUrl) return;
    const value = event.value ?? new Uint8Array();
    const owner = eventContainerId(event.typeUrl, value);
    if (owner === undefined) return;
    const key = `${envelope.namespace}/${owner}`;
    const since = this.claims.get(key)?.[0];
    if (since === undefined || sequence <= since) return;
    if (envelope.topic === '/tasks/exit') await this.beforeExit(envelope.namespace ?? '', containerd.events.TaskExit.decode(value));
    this.events.publish(envelope.namespace ?? '', { topic: envelope.topic ?? '', typeUrl: event.typeUrl, value });
    if (envelope.topic === '/tasks/delete') this.drop(key, since);
  }

  private drop(key: string, since: number): void {
    const starts = this.claims.get(key);
    const at = starts?.indexOf(since) ?? -1;
    if (at < 0) return;
    starts!.splice(at, 1);
    if (starts!.length === 0) this.claims.delete(key);
  }
}
