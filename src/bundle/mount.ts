import { mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidArgumentError, UnimplementedError, UnknownError } from '../errdefs/errors.js';
import { MNT_DETACH, MS_BIND, MS_RDONLY, MS_REMOUNT, mount, umount2 } from '../native/mount.js';
import { compactLowerdir, parseMountOptions, PROPAGATION_TYPES } from './mount-options.js';
import { readMountinfo } from './mountinfo.js';
import { isWithin, resolveFollowingSymlinks, safeJoin } from './safe-join.js';

export { parseMountOptions, compactLowerdir, type ParsedMountOptions } from './mount-options.js';
export { readMountinfo, parseMountinfo, decodeMountinfoPath, type MountInfo } from './mountinfo.js';

/** A containerd rootfs mount (types.Mount), optionally below the target dir. */
export interface RootfsMount {
  readonly type: string;
  readonly source: string;
  /** Path below the mountAll target; default the target itself. */
  readonly target?: string;
  readonly options: readonly string[];
}

/**
 * mount(2) copies at most one page of data, so the string plus its NUL must
 * fit in 4096 bytes (the smallest page size Linux uses on x86-64 and arm64).
 */
export const MOUNT_DATA_LIMIT = 4096;

// containerd shortens lowerdir a little before the hard limit, leaving room
// for the options it does not count.
const COMPACT_THRESHOLD = MOUNT_DATA_LIMIT - 512;

// Kernel API trees an agent must never mount over, whatever the bundle says.
const FORBIDDEN_ROOTS = ['/proc', '/sys', '/dev'];

// Bounds unmountAll; each round removes at least one mount or fails.
const MAX_UNMOUNT_ROUNDS = 100;

/** A mount(2) that failed; names the mount and the errno. */
export class MountError extends UnknownError {
  readonly errno: string;
  readonly mountType: string;
  readonly source: string;
  readonly target: string;

  constructor(m: RootfsMount, target: string, cause: unknown) {
    const errno = errnoOf(cause);
    const text = describe(cause);
    const detail = text.startsWith(errno) ? text : `${errno}: ${text}`;
    super(`failed to mount ${m.type} (source ${JSON.stringify(m.source)}) on ${target}: ${detail}`, { cause });
    this.errno = errno;
    this.mountType = m.type;
    this.source = m.source;
    this.target = target;
  }
}

/**
 * Resolves `target` (following symlinks) and refuses it when it is "/",
 * under /proc, /sys or /dev, or, when `within` is given, outside `within`.
 * Returns the resolved path.
 */
export function assertSafeMountTarget(target: string, within?: string): string {
  const real = resolveFollowingSymlinks(resolve(target));
  if (real === '/' || FORBIDDEN_ROOTS.some((root) => isWithin(root, real))) {
    throw new InvalidArgumentError(`refusing to mount on ${target}: resolves to ${real}`);
  }
  if (within !== undefined) {
    const realWithin = resolveFollowingSymlinks(resolve(within));
    if (!isWithin(realWithin, real)) {
      throw new InvalidArgumentError(`refusing to mount on ${target}: resolves to ${real}, outside ${realWithin}`);
    }
  }
  return real;
}

/**
 * Mounts `mounts` in order onto `target` (usually `<bundle>/rootfs`), as
 * containerd's mount.All does. If one fails, the mounts already made are
 * undone in reverse order and a MountError naming the failed one is thrown.
 */
export function mountAll(mounts: readonly RootfsMount[], target: string): void {
  const done: string[] = [];
  for (const m of mounts) {
    try {
      const where = assertSafeMountTarget(m.target === undefined ? target : safeJoin(target, m.target), target);
      if (m.target !== undefined) mkdirSync(where, { recursive: true });
      if (mountOne(m, where)) done.push(where);
    } catch (err) {
      for (const path of done.reverse()) unmountQuietly(path);
      throw err;
    }
  }
}

/**
 * Unmounts everything mounted at or below `target`, deepest (and most
 * recent) first, detaching what is busy, until mountinfo shows nothing
 * left there. A missing target is nothing to do.
 */
