import { readFile } from 'node:fs/promises';

/** Reads the pid runc wrote with --pid-file. */
export async function readPidFile(path: string): Promise<number> {
  const text = (await readFile(path, 'utf8')).trim();
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`pid file ${path} holds ${JSON.stringify(text)}, not a pid`);
  return pid;
}
