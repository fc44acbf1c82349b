import { containerd, type google } from '../generated/index.js';
import { timestampOf } from '../sys/exit-status.js';
import type { EventPublisher, TaskEvent } from '../taskapi/events.js';
import type { CallContext } from '../ttrpc/context.js';

type Envelope = containerd.services.events.ttrpc.v1.Envelope;

/** Events kept for the host before the oldest are dropped. */
const QUEUE_LIMIT = 4096;

/**
 * The agent's events, kept in order until the host takes them. ttrpc 1.1
 * cannot stream, so the host long-polls: GetEvent answers at once when an
 * event is queued and otherwise waits for the next one.
 */
export class EventQueue implements EventPublisher {
  private readonly queue: Envelope[] = [];
  private readonly takers: ((envelope: Envelope) => void)[] = [];

  publish(namespace: string, event: TaskEvent): void {
    const envelope = containerd.services.events.ttrpc.v1.Envelope.create({
      timestamp: timestampOf(new Date()),
      namespace,
      topic: event.topic,
      event: { typeUrl: event.typeUrl, value: event.value },
    });
    const taker = this.takers.shift();
    if (taker) {
      taker(envelope);
      return;
    }
    if (this.queue.length >= QUEUE_LIMIT) this.queue.shift();
    this.queue.push(envelope);
  }

  /** The EventBridge/GetEvent handler. */
  async getEvent(_request: google.protobuf.Empty, ctx: CallContext): Promise<Envelope> {
    const next = this.queue.shift();
    if (next) return next;
    return new Promise<Envelope>((resolve, reject) => {
      const taker = (envelope: Envelope) => {
        ctx.signal.removeEventListener('abort', onAbort);
        resolve(envelope);
      };
      const onAbort = () => {
        const index = this.takers.indexOf(taker);
        if (index >= 0) this.takers.splice(index, 1);
        reject(ctx.signal.reason);
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      this.takers.push(taker);
    });
  }
}
