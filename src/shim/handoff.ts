import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { recvFd, sendFd } from '../native/fdpass.js';
import { setNonblocking } from '../native/fd.js';
import { Poller } from '../native/poll.js';
import { socketpair } from '../native/socket.js';
import { loadConfig } from '../config/config.js';
import { shimGroup } from './group.js';

/** Set in the pre-spawned server's environment: the fd of its end of the handoff socket. */
export const HANDOFF_ENV = 'FLINT_SHIM_HANDOFF_FD';
const HANDOFF_FD = 3;
/**
 * How often a pre-spawned server that has heard nothing checks that `start`
 * is still its parent. `start` closing its end (exit, kill) is seen at once
 * as EOF; this catches one orphaned some other way. A slow `start` is no
 * reason to leave: on a loaded machine it can take minutes, and a server
 * gone by then fails the container's start with EPIPE.
 */
const ORPHAN_CHECK_MS = 30_000;

/** What `start` tells the server it pre-spawned, along with the listening socket. */
export interface HandoffMessage {
  readonly namespace: string;
  readonly id: string;
  readonly address: string;
  readonly socket: string;
  /** The container's bundle: the server's working directory, where its log FIFO is. */
  readonly bundle: string;
  readonly debug: boolean;
  /** A config file named by the task's runtime options, if any. */
  readonly configPath: string | undefined;
  /** The runc option shim_cgroup of the container the server is started for (shim-cgroup.ts). */
  readonly shimCgroup?: string | undefined;
  /** The claimant's build (version.ts buildId), sent to a spare server, which must be the same build. */
  readonly build?: string;
  /**
   * `start`'s environment (containerd's, with FLINT_CONFIG, PATH…), sent to
   * a spare server: it was spawned by an earlier `start`, maybe of a
   * containerd since restarted with other settings, and serves with these.
   */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * The server process, started by `start` before it knows whether it needs
 * one. Loading the server's modules takes longer than everything `start`
 * does, so the two overlap: `start` works out the group and binds the
 * socket while the server boots, then hands it the listening socket over a
 * socketpair (SCM_RIGHTS). If a live server already serves the group, the
 * pre-spawned server is told nothing and exits when its end of the socketpair closes.
 */
export class ServerHandoff {
  private constructor(private fd: number | undefined) {}

  static spawn(serverArgv: readonly string[], cwd: string): ServerHandoff {
    const [parentEnd, childEnd] = socketpair();
    try {
      const child = spawn(process.execPath, [...serverArgv], {
        cwd,
        detached: true,
        stdio: ['ignore', 'ignore', 'ignore', childEnd],
        env: { ...process.env, [HANDOFF_ENV]: String(HANDOFF_FD) },
      });
      child.unref();
    } finally {
      closeSync(childEnd);
    }
    return new ServerHandoff(parentEnd);
  }

  /** Gives the server the listening socket and what to serve. */
  send(listenerFd: number, message: HandoffMessage): void {
    if (this.fd === undefined) throw new Error('the server handoff is already closed');
    sendFd(this.fd, listenerFd, encodeHandoff(message));
    this.close();
  }

  /** Lets the server go without work: it sees EOF and exits. */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * Gives the listening socket to a server. The pre-spawned one may be gone
 * before it hears from us (a crash at boot: the socketpair answers EPIPE);
 * a fresh server then takes its place, once.
 */
export function handOver(takeServer: () => ServerHandoff, fd: number, message: HandoffMessage): void {
  try {
    takeServer().send(fd, message);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPIPE' && code !== 'ECONNRESET') throw err;
    takeServer().send(fd, message);
  }
}

/**
 * In the pre-spawned server: waits for `start`'s message. Resolves with the
 * listening socket and what to serve, or undefined when `start` closed the
 * handoff without one.
 */
export function receiveHandoff(): Promise<Handoff | undefined> {
  const fd = Number(process.env[HANDOFF_ENV]);
  delete process.env[HANDOFF_ENV];
  setNonblocking(fd, true);
  return new Promise((resolve, reject) => {
    const poller = new Poller(fd, (err) => {
      if (err) return finish(() => reject(err));
      let received;
      try {
        received = recvFd(fd);
      } catch (error) {
        return finish(() => reject(error));
      }
      if (received === null) return; // spurious wake-up
      if (received.fd < 0) return finish(() => resolve(undefined));
      let message: HandoffMessage;
      try {
        message = decodeHandoff(received.data);
      } catch (error) {
        closeSync(received.fd);
        return finish(() => reject(error));
      }
      finish(() => resolve({ listenerFd: received.fd, message }));
    });
    const parent = process.ppid;
    const timer = setInterval(() => {
      if (process.ppid !== parent) finish(() => resolve(undefined));
    }, ORPHAN_CHECK_MS);
    const finish = (settle: () => void) => {
      clearInterval(timer);
      poller.close();
      closeSync(fd);
      settle();
    };
    poller.start(true, false);
  });
}

/** What a server is handed: the listening socket of its group and what to serve. */
export interface Handoff {
  readonly listenerFd: number;
  readonly message: HandoffMessage;
}

export function encodeHandoff(message: HandoffMessage): Buffer {
  return Buffer.from(JSON.stringify(message));
}

/** Parses a handoff message; a malformed one is an error naming what is wrong. */
export function decodeHandoff(data: Buffer): HandoffMessage {
  const message = JSON.parse(data.toString('utf8')) as Partial<HandoffMessage>;
  for (const key of ['namespace', 'id', 'address', 'socket', 'bundle'] as const) {
    if (typeof message[key] !== 'string') throw new Error(`server handoff: ${key} is not a string`);
  }
  if (!message.bundle!.startsWith('/')) throw new Error(`server handoff: bundle ${JSON.stringify(message.bundle)} is not absolute`);
  const env: unknown = message.env;
  if (env !== undefined && (typeof env !== 'object' || env === null || Object.values(env).some((value) => typeof value !== 'string'))) {
    throw new Error('server handoff: env is not an object of strings');
  }
  return { ...(message as HandoffMessage), debug: message.debug === true };
}

/** Makes `env` the whole environment of this process, and of what it spawns from now on. */
export function adoptEnvironment(env: Readonly<Record<string, string>>): void {
  for (const key of Object.keys(process.env)) if (!Object.hasOwn(env, key)) delete process.env[key];
  Object.assign(process.env, env);
}

export function isHandoffServer(): boolean {
  return process.env[HANDOFF_ENV] !== undefined;
}

/**
 * Whether a new container probably needs a server of its own, rather than
 * joining its group's live one: when it is its own group, as with one
 * server per sandbox (the default) for a container with no group annotation
 * or a CRI sandbox. A CRI app container names its sandbox, whose server is
 * alive. Only the config file is read here; the task's runtime options may
 * name another, which start then honours.
 */
export function serverLikelyNeeded(id: string, annotations: Readonly<Record<string, string>> | undefined): boolean {
  try {
    return shimGroup(loadConfig().config, id, annotations) === id;
  } catch {
    return false;
  }
}
