import { join } from 'node:path';
import { RUNTIMES } from './scenario.js';

/** The CRI plugin: off unless a harness asks for it (see CriPaths). */
export const CRI_PLUGIN = 'io.containerd.grpc.v1.cri';

/**
 * Plugins a private test containerd must not load: CRI (network, /opt/cni,
 * its own state) unless asked for, and snapshotters that probe host
 * filesystems or devices.
 */
export const DISABLED_PLUGINS: readonly string[] = [
  CRI_PLUGIN,
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
  /** Enables the CRI plugin, configured by criPaths(dir). */
  readonly cri?: boolean;
}

/** The containerd namespace CRI keeps its pods, containers and images in. */
export const CRI_NAMESPACE = 'k8s.io';
/** The pod sandbox image CRI runs; the CRI harness imports it, it is never pulled. */
export const CRI_SANDBOX_IMAGE = 'docker.io/flint/pause:latest';

/** Where a CRI-enabled test containerd keeps what CRI would put on the host. */
export interface CriPaths {
  /** CNI config and plugin dirs, left empty: pods use the host network, so CNI is never called. */
  readonly cniConfDir: string;
  readonly cniBinDir: string;
  /** runc --root of both runtimes (runc option Root; flint's runc.root), so no state lands in /run. */
  readonly runcRoot: string;
  /** flint's config file, passed as the runtime's ConfigPath option. */
  readonly flintConfig: string;
  /** Pod log directories go here. */
  readonly logDir: string;
}

/** The CRI paths of the test containerd in `dir`. */
export function criPaths(dir: string): CriPaths {
  return {
    cniConfDir: join(dir, 'cni', 'conf'),
    cniBinDir: join(dir, 'cni', 'bin'),
    runcRoot: join(dir, 'runc'),
    flintConfig: join(dir, 'flint.json'),
    logDir: join(dir, 'pod-logs'),
  };
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
    `disabled_plugins = [${DISABLED_PLUGINS.filter((p) => !(c.cri && p === CRI_PLUGIN)).map(str).join(', ')}]`,
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
    c.cri ? renderCriConfig(criPaths(c.dir)) : '',
    c.extraToml ?? '',
    '',
  ].join('\n');
}

/**
 * The CRI plugin's table: host-network pods only (empty CNI dirs), no
 * AppArmor profile loaded into the host kernel, one runtime handler per key
 * of RUNTIMES (flint the default, runc the oracle). CRI's own root and state
 * are subdirs of containerd's.
 */
function renderCriConfig(p: CriPaths): string {
  const cri = `plugins.${str(CRI_PLUGIN)}`;
  const runtimeOptions: Record<keyof typeof RUNTIMES, string> = {
    flint: `ConfigPath = ${str(p.flintConfig)}`,
    runc: `Root = ${str(p.runcRoot)}`,
  };
  return [
    `  [${cri}]`,
    `    sandbox_image = ${str(CRI_SANDBOX_IMAGE)}`,
    '    disable_apparmor = true',
    // CRI gives the sandbox oom_score_adj -998; lowering it needs CAP_SYS_RESOURCE, which a
    // container running the tests may lack, so keep it at containerd's own.
    '    restrict_oom_score_adj = true',
    '    enable_selinux = false',
    '    stream_server_address = "127.0.0.1"',
    '    stream_server_port = "0"',
    `    [${cri}.cni]`,
    `      conf_dir = ${str(p.cniConfDir)}`,
    `      bin_dir = ${str(p.cniBinDir)}`,
    `    [${cri}.containerd]`,
    '      default_runtime_name = "flint"',
    ...Object.entries(RUNTIMES).flatMap(([name, type]) => [
      `      [${cri}.containerd.runtimes.${name}]`,
      `        runtime_type = ${str(type)}`,
      `        [${cri}.containerd.runtimes.${name}.options]`,
      `          ${runtimeOptions[name as keyof typeof RUNTIMES]}`,
    ]),
    '',
  ].join('\n');
}
