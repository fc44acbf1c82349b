import { parseShimArgs } from './args.js';
import { versionText } from './version.js';

/**
 * The shim's command line: `-v`, `start`, `delete`, or (no action) the
 * long-lived server that `start` spawns. `start` prints only the address
 * and errors go to stderr with a non-zero exit, because containerd reads
 * the combined output as the answer. Each action loads only its own
 * modules: `start` and `delete` run once per container and their start-up
 * time is the shim's start latency.
 */
export async function shimMain(argv: readonly string[], scriptPath: string): Promise<void> {
  let args;
  try {
    args = parseShimArgs(argv);
  } catch (err) {
    process.stderr.write(`containerd-shim-flint-v2: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (args.version) {
    process.stdout.write(versionText('containerd-shim-flint-v2'));
    return;
  }
  try {
    switch (args.action) {
      case 'start': {
        const { startShim } = await import('./start.js');
        process.stdout.write(await startShim(args, [scriptPath]));
        return;
      }
      case 'delete': {
        const { deleteShim } = await import('./delete.js');
        process.stdout.write(await deleteShim(args));
        return;
      }
      case undefined: {
        const { serveShim } = await import('./serve.js');
        await serveShim(args);
        return;
      }
    }
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
}
