import { closeSync, constants, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { pipeline, type Duplex } from 'node:stream';
import { growPipe, mkfifo } from '../native/fd.js';
import { waitAtMost } from '../sys/wait-at-most.js';
import type { StdioPorts } from '../vm/extra-data.js';
import { acceptOne, openPortListener, type PortListener } from '../vsock/listener.js';

const { O_RDONLY, O_RDWR, O_WRONLY, O_NONBLOCK } = constants;

type Stream = 'stdin' | 'stdout' | 'stderr';
const STREAMS: readonly Stream[] = ['stdin', 'stdout', 'stderr'];

/**
 * One process's stdio inside the VM: a FIFO set in the bundle, which runc's
 * process uses like containerd's FIFOs on a host, and one vsock port per
 * stream, which the host shim dials. Listeners exist before runc runs (the
 * host starts dialing before it even calls Create).
 *
 * The agent's ends of the FIFOs are opened before the process exists too.
 * An output FIFO is read through a reader plus a keep-alive writer of the
 * agent's own: without it the reader would see EOF before the process opens
 * its end, and a fast process's output would be dropped by the kernel once
 * the last end closes unread. The keep-alive goes when the process exits;
 * the reader then sees EOF after the last byte of anything still writing.
 */
export class AgentStdio {
  private readonly accepted = new Map<Stream, Promise<Duplex>>();
  private readonly listeners: PortListener[] = [];
  private readonly conns: Duplex[] = [];
  private readonly fifoEnds = new Map<Stream, net.Socket>();
  private readonly keepAlives: number[] = [];
  private readonly outputs: Promise<void>[] = [];
  private readonly fifos: string[] = [];
  readonly paths: { stdin: string; stdout: string; stderr: string } = { stdin: '', stdout: '', stderr: '' };

  private constructor(private readonly abort: AbortController) {}

  /**
   * Listens on the ports, the first thing a Create or Exec does: a port in
   * use fails it with AlreadyExists before anything else exists. Undo with close().
   */
  static async listen(listenAddress: string, ports: StdioPorts): Promise<AgentStdio> {
    const stdio = new AgentStdio(new AbortController());
    try {
      for (const stream of STREAMS) {
        const port = ports[stream];
        if (!port) continue;
        const listener = await openPortListener(listenAddress, port);
        stdio.listeners.push(listener);
        const accepted = acceptOne(listener, { signal: stdio.abort.signal });
        accepted.catch(() => {});
        stdio.accepted.set(stream, accepted);
      }
      return stdio;
    } catch (err) {
      await stdio.close();
      throw err;
    }
  }

  /** Makes the FIFO set in `dir`, named after the process's key, and opens the agent's ends. */
  makeFifos(dir: string, key: string): void {
    for (const stream of this.accepted.keys()) {
      const path = join(dir, `${key}-${stream}`);
      mkfifo(path, 0o600);
      this.fifos.push(path);
      this.paths[stream] = path;
      this.openEnd(stream, path);
    }
  }

  private openEnd(stream: Stream, path: string): void {
    if (stream === 'stdin') {
      // Read-write never blocks and never fails with ENXIO; the process still
      // sees EOF once the host's stream ends and this end closes.
      this.fifoEnds.set(stream, new net.Socket({ fd: openSync(path, O_RDWR | O_NONBLOCK), readable: false, writable: true }));
      return;
    }
    const reader = openSync(path, O_RDONLY | O_NONBLOCK);
    growPipe(reader);
    this.keepAlives.push(openSync(path, O_WRONLY | O_NONBLOCK));
    this.fifoEnds.set(stream, new net.Socket({ fd: reader, readable: true, writable: false }));
  }

  /** Waits until the host has connected every port (bounded), then starts copying. */
  async connect(timeoutMs: number): Promise<void> {
    const timer = setTimeout(() => this.abort.abort(new Error(`host did not connect stdio within ${timeoutMs} ms`)), timeoutMs);
    try {
      for (const [stream, accepted] of this.accepted) {
        const conn = await accepted;
        this.conns.push(conn);
        const fifo = this.fifoEnds.get(stream)!;
        if (stream === 'stdin') pipeline(conn, fifo, () => {});
        else this.outputs.push(new Promise((resolve) => pipeline(fifo, conn, () => resolve())));
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** The process has exited: output ends once whatever still holds it lets go. */
  processExited(): void {
    for (const fd of this.keepAlives.splice(0)) closeSync(fd);
  }

  /** Resolves when output has been copied to the host, or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    await waitAtMost(Promise.all(this.outputs), timeoutMs);
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('stdio closed'));
    this.processExited();
    for (const listener of this.listeners) listener.close();
    // A host connection accepted but not yet copied to (the call failed first) goes too.
    for (const accepted of this.accepted.values()) accepted.then((conn) => conn.destroy(), () => {});
    for (const conn of this.conns) conn.destroy();
    for (const end of this.fifoEnds.values()) end.destroy();
    await Promise.all(this.fifos.map((path) => rm(path, { force: true })));
  }
}