export function unmountAll(target: string): void {
  try {
    statSync(target);
  } catch {
    return;
  }
  const real = resolveFollowingSymlinks(resolve(target));
  for (let round = 0; round < MAX_UNMOUNT_ROUNDS; round++) {
    const below = readMountinfo()
      .map((m, order) => ({ path: m.mountPoint, order }))
      .filter((m) => isWithin(real, m.path));
    if (below.length === 0) return;
    below.sort((a, b) => depth(b.path) - depth(a.path) || b.order - a.order);
    for (const m of below) unmountOne(m.path);
  }
  throw new UnknownError(`mounts remain at ${real} after ${MAX_UNMOUNT_ROUNDS} unmount rounds`);
}

/** Mounts one entry; returns whether a new mount was created (vs a remount). */
function mountOne(m: RootfsMount, target: string): boolean {
  if (m.type.startsWith('fuse.') || m.type.startsWith('fuse3.')) {
    throw new UnimplementedError(`mount type ${m.type} needs a FUSE helper, which flint does not run`);
  }
  let cwd: string | undefined;
  let options = m.options;
  if (m.type === 'overlay' && optionsSize(options) >= COMPACT_THRESHOLD) {
    const compact = compactLowerdir(options);
    if (compact !== null) ({ cwd, options } = compact);
  }
  const { flags, propagation, data, loop } = parseMountOptions(options);
  if (loop) {
    throw new UnimplementedError(`loop mounts are not supported (mount ${m.type} of ${m.source})`);
  }
  const size = Buffer.byteLength(data) + 1;
  if (size > MOUNT_DATA_LIMIT) {
    const how = cwd === undefined ? '' : ` even with lowerdir paths relative to ${cwd}`;
    throw new InvalidArgumentError(
      `mount options of ${m.type} (source ${JSON.stringify(m.source)}) are ${size} bytes${how}, over the ${MOUNT_DATA_LIMIT}-byte limit of mount(2)`,
    );
  }

  const baseFlags = flags & ~PROPAGATION_TYPES;
  const isRemount = (flags & MS_REMOUNT) !== 0;
  let created = false;
  try {
    // A remount with no data changes nothing the later calls don't cover.
    if (!isRemount || data !== '') {
      mountIn(cwd, m.source, target, m.type, baseFlags, data);
      created = !isRemount;
    }
    if (propagation !== 0) mount(null, target, null, propagation, null);
    // MS_RDONLY is ignored on the initial bind; it takes a bind remount.
    if ((baseFlags & (MS_BIND | MS_RDONLY)) === (MS_BIND | MS_RDONLY)) {
      mount(null, target, null, baseFlags | MS_REMOUNT, null);
    }
  } catch (err) {
    if (created) unmountQuietly(target);
    throw err instanceof InvalidArgumentError ? err : new MountError(m, target, err);
  }
  return created;
}

/**
 * mount(2) with relative lowerdirs resolved against `cwd`. chdir is
 * process-wide; the synchronous chdir-mount-chdir leaves no JS turn in
 * between, and flint passes absolute paths to fs calls on other threads.
 */
function mountIn(cwd: string | undefined, source: string, target: string, fstype: string, flags: number, data: string): void {
  if (cwd === undefined) {
    mount(source, target, fstype, flags, data);
    return;
  }
  const previous = process.cwd();
  process.chdir(cwd);
  try {
    mount(source, target, fstype, flags, data);
  } finally {
    process.chdir(previous);
  }
}

function unmountOne(path: string): void {
  try {
    umount2(path, 0);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EINVAL' || code === 'ENOENT') return; // no longer a mount point
    if (code !== 'EBUSY') throw err;
    try {
      umount2(path, MNT_DETACH);
    } catch (err2) {
      if (errnoOf(err2) !== 'EINVAL') throw err2;
    }
  }
}

function unmountQuietly(path: string): void {
  try {
    unmountOne(path);
  } catch {
    // Best effort while reporting the original failure.
  }
}

function optionsSize(options: readonly string[]): number {
  return options.reduce((n, o) => n + Buffer.byteLength(o), 0);
}

function depth(path: string): number {
  return path.split('/').length;
}

function errnoOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
