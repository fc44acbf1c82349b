import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { unmountAll } from '../bundle/mount.js';
import { loadConfig } from '../config/config.js';
import { NotFoundError } from '../errdefs/errors.js';
import { containerd } from '../generated/index.js';
import { Runc } from '../runc/runc.js';
import { timestampOf } from '../sys/exit-status.js';
import { readPidFile } from '../taskapi/process/pid-file.js';
import { readRuncSettings } from '../taskapi/runc-settings.js';
import type { ShimArgs } from './args.js';
import { socketPath } from './socket-address.js';
import { removeDeadSocket } from './socket-probe.js';

/** What the runc shim reports for a task it had to clean up after: SIGKILL. */
const KILLED_EXIT_STATUS = 137;

/**
 * `delete`: containerd 1.6 runs it whenever a shim connection closes, on
 * normal teardown too, so it must be idempotent. It removes what a dead
 * server may have left (runc state, rootfs mounts, its socket) and writes
 * a binary DeleteResponse to stdout.
 *
 * Every step is tried whatever the others did, and a failed one is only a
 * warning on stderr, as with the runc shim: containerd logs the warnings,
 * and deletes the bundle only when this succeeds. So a runc that cannot
 * delete its state still leaves no rootfs mounted and no bundle behind.
 */
export async function deleteShim(args: ShimArgs, warn: (message: string) => void = writeWarning): Promise<Uint8Array> {
  const bundle = args.bundle || process.cwd();
  const attempt = async (what: string, step: () => unknown): Promise<void> => {
    try {
      await step();
    } catch (err) {
      warn(`failed to ${what}: ${(err as Error).message}`);
    }
  };
  await attempt('remove runc container', () => deleteRuncContainer(args, bundle));
  await attempt('clean up rootfs mount', () => unmountAll(join(bundle, 'rootfs')));
  await attempt('remove the dead server\'s socket', () => removeServerSocket(bundle));
  let pid = 0;
  // A create that failed early wrote no pid file: nothing to warn about.
  await attempt('read init pid file', async () => (pid = (await readPidFile(join(bundle, 'init.pid')).catch(ignoreMissing)) ?? 0));
  return containerd.task.v2.DeleteResponse.encode({ pid, exitStatus: KILLED_EXIT_STATUS, exitedAt: timestampOf(new Date()) }).finish();
}

function writeWarning(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** `runc delete --force` with the runc the container ran with; a container runc never knew is no failure. */
async function deleteRuncContainer(args: ShimArgs, bundle: string): Promise<void> {
  const recorded = await readRuncSettings(bundle);
  const settings = recorded ?? loadConfig().config.runc;
  const root = join(settings.root, args.namespace);
  // No settings: the create never reached runc, or undid it. runc is asked
  // only if it has state there, since any call creates its root, and this
  // root is a guess (the task's own config may have named another).
  if (!recorded && !existsSync(join(root, args.id))) return;
  const runc = new Runc({ binary: settings.binary, root, log: join(bundle, 'log.json') });
  await runc.delete(args.id, { force: true }).catch((err: unknown) => {
    if (!(err instanceof NotFoundError)) throw err;
  });
}

function ignoreMissing(err: unknown): undefined {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw err;
}

/** A server killed without its shutdown (SIGKILL, OOM) leaves its socket in /run/containerd/s. */
async function removeServerSocket(bundle: string): Promise<void> {
  let path: string;
  try {
    path = socketPath((await readFile(join(bundle, 'address'), 'utf8')).trim());
  } catch {
    return;
  }
  // Only once nothing listens: a group's server may still serve other containers.
  if (path.startsWith('/')) await removeDeadSocket(path);
}
