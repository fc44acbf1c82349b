// Bundles the two entry points into dist/bundle/ with esbuild, so each
// process loads a few files instead of hundreds of modules: the shim's
// start and delete run once per container and their start-up time is the
// shim's start latency. Chunks are split so `start`, `delete` and the server
// each load only what they use. The native addon stays a separate file.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';

let revision = '';
try {
  revision = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  // Not a git checkout (an installed copy): the version is enough.
}

const outdir = new URL('../dist/bundle/', import.meta.url).pathname;
await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: { shim: 'cmd/shim/main.ts', agent: 'cmd/agent/main.ts' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  define: { __FLINT_REVISION__: JSON.stringify(revision) },
  // CommonJS dependencies (pino) call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __flintRequire } from 'node:module'; const require = __flintRequire(import.meta.url);" },
});
