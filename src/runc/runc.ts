import { spawn, type SpawnOptions, type StdioOptions } from 'node:child_process';
import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CanceledError, DeadlineExceededError } from '../errdefs/errors.js';
import { RuncError, classifyRuncError, lastErrorInLog } from './runc-error.js';
import type {
  CallOptions,
  CheckpointOptions,
  CreateOptions,
  DeleteOptions,
  ExecOptions,
  IoOptions,
  KillOptions,
  RestoreOptions,
  RuncChild,
  RuncState,
  RuncStats,
  Stdio,
} from './types.js';

export * from './types.js';
export { RuncError } from './runc-error.js';

/** How to run runc: the global flags every call starts with. */
export interface RuncConfig {
  /** A name looked up on PATH or an absolute path. Default 'runc'. */
  readonly binary?: string;
  /** runc's state directory (--root). */
  readonly root: string;
  /** runc's log file (--log); failed calls read their error from it. */
  readonly log: string;
  readonly logFormat?: 'json';
  readonly systemdCgroup?: boolean;
  /** Path of the criu binary (--criu). */
  readonly criu?: string;
  /** Base environment for runc; default process.env. NOTIFY_SOCKET is always removed. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Starts the runc process; default child_process.spawn. A subreaper passes
   * its own so it knows which children libuv reaps (go-runc's Monitor).
   */
  readonly spawn?: SpawnFunction;
}

/** The shape of child_process.spawn that Runc uses. */
export type SpawnFunction = (command: string, args: readonly string[], options: SpawnOptions) => RuncChild;

interface RunSpec extends CallOptions {
  /** Caller-supplied container stdio; when set runc's output is not captured. */
  readonly stdio?: Stdio;
  readonly onStart?: IoOptions['onStart'];
  readonly input?: string;
}

const ALL_IGNORED: Stdio = ['ignore', 'ignore', 'ignore'];

/**
 * A wrapper around the runc CLI. Each method spawns one runc process and
 * resolves when it exits successfully; a failure rejects with a RuncError
 * carrying runc's own message, or NotFound/AlreadyExists for those cases.
 */
export class Runc {
  readonly binary: string;
  readonly root: string;
  readonly log: string;
  readonly logFormat: 'json';
  readonly systemdCgroup: boolean;
  readonly criu: string | undefined;
  private readonly env: NodeJS.ProcessEnv;
  private readonly spawn: SpawnFunction;

  constructor(config: RuncConfig) {
    this.binary = config.binary ?? 'runc';
    this.root = config.root;
    this.log = config.log;
    this.logFormat = config.logFormat ?? 'json';
    this.systemdCgroup = config.systemdCgroup ?? false;
    this.criu = config.criu;
    this.spawn = config.spawn ?? spawn;
    const env = { ...(config.env ?? process.env) };
    // runc would otherwise report readiness to systemd on our behalf.
    delete env.NOTIFY_SOCKET;
    this.env = env;
  }

  /** The flags that precede every runc command. */
  globalArgs(): string[] {
    const args = ['--root', this.root, '--log', this.log, '--log-format', this.logFormat];
    if (this.systemdCgroup) args.push('--systemd-cgroup');
    if (this.criu !== undefined) args.push('--criu', this.criu);
    return args;
  }

  /** `runc create`: sets up the container; its init waits for `start`. */
  async create(id: string, opts: CreateOptions): Promise<void> {
    const args = ['--bundle', opts.bundle];
    if (opts.pidFile !== undefined) args.push('--pid-file', opts.pidFile);
    if (opts.consoleSocket !== undefined) args.push('--console-socket', opts.consoleSocket);
    if (opts.noPivot) args.push('--no-pivot');
    if (opts.noNewKeyring) args.push('--no-new-keyring');
    args.push(id);
    await this.run('create', args, ioOf(opts, opts.consoleSocket));
  }

  /** `runc start`: lets a created container's init exec the user process. */
  async start(id: string, opts: CallOptions = {}): Promise<void> {
    await this.run('start', [id], opts);
  }

