import { EventEmitter } from 'node:events';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

import { AlreadyExistsError, FailedPreconditionError } from '../errdefs/errors.js';
import { checkVsockPort } from './address.js';
import { ConnectParser, formatAckLine } from './hybrid-handshake.js';
import type { PortListener } from './port-listener.js';

/** How long a client has to send its CONNECT line. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Firecracker numbers host-side ports of hybrid connections from 2^30 up. */
export const FIRST_HOST_PORT = 0x4000_0000;
const LAST_HOST_PORT = 0xffff_fffe;
const SOCKET_MODE = 0o600;
const PROBE_TIMEOUT_MS = 1_000;

/** Options for HybridVsockServer.listen. */
export interface HybridVsockServerOptions {
  /** Time a client has for its CONNECT line (default 5 s). */
  readonly handshakeTimeoutMs?: number;
}

/**
 * The guest side of Firecracker's hybrid vsock, for an agent running outside
 * a VM: a unix socket at `path` where each client writes `CONNECT <port>\n`
 * and, if something in this process listens on that port, gets
 * `OK <hostPort>\n` and is handed to that port's listener. Unlisted ports and
 * malformed or slow handshakes are closed without an ack, which is what the
 * host sees from Firecracker when the guest is not listening.
 *
 * Events: 'drop' (reason: string) for each refused client; 'error' for
 * accept failures, only if someone listens for it (the server keeps
 * listening either way).
 */
export class HybridVsockServer extends EventEmitter {
  private readonly ports = new Map<number, HybridPortListener>();
  private readonly handshakes = new Set<Socket>();
  private nextHostPort = FIRST_HOST_PORT;
  private closedFlag = false;

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly socketInode: number,
    private readonly handshakeTimeoutMs: number,
  ) {
    super();
    server.on('connection', (socket: Socket) => this.onConnection(socket));
    server.on('error', (err: Error) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  /**
   * Listens on `path` (mode 0600). A stale socket file left by a dead server
   * is removed first; a live one, or a file that is not a socket, is an
   * AlreadyExistsError.
   */
  static async listen(path: string, options: HybridVsockServerOptions = {}): Promise<HybridVsockServer> {
    await removeStaleSocket(path);
    // Half-close like an AF_VSOCK FdStream: the peer's EOF does not end our side.
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    try {
      chmodSync(path, SOCKET_MODE);
      const inode = lstatSync(path).ino;
      return new HybridVsockServer(path, server, inode, options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
    } catch (err) {
      server.close();
      throw err;
    }
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Ports with a listener, ascending. */
  listeningPorts(): number[] {
    return [...this.ports.keys()].sort((a, b) => a - b);
  }

  /** Accepts hybrid connections for guest `port`; AlreadyExistsError if the port is taken. */
  listen(port: number): HybridPortListener {
    checkVsockPort(port, `hybrid vsock ${this.path}`);
    if (this.closedFlag) throw new FailedPreconditionError(`hybrid vsock ${this.path}: server closed`);
    if (this.ports.has(port)) throw new AlreadyExistsError(`hybrid vsock ${this.path}: port ${port} already has a listener`);
    const listener = new HybridPortListener(port, (l) => {
      if (this.ports.get(port) === l) this.ports.delete(port);
    });
    this.ports.set(port, listener);
    return listener;
  }

  /**
   * Stops listening, removes the socket file, drops clients still in their
   * handshake and closes every port listener. Connections already handed
   * out are left to their owners. Idempotent.
   */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    // libuv unlinks a pipe server's path when it closes the handle.
    this.server.close();
    this.removeOwnSocketFile();
    for (const socket of this.handshakes) socket.destroy();
    this.handshakes.clear();
    for (const listener of [...this.ports.values()]) listener.close();
    this.ports.clear();
    process.nextTick(() => this.emit('close'));
  }

  private removeOwnSocketFile(): void {
    try {
      // Only our own socket: another server may have taken the path over.
      if (lstatSync(this.path).ino === this.socketInode) unlinkSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  private onConnection(socket: Socket): void {
    if (this.closedFlag) {
      socket.destroy();
      return;
    }
    this.handshakes.add(socket);
    const parser = new ConnectParser();
    let finished = false;

    const finish = (): void => {
      finished = true;
      clearTimeout(timer);
      this.handshakes.delete(socket);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onEnd);
    };
    const drop = (reason: string): void => {
      if (finished) return;
      finish();
      socket.on('error', () => {});
      socket.destroy();
      this.emit('drop', reason);
    };
    const onError = (err: Error): void => drop(`handshake failed: ${err.message}`);
    const onEnd = (): void => drop(`client closed before its CONNECT line (received ${parser.received})`);
    const onReadable = (): void => {
      for (let chunk: Buffer | null = socket.read(); chunk !== null && !finished; chunk = socket.read()) {
        const state = parser.push(chunk);
        if (!state.done) continue;
        if (!state.ok) {
          drop(`bad CONNECT line ${state.received}: ${state.reason}`);
          return;
        }
        const listener = this.ports.get(state.value);
        if (listener === undefined) {
          drop(`no listener on port ${state.value}`);
          return;
        }
        finish();
        socket.write(formatAckLine(this.allocateHostPort()));
        // Bytes the client sent after its CONNECT line belong to the port's reader.
        if (state.rest.length > 0) socket.unshift(state.rest);
        listener.deliver(socket);
        return;
      }
    };
    const timer = setTimeout(() => drop(`no CONNECT line within ${this.handshakeTimeoutMs} ms (received ${parser.received})`), this.handshakeTimeoutMs);

    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('end', onEnd);
  }

  private allocateHostPort(): number {
    const port = this.nextHostPort;
    this.nextHostPort = port >= LAST_HOST_PORT ? FIRST_HOST_PORT : port + 1;
    return port;
  }
}

export interface HybridVsockServer {
  on(event: 'drop', listener: (reason: string) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'close', listener: () => void): this;
  once(event: 'drop', listener: (reason: string) => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
  once(event: 'close', listener: () => void): this;
}

/** One guest port on a HybridVsockServer; see PortListener. */
export class HybridPortListener extends EventEmitter implements PortListener {
  private closedFlag = false;

  /** Made by HybridVsockServer.listen. */
  constructor(
    readonly port: number,
    private readonly onClose: (listener: HybridPortListener) => void,
  ) {
    super();
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.onClose(this);
    process.nextTick(() => this.emit('close'));
  }

  /** Hands over a connection whose handshake completed. */
  deliver(conn: Socket): void {
    if (this.closedFlag) {
      conn.destroy();
      return;
    }
    this.emit('connection', conn);
  }
}

/**
 * Makes room for a new server at `path`: ENOENT is fine, a socket nobody
 * accepts on is removed, anything else is refused.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new AlreadyExistsError(`hybrid vsock ${path}: exists and is not a socket`);
  if (await someoneListens(path)) throw new AlreadyExistsError(`hybrid vsock ${path}: another server is listening there`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Connects once to tell a live socket from a stale one. */
function someoneListens(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = createConnection({ path });
    const settle = (result: boolean | Error): void => {
      clearTimeout(timer);
      probe.removeAllListeners();
      probe.on('error', () => {});
      probe.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    // A full backlog (EAGAIN) or a connect that hangs both mean someone is there.
    const timer = setTimeout(() => settle(true), PROBE_TIMEOUT_MS);
    probe.once('connect', () => settle(true));
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') settle(false);
      else if (err.code === 'EAGAIN') settle(true);
      else settle(err);
    });
  });
}
