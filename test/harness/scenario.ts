import { setTimeout as sleep } from 'node:timers/promises';
import { busyboxImage, busyboxRootfs, CONTAINER_PATH } from './busybox.js';
import type { Containerd } from './containerd.js';
import type { CommandResult } from './exec.js';

/** The runtimes under comparison. */
export const RUNTIMES = {
  flint: 'io.containerd.flint.v2',
  runc: 'io.containerd.runc.v2',
} as const;

/** A key of RUNTIMES. */
export type RuntimeName = keyof typeof RUNTIMES;

/** Options for runRm. */
export interface RunOptions {
  /** Container id; default c.newId(). */
  readonly id?: string;
  /** Run this image ref instead of a rootfs dir; `true` means the busybox image (built and imported on demand). */
  readonly image?: string | true;
  /** Rootfs dir for `--rootfs`; default the shared busybox rootfs. Ignored when `image` is set. */
  readonly rootfs?: string;
  /** Extra `ctr run` flags placed before the image/rootfs argument (e.g. ['--tty'], ['--env', 'A=1']). */
  readonly flags?: readonly string[];
  readonly input?: string | Buffer;
  /** Default 30 s. */
  readonly timeoutMs?: number;
  /** containerd namespace; default the harness namespace. */
  readonly namespace?: string;
}

/** Result of one `ctr run --rm`. */
export interface RunResult extends CommandResult {
  readonly id: string;
  readonly runtime: string;
}

/** Maps 'flint' / 'runc' to the runtime name; anything else (a full name or a path) passes through. */
export function runtimeName(runtime: RuntimeName | string): string {
  return (RUNTIMES as Record<string, string>)[runtime] ?? runtime;
}

/** A fresh container id registered with `c` (so stop() and leftovers() can find its shim socket). */
export function uniqueId(c: Containerd, prefix = 't'): string {
  return c.newId(prefix);
}

/**
 * `ctr run --rm --runtime R --fifo-dir <c.fifoDir> [flags] --env PATH=... --rootfs <rootfs> <id> cmd...`
 * (or `[flags] <ref> <id> cmd...` with `image`; the image supplies PATH).
 * The container's stdin gets `input` and then EOF. Resolves with ctr's exit
 * code, which is the container's exit status. On timeout the container is
 * killed and removed so later scenarios start clean.
 */
export async function runRm(
  c: Containerd,
  runtime: RuntimeName | string,
  cmd: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const id = opts.id ?? c.newId();
  const rt = runtimeName(runtime);
  const target =
    opts.image !== undefined
      ? [opts.image === true ? await busyboxImage(c) : opts.image]
      : // Without an image ctr sets no environment, and runc cannot resolve a bare command name.
        ['--env', CONTAINER_PATH, '--rootfs', opts.rootfs ?? busyboxRootfs(c)];
  const args = ['run', '--rm', '--runtime', rt, '--fifo-dir', c.fifoDir, ...(opts.flags ?? []), ...target, id, ...cmd];
  const proc = c.spawnCtr(args, { input: opts.input, holdStdin: true, timeoutMs: opts.timeoutMs, namespace: opts.namespace });
  let exited = false;
  void proc.result.finally(() => (exited = true)).catch(() => undefined);
  // ctr 1.6 only forwards stdin EOF (CloseIO) once NewTask has returned; an EOF read earlier
  // is dropped and the container never sees it. So hold stdin open until the task has started.
  while (!exited && !STARTED.has((await taskStatus(c, id, opts.namespace)) ?? '')) await sleep(20);
  proc.endStdin();
  const r = await proc.result;
  if (r.timedOut) await removeContainer(c, id, opts.namespace);
  return { ...r, id, runtime: rt };
}

const STARTED = new Set(['RUNNING', 'STOPPED', 'PAUSED']);

/** A task's status from `ctr tasks ls` (CREATED, RUNNING, STOPPED, ...), or undefined when there is none. */
export async function taskStatus(c: Containerd, id: string, namespace?: string): Promise<string | undefined> {
  const r = await c.ctr(['tasks', 'ls'], { timeoutMs: 5_000, namespace });
  for (const line of r.stdout.toString('utf8').split('\n').slice(1)) {
    const [task, , status] = line.trim().split(/\s+/);
    if (task === id) return status;
  }
  return undefined;
}

/** Kills (SIGKILL, all processes) and deletes a task, then removes its container; errors are ignored. */
export async function removeContainer(c: Containerd, id: string, namespace?: string): Promise<void> {
  await c.ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id], { timeoutMs: 5_000, namespace });
  await c.ctr(['tasks', 'delete', '-f', id], { timeoutMs: 5_000, namespace });
  await c.ctr(['containers', 'rm', id], { timeoutMs: 5_000, namespace });
}

/** Runs the same scenario under both runtimes, one after the other (reference first). */
export async function runBoth(
  c: Containerd,
  cmd: readonly string[],
  opts: Omit<RunOptions, 'id'> = {},
): Promise<{ runc: RunResult; flint: RunResult }> {
  const runc = await runRm(c, 'runc', cmd, opts);
  const flint = await runRm(c, 'flint', cmd, opts);
  return { runc, flint };
}

/** The parts of a run that should match across runtimes: exit code, stdout and whether it timed out. */
export function outcome(r: CommandResult): { code: number; stdout: string; timedOut: boolean } {
  return { code: r.code, stdout: r.stdout.toString('utf8'), timedOut: r.timedOut };
}
