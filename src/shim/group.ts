import type { FlintConfig } from '../config/config.js';

/** Annotations that put containers into one shim, in the runc shim's order. */
export const GROUP_ANNOTATIONS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'];

/**
 * Which shim server a container belongs to. In VM mode, the agent's: one
 * shim serves one agent (one VM), as in firecracker-containerd. Otherwise
 * "sandbox": the first group annotation present, else the container's own
 * id; "namespace": one server for the whole namespace.
 */
export function shimGroup(config: FlintConfig, id: string, annotations: Readonly<Record<string, string>> | undefined): string {
  if (config.mode === 'vm') return `vm:${config.agent.address}`;
  if (config.group === 'namespace') return '';
  for (const key of GROUP_ANNOTATIONS) {
    const value = annotations?.[key];
    if (value) return value;
  }
  return id;
}
