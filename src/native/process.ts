import { readFileSync, readdirSync } from 'node:fs';

import { native } from './addon.js';
import { isErrno } from './errno.js';

/** How a reaped process ended. */
export interface WaitResult {
  readonly pid: number;
  /** Exit code, or 128 + signal number for a signal death (shell convention). */
  readonly status: number;
  /** The terminating signal number, or null for a normal exit. */
  readonly signal: number | null;
}

/**
 * Makes this process a child subreaper: orphaned descendants are reparented
 * to us instead of init, so we can reap containers' processes.
 */
export function setChildSubreaper(): void {
  native.setChildSubreaper();
}

/**
 * waitpid(pid, WNOHANG): null while the child still runs, its WaitResult once
 * reaped. Throws with code 'ECHILD' when pid is not our child (or already reaped).
 */
export function waitpidNoHang(pid: number): WaitResult | null {
  return native.waitpidNoHang(pid);
}

/**
 * Starts `file` (looked up on PATH) with `argv` (argv[0] included) and the
 * environment `env`, its stdin, stdout and stderr being the given fds (-1:
 * /dev/null), and returns its pid. It is spawned vfork-style (posix_spawn),
 * which costs the same whatever the size of this process, where Node's
 * spawn forks it. Nothing reaps it but the caller (see sys/reaper.ts). A
 * program that cannot be executed throws (ENOENT, EACCES...).
 */
export function spawnProcess(file: string, argv: readonly string[], env: NodeJS.ProcessEnv, stdio: readonly [number, number, number]): number {
  const envp = Object.entries(env)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([key, value]) => `${key}=${value}`);
  return native.spawn(file, [...argv], envp, [...stdio]);
}

/**
 * Pids whose parent is `parent` (default this process), including zombies.
 * Reads /proc/<parent>/task/<tid>/children where the kernel has it
 * (CONFIG_PROC_CHILDREN): a few small reads, where the fallback reads the
 * stat of every process on the machine.
 */
export function childPids(parent: number = process.pid): number[] {
  const fromTasks = childPidsFromTasks(parent);
  return fromTasks ?? childPidsFromStat(parent);
}

/** The state letter of /proc/<pid>/stat ('R', 'S', 'Z'...) and the parent pid, or undefined once gone. */
export function procStat(pid: number): { state: string; ppid: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) return undefined; // exited meanwhile
    throw err;
  }
  // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, ppid: Number(fields[1]) };
}

function childPidsFromTasks(parent: number): number[] | null {
  const pids: number[] = [];
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${parent}/task`);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  for (const tid of threads) {
    let text: string;
    try {
      text = readFileSync(`/proc/${parent}/task/${tid}/children`, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT') && tid === String(parent)) return null;
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) continue; // thread exited meanwhile
      throw err;
    }
    for (const word of text.split(' ')) {
      if (word.trim() !== '') pids.push(Number(word));
    }
  }
  return pids;
}

function childPidsFromStat(parent: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => procStat(pid)?.ppid === parent);
}
