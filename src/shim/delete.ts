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

/** What the runc shim reports for a task it had to clean up after: SIGKILL. */
const KILLED_EXIT_STATUS = 137;

/**
 * `delete`: containerd 1.6 runs it whenever a shim connection closes, on
 * normal teardown too, so it must be idempotent. It removes what a dead
 * server may have left (runc state, rootfs mounts) and writes a binary
 * DeleteResponse to stdout.
 */
export async function deleteShim(args: ShimArgs): Promise<Uint8Array> {
  const bundle = args.bundle || process.cwd();
  const settings = (await readRuncSettings(bundle)) ?? loadConfig().config.runc;
  const runc = new Runc({ binary: settings.binary, root: join(settings.root, args.namespace), log: join(bundle, 'log.json') });
  await runc.delete(args.id, { force: true }).catch((err: unknown) => {
    if (!(err instanceof NotFoundError)) throw err;
  });
  await unmountAll(join(bundle, 'rootfs'));
  const pid = await readPidFile(join(bundle, 'init.pid')).catch(() => 0);
  return containerd.task.v2.DeleteResponse.encode({ pid, exitStatus: KILLED_EXIT_STATUS, exitedAt: timestampOf(new Date()) }).finish();
}
