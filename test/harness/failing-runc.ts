import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The real runc the wrapper forwards to (Debian's package). */
export const REAL_RUNC = '/usr/sbin/runc';

/** The runc subcommands a test can make fail. */
export type RuncStep = 'create' | 'start' | 'exec' | 'kill' | 'delete';

/** A runc wrapper that fails one subcommand on demand and forwards the rest. */
export interface FailingRunc {
  /** The wrapper script; give it to flint as runc.binary. */
  readonly binary: string;
  /** A flint config file naming the wrapper as runc.binary (for FLINT_CONFIG). */
  readonly configPath: string;
  /**
   * Makes every later `runc <step>` fail: the wrapper appends
   * `{"level":"error","msg":"injected failure at <step>"}` to the --log
   * file it was given and exits 1 without running runc. undefined switches
   * back to pass-through.
   */
  failAt(step: RuncStep | undefined): void;
  /** The subcommands the wrapper has seen so far, in order (failed ones marked `!`). */
  calls(): string[];
  /** Forgets the recorded calls. */
  clearCalls(): void;
}

/**
 * The script: it finds the subcommand (the first word that is neither a
 * global flag nor a global flag's value) and the --log path, reads the
 * step to fail from `fail-at` next to itself, and either fails or execs
 * the real runc (exec keeps the pid, so a subreaper's bookkeeping holds).
 */
function script(dir: string): string {
  return `#!/bin/sh
# Test wrapper for runc, written by test/harness/failing-runc.ts.
dir='${dir}'
fail=$(cat "$dir/fail-at" 2>/dev/null)
log=
cmd=
prev=
for a in "$@"; do
  case "$prev" in --log) log=$a ;; esac
  case "$a" in --log=*) log=\${a#--log=} ;; esac
  if [ -z "$cmd" ]; then
    case "$prev" in
      --root|--log|--log-format|--criu) ;;
      *) case "$a" in -*) ;; *) cmd=$a ;; esac ;;
    esac
  fi
  prev=$a
done
if [ -n "$fail" ] && [ "$cmd" = "$fail" ]; then
  echo "!$cmd" >> "$dir/calls"
  if [ -n "$log" ]; then
    printf '{"level":"error","msg":"injected failure at %s","time":"%s"}\\n' "$cmd" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$log"
  fi
  echo "injected failure at $cmd" >&2
  exit 1
fi
echo "$cmd" >> "$dir/calls"
exec ${REAL_RUNC} "$@"
`;
}

/**
 * Writes the wrapper, its control file and a flint config into `dir`
 * (created if missing). `config` is merged into the flint config, whose
 * runc.binary is the wrapper.
 */
export function createFailingRunc(dir: string, config: Record<string, unknown> = {}): FailingRunc {
  if (/'/.test(dir)) throw new Error(`failing-runc dir must not contain a quote: ${dir}`);
  mkdirSync(dir, { recursive: true });
  const binary = join(dir, 'runc');
  const control = join(dir, 'fail-at');
  const callsFile = join(dir, 'calls');
  const configPath = join(dir, 'flint.json');
  writeFileSync(binary, script(dir));
  chmodSync(binary, 0o755);
  writeFileSync(control, '');
  const runc = { ...((config.runc as Record<string, unknown> | undefined) ?? {}), binary };
  writeFileSync(configPath, JSON.stringify({ ...config, runc }));
  return {
    binary,
    configPath,
    failAt(step) {
      writeFileSync(control, step ?? '');
    },
    calls() {
      try {
        return readFileSync(callsFile, 'utf8').split('\n').filter((l) => l !== '');
      } catch {
        return [];
      }
    },
    clearCalls() {
      rmSync(callsFile, { force: true });
    },
  };
}
