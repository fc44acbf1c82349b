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

/**
 * Where the spare server of the containerd at `containerdAddress` waits
 * (see spare-wait.ts). The name covers where its events go too, so a spare
 * only ever serves the containerd it was started for.
 */
export function spareSocketPath(containerdAddress: string, env: NodeJS.ProcessEnv = process.env, dir = SHIM_SOCKET_DIR): string {
  const events = env.TTRPC_ADDRESS || `${containerdAddress}.ttrpc`;
  const digest = createHash('sha256').update(['flint-spare', containerdAddress, events].join('\0')).digest('hex');
  return join(dir, `flint-spare-${digest.slice(0, 32)}`);
}
