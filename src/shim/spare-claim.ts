import net from 'node:net';
import { sendFd } from '../native/fdpass.js';
import { peerCred } from '../native/peercred.js';
import { socketFd } from '../ttrpc/unix-creds.js';
import { encodeHandoff, type HandoffMessage } from './handoff.js';
import { removeDeadSocket } from './socket-probe.js';
import { decodeReady, MAX_SPARE_HANDOFF_BYTES, SPARE_ACK, SPARE_NAK } from './spare-protocol.js';
import { buildId } from './version.js';

/**
 * An idle spare answers READY as soon as it is scheduled; one slower than
 * this (stopped, hung) is treated as absent, which is always safe before the
 * socket is sent, and costs a fresh server.
 */
const READY_TIMEOUT_MS = 2_000;
/**
 * How long `start` waits for the answer of a spare that has the socket,
 * before it kills that spare to be sure it does not serve (spare-protocol.ts).
 */
const ACK_TIMEOUT_MS = 10_000;

/**
 * `start`'s side of a spare server (spare-protocol.ts): a reservation of an
 * idle server of this containerd, which then serves the new container's
 * group without a Node process being started for it.
 */
export class SpareClaim {
  private constructor(
    private readonly socket: net.Socket,
    private readonly path: string,
    private readonly sparePid: number,
  ) {}

  /**
   * Phase 1: reserves the spare at `path` for this `start`. Undefined when
   * there is none to have: no spare, one of another user or build, one busy
   * or too slow to answer. A dead spare's socket file is removed.
   */
  static reserve(path: string): Promise<SpareClaim | undefined> {
    return new Promise((resolve) => {
      const socket = net.createConnection({ path });
      let sparePid = 0;
      let received = Buffer.alloc(0);
      let settled = false;
      const done = (claim: SpareClaim | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.removeAllListeners('connect').removeAllListeners('data').removeAllListeners('close');
        if (claim) socket.pause();
        else socket.destroy();
        resolve(claim);
      };
      const timer = setTimeout(() => done(undefined), READY_TIMEOUT_MS);
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        // Refused: a spare that was killed left its socket file; nobody else will remove it.
        if (err.code === 'ECONNREFUSED') void removeDeadSocket(path).finally(() => done(undefined));
        else done(undefined);
      });
      socket.once('connect', () => {
        const fd = socketFd(socket);
        const cred = fd === undefined ? undefined : peerCred(fd);
        // The spare gets the group's socket: it must be us, and one `start` can kill if it must.
        if (!cred || cred.uid !== process.geteuid!() || cred.pid <= 0) return done(undefined);
        sparePid = cred.pid;
      });
      socket.on('data', (data: Buffer) => {
        received = Buffer.concat([received, data]);
        const ready = decodeReady(received);
        if (ready === 'more') return;
        done(ready?.build === buildId() && sparePid > 0 ? new SpareClaim(socket, path, sparePid) : undefined);
      });
      // After an error, the error handler settles.
      socket.once('close', (hadError: boolean) => {
        if (!hadError) done(undefined);
      });
    });
  }

  /**
   * Phase 2: gives the spare the group's listening socket, with `message`
   * and this process's environment (what containerd gave `start`), and
   * resolves true once the spare serves it. False means the spare surely
   * does not serve it (spare-protocol.ts): the caller gives it to a fresh
   * server. Never false while the spare might still serve it.
   */
  send(listenerFd: number, message: HandoffMessage): Promise<boolean> {
    const data = encodeHandoff({ ...message, build: buildId(), env: environment() });
    const fd = socketFd(this.socket);
    if (data.length > MAX_SPARE_HANDOFF_BYTES || fd === undefined) {
      this.close();
      return Promise.resolve(false);
    }
    try {
      sendFd(fd, listenerFd, data);
    } catch {
      // sendmsg failed (the spare closed the reservation): nothing was sent.
      this.close();
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      let killed = false;
      const settle = (taken: boolean): void => {
        clearTimeout(timer);
        this.socket.removeAllListeners('data').removeAllListeners('close');
        this.close();
        resolve(taken);
      };
      // Past this point only the spare's answer, or its death, tells what to do.
      const killSpare = (): void => {
        if (killed) return;
        killed = true;
        try {
          process.kill(this.sparePid, 'SIGKILL');
        } catch {
          // Gone already: the close follows.
        }
      };
      const timer = setTimeout(killSpare, ACK_TIMEOUT_MS);
      this.socket.on('data', (answer: Buffer) => {
        if (killed) return;
        if (answer[0] === SPARE_ACK) settle(true);
        else if (answer[0] === SPARE_NAK) settle(false);
        else killSpare();
      });
      // EOF: the spare never wrote ACK, or was killed; either way it does not serve. Its dead socket file goes too.
      this.socket.once('close', () => {
        void removeDeadSocket(this.path).finally(() => settle(false));
      });
      this.socket.resume();
    });
  }

  /** Lets the spare go on waiting for someone else. */
  close(): void {
    this.socket.destroy();
  }
}

/** This process's environment, for the spare to take on. */
function environment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value;
  return env;
}
