import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../bundle/write-file-atomic.js';
import { FailedPreconditionError } from '../errdefs/errors.js';
import type { RuncSettings } from './container.js';

/** Where a container's runc settings are kept, so `delete` can find runc's state after a crash. */
export const RUNC_SETTINGS_FILE = 'flint-runc.json';

export async function writeRuncSettings(bundle: string, settings: RuncSettings): Promise<void> {
  await writeFileAtomic(join(bundle, RUNC_SETTINGS_FILE), JSON.stringify(settings), 0o600);
}

/**
 * The settings a container was created with; undefined when the bundle has
 * none (its create failed before writing them). A file that is there but
 * unreadable is an error naming it: falling back to the default runc root
 * would look for the container in the wrong place, find nothing, and report
 * success while the container runs on.
 */
export async function readRuncSettings(bundle: string): Promise<RuncSettings | undefined> {
  const path = join(bundle, RUNC_SETTINGS_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let settings: unknown;
  try {
    settings = JSON.parse(text);
  } catch (err) {
    throw new FailedPreconditionError(`${path} is corrupt: ${(err as Error).message}`);
  }
  const { binary, root } = (settings ?? {}) as Partial<Record<keyof RuncSettings, unknown>>;
  if (typeof binary !== 'string' || !binary || typeof root !== 'string' || !root) {
    throw new FailedPreconditionError(`${path} is corrupt: want an object with the runc binary and root, got ${text.slice(0, 200)}`);
  }
  return settings as RuncSettings;
}
