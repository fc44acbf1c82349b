import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errdefs/errors.js';
import { HOST_CGROUP_FS, isUnified, type CgroupFs } from '../taskapi/cgroup.js';

/** A process's place in one cgroup hierarchy: where the hierarchy is mounted, and its cgroup there. */
interface Placement {
  readonly mount: string;
  readonly path: string;
}

/**
 * The runc option shim_cgroup, carried out as the runc shim's `start` does
 * for the server it starts: the server's pid goes into that cgroup on every
 * hierarchy that has it (containerd's cgroups.Load(V1, StaticPath(p)).Add),
 * or into the unified cgroup on a v2 host. On a hybrid host the v2
 * hierarchy is left alone, as containerd's V1 does.
 *
 * "The shim" is the server process, and one server serves a whole group
 * (several containers, with a group annotation or a per-namespace config).
 * So the container that has a server started, or handed over from the
 * spares, places it; a container that joins a live server leaves it where
 * it is, as with the runc shim, whose `start` returns the live server's
 * address before it looks at the options. A spare that served a group with
 * a shim_cgroup goes back to where it was started before it serves a group
 * that asks for none, so it runs where a fresh server would.
 */
export class ServerCgroups {
  /** Where the process was before its first move; undefined while it has not moved. */
  private home: Placement[] | undefined;

  constructor(
    private readonly pid: number = process.pid,
    private readonly fs: CgroupFs = HOST_CGROUP_FS,
  ) {}

  /** Moves the server into `shimCgroup`, or back home when it is empty or undefined. */
  place(shimCgroup: string | undefined): void {
    if (!shimCgroup) {
      if (this.home) addProcess(this.home.map((p) => join(p.mount, p.path)), this.pid);
      this.home = undefined;
      return;
    }
    const targets = shimCgroupDirs(shimCgroup, this.fs);
    this.home ??= placementsOf(String(this.pid), this.fs);
    addProcess(targets, this.pid);
  }
}

/**
 * The directories of `shimCgroup`, one per hierarchy that has it; an
 * InvalidArgumentError naming it when none has (containerd's
 * ErrCgroupDeleted), or when the path leaves the hierarchy.
 */
export function shimCgroupDirs(shimCgroup: string, fs: CgroupFs = HOST_CGROUP_FS): string[] {
  const dirs = placementsOf('self', fs)
    .map(({ mount }) => {
      const dir = join(mount, shimCgroup);
      if (dir !== mount && !dir.startsWith(`${mount}/`)) throw new InvalidArgumentError(`shim_cgroup ${JSON.stringify(shimCgroup)} leaves the cgroup hierarchy ${mount}`);
      return dir;
    })
    .filter((dir) => existsSync(dir));
  if (dirs.length === 0) throw new InvalidArgumentError(`failed to load cgroup ${shimCgroup}: it exists in no cgroup hierarchy under ${fs.root}`);
  return dirs;
}

/** The hierarchies `pid` is in ('self' for this process), from /proc/<pid>/cgroup. */
function placementsOf(pid: string, fs: CgroupFs): Placement[] {
  const unified = isUnified(fs);
  const placements: Placement[] = [];
  for (const line of readFileSync(join(fs.proc, pid, 'cgroup'), 'utf8').split('\n')) {
    // "id:controllers:path"; the path itself may hold colons.
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (unified) {
      if (controllers === '') placements.push({ mount: fs.root, path });
      continue;
    }
    if (controllers === '') continue;
    const mount = join(fs.root, controllers.startsWith('name=') ? controllers.slice('name='.length) : controllers);
    if (existsSync(mount)) placements.push({ mount, path });
  }
  return placements;
}

function addProcess(dirs: readonly string[], pid: number): void {
  for (const dir of dirs) {
    try {
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    } catch (err) {
      throw new Error(`failed to join cgroup ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
}
