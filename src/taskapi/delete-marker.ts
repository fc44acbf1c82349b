import { join } from 'node:path';
import { writeFileAtomic } from '../bundle/write-file-atomic.js';
import { containerd } from '../generated/index.js';
import { timestampOf, type ExitStatus } from '../sys/exit-status.js';

/**
 * Left in a host bundle once its task is deleted and cleaned up: the
 * DeleteResponse for containerd's `delete` call that follows every
 * teardown, which bin/containerd-shim-flint-v2 then answers without
 * starting Node (there is nothing left to clean).
 */
export const DELETE_MARKER_FILE = 'flint-deleted';

export async function writeDeleteMarker(bundle: string, pid: number, exit: ExitStatus | undefined): Promise<void> {
  const response = containerd.task.v2.DeleteResponse.encode({ pid, exitStatus: exit?.status ?? 0, exitedAt: timestampOf(exit?.exitedAt) }).finish();
  await writeFileAtomic(join(bundle, DELETE_MARKER_FILE), response, 0o600);
}
