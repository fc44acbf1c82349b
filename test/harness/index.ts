/** The integration-test harness: a private containerd, a busybox rootfs/image, and runtime comparison helpers. */
export * from './busybox.js';
export * from './containerd.js';
export * from './exec.js';
export * from './leftovers.js';
export * from './scenario.js';
export { RUNC_ROOT, SHIM_SOCKET_DIR, shimSocketPath } from './cleanup.js';
export { mountsUnder, processesOwnedBy, type MountEntry, type ProcInfo } from './procfs.js';
export { repoBinDir, repoRoot, spawnFlint, spawnWithExactEnv } from './repo.js';
