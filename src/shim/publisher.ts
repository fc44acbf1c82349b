import type { Logger } from 'pino';
import { containerd, EventsClient } from '../generated/index.js';
import { timestampOf } from '../sys/exit-status.js';
import { waitAtMost } from '../sys/wait-at-most.js';
import type { EventPublisher, TaskEvent } from '../taskapi/events.js';
import { Client } from '../ttrpc/client.js';
import { Metadata, NAMESPACE_KEY } from '../ttrpc/metadata.js';

/** Per attempt, as containerd's shim publisher. */
const FORWARD_TIMEOUT_MS = 5_000;
/** An event that keeps failing is dropped after this many retries. */
const MAX_RETRIES = 5;
const QUEUE_LIMIT = 2048;

interface Queued {
  readonly namespace: string;
  readonly event: TaskEvent;
  readonly timestamp: Date;
  attempts: number;
}

/**
 * Forwards task events to containerd over ttrpc
 * (containerd.services.events.ttrpc.v1.Events/Forward on $TTRPC_ADDRESS).
 * publish() only queues, so a slow or absent containerd never blocks the
 * task API; one worker sends the queue in order, reconnecting as needed and
 * retrying with a growing backoff.
 */
export class ForwardingPublisher implements EventPublisher {
  private readonly queue: Queued[] = [];
  private client: Client | undefined;
  private working = false;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();
  private resolveIdle: (() => void) | undefined;
  private backoff: NodeJS.Timeout | undefined;

  constructor(
    private readonly address: string,
    private readonly log: Logger,
  ) {}

  publish(namespace: string, event: TaskEvent): void {
    if (this.closed) return;
    if (this.queue.length >= QUEUE_LIMIT) {
      this.log.error({ topic: event.topic }, 'event queue is full; dropping event');
      return;
    }
    this.queue.push({ namespace, event, timestamp: new Date(), attempts: 0 });
    this.kick();
  }

  /** Waits (bounded) for queued events to go out, then disconnects. */
  async close(timeoutMs: number): Promise<void> {
    await waitAtMost(this.idle, timeoutMs);
    clearTimeout(this.backoff);
    this.closed = true;
    this.client?.close();
  }

  private kick(): void {
    if (this.working || this.backoff) return;
    this.working = true;
    this.idle = new Promise((resolve) => (this.resolveIdle = resolve));
    void this.drain().finally(() => {
      this.working = false;
      if (this.queue.length === 0 || this.closed) this.resolveIdle?.();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const item = this.queue[0]!;
      try {
        await this.forward(item);
        this.queue.shift();
      } catch (err) {
        this.client?.close();
        this.client = undefined;
        item.attempts += 1;
        if (item.attempts > MAX_RETRIES) {
          this.queue.shift();
          this.log.error({ err, topic: item.event.topic }, 'dropping event after retries');
          continue;
        }
        this.log.warn({ err, topic: item.event.topic, attempt: item.attempts }, 'forwarding event failed; will retry');
        this.backoff = setTimeout(() => {
          this.backoff = undefined;
          this.kick();
        }, item.attempts * 1000);
        return;
      }
    }
  }

  private async forward(item: Queued): Promise<void> {
    this.client ??= await Client.connect(this.address);
    const client = new EventsClient(this.client);
    const envelope = containerd.services.events.ttrpc.v1.Envelope.create({
      timestamp: timestampOf(item.timestamp),
      namespace: item.namespace,
      topic: item.event.topic,
      event: { typeUrl: item.event.typeUrl, value: item.event.value },
    });
    await client.forward(containerd.services.events.ttrpc.v1.ForwardRequest.create({ envelope }), {
      timeoutMs: FORWARD_TIMEOUT_MS,
      metadata: new Metadata({ [NAMESPACE_KEY]: item.namespace }),
    });
  }
}
