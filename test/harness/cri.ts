import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildBusyboxImage, busyboxRootfs, DEFAULT_IMAGE_REF, importImage } from './busybox.js';
import { CRI_NAMESPACE, CRI_PLUGIN, CRI_SANDBOX_IMAGE, criPaths, type CriPaths } from './config.js';
import { startContainerd, type Containerd } from './containerd.js';
import { CriClient } from './cri-client.js';
import { namespaceCgroups } from './host-state.js';
import { leftovers, type LeftoverReport } from './leftovers.js';

/** How long the harness waits for CRI to see an image imported with ctr (it learns of them from image events). */
const IMAGE_VISIBLE_TIMEOUT_MS = 20_000;

/** A private containerd with the CRI plugin on, its images imported into k8s.io, and a CRI client. */
export interface CriHarness {
  readonly containerd: Containerd;
  readonly cri: CriClient;
  readonly paths: CriPaths;
  /** The busybox image for containers (its Cmd is `sh`). */
  readonly image: string;
  /** The cgroup_parent for pods: the harness namespace, so stop() removes what a failed test leaves. */
  readonly cgroupParent: string;
  /** Closes the client and stops containerd (see Containerd.stop). */
  stop(): ReturnType<Containerd['stop']>;
}

/**
 * Starts a containerd with CRI enabled (see config.ts: host-network pods only,
 * runtime handlers `flint` (default) and `runc`, every path inside its temp
 * dir), imports the busybox image and a pause image (busybox running `sleep
 * inf`, CRI's sandbox_image) into k8s.io, and waits until CRI lists both, so
 * no pod ever makes it pull.
 */
export async function startCriHarness(): Promise<CriHarness> {
  const containerd = await startContainerd({ cri: true });
  let cri: CriClient | undefined;
  const stop = (): ReturnType<Containerd['stop']> => {
    cri?.close();
    return containerd.stop();
  };
  try {
    const rootfs = busyboxRootfs(containerd);
    const images: Array<[ref: string, cmd: string[]]> = [
      [DEFAULT_IMAGE_REF, ['sh']],
      [CRI_SANDBOX_IMAGE, ['sleep', 'inf']],
    ];
    for (const [i, [ref, cmd]] of images.entries()) {
      const built = await buildBusyboxImage(join(containerd.dir, 'busybox', `cri-image-${i}.tar`), ref, rootfs, cmd);
      const names = await importImage(containerd, built.tarPath, CRI_NAMESPACE);
      if (!names.includes(ref)) throw new Error(`imported image ${ref} missing from ctr -n ${CRI_NAMESPACE} images ls: ${names.join(', ')}`);
    }
    cri = new CriClient(containerd.address);
    for (const [ref] of images) await waitForCriImage(cri, ref);
    return { containerd, cri, paths: criPaths(containerd.dir), image: DEFAULT_IMAGE_REF, cgroupParent: `/${containerd.namespace}`, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function waitForCriImage(cri: CriClient, ref: string): Promise<void> {
  const deadline = Date.now() + IMAGE_VISIBLE_TIMEOUT_MS;
  while ((await cri.image('ImageStatus', { image: { image: ref } })).image === null) {
    if (Date.now() >= deadline) throw new Error(`CRI does not list image ${ref} ${IMAGE_VISIBLE_TIMEOUT_MS} ms after its import`);
    await sleep(50);
  }
}

/** What pods may leave behind besides LeftoverReport (which here lists k8s.io's tasks and containers); all empty when clean. */
export interface CriLeftoverReport extends LeftoverReport {
  /** Container and sandbox dirs in CRI's root and state dirs. */
  readonly criDirs: readonly string[];
  /** runc state dirs under the harness's runc root. */
  readonly runcState: readonly string[];
  /** Container cgroups under the pods' cgroup parent. */
  readonly cgroups: readonly string[];
  /** Snapshots (container rootfs) in k8s.io other than the imported images' layers. */
  readonly snapshots: readonly string[];
}

/** Inspects a CRI harness for what removed pods left behind. */
export async function criLeftovers(h: CriHarness): Promise<CriLeftoverReport> {
  const c = h.containerd;
  const criDirs = [c.root, c.state].flatMap((base) =>
    ['containers', 'sandboxes'].flatMap((kind) => entries(join(base, CRI_PLUGIN, kind))),
  );
  return {
    ...(await leftovers(c, CRI_NAMESPACE)),
    criDirs,
    runcState: entries(join(h.paths.runcRoot, CRI_NAMESPACE)),
    cgroups: namespaceCgroups(c.namespace),
    snapshots: await activeSnapshots(c),
  };
}

/** Active (writable) snapshots in k8s.io: a container's rootfs; committed ones are image layers. */
async function activeSnapshots(c: Containerd): Promise<string[]> {
  const r = await c.ctr(['snapshots', 'ls'], { namespace: CRI_NAMESPACE, timeoutMs: 10_000 });
  if (r.code !== 0) return [`<ctr snapshots ls failed: ${r.stderr.trim()}>`];
  return r.stdout
    .toString('utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((cols) => cols[cols.length - 1] === 'Active')
    .map((cols) => cols[0]!);
}

function entries(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((e) => join(dir, e));
}
