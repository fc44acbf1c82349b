import { EventEmitter } from 'node:events';
import { closeSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { pipe } from '../native/fd.js';
import { spawnProcess } from '../native/process.js';
import type { ExitStatus } from './exit-status.js';

/** One stdio slot of spawnReaped: an fd of ours, 'pipe', 'inherit', or nothing (/dev/null). */
export type ReapedStdio = number | 'pipe' | 'inherit' | 'ignore' | null | undefined;

const SIGNAL_NAMES: ReadonlyMap<number, NodeJS.Signals> = new Map(
  Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]),
);

/** True when spawnReaped can take these stdio options (three slots of the kinds above). */
export function isReapedStdio(stdio: unknown): stdio is readonly [ReapedStdio, ReapedStdio, ReapedStdio] {
  const ok = (s: unknown) => s === null || s === undefined || s === 'pipe' || s === 'inherit' || s === 'ignore' || (typeof s === 'number' && Number.isInteger(s) && s >= 0);
  return Array.isArray(stdio) && stdio.length === 3 && stdio.every(ok);
}

/**
 * A process started vfork-style (native spawnProcess) and reaped by the
 * shim's one reaper, not by libuv: the part of ChildProcess that short-lived
 * helpers such as runc need. 'exit' comes when the reaper sees the process
 * end; 'close' once its exit is known and its piped stdout and stderr have
 * ended. A program that cannot be executed emits 'error' instead.
 */
export class ReapedChild extends EventEmitter {
  pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;

  constructor(
    command: string,
    args: readonly string[],
    options: { stdio: readonly [ReapedStdio, ReapedStdio, ReapedStdio]; env?: NodeJS.ProcessEnv },
    wait: (pid: number) => Promise<ExitStatus>,
  ) {
    super();
    const childEnds: number[] = [];
    const ours: (net.Socket | null)[] = [null, null, null];
    const fds = options.stdio.map((entry, index): number => {
      if (typeof entry === 'number') return entry;
      if (entry === 'inherit') return index;
      if (entry !== 'pipe') return -1;
      const [read, write] = pipe();
      const [child, parent] = index === 0 ? [read, write] : [write, read];
      childEnds.push(child);
      ours[index] = new net.Socket({ fd: parent, readable: index !== 0, writable: index === 0 });
      return child;
    }) as [number, number, number];
    [this.stdin, this.stdout, this.stderr] = ours;
    try {
      this.pid = spawnProcess(command, [command, ...args], options.env ?? process.env, fds);
    } catch (err) {
      for (const stream of ours) stream?.destroy();
      process.nextTick(() => this.emit('error', Object.assign(err as Error, { path: command, spawnargs: [...args] })));
      return;
    } finally {
      for (const fd of childEnds) closeSync(fd);
    }
    // Like a ChildProcess, a running child keeps the event loop alive (the
    // reaper's SIGCHLD listener does not).
    const alive = setInterval(() => {}, 1 << 30);
    // Asked for now, before any SIGCHLD of this child can be handled.
    void wait(this.pid).then((exit) => {
      clearInterval(alive);
      this.exited(exit, ours);
    });
  }

  /** Sends `signal` unless the process has been reaped (its pid may be someone else's by then). */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    if (this.pid === undefined || this.exitCode !== null || this.signalCode !== null) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  private exited(exit: ExitStatus, streams: readonly (net.Socket | null)[]): void {
    if (exit.signal) this.signalCode = SIGNAL_NAMES.get(exit.signal) ?? null;
    else this.exitCode = exit.status;
    this.emit('exit', this.exitCode, this.signalCode);
    const outputs = streams.slice(1).filter((s): s is net.Socket => s !== null && !s.destroyed && !s.readableEnded);
    let open = outputs.length;
    const closed = () => {
      if (--open === 0) this.emit('close', this.exitCode, this.signalCode);
    };
    if (open === 0) this.emit('close', this.exitCode, this.signalCode);
    for (const stream of outputs) stream.once('close', closed);
  }
}
