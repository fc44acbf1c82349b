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
 * Pids whose parent is this process, including zombies. Reads
 * /proc/self/task/<tid>/children where the kernel has it (CONFIG_PROC_CHILDREN),
 * otherwise scans /proc/<pid>/stat for our pid as the parent.
 */
export function childPids(): number[] {
  const fromTasks = childPidsFromTasks();
  return fromTasks ?? childPidsFromStat();
}

function childPidsFromTasks(): number[] | null {
  const pids: number[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    let text: string;
    try {
      text = readFileSync(`/proc/self/task/${tid}/children`, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT') && tid === String(process.pid)) return null;
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) continue; // thread exited meanwhile
      throw err;
    }
    for (const word of text.split(' ')) {
      if (word.trim() !== '') pids.push(Number(word));
    }
  }
  return pids;
}

function childPidsFromStat(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) continue; // exited meanwhile
      throw err;
    }
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === process.pid) pids.push(Number(entry));
  }
  return pids;
}
