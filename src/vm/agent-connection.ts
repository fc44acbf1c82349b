import type { Logger } from 'pino';
import { UnavailableError } from '../errdefs/errors.js';
import { EventBridgeClient, StdioPortsClient, TaskClient } from '../generated/index.js';
import { Client } from '../ttrpc/client.js';
import { dialAgent } from '../vsock/dial.js';

/**
 * The shim's one connection to its agent. It is dialed on first use (the
 * agent may still be booting: the dial retries until its deadline) and, once
 * lost, stays lost: every call then fails at once with Unavailable, and
 * `lost` lets the service settle the tasks that were running.
 */
export class AgentConnection {
  private connecting: Promise<Client> | undefined;
  private lostReason: Error | undefined;
  private readonly lostWaiters: ((err: Error) => void)[] = [];

  constructor(
    private readonly address: string,
    private readonly dialTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  get isLost(): boolean {
    return this.lostReason !== undefined;
  }

  /** Resolves (never rejects) once the connection is lost. */
  readonly lost: Promise<Error> = new Promise((resolve) => this.lostWaiters.push(resolve));

  async task(): Promise<TaskClient> {
    return new TaskClient(await this.client());
  }

  async events(): Promise<EventBridgeClient> {
    return new EventBridgeClient(await this.client());
  }

  async ports(): Promise<StdioPortsClient> {
    return new StdioPortsClient(await this.client());
  }

  close(): void {
    void this.connecting?.then((client) => client.close()).catch(() => {});
  }

  private client(): Promise<Client> {
    if (this.lostReason) return Promise.reject(new UnavailableError(`agent ${this.address} is gone: ${this.lostReason.message}`));
    this.connecting ??= this.dial();
    return this.connecting;
  }

  private async dial(): Promise<Client> {
    let stream;
    try {
      stream = await dialAgent(this.address, undefined, { timeoutMs: this.dialTimeoutMs });
    } catch (err) {
      // A shim that never reached its agent may try again on the next call.
      this.connecting = undefined;
      throw new UnavailableError(`cannot reach agent ${this.address}: ${(err as Error).message}`, { cause: err });
    }
    const client = new Client(stream);
    client.once('close', (cause?: Error) => this.markLost(cause ?? new Error('connection closed')));
    this.log.info({ address: this.address }, 'connected to agent');
    return client;
  }

  private markLost(reason: Error): void {
    if (this.lostReason) return;
    this.lostReason = reason;
    this.log.warn({ address: this.address, err: reason }, 'agent connection lost');
    for (const resolve of this.lostWaiters.splice(0)) resolve(reason);
  }
}
