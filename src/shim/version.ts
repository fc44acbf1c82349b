import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Set by scripts/bundle.mjs to the git revision the bundle was built from. */
declare const __FLINT_REVISION__: string | undefined;

/** The package version, from the package.json above this file (dist/ or dist/bundle/). */
export function flintVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'flint' && pkg.version) return pkg.version;
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

function revision(): string {
  return typeof __FLINT_REVISION__ === 'string' && __FLINT_REVISION__ ? __FLINT_REVISION__ : 'unknown';
}

/** This build of flint on this Node: a spare server serves only a `start` of the same. */
export function buildId(): string {
  return `${revision()} ${process.execPath} ${process.version}`;
}

export function versionText(binary: string): string {
  return [`${binary}:`, `  Version:  ${flintVersion()}`, `  Revision: ${revision()}`, `  Runtime:  io.containerd.flint.v2`, `  Node.js:  ${process.version}`, ''].join('\n');
}
