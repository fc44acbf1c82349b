import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** One process as seen in /proc. */
export interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  /** argv from /proc/<pid>/cmdline; empty for kernel threads and zombies. */
  readonly argv: readonly string[];
}

/** Snapshot of every process visible in /proc. Processes that vanish mid-scan are skipped. */
export function listProcesses(): ProcInfo[] {
  const procs: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // comm may contain spaces and parens, so fields are counted from the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(fields[1]);
      const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const argv = raw.length === 0 ? [] : raw.replace(/\0$/, '').split('\0');
      procs.push({ pid, ppid, argv });
    } catch {
      // exited while scanning
    }
  }
  return procs;
}

/** PIDs of `pid` and its ancestors up to init; these must never be killed by cleanup. */
export function ancestry(pid: number, procs: readonly ProcInfo[] = listProcesses()): Set<number> {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const out = new Set<number>();
  let cur: number | undefined = pid;
  while (cur !== undefined && cur > 0 && !out.has(cur)) {
    out.add(cur);
    cur = byPid.get(cur)?.ppid;
  }
  return out;
}

/** `roots` plus every process descending from them. */
export function withDescendants(roots: Iterable<number>, procs: readonly ProcInfo[]): Set<number> {
  const children = new Map<number, number[]>();
  for (const p of procs) {
    const list = children.get(p.ppid) ?? [];
    list.push(p.pid);
    children.set(p.ppid, list);
  }
  const out = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (out.has(pid)) continue;
    out.add(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/**
 * Processes that belong to a harness directory: any whose argv mentions `dir`
 * (containerd, shims started with `-address <dir>/c.sock`, ctr clients) and all
 * their descendants (container processes, VMs). `exclude` and the caller's own
 * ancestry are never returned.
 */
export function processesOwnedBy(dir: string, exclude: Iterable<number> = []): ProcInfo[] {
  const procs = listProcesses();
  const protectedPids = ancestry(process.pid, procs);
  for (const pid of exclude) protectedPids.add(pid);
  const roots = procs.filter((p) => !protectedPids.has(p.pid) && p.argv.some((a) => mentions(a, dir))).map((p) => p.pid);
  const owned = withDescendants(roots, procs);
  return procs.filter((p) => owned.has(p.pid) && !protectedPids.has(p.pid));
}

function mentions(arg: string, dir: string): boolean {
  return arg.includes(`${dir}/`) || arg.endsWith(dir);
}

/** True while /proc/<pid> exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Sends a signal, ignoring processes that are already gone. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // ESRCH: already gone
  }
}

/** One mount from /proc/self/mountinfo. */
export interface MountEntry {
  readonly mountPoint: string;
  readonly fsType: string;
  readonly source: string;
}

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mounts at or below `dir`, deepest first (the order they must be unmounted in). */
export function mountsUnder(dir: string): MountEntry[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const entries: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line === '') continue;
    const [pre, post] = line.split(' - ');
    const mountPoint = unescapeMountField(pre!.split(' ')[4]!);
    if (mountPoint !== dir && !mountPoint.startsWith(prefix)) continue;
    const [fsType = '', source = ''] = (post ?? '').split(' ');
    entries.push({ mountPoint, fsType, source: unescapeMountField(source) });
  }
  const depth = (p: string): number => p.split('/').length;
  // Stable sort keeps later (stacked) mounts after earlier ones at equal depth; reverse puts them first.
  return entries.reverse().sort((a, b) => depth(b.mountPoint) - depth(a.mountPoint));
}

/** Lazily unmounts everything at or below `dir`; returns the mount points it detached. */
export function unmountUnder(dir: string): string[] {
  const done: string[] = [];
  // Bounded: each pass detaches at least one mount or stops.
  for (let pass = 0; pass < 8; pass++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) break;
    let progressed = false;
    for (const m of mounts) {
      const r = spawnSync('umount', ['-l', m.mountPoint], { stdio: 'ignore', timeout: 10_000 });
      if (r.status === 0) {
        done.push(m.mountPoint);
        progressed = true;
      }
    }
    if (!progressed) break;
  }
  return done;
}
