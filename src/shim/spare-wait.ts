import { closeSync } from 'node:fs';
import type net from 'node:net';
import { receiveFdFromSocket } from '../native/fdpass.js';
import { peerCred } from '../native/peercred.js';
import { socketFd } from '../ttrpc/unix-creds.js';
import { listenExclusive } from './exclusive-listener.js';
import { decodeHandoff, type Handoff } from './handoff.js';
import { OwnSocket } from './own-socket.js';
import { encodeReady, SPARE_ACK, SPARE_NAK } from './spare-protocol.js';
import { buildId } from './version.js';

/**
 * How long a reservation waits for the claimant's socket. `start` reserves
 * the spare before it works out the group and binds its socket, which on a
 * loaded machine can take seconds; a claimant gone quiet for longer loses it.
 */
const RESERVATION_MS = 30_000;

/**
 * A server whose last container is gone waits here, as the spare of its
 * containerd, for the next container that needs a server: `start` hands it
 * that group's listening socket (spare-protocol.ts) and it serves again, so
 * no Node process has to start for it. One spare per containerd: a server
 * that finds one already waiting exits, and so does a spare nobody claims
 * within `idleMs`. Only a claim of the same build and user is taken, one
 * claimant at a time.
 *
 * Resolves with the handoff, or undefined when the server should exit. The
 * socket file is gone either way, and on any exit while it waits.
 */
export async function waitAsSpare(path: string, idleMs: number): Promise<Handoff | undefined> {
  const server = await listenExclusive(path, { pauseOnConnect: true }).catch(() => undefined);
  if (!server) return undefined;
  const own = new OwnSocket(path);
  const removeOwn = () => own.remove();
  process.on('exit', removeOwn);
  return new Promise((resolve) => {
    let reserved = false;
    let expired = false;
    let settled = false;
    const finish = (handoff: Handoff | undefined) => {
      settled = true;
      clearTimeout(timer);
      process.off('SIGTERM', onSignal).off('SIGINT', onSignal).off('exit', removeOwn);
      server.removeAllListeners('connection');
      own.remove();
      server.close();
      resolve(handoff);
    };
    // Stopped while it waits: it leaves as an idle one does, socket file and all.
    const onSignal = () => {
      if (!settled) finish(undefined);
    };
    process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
    const timer = setTimeout(() => {
      expired = true;
      // No new claims from here on; one under way may still complete.
      own.remove();
      if (!reserved) finish(undefined);
    }, idleMs);
    server.on('connection', (socket: net.Socket) => {
      socket.on('error', () => {});
      // Busy with another claimant, or not ours to serve: closed unanswered, the claimant starts a server of its own.
      if (reserved || settled || !fromOwnUser(socket)) {
        socket.destroy();
        return;
      }
      reserved = true;
      void hearClaim(socket, () => settled).then((handoff) => {
        reserved = false;
        if (handoff) finish(handoff);
        else if (expired && !settled) finish(undefined);
      });
    });
  });
}

function fromOwnUser(socket: net.Socket): boolean {
  const fd = socketFd(socket);
  try {
    return fd !== undefined && peerCred(fd).uid === process.geteuid!();
  } catch {
    return false;
  }
}

/**
 * One reserved claim, the spare's side of spare-protocol.ts: READY, then the
 * claimant's socket and message, answered ACK or NAK. Resolves with what to
 * serve, or undefined when there is nothing, having closed whatever it got.
 */
async function hearClaim(socket: net.Socket, leaving: () => boolean): Promise<Handoff | undefined> {
  let received;
  try {
    await write(socket, encodeReady({ build: buildId() }));
    received = await receiveFdFromSocket(socket, { timeoutMs: RESERVATION_MS });
  } catch {
    // The claimant left without sending (it found its group's server alive, or
    // took a fresh one), or kept the reservation too long: a socket it sends
    // now stays unread and goes with the connection.
    socket.destroy();
    return undefined;
  }
  let message;
  try {
    message = decodeHandoff(received.data);
    // Another build (flint was upgraded) must not serve: its start then starts a server of its own.
    if (message.build !== buildId()) message = undefined;
  } catch {
    message = undefined;
  }
  if (!message || leaving()) {
    closeSync(received.fd);
    await write(socket, Buffer.from([SPARE_NAK])).catch(() => {});
    socket.destroy();
    return undefined;
  }
  try {
    await write(socket, Buffer.from([SPARE_ACK]));
  } catch {
    // The claimant is gone: it may have given the socket to someone else.
    closeSync(received.fd);
    return undefined;
  } finally {
    // What was written stays readable by the claimant after the close.
    socket.destroy();
  }
  return { listenerFd: received.fd, message };
}

function write(socket: net.Socket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
}
