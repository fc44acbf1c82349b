import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';

/**
 * The agent's view of "a guest port someone may connect to", the same over
 * AF_VSOCK and over a hybrid vsock unix socket. Emits 'connection' with a
 * Duplex per accepted peer and 'close' once, after close(); it fits
 * ttrpc Server.serve().
 */
export interface PortListener extends EventEmitter {
  /** The vsock port. */
  readonly port: number;
  readonly closed: boolean;
  /** Stops accepting on this port; connections already handed out stay open. Idempotent. */
  close(): void;

  on(event: 'connection', listener: (conn: Duplex) => void): this;
  on(event: 'close', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  once(event: 'connection', listener: (conn: Duplex) => void): this;
  once(event: 'close', listener: () => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
}
