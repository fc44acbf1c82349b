import { closeSync } from 'node:fs';
import type net from 'node:net';
import { receiveFdFromSocket } from '../native/fdpass.js';
import { peerCred } from '../native/peercred.js';
import { socketFd } from '../ttrpc/unix-creds.js';
import { listenExclusive } from './exclusive-listener.js';
import { decodeHandoff, type Handoff } from './handoff.js';
import { OwnSocket } from './own-socket.js';
import { SPARE_ACK } from './spare-claim.js';
import { buildId } from './version.js';

/** A claimant sends its handoff as soon as it has connected. */
const CLAIM_TIMEOUT_MS = 2_000;

/**
 * A server whose last container is gone waits here, as the spare of its
 * containerd, for the next container that needs a server: `start` hands it
 * that group's listening socket (spare-claim.ts) and it serves again, so no
 * Node process has to start for it. One spare per containerd: a server that
 * finds one already waiting exits, and so does a spare nobody claims within
 * `idleMs`. Only a claim of the same build and user is taken.
 *
 * Resolves with the handoff, or undefined when the server should exit.
 */
export async function waitAsSpare(path: string, idleMs: number): Promise<Handoff | undefined> {
  const server = await listenExclusive(path, { pauseOnConnect: true }).catch(() => undefined);
  if (!server) return undefined;
  const own = new OwnSocket(path);
  return new Promise((resolve) => {
    let claiming = 0;
    let expired = false;
    let settled = false;
    const finish = (handoff: Handoff | undefined) => {
      settled = true;
      clearTimeout(timer);
      process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
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
      if (claiming === 0) finish(undefined);
    }, idleMs);
    server.on('connection', (socket: net.Socket) => {
      claiming += 1;
      void readClaim(socket).then((claim) => {
        claiming -= 1;
        if (claim && !settled) {
          // Only the first claim is answered; any other claimant sees no
          // answer and starts a server of its own.
          // Paused sockets never read the peer's EOF: close once the answer is out.
          socket.end(Buffer.from([SPARE_ACK]), () => socket.destroy());
          finish(claim);
          return;
        }
        if (claim) closeSync(claim.listenerFd);
        socket.destroy();
        if (expired && claiming === 0 && !settled) finish(undefined);
      });
    });
  });
}

/** Reads one claim: the listening socket and the message. Undefined when the peer had nothing valid to give. */
async function readClaim(socket: net.Socket): Promise<Handoff | undefined> {
  socket.on('error', () => {});
  try {
    const fd = socketFd(socket);
    if (fd === undefined || peerCred(fd).uid !== process.geteuid!()) return undefined;
    const received = await receiveFdFromSocket(socket, { timeoutMs: CLAIM_TIMEOUT_MS });
    try {
      const message = decodeHandoff(received.data);
      // Another build (flint was upgraded) must not serve: its start then starts a server of its own.
      if (message.build !== buildId()) throw new Error('another build');
      return { listenerFd: received.fd, message };
    } catch {
      closeSync(received.fd);
      return undefined;
    }
  } catch {
    // The claimant went away (it looked, then found its group's server alive).
    return undefined;
  }
}
