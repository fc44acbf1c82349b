import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/**
 * The flint repository root. Found by walking up from this compiled file
 * (dist/test/harness/repo.js) to the package.json named "flint", so it also
 * works when the harness is compiled to a different outDir.
 */
export function repoRoot(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && isFlintPackage(pkg)) {
      cached = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // Fall back to the layout the project's tsconfig produces.
  cached = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  return cached;
}

function isFlintPackage(path: string): boolean {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { name?: string }).name === 'flint';
  } catch {
    return false;
  }
}

/** Directory holding containerd-shim-flint-v2; goes first on containerd's PATH. */
export function repoBinDir(): string {
  return join(repoRoot(), 'bin');
}

/**
 * Starts a flint process (containerd, and so the shims; the agent; a shim
 * server) with our environment plus `extraEnv`, but without the test
 * runner's instrumentation. tap's process-info hook wraps child_process and
 * adds an --import of itself to NODE_OPTIONS of every child, whatever env
 * it is given; every node process down the tree then loads it, which costs
 * each about a third of a second of CPU and writes a file per process, so
 * the shims (two node processes per container) would run far heavier than
 * they do in production. env(1) sets the environment anew just before it
 * execs the command, so the pid is the command's own.
 */
export function spawnFlint(command: string, args: readonly string[], options: SpawnOptions & { extraEnv?: Readonly<Record<string, string>> } = {}): ChildProcess {
  const { extraEnv, ...rest } = options;
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('_TAPJS_') || key === 'TAP' || key.startsWith('TAP_')) continue;
    if (key === 'NODE_OPTIONS' && value.includes('@tapjs/')) continue;
    env[key] = value;
  }
  Object.assign(env, extraEnv);
  return spawnWithExactEnv(command, args, env, rest);
}

/**
 * Starts `command` with `env` and nothing else, tap's hook included (see
 * spawnFlint): a child of another uid could not even read the hook's files
 * when the checkout sits in a directory closed to others.
 */
export function spawnWithExactEnv(command: string, args: readonly string[], env: Readonly<Record<string, string>>, options: SpawnOptions = {}): ChildProcess {
  const assignments = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  return spawn('/usr/bin/env', ['-i', ...assignments, command, ...args], options);
}
