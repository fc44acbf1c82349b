import { containerd, type flint } from '../generated/index.js';
import { timestampOf } from '../sys/exit-status.js';
import type { EventPublisher, TaskEvent } from '../taskapi/events.js';
import type { CallContext } from '../ttrpc/context.js';

type Envelope = containerd.services.events.ttrpc.v1.Envelope;

/** Events kept for the hosts to read; older ones are forgotten. */
const LOG_LIMIT = 4096;

interface Entry {
  readonly sequence: number;
  readonly envelope: Envelope;
}

/**
 * The agent's events as a numbered log that the host long-polls (ttrpc 1.1
 * cannot stream). GetEvent{after} answers at once with the first event past
 * `after`, or waits for the next one. Nothing is removed on delivery, so an
 * answer lost with a dropped connection is read again by the next poll, and
 * several shims can follow one agent.
 */
export class EventQueue implements EventPublisher {
  private readonly log: Entry[] = [];
  private sequence = 0;
  private readonly waiters = new Set<() => void>();

  publish(namespace: string, event: TaskEvent): void {
    const envelope = containerd.services.events.ttrpc.v1.Envelope.create({
      timestamp: timestampOf(new Date()),
      namespace,
      topic: event.topic,
      event: { typeUrl: event.typeUrl, value: event.value },
    });
    this.log.push({ sequence: ++this.sequence, envelope });
    if (this.log.length > LOG_LIMIT) this.log.shift();
    for (const wake of [...this.waiters]) wake();
  }

  /** The EventBridge/GetEvent handler. */
  async getEvent(request: flint.vm.v1.GetEventRequest, ctx: CallContext): Promise<flint.vm.v1.GetEventResponse.$Properties> {
    const after = Number(request.after);
    for (;;) {
      const next = this.firstAfter(after);
      if (next) return { sequence: next.sequence, envelope: next.envelope };
      await this.nextPublish(ctx.signal);
    }
  }

  /** The EventBridge/Head handler: the newest sequence number, 0 before the first event. */
  async head(): Promise<flint.vm.v1.HeadResponse.$Properties> {
    return { sequence: this.sequence };
  }

  private firstAfter(after: number): Entry | undefined {
    // The log is ordered by sequence: the first newer entry is found by offset.
    const first = this.log[0];
    if (!first) return undefined;
    return this.log[Math.max(0, after + 1 - first.sequence)];
  }

  private nextPublish(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const wake = () => {
        this.waiters.delete(wake);
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiters.delete(wake);
        reject(signal.reason);
      };
      this.waiters.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
