import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';

import { AlreadyExistsError, CanceledError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, UnavailableError } from '../errdefs/errors.js';
import { isErrno } from '../native/errno.js';
import { isVsockUnsupported, listenVsock, VMADDR_CID_ANY, type VsockServer } from '../native/vsock.js';
import { checkVsockPort, parseListenAddress, type ListenAddress } from './address.js';
import { HybridVsockServer, type HybridVsockServerOptions } from './hybrid-server.js';
import type { PortListener } from './port-listener.js';

export type { PortListener } from './port-listener.js';

/**
 * Listens on guest `port` at a listen address: an AF_VSOCK listener for
 * `vsock://:PORT`, or a port on the process-wide HybridVsockServer for
 * `hvsock://PATH` (created on first use, closed with its last port).
 * `port` defaults to the address's own port; hvsock addresses need it.
 */
export async function openPortListener(address: string | ListenAddress, port?: number, options: HybridVsockServerOptions = {}): Promise<PortListener> {
  const parsed = typeof address === 'string' ? parseListenAddress(address) : address;
  if (parsed.kind === 'vsock-listen') return openVsockPort(checkVsockPort(port ?? parsed.port, 'vsock listener'));
  if (port === undefined) throw new InvalidArgumentError(`hvsock://${parsed.path}: a port to listen on is required`);
  return openHybridPort(parsed.path, checkVsockPort(port, `hybrid vsock ${parsed.path}`), options);
}

/** Options for acceptOne. */
export interface AcceptOneOptions {
  /** Give up after this long (default: wait until aborted or the listener closes). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Resolves with the first connection on `listener` and closes it, so the
 * port takes exactly one peer (a stdio stream). Rejects with
 * DeadlineExceededError, CanceledError, or UnavailableError if the listener
 * closes first; the listener is closed in every case.
 */
export function acceptOne(listener: PortListener, options: AcceptOneOptions = {}): Promise<Duplex> {
  const { timeoutMs, signal } = options;
  const what = `port ${listener.port}`;
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onConnection = (conn: Duplex): void => settle(conn);
    const onClose = (): void => settle(new UnavailableError(`${what}: listener closed before a connection arrived`));
    const onAbort = (): void => settle(new CanceledError(`${what}: accept canceled`, { cause: signal?.reason }));
    function settle(result: Duplex | Error): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      listener.off('connection', onConnection);
      listener.off('close', onClose);
      listener.close();
      if (result instanceof Error) reject(result);
      else resolve(result);
    }
    if (listener.closed) {
      onClose();
      return;
    }
    if (signal?.aborted) {
      onAbort();
      return;
    }
    listener.on('connection', onConnection);
    listener.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => settle(new DeadlineExceededError(`${what}: no connection within ${timeoutMs} ms`)), timeoutMs);
    }
  });
}

/** An AF_VSOCK listener on every local CID, as a PortListener. */
class VsockPortListener extends EventEmitter implements PortListener {
  private closedFlag = false;

  constructor(
    readonly port: number,
    private readonly server: VsockServer,
  ) {
    super();
    server.on('connection', (conn) => {
      if (this.closedFlag) conn.destroy();
      else this.emit('connection', conn);
    });
    // Accept failures (EMFILE...) are transient and the server keeps listening.
    server.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.server.close();
    process.nextTick(() => this.emit('close'));
  }
}

function openVsockPort(port: number): PortListener {
  let server: VsockServer;
  try {
    server = listenVsock(port, VMADDR_CID_ANY);
  } catch (err) {
    if (isErrno(err, 'EADDRINUSE')) throw new AlreadyExistsError(`vsock port ${port} is already in use`, { cause: err });
    if (isVsockUnsupported(err)) throw new FailedPreconditionError(`vsock port ${port}: the kernel has no AF_VSOCK`, { cause: err });
    throw err;
  }
  return new VsockPortListener(port, server);
}

/** One hybrid server per socket path in this process, shared by its ports. */
interface SharedHybridServer {
  readonly ready: Promise<HybridVsockServer>;
  server?: HybridVsockServer;
  users: number;
}

const hybridServers = new Map<string, SharedHybridServer>();

async function openHybridPort(path: string, port: number, options: HybridVsockServerOptions): Promise<PortListener> {
  const entry = sharedHybridServer(path, options);
  entry.users++;
  let listener: PortListener;
  try {
    const server = await entry.ready;
    listener = server.listen(port);
  } catch (err) {
    release(path, entry);
    throw err;
  }
  listener.once('close', () => release(path, entry));
  return listener;
}

function sharedHybridServer(path: string, options: HybridVsockServerOptions): SharedHybridServer {
  const existing = hybridServers.get(path);
  if (existing !== undefined && existing.server?.closed !== true) return existing;
  const ready = HybridVsockServer.listen(path, options);
  const entry: SharedHybridServer = { ready, users: 0 };
  hybridServers.set(path, entry);
  ready.then(
    (server) => {
      entry.server = server;
    },
    () => forget(path, entry),
  );
  return entry;
}

function release(path: string, entry: SharedHybridServer): void {
  entry.users--;
  if (entry.users > 0) return;
  forget(path, entry);
  // users reached 0 only after `ready` settled, so `server` is set if it ever will be.
  entry.server?.close();
}

function forget(path: string, entry: SharedHybridServer): void {
  if (hybridServers.get(path) === entry) hybridServers.delete(path);
}
