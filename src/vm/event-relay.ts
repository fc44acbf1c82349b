import type { Logger } from 'pino';
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

  constructor(
    private readonly agent: AgentConnection,
    private readonly events: EventPublisher,
    private readonly log: Logger,
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

  stop(): void {
    this.stopped = true;
  }

  private start(after: number): void {
    if (this.running) return;
    this.running = true;
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
      const { envelope } = response;
      const event = envelope?.event;
      if (!envelope || !event?.typeUrl) continue;
      const value = event.value ?? new Uint8Array();
      const owner = eventContainerId(event.typeUrl, value);
      if (owner === undefined) continue;
      const key = `${envelope.namespace}/${owner}`;
      const since = this.claims.get(key)?.[0];
      if (since === undefined || after <= since) continue;
      this.events.publish(envelope.namespace ?? '', { topic: envelope.topic ?? '', typeUrl: event.typeUrl, value });
      if (envelope.topic === '/tasks/delete') this.drop(key, since);
    }
  }

  private drop(key: string, since: number): void {
    const starts = this.claims.get(key);
    const at = starts?.indexOf(since) ?? -1;
    if (at < 0) return;
    starts!.splice(at, 1);
    if (starts!.length === 0) this.claims.delete(key);
  }
}
