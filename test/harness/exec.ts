import { spawn } from 'node:child_process';

/** Outcome of a finished child process. */
export interface CommandResult {
  /** Exit code, or -1 when the process was killed by a signal. */
  readonly code: number;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
  /** True when the harness killed the process because timeoutMs elapsed. */
  readonly timedOut: boolean;
}

/** Options for runCommand and spawnCommand. */
export interface CommandOptions {
  /** Written to stdin. */
  readonly input?: string | Buffer;
  /**
   * Keep stdin open after `input` until endStdin() (spawnCommand only).
   * By default stdin is closed right after `input`, so nothing waits on it.
   */
  readonly holdStdin?: boolean;
  /** SIGKILL the process after this long; default 30 s. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** A started child process. */
export interface RunningCommand {
  readonly pid: number | undefined;
  /** Settles when the process has exited and its output is drained; rejects only if it could not be spawned. */
  readonly result: Promise<CommandResult>;
  /** Closes stdin (idempotent). */
  endStdin(): void;
}

/** DEFAULT_TIMEOUT_MS bounds every command so a hung shim cannot hang the test run. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Starts a command, collecting stdout as bytes and stderr as text. A non-zero exit is a result, not an error. */
export function spawnCommand(cmd: string, args: readonly string[], opts: CommandOptions = {}): RunningCommand {
  const child = spawn(cmd, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let timedOut = false;
  const result = new Promise<CommandResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? -1,
        signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
  });
  // A child that exits without reading stdin makes our write fail with EPIPE; that is not an error here.
  child.stdin.on('error', () => undefined);
  if (opts.input !== undefined) child.stdin.write(opts.input);
  const endStdin = (): void => {
    if (!child.stdin.writableEnded) child.stdin.end();
  };
  if (!opts.holdStdin) endStdin();
  return { pid: child.pid, result, endStdin };
}

/** Runs a command to completion; stdin gets `input` and then EOF. */
export function runCommand(cmd: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return spawnCommand(cmd, args, { ...opts, holdStdin: false }).result;
}

/** Like runCommand but rejects with the command's stderr when it exits non-zero. */
export async function mustRun(cmd: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? 'timed out' : `exited ${r.code}${r.signal ? ` (${r.signal})` : ''}`;
    throw new Error(`${cmd} ${args.join(' ')} ${why}: ${r.stderr.trim()}`);
  }
  return r;
}
