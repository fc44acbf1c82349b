import { closeSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';

import { native } from './addon.js';
import { errnoError, isErrno } from './errno.js';
import { FdStream } from './fd-stream.js';
import { Poller } from './poll.js';
import { accept4, socketError } from './socket.js';

/** Any local CID (bind) — the usual choice inside the VM. */
export const VMADDR_CID_ANY: number = native.constants.VMADDR_CID_ANY;
/** Bind to a kernel-chosen port. */
export const VMADDR_PORT_ANY: number = native.constants.VMADDR_PORT_ANY;
export const VMADDR_CID_HYPERVISOR: number = native.constants.VMADDR_CID_HYPERVISOR;
/** The host, as seen from a guest. */
export const VMADDR_CID_HOST: number = native.constants.VMADDR_CID_HOST;

const DEFAULT_BACKLOG = 128;
// Bounds the work per loop turn when many connections arrive at once.
const ACCEPT_BATCH = 32;
// After an accept failure such as EMFILE the listener stays readable, so back off.
const ACCEPT_RETRY_MS = 250;

/** A vsock address. */
export interface VsockAddress {
  readonly cid: number;
  readonly port: number;
}

/** socket(AF_VSOCK) + bind + listen: a nonblocking, close-on-exec listening fd. */
export function vsockListen(port: number, cid: number = VMADDR_CID_ANY, backlog: number = DEFAULT_BACKLOG): number {
  return native.vsockListen(port, cid, backlog);
}

/**
 * socket(AF_VSOCK) + nonblocking connect: returns the fd with the connect
 * under way; wait for writable, then check socketError(). Prefer dialVsock.
 */
export function vsockConnect(cid: number, port: number): number {
  return native.vsockConnect(cid, port);
}

/** getsockname on a vsock fd. */
export function vsockLocalAddress(fd: number): VsockAddress {
  return native.vsockLocalAddress(fd);
}

/** The bound local port (useful after binding VMADDR_PORT_ANY). */
export function vsockLocalPort(fd: number): number {
  return vsockLocalAddress(fd).port;
}

/**
 * A listening AF_VSOCK socket that emits 'connection' with an FdStream per
 * accepted peer, plus 'error' (accept failures; it keeps listening) and 'close'.
 */
export class VsockServer extends EventEmitter {
  readonly fd: number;
  private readonly poller: Poller;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  /** Takes ownership of a listening fd (see vsockListen). */
  constructor(fd: number) {
    super();
    this.fd = fd;
    this.poller = new Poller(fd, (err) => this.onReadable(err));
    this.poller.start(true, false);
  }

  /** The bound address. */
  address(): VsockAddress {
    return vsockLocalAddress(this.fd);
  }

  /** Stops listening and closes the fd; emits 'close' on the next tick. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.poller.close();
    closeSync(this.fd);
    process.nextTick(() => this.emit('close'));
  }

  /** Lets the process exit while only this server is left. */
  unref(): this {
    if (!this.closed) this.poller.unref();
    this.retryTimer?.unref();
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    if (!this.closed) this.poller.ref();
    this.retryTimer?.ref();
    return this;
  }

  private onReadable(pollError: NodeJS.ErrnoException | null): void {
    if (this.closed) return;
    if (pollError) {
      this.backOff(pollError);
      return;
    }
    for (let i = 0; i < ACCEPT_BATCH; i++) {
      let conn: number | null;
      try {
        conn = accept4(this.fd);
      } catch (err) {
        this.backOff(err as Error);
        return;
      }
      if (conn === null) return;
      this.emit('connection', new FdStream(conn));
      if (this.closed) return;
    }
  }

  private backOff(err: Error): void {
    this.poller.stop();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.closed) this.poller.start(true, false);
    }, ACCEPT_RETRY_MS);
    this.emit('error', err);
  }
}

export interface VsockServer {
  on(event: 'connection', listener: (stream: FdStream) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'close', listener: () => void): this;
  once(event: 'connection', listener: (stream: FdStream) => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
  once(event: 'close', listener: () => void): this;
}

/** Listens on AF_VSOCK; throws (code 'EAFNOSUPPORT') where the kernel has no vsock. */
export function listenVsock(port: number, cid: number = VMADDR_CID_ANY, backlog: number = DEFAULT_BACKLOG): VsockServer {
  const fd = vsockListen(port, cid, backlog);
  try {
    return new VsockServer(fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** Options for dialVsock. */
export interface DialVsockOptions {
  readonly signal?: AbortSignal;
  /** Fails with ETIMEDOUT after this long (default: no limit beyond the kernel's). */
  readonly timeoutMs?: number;
}

/** Connects to cid:port without blocking the event loop. */
export function dialVsock(cid: number, port: number, options: DialVsockOptions = {}): Promise<FdStream> {
  const { signal, timeoutMs } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const fd = vsockConnect(cid, port);
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let poller: Poller | undefined;
    const onAbort = (): void => finish(signal?.reason as Error);
    function finish(err: Error | null): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      poller?.close();
      if (err) {
        closeSync(fd);
        reject(err);
        return;
      }
      try {
        resolve(new FdStream(fd));
      } catch (streamErr) {
        closeSync(fd);
        reject(streamErr);
      }
    }
    try {
      poller = new Poller(fd, (pollError) => {
        // Writable means the connect finished; SO_ERROR says how.
        let soError: number;
        try {
          soError = socketError(fd);
        } catch (err) {
          finish(err as Error);
          return;
        }
        if (soError !== 0) finish(errnoError(soError, 'connect'));
        else finish(pollError);
      });
      poller.start(false, true);
    } catch (err) {
      finish(err as Error);
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => finish(errnoError(osConstants.errno.ETIMEDOUT, 'connect')), timeoutMs);
    }
  });
}

/** True for the error listenVsock throws on kernels without AF_VSOCK. */
export function isVsockUnsupported(err: unknown): boolean {
  return isErrno(err, 'EAFNOSUPPORT');
}
