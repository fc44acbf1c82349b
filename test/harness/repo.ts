import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/**
 * The flint repository root. Found by walking up from this compiled file
 * (dist/test/harness/repo.js) to the package.json named "flint", so it also
 * works when the harness is compiled to a different outDir.
 */
export function repoRoot(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && isFlintPackage(pkg)) {
      cached = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // Fall back to the layout the project's tsconfig produces.
  cached = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  return cached;
}

function isFlintPackage(path: string): boolean {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { name?: string }).name === 'flint';
  } catch {
    return false;
  }
}

/** Directory holding containerd-shim-flint-v2; goes first on containerd's PATH. */
export function repoBinDir(): string {
  return join(repoRoot(), 'bin');
}
