import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';

import { native } from './addon.js';
import { errnoError } from './errno.js';
import { Poller } from './poll.js';

/** One message from recvFd. */
export interface ReceivedFd {
  /** The passed fd (close-on-exec), or -1 if the message carried none. */
  readonly fd: number;
  readonly data: Buffer;
}

/**
 * recvmsg with one SCM_RIGHTS fd (MSG_CMSG_CLOEXEC): null when nothing is
 * queued on the nonblocking socket; { fd: -1, data: <empty> } at EOF.
 * Extra fds in the same message are closed.
 */
export function recvFd(fd: number): ReceivedFd | null {
  return native.recvFd(fd);
}

/** sendmsg with `fdToSend` as SCM_RIGHTS and `data` (at least one byte is sent). */
export function sendFd(fd: number, fdToSend: number, data: Buffer = Buffer.alloc(1)): number {
  return native.sendFd(fd, fdToSend, data);
}

/** Options for receiveFdFromSocket. */
export interface ReceiveFdOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/**
 * Waits for one fd on a unix socket that Node has not started reading (a
 * net.Server connection with pauseOnConnect), e.g. runc's --console-socket:
 * data is the pty name, the fd the pty master. Rejects with ECONNRESET if the
 * peer closes first and EBADMSG if its message carries no fd. The socket stays
 * the caller's to destroy.
 */
export function receiveFdFromSocket(socket: Socket, options: ReceiveFdOptions = {}): Promise<ReceivedFd> {
  const { signal, timeoutMs } = options;
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return new Promise((resolve, reject) => {
    if (typeof fd !== 'number' || fd < 0) {
      reject(new TypeError('receiveFdFromSocket: socket has no fd (closed, or not a unix socket)'));
      return;
    }
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let poller: Poller | undefined;
    const onAbort = (): void => finish(signal?.reason as Error, null);
    function finish(err: Error | null, message: ReceivedFd | null): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      poller?.close();
      if (err) reject(err);
      else resolve(message!);
    }
    try {
      poller = new Poller(fd, (pollError) => {
        let message: ReceivedFd | null;
        try {
          message = recvFd(fd);
        } catch (err) {
          finish(err as Error, null);
          return;
        }
        if (message === null) {
          if (pollError) finish(pollError, null);
          return;
        }
        if (message.fd >= 0) finish(null, message);
        else if (message.data.length === 0) finish(errnoError(osConstants.errno.ECONNRESET, 'recvmsg'), null);
        else finish(errnoError(osConstants.errno.EBADMSG, 'recvmsg'), null);
      });
      poller.start(true, false);
    } catch (err) {
      finish(err as Error, null);
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => finish(errnoError(osConstants.errno.ETIMEDOUT, 'recvmsg'), null), timeoutMs);
    }
  });
}
