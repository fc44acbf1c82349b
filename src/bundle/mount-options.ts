import {
  MS_BIND,
  MS_DIRSYNC,
  MS_LAZYTIME,
  MS_MANDLOCK,
  MS_NOATIME,
  MS_NODEV,
  MS_NODIRATIME,
  MS_NOEXEC,
  MS_NOSUID,
  MS_NOSYMFOLLOW,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REC,
  MS_RELATIME,
  MS_REMOUNT,
  MS_SHARED,
  MS_SLAVE,
  MS_STRICTATIME,
  MS_SYNCHRONOUS,
  MS_UNBINDABLE,
} from '../native/mount.js';

/** fstab-style options split the way mount(2) takes them. */
export interface ParsedMountOptions {
  /** Flags for the mount (or remount) call itself. */
  readonly flags: number;
  /** Propagation change (MS_PRIVATE etc., maybe | MS_REC), applied by a separate call; 0 if none. */
  readonly propagation: number;
  /** Filesystem-specific options, comma-joined, e.g. "lowerdir=…,upperdir=…". */
  readonly data: string;
  /** The "loop" option: the source is a file to attach to a loop device. */
  readonly loop: boolean;
}

/** Propagation-type bits; mount(2) refuses to mix them with other changes. */
export const PROPAGATION_TYPES = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;

// [clear?, flag]: "clear" options undo their flag (rw clears MS_RDONLY), so
// later options override earlier ones as in mount(8).
const FLAG_OPTIONS: ReadonlyMap<string, readonly [boolean, number]> = new Map([
  ['async', [true, MS_SYNCHRONOUS]],
  ['atime', [true, MS_NOATIME]],
  ['bind', [false, MS_BIND]],
  ['defaults', [false, 0]],
  ['dev', [true, MS_NODEV]],
  ['diratime', [true, MS_NODIRATIME]],
  ['dirsync', [false, MS_DIRSYNC]],
  ['exec', [true, MS_NOEXEC]],
  ['lazytime', [false, MS_LAZYTIME]],
  ['nolazytime', [true, MS_LAZYTIME]],
  ['mand', [false, MS_MANDLOCK]],
  ['noatime', [false, MS_NOATIME]],
  ['nodev', [false, MS_NODEV]],
  ['nodiratime', [false, MS_NODIRATIME]],
  ['noexec', [false, MS_NOEXEC]],
  ['nomand', [true, MS_MANDLOCK]],
  ['norelatime', [true, MS_RELATIME]],
  ['nostrictatime', [true, MS_STRICTATIME]],
  ['nosuid', [false, MS_NOSUID]],
  ['nosymfollow', [false, MS_NOSYMFOLLOW]],
  ['rbind', [false, MS_BIND | MS_REC]],
  ['relatime', [false, MS_RELATIME]],
  ['remount', [false, MS_REMOUNT]],
  ['ro', [false, MS_RDONLY]],
  ['rw', [true, MS_RDONLY]],
  ['strictatime', [false, MS_STRICTATIME]],
  ['suid', [true, MS_NOSUID]],
  ['sync', [false, MS_SYNCHRONOUS]],
]);

const PROPAGATION_OPTIONS: ReadonlyMap<string, number> = new Map([
  ['private', MS_PRIVATE],
  ['rprivate', MS_PRIVATE | MS_REC],
  ['shared', MS_SHARED],
  ['rshared', MS_SHARED | MS_REC],
  ['slave', MS_SLAVE],
  ['rslave', MS_SLAVE | MS_REC],
  ['unbindable', MS_UNBINDABLE],
  ['runbindable', MS_UNBINDABLE | MS_REC],
]);

/**
 * Parses containerd mount options into mount(2) flags, a propagation change
 * and the data string. Options that are not flags go to data unchanged, in
 * order, for the filesystem to interpret.
 */
export function parseMountOptions(options: readonly string[]): ParsedMountOptions {
  let flags = 0;
  let propagation = 0;
  let loop = false;
  const data: string[] = [];
  for (const option of options) {
    const flag = FLAG_OPTIONS.get(option);
    if (flag !== undefined) {
      const [clear, bits] = flag;
      flags = clear ? flags & ~bits : flags | bits;
      continue;
    }
    const prop = PROPAGATION_OPTIONS.get(option);
    if (prop !== undefined) {
      propagation = prop;
    } else if (option === 'loop') {
      loop = true;
    } else {
      data.push(option);
    }
  }
  return { flags, propagation, data: data.join(','), loop };
}

/**
 * Rewrites an overlay `lowerdir=` with paths relative to the deepest
 * directory that is a strict ancestor of every layer, so a long layer list
 * fits mount(2)'s one-page data limit once the mount runs with that
 * directory as cwd. Returns null when there is nothing to shorten.
 */
export function compactLowerdir(options: readonly string[]): { cwd: string; options: string[] } | null {
  const prefix = 'lowerdir=';
  const idx = options.findIndex((o) => o.startsWith(prefix));
  if (idx < 0) return null;
  const dirs = options[idx]!.slice(prefix.length).split(':');
  if (dirs.length < 2 || !dirs.every((d) => d.startsWith('/'))) return null;
  const parts = dirs.map((d) => d.split('/').filter((c) => c !== ''));
  const common: string[] = [];
  const shortest = Math.min(...parts.map((p) => p.length));
  // Strictly shorter than every layer path, so no layer becomes "".
  for (let i = 0; i < shortest - 1; i++) {
    const name = parts[0]![i]!;
    if (!parts.every((p) => p[i] === name)) break;
    common.push(name);
  }
  if (common.length === 0) return null;
  const rel = parts.map((p) => p.slice(common.length).join('/'));
  const rewritten = [...options];
  rewritten[idx] = prefix + rel.join(':');
  return { cwd: '/' + common.join('/'), options: rewritten };
}
