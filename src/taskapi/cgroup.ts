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

/**
 * The cgroups of a process. On a unified (v2) host, its one directory; on
 * a v1 host, the directory of each controller it is in.
 */
export type ProcessCgroups = { readonly unified: true; readonly dir: string } | { readonly unified: false; readonly dirs: Readonly<Record<string, string>> };

/** True on a cgroup v2 (unified) host. */
export function isUnified(fs: CgroupFs = HOST_CGROUP_FS): boolean {
  return existsSync(join(fs.root, 'cgroup.controllers'));
}

/**
 * The cgroups of `pid`, from /proc/<pid>/cgroup: on a unified host the v2
 * line ("0::/path"), else one directory per v1 controller (a hierarchy
 * mounted for several, "cpu,cpuacct", serves each of them). Undefined when
 * the process is gone.
 */
export function cgroupsOf(pid: number, fs: CgroupFs = HOST_CGROUP_FS): ProcessCgroups | undefined {
  const unified = isUnified(fs);
  let text: string;
  try {
    text = readFileSync(join(fs.proc, String(pid), 'cgroup'), 'utf8');
  } catch {
    return undefined;
  }
  const dirs: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':', 3) as [string, string | undefined, string | undefined];
    if (controllers === undefined || path === undefined) continue;
    if (unified && controllers === '') return { unified, dir: join(fs.root, path) };
    if (unified || controllers === '' || controllers.startsWith('name=')) continue;
    for (const controller of controllers.split(',')) dirs[controller] = join(fs.root, controllers, path);
  }
  return unified ? undefined : { unified, dirs };
}

/**
 * The memory cgroup directory of `pid`: the v1 memory hierarchy's, or on a
 * unified host its v2 cgroup. Undefined when the process is gone or has no
 * memory cgroup.
 */
export function memoryCgroupOf(pid: number, fs: CgroupFs = HOST_CGROUP_FS): MemoryCgroup | undefined {
  const cgroups = cgroupsOf(pid, fs);
  if (!cgroups) return undefined;
  if (cgroups.unified) return { dir: cgroups.dir, unified: true };
  const dir = cgroups.dirs.memory;
  return dir === undefined ? undefined : { dir, unified: false };
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
