import { readFileSync } from 'node:fs';

/** The package version, read once from package.json next to dist/. */
export function flintVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function versionText(binary: string): string {
  return [`${binary}:`, `  Version:  ${flintVersion()}`, `  Runtime:  io.containerd.flint.v2`, `  Node.js:  ${process.version}`, ''].join('\n');
}
