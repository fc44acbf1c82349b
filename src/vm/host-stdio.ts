import { closeSync, constants, openSync } from 'node:fs';
import net from 'node:net';
import { pipeline, type Duplex } from 'node:stream';
import { unreadBytes } from '../native/fd.js';
import { waitAtMost } from '../sys/wait-at-most.js';
import { StdinKeepAlive } from '../taskapi/io/stdin-keep-alive.js';
import { untilRead } from '../taskapi/io/unread-output.js';
import { socketFd } from '../ttrpc/unix-creds.js';
import { dialAgent } from '../vsock/dial.js';
import type { StdioPorts } from './extra-data.js';

const { O_RDONLY, O_RDWR, O_NONBLOCK } = constants;

type Stream = 'stdin' | 'stdout' | 'stderr';

/**
 * One process's stdio on the host side of VM mode: containerd's FIFOs
 * joined to the vsock ports the agent listens on. Dialing starts before the
 * agent is asked to create the process (the dial retries until the agent
 * listens), and the copies are plain pipelines, so a slow reader slows the
 * container down instead of filling memory.
 *
 * Stdin follows the runc shim: once the process is created the shim holds
 * a writer of the stdin FIFO (stdin-keep-alive.ts), so the copy ends (and
 * the agent sees EOF) only after CloseIO. The FIFO is opened for reading
 * before the agent is asked to create the process, so a client whose EOF
 * comes during the create is seen to have left.
 */
export class HostStdio {
  private readonly dials = new Map<Stream, Promise<Duplex>>();
  private readonly conns: Duplex[] = [];
  private readonly outputs: Promise<void>[] = [];
  /**
   * Each output's way to the client: agent connection → containerd's FIFO,
   * and a read end of that FIFO never read from, which tells what the
   * client has not read (the copy's own end closes when the stream ends).
   */
  private readonly outputCopies: OutputCopy[] = [];
  /** The stdin FIFO's read end, opened at dial; `stdinCopy` owns it once connected. */
  private stdinReader: number | undefined;
  private stdinCopy: net.Socket | undefined;
  private readonly stdinKeepAlive: StdinKeepAlive | undefined;
  private readonly abort = new AbortController();

  private constructor(private readonly paths: { stdin: string; stdout: string; stderr: string }) {
    this.stdinKeepAlive = paths.stdin ? new StdinKeepAlive(paths.stdin) : undefined;
  }

  static dial(address: string, ports: StdioPorts, paths: { stdin: string; stdout: string; stderr: string }, timeoutMs: number): HostStdio {
    const stdio = new HostStdio(paths);
    if (ports.stdin) stdio.stdinReader = openSync(paths.stdin, O_RDONLY | O_NONBLOCK);
    for (const stream of ['stdin', 'stdout', 'stderr'] as const) {
      if (!ports[stream]) continue;
      const dial = dialAgent(address, ports[stream], { timeoutMs, signal: stdio.abort.signal });
      dial.catch(() => {});
      stdio.dials.set(stream, dial);
    }
    return stdio;
  }

  /** Waits for every stream's connection, then starts copying. */
  async connect(): Promise<void> {
    const conns = new Map<Stream, Duplex>();
    for (const [stream, dial] of this.dials) {
      const conn = await dial;
      this.conns.push(conn);
      conns.set(stream, conn);
    }
    const stdin = conns.get('stdin');
    if (stdin && this.stdinReader !== undefined) {
      this.stdinCopy = new net.Socket({ fd: this.stdinReader, readable: true, writable: false });
      pipeline(this.stdinCopy, stdin, () => {});
    }
    for (const stream of ['stdout', 'stderr'] as const) {
      const conn = conns.get(stream);
      if (!conn) continue;
      // Read-write: never blocks, never EPIPE when the client's reader is gone.
      // The kernel's FIFO size, as under the runc shim (see outputRead).
      const fifo = new net.Socket({ fd: openSync(this.paths[stream], O_RDWR | O_NONBLOCK), readable: false, writable: true });
      this.outputCopies.push({ conn, fifo, probe: openSync(this.paths[stream], O_RDONLY | O_NONBLOCK) });
      this.outputs.push(new Promise((resolve) => pipeline(conn, fifo, () => resolve())));
    }
  }

  /**
   * Called once the agent has created the process. False when the client's
   * stdin has already ended: the agent's process must then have its stdin
   * closed (CloseIO) as well, which is what the client would have asked.
   */
  holdStdinOpen(): boolean {
    if (!this.stdinKeepAlive) return true;
    // A copy that already ended has closed the reader (and its fd number).
    return !this.stdinCopy?.destroyed && this.stdinKeepAlive.hold(this.stdinReader);
  }

  closeStdin(): void {
    this.stdinKeepAlive?.release();
  }

  /**
   * Waits until the client has read the output that has reached this side:
   * nothing left in the agent connections, in the copies, or in the FIFOs.
   * Bounded as the embedded shim's wait is (unread-output.ts): an exit is
   * reported only after it, as there.
   */
  outputRead(timeoutMs: number): Promise<void> {
    return untilRead(() => this.outputCopies.reduce((sum, copy) => sum + unreadOnTheWay(copy), 0), timeoutMs);
  }

  /** Resolves when the output streams have ended, or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    await waitAtMost(Promise.all(this.outputs), timeoutMs);
  }

  close(): void {
    this.abort.abort(new Error('stdio closed'));
    this.closeStdin();
    if (this.stdinCopy) this.stdinCopy.destroy();
    else if (this.stdinReader !== undefined) closeSync(this.stdinReader);
    this.stdinReader = undefined;
    for (const { probe } of this.outputCopies.splice(0)) closeSync(probe);
    for (const conn of this.conns) conn.destroy();
  }
}

interface OutputCopy {
  readonly conn: Duplex;
  readonly fifo: net.Socket;
  readonly probe: number;
}

/** Bytes of one output not yet taken by the client: received, buffered, or in the FIFO. */
function unreadOnTheWay({ conn, fifo, probe }: OutputCopy): number {
  const connFd = conn.destroyed ? undefined : socketFd(conn);
  const inCopy = conn.readableLength + (fifo.destroyed ? 0 : fifo.writableLength);
  return (connFd === undefined ? 0 : unreadBytes(connFd)) + inCopy + unreadBytes(probe);
}
