import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ServiceDescriptor } from './descriptor.js';
import { ConnState, ServerConnection } from './server-connection.js';
import { ServiceSet, type ServiceImplementation } from './services.js';

/**
 * Decides whether to serve a fresh connection, before any byte of it is
 * read. Throw (or reject) to refuse it; the stream is then destroyed.
 * See unix-creds.ts for the SO_PEERCRED check Go ttrpc servers use.
 */
export type Handshake = (stream: Duplex) => void | Promise<void>;

export interface ServerOptions {
  readonly handshake?: Handshake;
  /** Told about refused handshakes, protocol errors and stream errors; never about plain disconnects. */
  readonly onError?: (err: Error) => void;
}

/** Anything that emits 'connection' with a Duplex: net.Server, or a vsock listener. */
export type ConnectionSource = EventEmitter;

/**
 * A ttrpc server. Register services, then feed it connections: serve() a
 * listener, or hand single streams (vsock, hybrid-vsock) to handleConnection().
 */
export class Server {
  private readonly services = new ServiceSet();
  private readonly sources = new Map<ConnectionSource, (stream: Duplex) => void>();
  private readonly connections = new Set<ServerConnection>();
  private readonly idleWaiters: Array<() => void> = [];
  private closing = false;

  constructor(private readonly options: ServerOptions = {}) {}

  /** Serves `impl` under `descriptor.name`; handlers are looked up by each method's `handler`. */
  register(descriptor: ServiceDescriptor, impl: ServiceImplementation): void {
    this.services.register(descriptor, impl);
  }

  /** Serves every connection `source` emits, until close() or destroy() (which also close it). */
  serve(source: ConnectionSource): void {
    if (this.closing) throw new Error('ttrpc: server closed');
    if (this.sources.has(source)) return;
    const onConnection = (stream: Duplex): void => this.handleConnection(stream);
    source.on('connection', onConnection);
    this.sources.set(source, onConnection);
  }

  /** Serves one already-connected stream. */
  handleConnection(stream: Duplex): void {
    if (this.closing) {
      stream.destroy();
      return;
    }
    const conn = new ServerConnection(stream, this.services, {
      onClose: (c) => this.forget(c),
      onError: (err) => this.report(err),
    });
    this.connections.add(conn);
    const handshake = this.options.handshake;
    if (handshake === undefined) {
      conn.start();
      return;
    }
    Promise.resolve()
      .then(() => handshake(stream))
      .then(
        () => conn.start(),
        (err: unknown) => {
          this.report(new Error('ttrpc: refusing connection after handshake', { cause: err }));
          conn.destroy();
        },
      );
  }

  /** Number of open connections and of those with calls in flight. */
  stats(): { connections: number; active: number } {
    let active = 0;
    for (const c of this.connections) if (c.connState === ConnState.Active || c.connState === ConnState.Draining) active++;
    return { connections: this.connections.size, active };
  }

  /**
   * Graceful shutdown: stop accepting, let the calls in flight finish and
   * send their responses, then close each connection. Resolves once all
   * connections are closed; a handler that never returns keeps it pending,
   * so callers bound it with a timeout and fall back to destroy().
   */
  close(): Promise<void> {
    this.closing = true;
    this.closeSources();
    for (const conn of this.connections) conn.shutdown();
    return this.whenIdle();
  }

  /** Forced shutdown: stop accepting and drop every connection now. */
  destroy(): void {
    this.closing = true;
    this.closeSources();
    for (const conn of [...this.connections]) conn.destroy();
  }

  private whenIdle(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private forget(conn: ServerConnection): void {
    this.connections.delete(conn);
    if (this.connections.size > 0 || !this.closing) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private closeSources(): void {
    for (const [source, onConnection] of this.sources) {
      source.off('connection', onConnection);
      const close = (source as { close?: unknown }).close;
      if (typeof close === 'function') {
        // net.Server.close() reports "not running" to its callback; nothing to do about it.
        (close as (cb: () => void) => void).call(source, () => {});
      }
    }
    this.sources.clear();
  }

  private report(err: Error): void {
    try {
      this.options.onError?.(err);
    } catch {
      // A logging hook must not take the server down.
    }
  }
}
