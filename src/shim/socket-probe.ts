import { stat, unlink } from 'node:fs/promises';
import net from 'node:net';

/** A live server accepts at once; past this the socket counts as neither live nor dead. */
const PROBE_TIMEOUT_MS = 1_000;

/**
 * Whether something listens on the unix socket `path`: 'answers' when a
 * connection is accepted, 'refused' when the file is there but nothing
 * listens (ECONNREFUSED: a server that died without removing it), 'unknown'
 * otherwise (no such file, a timeout, another error).
 */
export function probeSocket(path: string): Promise<'answers' | 'refused' | 'unknown'> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path });
    const done = (outcome: 'answers' | 'refused' | 'unknown'): void => {
      socket.destroy();
      resolve(outcome);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done('unknown'));
    socket.once('connect', () => done('answers'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unknown'));
  });
}

/**
 * Removes the socket file at `path` if nothing listens on it any more: what
 * a process killed without its shutdown (SIGKILL, OOM) leaves behind. A
 * socket whose inode changed since the probe belongs to a process that
 * bound it meanwhile, and stays. Never fails.
 */
export async function removeDeadSocket(path: string): Promise<void> {
  const before = await stat(path).catch(() => undefined);
  if (!before?.isSocket() || (await probeSocket(path)) !== 'refused') return;
  const after = await stat(path).catch(() => undefined);
  if (after?.ino !== before.ino || after.dev !== before.dev) return;
  await unlink(path).catch(() => {});
}
