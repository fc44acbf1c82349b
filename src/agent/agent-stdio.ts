import { constants, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { pipeline, type Duplex } from 'node:stream';
import { mkfifo } from '../native/fd.js';
import type { StdioPorts } from '../vm/extra-data.js';
import { acceptOne, openPortListener, type PortListener } from '../vsock/listener.js';

const { O_RDONLY, O_WRONLY, O_NONBLOCK } = constants;

type Stream = 'stdin' | 'stdout' | 'stderr';
const STREAMS: readonly Stream[] = ['stdin', 'stdout', 'stderr'];

/**
 * One process's stdio inside the VM: a FIFO set in the bundle, which runc's
 * process uses like containerd's FIFOs on a host, and one vsock port per
 * stream, which the host shim dials. Listeners exist before runc runs (the
 * host starts dialing before it even calls Create); the FIFO ends are opened
 * only once the process holds its own ends, so a reader never sees an EOF
 * from a writer that is not there yet.
 */
export class AgentStdio {
  private readonly accepted = new Map<Stream, Promise<Duplex>>();
  private readonly conns = new Map<Stream, Duplex>();
  private readonly listeners: PortListener[] = [];
  private readonly outputs: Promise<void>[] = [];
  private readonly fifos: string[] = [];
  readonly paths: { stdin: string; stdout: string; stderr: string } = { stdin: '', stdout: '', stderr: '' };

  private constructor(private readonly abort: AbortController) {}

  /** Makes the FIFOs and starts listening on the ports; undo with close(). */
  static async prepare(listenAddress: string, dir: string, key: string, ports: StdioPorts): Promise<AgentStdio> {
    const stdio = new AgentStdio(new AbortController());
    try {
      for (const stream of STREAMS) {
        const port = ports[stream];
        if (!port) continue;
        const path = join(dir, `${key}-${stream}`);
        mkfifo(path, 0o600);
        stdio.fifos.push(path);
        stdio.paths[stream] = path;
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

  /** Waits until the host has connected every port, bounded by `timeoutMs`. */
  async connect(timeoutMs: number): Promise<void> {
    const timer = setTimeout(() => this.abort.abort(new Error(`host did not connect stdio within ${timeoutMs} ms`)), timeoutMs);
    try {
      for (const [stream, accepted] of this.accepted) this.conns.set(stream, await accepted);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Joins the FIFOs to the connections; call once the process has opened its ends. */
  wire(): void {
    const stdin = this.conns.get('stdin');
    if (stdin) {
      const fifo = new net.Socket({ fd: openSync(this.paths.stdin, O_WRONLY | O_NONBLOCK), readable: false, writable: true });
      pipeline(stdin, fifo, () => {});
    }
    for (const stream of ['stdout', 'stderr'] as const) {
      const conn = this.conns.get(stream);
      if (!conn) continue;
      const fifo = new net.Socket({ fd: openSync(this.paths[stream], O_RDONLY | O_NONBLOCK), readable: true, writable: false });
      this.outputs.push(new Promise((resolve) => pipeline(fifo, conn, () => resolve())));
    }
  }

  /** Resolves when output has been copied to the host, or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.outputs), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('stdio closed'));
    for (const listener of this.listeners) listener.close();
    for (const conn of this.conns.values()) conn.destroy();
    await Promise.all(this.fifos.map((path) => rm(path, { force: true })));
  }
}
