import net from 'node:net';
import { sendFd } from '../native/fdpass.js';
import { socketFd } from '../ttrpc/unix-creds.js';
import { encodeHandoff, type HandoffMessage } from './handoff.js';
import { buildId } from './version.js';

/** A spare answers at once; a slower one is treated as absent. */
const CONNECT_TIMEOUT_MS = 250;
/** The spare confirms it took the socket; past this `start` starts a server instead. */
const ACK_TIMEOUT_MS = 2_000;
/** The byte a spare answers with once it has taken the handoff. */
export const SPARE_ACK = 0x6b;

/**
 * `start`'s side of a spare server (see spare-wait.ts): a connection to an
 * idle server of this containerd that can serve the new container's group
 * without a Node process being started for it.
 */
export class SpareClaim {
  private constructor(private readonly socket: net.Socket) {}

  /** Connects to the spare at `path`; undefined when there is none. */
  static connect(path: string): Promise<SpareClaim | undefined> {
    return new Promise((resolve) => {
      const socket = net.createConnection({ path });
      const timer = setTimeout(() => done(undefined), CONNECT_TIMEOUT_MS);
      const done = (claim: SpareClaim | undefined) => {
        clearTimeout(timer);
        socket.off('error', onError);
        if (!claim) socket.destroy();
        resolve(claim);
      };
      const onError = () => done(undefined);
      socket.once('error', onError);
      socket.once('connect', () => done(new SpareClaim(socket)));
    });
  }

  /**
   * Gives the spare the group's listening socket and what to serve. Resolves
   * true once the spare confirms, false when it went away or did not answer
   * in time: the caller still holds the socket and hands it to a new server.
   */
  send(listenerFd: number, message: HandoffMessage): Promise<boolean> {
    return new Promise((resolve) => {
      const fd = socketFd(this.socket);
      if (fd === undefined) return resolve(false);
      const timer = setTimeout(() => done(false), ACK_TIMEOUT_MS);
      const done = (taken: boolean) => {
        clearTimeout(timer);
        this.socket.removeAllListeners('data').removeAllListeners('close');
        this.close();
        resolve(taken);
      };
      this.socket.on('error', () => {});
      this.socket.once('data', (data: Buffer) => done(data[0] === SPARE_ACK));
      this.socket.once('close', () => done(false));
      try {
        sendFd(fd, listenerFd, encodeHandoff({ ...message, build: buildId() }));
      } catch {
        done(false);
      }
    });
  }

  /** Lets the spare go on waiting for someone else. */
  close(): void {
    this.socket.destroy();
  }
}
