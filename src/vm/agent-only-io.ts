/**
 * True when a process's output is handled inside the VM (a `file://` or
 * `binary://` log URI), so no vsock stdio is set up, as in
 * firecracker-containerd.
 */
export function isAgentOnlyIO(stdout: string): boolean {
  return /^(file|binary):\/\//i.test(stdout);
}

/** Mounts whose type starts with "vm:" are VM-local: the agent strips the prefix and mounts them itself. */
export const VM_LOCAL_MOUNT_PREFIX = 'vm:';

export function stripVmLocalPrefix<T extends { type?: string | null }>(mount: T): T {
  const type = mount.type ?? '';
  return type.startsWith(VM_LOCAL_MOUNT_PREFIX) ? { ...mount, type: type.slice(VM_LOCAL_MOUNT_PREFIX.length) } : mount;
}
