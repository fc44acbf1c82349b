import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { RUNC_ROOT, shimSocketPath } from './cleanup.js';
import type { Containerd } from './containerd.js';
import { spareServerPids } from './leftovers.js';
import { isRunning, listProcesses, mountsUnder, type ProcInfo } from './procfs.js';
import { listenerPids, shimSocketOf } from './shim-server.js';

const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * Host state a container can leave outside the harness dir, for the
 * leak checks: runc's state dir, its cgroups, and shim-server facts read
 * from /proc.
 */

/** runc's state dir for a container under the runc shim's default root (flint's too). */
export function runcStateDir(namespace: string, id: string): string {
  return join(RUNC_ROOT, namespace, id);
}

/** Container ids runc still has state for in `namespace`. */
export function runcStateIds(namespace: string): string[] {
  try {
    return readdirSync(join(RUNC_ROOT, namespace));
  } catch {
    return [];
  }
}

/** The distinct cgroup hierarchies (v1 controllers, joined ones once, plus the unified one). */
export function cgroupHierarchies(): string[] {
  const seen = new Set<string>();
  for (const name of safeReaddir(CGROUP_ROOT)) {
    try {
      seen.add(realpathSync(join(CGROUP_ROOT, name)));
    } catch {
      // vanished
    }
  }
  return [...seen];
}

/**
 * The cgroup dirs that exist for `/<namespace>/<id>` (how containerd's
 * default spec names a container's cgroupsPath, and runc's cgroupfs driver
 * places it under every hierarchy).
 */
export function containerCgroups(namespace: string, id: string): string[] {
  return cgroupHierarchies()
    .map((h) => join(h, namespace, id))
    .filter((p) => existsSync(p));
}

/** Every `<hierarchy>/<namespace>/<child>` cgroup dir, i.e. container cgroups left in the namespace. */
export function namespaceCgroups(namespace: string): string[] {
  const out: string[] = [];
  for (const h of cgroupHierarchies()) {
    const dir = join(h, namespace);
    for (const e of safeReaddirDirs(dir)) out.push(join(dir, e));
  }
  return out;
}

/**
 * Flint's long-lived shim servers of harness `c`, but for one waiting as the
 * spare (it serves nothing; see leftovers.ts). A server runs with a bundle
 * of its group as cwd; depending on how `start` launched it, its argv names
 * the shim (`containerd-shim-flint-v2` or the bundled `shim.js`) with or
 * without `-socket`/`-id`/`-address` flags, so it is recognised by argv and
 * cwd. `id` narrows to the server of that container: the one listening on
 * the socket its bundle's address file names, or, once that is gone, the
 * one started for it (its `-id`, else its bundle's name).
 */
export function flintServers(c: Containerd, id?: string): ProcInfo[] {
  const bundles = join(c.state, 'io.containerd.runtime.v2.task');
  const spares = new Set(spareServerPids(c));
  const serving = id === undefined ? undefined : listenersOf(c, id);
  return listProcesses().filter((p) => {
    const argv = p.argv;
    if (!argv.some((a) => a.includes('containerd-shim-flint-v2') || /dist\/bundle\/shim\.js$/.test(a))) return false;
    if (argv.includes('start') || argv.includes('delete')) return false;
    if (spares.has(p.pid)) return false;
    const cwd = safeReadlink(`/proc/${p.pid}/cwd`);
    const ours = argv.includes(c.address) || (cwd !== undefined && cwd.startsWith(`${bundles}/`));
    if (!ours) return false;
    if (id === undefined) return true;
    if (serving !== undefined) return serving.includes(p.pid);
    return (flagValue(argv, 'id') ?? (cwd !== undefined ? basename(cwd) : undefined)) === id;
  });
}

/** The pids listening on container `id`'s shim socket, or undefined when its address file is gone. */
function listenersOf(c: Containerd, id: string): number[] | undefined {
  try {
    return listenerPids(shimSocketOf(c, id));
  } catch {
    return undefined;
  }
}

/** runc shim (containerd-shim-runc-v2) processes of harness `c`, optionally for one container id. */
export function runcShims(c: Containerd, id?: string): ProcInfo[] {
  return listProcesses().filter((p) => {
    const argv = p.argv;
    if (!argv.some((a) => a.endsWith('containerd-shim-runc-v2'))) return false;
    if (!argv.includes(c.address)) return false;
    return id === undefined || flagValue(argv, 'id') === id;
  });
}

function flagValue(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(`-${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Number of open fds of `pid`. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What `pid`'s fds point at (for diagnostics when a count grows). */
export function fdTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of safeReaddir(`/proc/${pid}/fd`)) {
    try {
      out.push(`${fd} -> ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Resident set size of `pid` in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Direct children of `parent` in state Z. */
export function zombieChildrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] === 'Z' && Number(rest[1]) === parent) out.push(Number(name));
    } catch {
      // exited
    }
  }
  return out;
}

/** Direct children of `parent` (any state). */
export function childrenOf(parent: number): ProcInfo[] {
  return listProcesses().filter((p) => p.ppid === parent);
}

/** readlink, or undefined when the link (a /proc entry of an exited process) is gone. */
export function safeReadlink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function safeReaddirDirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

/** Per-container host state that must be gone once a container is removed; every list empty when clean. */
export interface ContainerTraces {
  /** runc's state dir for the container. */
  readonly runcState: readonly string[];
  /** Its cgroup dirs in any hierarchy. */
  readonly cgroups: readonly string[];
  /** Its bundle (state) and work (root) dirs under containerd's runtime v2 dirs. */
  readonly bundles: readonly string[];
  /** Mounts at or below its bundle. */
  readonly mounts: readonly string[];
  /** Its shim socket in /run/containerd/s (sandbox grouping: the group is the id). */
  readonly sockets: readonly string[];
  /** The given pids (container processes seen earlier) still alive. */
  readonly processes: readonly number[];
}

/** What is left of container `id` of harness `c`; `pids` are processes that must be gone too. */
export function containerTraces(c: Containerd, id: string, pids: readonly number[] = []): ContainerTraces {
  const bundles = [c.state, c.root].map((base) => join(base, 'io.containerd.runtime.v2.task', c.namespace, id)).filter((p) => existsSync(p));
  const state = runcStateDir(c.namespace, id);
  const socket = shimSocketPath(c.address, c.namespace, id);
  const bundle = join(c.state, 'io.containerd.runtime.v2.task', c.namespace, id);
  return {
    runcState: existsSync(state) ? [state] : [],
    cgroups: containerCgroups(c.namespace, id),
    bundles,
    mounts: mountsUnder(bundle).map((m) => m.mountPoint),
    sockets: existsSync(socket) ? [socket] : [],
    processes: pids.filter(isRunning),
  };
}

/** True when every list in `t` is empty. */
export function tracesGone(t: ContainerTraces): boolean {
  return Object.values(t).every((v: readonly unknown[]) => v.length === 0);
}