  /**
   * `runc exec` of a full OCI process spec. The spec goes to a file in a
   * private temp dir (it may hold secrets in env) removed afterwards.
   */
  async exec(id: string, processSpec: object, opts: ExecOptions = {}): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'runc-process-'));
    try {
      const file = join(dir, 'process.json');
      await writeFile(file, JSON.stringify(processSpec), { mode: 0o600 });
      const args = ['--process', file];
      if (opts.consoleSocket !== undefined) args.push('--console-socket', opts.consoleSocket);
      if (opts.detach ?? true) args.push('--detach');
      if (opts.pidFile !== undefined) args.push('--pid-file', opts.pidFile);
      args.push(id);
      await this.run('exec', args, ioOf(opts, opts.consoleSocket));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** `runc kill`; a container or process that is gone rejects with NotFoundError. */
  async kill(id: string, signal: number | string, opts: KillOptions = {}): Promise<void> {
    const args = opts.all ? ['--all', id, String(signal)] : [id, String(signal)];
    await this.run('kill', args, opts);
  }

  async delete(id: string, opts: DeleteOptions = {}): Promise<void> {
    await this.run('delete', opts.force ? ['--force', id] : [id], opts);
  }

  /** Host pids of the container's processes. */
  async ps(id: string, opts: CallOptions = {}): Promise<number[]> {
    const out = await this.run('ps', ['--format', 'json', id], opts);
    const pids = parseJson('ps', out) as unknown;
    if (pids === null) return [];
    if (!Array.isArray(pids) || !pids.every((p) => typeof p === 'number')) {
      throw new RuncError('ps', `unexpected output: ${out.trim()}`, 0, null);
    }
    return pids as number[];
  }

  async pause(id: string, opts: CallOptions = {}): Promise<void> {
    await this.run('pause', [id], opts);
  }

  async resume(id: string, opts: CallOptions = {}): Promise<void> {
    await this.run('resume', [id], opts);
  }

  /** `runc update --resources -` with an OCI LinuxResources object on stdin. */
  async update(id: string, resources: object, opts: CallOptions = {}): Promise<void> {
    await this.run('update', ['--resources', '-', id], { ...opts, input: JSON.stringify(resources) });
  }

  async state(id: string, opts: CallOptions = {}): Promise<RuncState> {
    return parseJson('state', await this.run('state', [id], opts)) as RuncState;
  }

  /** One sample of the container's cgroup statistics (`runc events --stats`). */
  async stats(id: string, opts: CallOptions = {}): Promise<RuncStats> {
    const out = await this.run('events', ['--stats', id], opts);
    const line = out.split('\n').find((l) => l.trim() !== '') ?? '';
    const event = parseJson('events', line) as { type?: string; data?: RuncStats };
    if (event.type !== 'stats' || typeof event.data !== 'object' || event.data === null) {
      throw new RuncError('events', `unexpected output: ${line.trim()}`, 0, null);
    }
    return event.data;
  }

  async checkpoint(id: string, opts: CheckpointOptions = {}): Promise<void> {
    const args = checkpointArgs(opts);
    if (opts.leaveRunning) args.push('--leave-running');
    if (opts.preDump) args.push('--pre-dump');
    args.push(id);
    await this.run('checkpoint', args, opts);
  }

  /** `runc restore` of a checkpoint into a new container from a bundle. */
  async restore(id: string, opts: RestoreOptions): Promise<void> {
    const args = checkpointArgs(opts);
    if (opts.detach ?? true) args.push('--detach');
    if (opts.pidFile !== undefined) args.push('--pid-file', opts.pidFile);
    if (opts.consoleSocket !== undefined) args.push('--console-socket', opts.consoleSocket);
    if (opts.noPivot) args.push('--no-pivot');
    if (opts.noSubreaper) args.push('--no-subreaper');
    args.push('--bundle', opts.bundle, id);
    await this.run('restore', args, ioOf(opts, opts.consoleSocket));
  }

  /**
   * Spawns `runc <global flags> <command> <args>` and resolves with its
   * stdout. With caller stdio the container may keep those fds open long
   * after runc exits, so completion is runc's exit, not stream close.
   */
  private async run(command: string, args: string[], spec: RunSpec): Promise<string> {
    const signal = spec.signal;
    if (signal?.aborted) throw abortError(command, signal);
    const logOffset = await fileSize(this.log);
    const own = spec.stdio === undefined;
    const stdio: StdioOptions = own ? [spec.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] : [...spec.stdio!];

    // No parent-death signal, for any command. It would not endanger the
    // container: the kernel clears PR_SET_PDEATHSIG on fork, so `runc init`
    // (the container's init, or an exec's process) never inherits runc's;
    // runc sets the one of `runc init` itself (the spec's parentDeathSignal
    // once it runs the user process). But Node's spawn has no pre-exec hook
    // to set it, and a wrapper (setpriv) would add a program to every call
    // and to every VM guest, for commands that exit by themselves in
    // milliseconds. What a shim that died mid-call leaves is the `delete`
    // action's job (runc delete --force, unmount), as with the runc shim.
    const child = this.spawn(this.binary, [...this.globalArgs(), command, ...args], { stdio, env: this.env });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    if (own) {
      child.stdout?.on('data', (b: Buffer) => stdout.push(b));
      child.stderr?.on('data', (b: Buffer) => stderr.push(b));
      if (spec.input !== undefined) {
        // runc may exit before reading stdin; EPIPE then is not our error.
        child.stdin?.on('error', () => {});
        child.stdin?.end(spec.input);
      }
    }

    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      child.kill('SIGKILL');
      if (own) {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    let result: { code: number | null; sig: NodeJS.Signals | null };
    try {
      result = await new Promise((resolve, reject) => {
        child.once('error', (err) => reject(new RuncError(command, `exec ${this.binary}: ${err.message}`, null, null)));
        // Once aborted, a grandchild still holding our pipes must not keep us waiting.
        child.once('exit', (code: number | null, sig: NodeJS.Signals | null) => {
          if (!own || aborted) resolve({ code, sig });
        });
        child.once('close', (code: number | null, sig: NodeJS.Signals | null) => resolve({ code, sig }));
        if (child.pid !== undefined) spec.onStart?.(child);
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    if (aborted) throw abortError(command, signal!);
    if (result.code === 0) return Buffer.concat(stdout).toString('utf8');

    const fromLog = lastErrorInLog(await readFrom(this.log, logOffset));
    const fromStderr = Buffer.concat(stderr).toString('utf8').trim();
    const fallback = result.sig !== null ? `killed by signal ${result.sig}` : `exit status ${result.code}`;
    throw classifyRuncError(new RuncError(command, fromLog || fromStderr || fallback, result.code, result.sig));
  }
}

function ioOf(opts: IoOptions, consoleSocket: string | undefined): RunSpec {
  // With a console socket the container's stdio is the pty, not runc's.
  const stdio = consoleSocket !== undefined ? ALL_IGNORED : (opts.stdio ?? ALL_IGNORED);
  return { stdio, signal: opts.signal, onStart: opts.onStart };
}

function checkpointArgs(opts: CheckpointOptions | RestoreOptions): string[] {
  const args: string[] = [];
  if (opts.imagePath !== undefined) args.push('--image-path', opts.imagePath);
  if (opts.workPath !== undefined) args.push('--work-path', opts.workPath);
  if (opts.parentPath !== undefined) args.push('--parent-path', opts.parentPath);
  if (opts.tcpEstablished) args.push('--tcp-established');
  if (opts.externalUnixSockets) args.push('--ext-unix-sk');
  if (opts.terminal) args.push('--shell-job');
  if (opts.fileLocks) args.push('--file-locks');
  if (opts.cgroupsMode !== undefined) args.push('--manage-cgroups-mode', opts.cgroupsMode);
  for (const ns of opts.emptyNamespaces ?? []) args.push('--empty-ns', ns);
  return args;
}

function abortError(command: string, signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
  const message = `runc ${command} ${timedOut ? 'timed out' : 'canceled'}`;
  return timedOut ? new DeadlineExceededError(message, { cause: reason }) : new CanceledError(message, { cause: reason });
}

function parseJson(command: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new RuncError(command, `invalid JSON output: ${text.trim().slice(0, 200)}`, 0, null);
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * What was appended to the log since `offset`. A log that shrank in between
 * was truncated or replaced, so all of it is new.
 */
async function readFrom(path: string, offset: number): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = (await fh.stat()).size;
    const start = size < offset ? 0 : offset;
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}
