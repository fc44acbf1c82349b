import { createHash } from 'node:crypto';
import { existsSync, readdirSync, realpathSync, rmdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { ProcInfo } from './procfs.js';

/** Where both shims listen, by the shim contract (fixed path, not under containerd's state dir). */
export const SHIM_SOCKET_DIR = '/run/containerd/s';
/** The runc shim's default `runc --root`; it leaves a per-namespace directory behind. */
export const RUNC_ROOT = '/run/containerd/runc';
const CGROUP_ROOT = '/sys/fs/cgroup';
/** containerd's namespace grammar; also keeps '', '.' and '..' away from the recursive removals below. */
const NAMESPACE_RE = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

function assertNamespace(namespace: string): void {
  if (!NAMESPACE_RE.test(namespace)) throw new Error(`refusing to clean up invalid namespace ${JSON.stringify(namespace)}`);
}

/** The socket path a shim uses for (address, namespace, group id): sha256 of filepath.Join(address, ns, id). */
export function shimSocketPath(address: string, namespace: string, id: string): string {
  const hash = createHash('sha256').update(posix.join(address, namespace, id)).digest('hex');
  return join(SHIM_SOCKET_DIR, hash);
}

/** Reads a Go-style flag (`-x v` or `-x=v`) from a shim's argv. */
export function shimFlag(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === `-${name}` || a === `--${name}`) return argv[i + 1];
    for (const p of [`-${name}=`, `--${name}=`]) if (a.startsWith(p)) return a.slice(p.length);
  }
  return undefined;
}

/** (namespace, id) pairs named on the command lines of shim processes. */
export function shimIdentities(procs: readonly ProcInfo[]): Array<{ namespace: string; id: string }> {
  const out: Array<{ namespace: string; id: string }> = [];
  for (const p of procs) {
    if (!p.argv.some((a) => a.includes('containerd-shim'))) continue;
    const namespace = shimFlag(p.argv, 'namespace');
    const id = shimFlag(p.argv, 'id');
    if (namespace !== undefined && id !== undefined) out.push({ namespace, id });
  }
  return out;
}

/** Removes the given socket files if present (their shims must already be dead); returns what it removed. */
export function removeSockets(paths: Iterable<string>): string[] {
  const removed: string[] = [];
  for (const p of new Set(paths)) {
    try {
      if (!statSync(p).isSocket()) continue;
      unlinkSync(p);
      removed.push(p);
    } catch {
      // not there
    }
  }
  return removed;
}

/** rmdir every directory at or below `dir`, deepest first; cgroup dirs can only be removed this way. */
function rmdirTree(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch {
    return;
  }
  for (const e of entries) rmdirTree(e);
  try {
    rmdirSync(dir);
  } catch {
    // still has processes, or not ours to remove
  }
}

/**
 * Removes the per-namespace cgroups that runc creates for `/<ns>/<id>` cgroup
 * paths in every hierarchy. Only call this for namespaces unique to the harness.
 */
export function removeNamespaceCgroups(namespace: string): void {
  assertNamespace(namespace);
  let hierarchies: string[];
  try {
    hierarchies = readdirSync(CGROUP_ROOT).map((h) => join(CGROUP_ROOT, h));
  } catch {
    return;
  }
  const seen = new Set<string>();
  for (const h of hierarchies) {
    let real: string;
    try {
      real = realpathSync(h);
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    const target = join(real, namespace);
    if (existsSync(target)) rmdirTree(target);
  }
}

/** Removes the runc shim's state directory for a harness-unique namespace. */
export function removeRuncRoot(namespace: string): void {
  assertNamespace(namespace);
  rmSync(join(RUNC_ROOT, namespace), { recursive: true, force: true });
}
