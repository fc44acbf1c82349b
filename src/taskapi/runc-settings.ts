import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../bundle/write-file-atomic.js';
import type { RuncSettings } from './container.js';

/** Where a container's runc settings are kept, so `delete` can find runc's state after a crash. */
export const RUNC_SETTINGS_FILE = 'flint-runc.json';

export async function writeRuncSettings(bundle: string, settings: RuncSettings): Promise<void> {
  await writeFileAtomic(join(bundle, RUNC_SETTINGS_FILE), JSON.stringify(settings), 0o600);
}

export async function readRuncSettings(bundle: string): Promise<RuncSettings | undefined> {
  try {
    return JSON.parse(await readFile(join(bundle, RUNC_SETTINGS_FILE), 'utf8')) as RuncSettings;
  } catch {
    return undefined;
  }
}
