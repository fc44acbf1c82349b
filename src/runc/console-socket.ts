import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CanceledError, DeadlineExceededError } from '../errdefs/errors.js';
import { receiveFdFromSocket } from '../native/fdpass.js';

/** The pty master runc sent, and the name it sent with it (runc 1.1 sends "/dev/ptmx"). */
export interface ConsoleMaster {
  readonly fd: number;
  readonly name: string;
}

/**
 * A listener for runc's `--console-socket`: runc connects once and sends the
 * pty master as a single SCM_RIGHTS message whose payload is the pty name.
 * The socket lives in its own private temp dir, kept short because a unix
 * socket path must fit in 108 bytes.
 */
export class ConsoleSocket {
  readonly path: string;
  private readonly dir: string;
  private readonly server: Server;
  private readonly pending: Socket[] = [];
  private readonly waiters: Array<{ resolve: (socket: Socket) => void; reject: (err: Error) => void }> = [];
  private closed = false;

  private constructor(dir: string, server: Server) {
    this.dir = dir;
    this.path = join(dir, 'pty.sock');
    this.server = server;
  }

  /** Creates the temp dir and starts listening on `<dir>/pty.sock`. */
  static async listen(): Promise<ConsoleSocket> {
    const dir = await mkdtemp(join(tmpdir(), 'pty'));
    // Paused connections leave the fd message unread for the native receiver.
    const server = createServer({ pauseOnConnect: true });
    const listener = new ConsoleSocket(dir, server);
    server.on('connection', (socket) => listener.accept(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listener.path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return listener;
  }

  /**
   * Waits for runc to connect and send the pty master. The fd is then owned
   * by the caller. Aborting rejects but leaves the listener open.
   */
  async receiveMaster(signal?: AbortSignal): Promise<ConsoleMaster> {
    const socket = await this.nextConnection(signal);
    try {
      const { fd, data } = await receiveFdFromSocket(socket, { signal });
      return { fd, name: data.toString('utf8').replace(/\0+$/, '') };
    } finally {
      socket.destroy();
    }
  }

  /** Stops listening and removes the socket dir. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const socket of this.pending.splice(0)) socket.destroy();
    for (const waiter of this.waiters.splice(0)) waiter.reject(new CanceledError('console socket is closed'));
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private accept(socket: Socket): void {
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter.resolve(socket);
    else this.pending.push(socket);
  }

  private nextConnection(signal?: AbortSignal): Promise<Socket> {
    if (this.closed) return Promise.reject(new CanceledError('console socket is closed'));
    const ready = this.pending.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<Socket>((resolve, reject) => {
      const waiter = {
        resolve: (socket: Socket): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve(socket);
        },
        reject: (err: Error): void => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return new DeadlineExceededError('timed out waiting for the console socket connection', { cause: reason });
  }
  return new CanceledError('canceled waiting for the console socket connection', { cause: reason });
}
