import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { unmountAll } from '../bundle/mount.js';
import { loadConfig } from '../config/config.js';
import { NotFoundError } from '../errdefs/errors.js';
import { Runc } from '../runc/runc.js';
import { Reaper } from '../sys/reaper.js';
import { readRuncSettings } from '../taskapi/runc-settings.js';

/**
 * Removes what an agent that died left under its root: for each
 * <namespace>/<task> bundle, the runc container (killed and deleted), the
 * rootfs mounts and the bundle itself. In a VM the whole guest usually dies
 * with the agent; outside one, or after a crash of the agent alone, this is
 * the delete path a restarted agent owes its predecessor.
 */
export async function removeStaleBundles(root: string, log: Logger): Promise<void> {
  for (const namespace of await entries(root)) {
    for (const id of await entries(join(root, namespace))) {
      const bundle = join(root, namespace, id);
      try {
        const settings = (await readRuncSettings(bundle)) ?? loadConfig().config.runc;
        const runc = new Runc({
          binary: settings.binary,
          root: join(settings.root, namespace),
          log: join(bundle, 'log.json'),
          spawn: (command, args, options) => Reaper.get().spawnHelper(command, args, options),
        });
        await runc.delete(id, { force: true }).catch((err: unknown) => {
          if (!(err instanceof NotFoundError)) throw err;
        });
        unmountAll(join(bundle, 'rootfs'));
        await rm(bundle, { recursive: true, force: true });
        log.warn({ namespace, id }, 'removed a task left by a previous agent');
      } catch (err) {
        log.error({ err, namespace, id }, 'cannot remove a task left by a previous agent');
      }
    }
  }
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
