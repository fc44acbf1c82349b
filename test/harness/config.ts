import { join } from 'node:path';

/**
 * Plugins a private test containerd must not load: CRI (network, /opt/cni,
 * its own state) and snapshotters that probe host filesystems or devices.
 */
export const DISABLED_PLUGINS: readonly string[] = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
];

/** Inputs for renderConfig. */
export interface ConfigInputs {
  readonly dir: string;
  readonly address: string;
  readonly ttrpcAddress: string;
  readonly logLevel: string;
  /** Appended verbatim; must use full `[plugins."..."]` table headers. */
  readonly extraToml?: string;
}

// JSON string escapes are valid TOML basic-string escapes for the paths we use.
const str = (s: string): string => JSON.stringify(s);

/** A version 2 config.toml that keeps every containerd path inside `dir`. */
export function renderConfig(c: ConfigInputs): string {
  return [
    'version = 2',
    `root = ${str(join(c.dir, 'root'))}`,
    `state = ${str(join(c.dir, 'state'))}`,
    `temp = ${str(join(c.dir, 'tmp'))}`,
    `disabled_plugins = [${DISABLED_PLUGINS.map(str).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${str(c.address)}`,
    '',
    '[ttrpc]',
    `  address = ${str(c.ttrpcAddress)}`,
    '',
    '[debug]',
    '  address = ""',
    `  level = ${str(c.logLevel)}`,
    '',
    '[metrics]',
    '  address = ""',
    '',
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${str(join(c.dir, 'opt'))}`,
    '',
    c.extraToml ?? '',
    '',
  ].join('\n');
}
