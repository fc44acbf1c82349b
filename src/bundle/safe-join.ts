import { lstatSync, readlinkSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { InvalidArgumentError } from '../errdefs/errors.js';

// The kernel's limit on symlinks followed in one lookup (ELOOP).
const MAX_SYMLINK_HOPS = 40;

/**
 * Resolves `path` the way the kernel would: symlinks are followed one
 * component at a time (including dangling ones, whose targets are what a
 * later mkdir or mount would land on), and components that do not exist
 * yet are appended as they are.
 */
export function resolveFollowingSymlinks(path: string): string {
  let pending = resolve(path).split(sep).filter((c) => c !== '');
  let current = '/';
  let hops = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      current = dirname(current);
      continue;
    }
    const next = join(current, name);
    let isLink = false;
    try {
      isLink = lstatSync(next).isSymbolicLink();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
    if (!isLink) {
      current = next;
      continue;
    }
    if (++hops > MAX_SYMLINK_HOPS) {
      throw new InvalidArgumentError(`too many levels of symbolic links resolving ${path}`);
    }
    const target = readlinkSync(next);
    if (target.startsWith('/')) current = '/';
    pending = [...target.split('/').filter((c) => c !== ''), ...pending];
  }
  return current;
}

/** Whether `path` is `root` or below it; both must be absolute and normalized. */
export function isWithin(root: string, path: string): boolean {
  if (root === '/') return path.startsWith('/');
  return path === root || path.startsWith(root + '/');
}

/**
 * Joins `parts` under `root` and returns the fully resolved result, refusing
 * any path that escapes `root` through `..` or a symlink. Parts are taken as
 * relative to root even when they start with '/', as container paths do.
 */
export function safeJoin(root: string, ...parts: string[]): string {
  const absRoot = resolve(root);
  const relParts = parts.map((p) => p.replace(/^\/+/, ''));
  const lexical = resolve(absRoot, ...relParts);
  const shown = join(...(parts.length > 0 ? parts : ['.']));
  if (!isWithin(absRoot, lexical)) {
    throw new InvalidArgumentError(`path ${JSON.stringify(shown)} escapes ${absRoot}`);
  }
  const realRoot = resolveFollowingSymlinks(absRoot);
  const real = resolveFollowingSymlinks(lexical);
  if (!isWithin(realRoot, real)) {
    throw new InvalidArgumentError(`path ${JSON.stringify(shown)} resolves to ${real}, outside ${absRoot}`);
  }
  return real;
}
