import { createHash } from 'node:crypto';
import { join } from 'node:path';

/** Where shims of every runtime keep their sockets, as containerd 1.6's shim library does. */
export const SHIM_SOCKET_DIR = '/run/containerd/s';

/**
 * The shim's socket address: unix:///run/containerd/s/<sha256 of
 * containerd's address, the namespace and the group id>. A sha256 keeps it
 * far below the 108-byte sun_path limit whatever the inputs.
 */
export function shimSocketAddress(containerdAddress: string, namespace: string, groupId: string, dir = SHIM_SOCKET_DIR): string {
  const digest = createHash('sha256').update(join(containerdAddress, namespace, groupId)).digest('hex');
  return `unix://${join(dir, digest)}`;
}

export function socketPath(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}
