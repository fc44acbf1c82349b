import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where cgroups and process info are read from. The host's are
 * /sys/fs/cgroup and /proc; tests point both at directories of their own.
 */
export interface CgroupFs {
  readonly root: string;
  readonly proc: string;
}

export const HOST_CGROUP_FS: CgroupFs = { root: '/sys/fs/cgroup', proc: '/proc' };

/** The memory cgroup of a process: its directory and the hierarchy it is on. */
export interface MemoryCgroup {
  readonly dir: string;
  readonly unified: boolean;
}

/** True on a cgroup v2 (unified) host. */
export function isUnified(fs: CgroupFs = HOST_CGROUP_FS): boolean {
  return existsSync(join(fs.root, 'cgroup.controllers'));
}

/**
 * The memory cgroup directory of `pid`, from /proc/<pid>/cgroup: the v1
 * memory hierarchy's line, or on a unified host the v2 line ("0::/path").
 * Undefined when the process is gone or has no memory cgroup.
 */
export function memoryCgroupOf(pid: number, fs: CgroupFs = HOST_CGROUP_FS): MemoryCgroup | undefined {
  const unified = isUnified(fs);
  let text: string;
  try {
    text = readFileSync(join(fs.proc, String(pid), 'cgroup'), 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':', 3) as [string, string | undefined, string | undefined];
    if (controllers === undefined || path === undefined) continue;
    if (unified && controllers === '') return { dir: join(fs.root, path), unified };
    if (!unified && controllers.split(',').includes('memory')) return { dir: join(fs.root, 'memory', path), unified };
  }
  return undefined;
}

/**
 * A flat-keyed cgroup file ("key value" lines: memory.events,
 * memory.oom_control) as numbers; undefined when it cannot be read.
 */
export function readFlatKeyed(file: string): Record<string, number> | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/, 2);
    if (key && value !== undefined && /^\d+$/.test(value)) values[key] = Number(value);
  }
  return values;
}
