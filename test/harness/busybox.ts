import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Containerd } from './containerd.js';
import { mustRun } from './exec.js';

/** Host busybox (Debian busybox-static), copied into every rootfs. */
export const BUSYBOX_BIN = '/bin/busybox';
export const DEFAULT_IMAGE_REF = 'docker.io/flint/busybox:latest';
/** Applets linked into /bin; busybox picks the applet from argv[0]. */
export const APPLETS: readonly string[] = [
  'sh', 'true', 'false', 'echo', 'cat', 'head', 'sleep', 'ls', 'ps', 'dd', 'id', 'env', 'yes', 'wc',
  'md5sum', 'sha256sum', 'kill', 'tail', 'printf', 'tr', 'seq', 'stty', 'tty', 'hostname', 'mkdir',
  'rm', 'touch', 'test', '[', 'grep', 'sed', 'awk', 'uname', 'date', 'mount', 'top',
];
/** The PATH containers get (the image config's Env; runRm passes it for --rootfs runs). */
export const CONTAINER_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Builds a minimal busybox rootfs in `dir` (created if missing). */
export function buildBusyboxRootfs(dir: string): void {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'usr/bin']) mkdirSync(join(dir, d), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  chmodSync(join(dir, 'root'), 0o700);
  copyFileSync(BUSYBOX_BIN, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  for (const applet of APPLETS) symlinkSync('busybox', join(dir, 'bin', applet));
  // For `#!/usr/bin/env` scripts.
  symlinkSync('../../bin/busybox', join(dir, 'usr/bin/env'));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
}

/** A built OCI image archive. */
export interface BuiltImage {
  readonly tarPath: string;
  readonly ref: string;
  readonly manifestDigest: string;
}

interface Blob {
  readonly digest: string;
  readonly size: number;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function ociArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' };
  return map[process.arch] ?? process.arch;
}

/**
 * Writes an OCI image-layout tarball for a one-layer busybox image to
 * `tarPath`. The manifest carries both `io.containerd.image.name` (the full
 * ref, which ctr import uses as is) and `org.opencontainers.image.ref.name`
 * (the tag, as containerd's own exporter writes it). Builds the rootfs in a
 * scratch dir next to tarPath unless `rootfs` is given. `cmd` is the
 * image's Cmd (default `sh`).
 */
export async function buildBusyboxImage(
  tarPath: string,
  ref = DEFAULT_IMAGE_REF,
  rootfs?: string,
  cmd: readonly string[] = ['sh'],
): Promise<BuiltImage> {
  const work = `${tarPath}.work`;
  rmSync(work, { recursive: true, force: true });
  const layout = join(work, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  try {
    if (rootfs === undefined) {
      rootfs = join(work, 'rootfs');
      buildBusyboxRootfs(rootfs);
    }
    const putBlob = (data: Buffer): Blob => {
      const digest = sha256(data);
      writeFileSync(join(blobs, digest.slice('sha256:'.length)), data);
      return { digest, size: data.length };
    };
    const layerTar = (
      await mustRun('tar', ['--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--mtime=@0', '-C', rootfs, '-cf', '-', '.'])
    ).stdout;
    const layer = putBlob(gzipSync(layerTar));
    const arch = ociArch();
    const config = putBlob(
      Buffer.from(
        JSON.stringify({
          architecture: arch,
          os: 'linux',
          config: { Env: [CONTAINER_PATH], Cmd: cmd, WorkingDir: '/' },
          rootfs: { type: 'layers', diff_ids: [sha256(layerTar)] },
        }),
      ),
    );
    const manifest = putBlob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
        }),
      ),
    );
    const tag = ref.slice(ref.lastIndexOf(':') + 1);
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            platform: { architecture: arch, os: 'linux' },
            annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag },
          },
        ],
      }),
    );
    mkdirSync(dirname(tarPath), { recursive: true });
    await mustRun('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', layout, '-cf', tarPath, 'oci-layout', 'index.json', 'blobs']);
    return { tarPath, ref, manifestDigest: manifest.digest };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Imports an image archive into `namespace` (default `c`'s own), unpacked for
 * the default snapshotter; returns the image names the namespace now has.
 */
export async function importImage(c: Containerd, tarPath: string, namespace?: string): Promise<string[]> {
  const r = await c.ctr(['images', 'import', '--all-platforms', tarPath], { timeoutMs: 60_000, namespace });
  if (r.code !== 0) throw new Error(`ctr images import failed (${r.code}): ${r.stderr.trim()}`);
  const ls = await c.ctr(['images', 'ls', '-q'], { namespace });
  if (ls.code !== 0) throw new Error(`ctr images ls failed: ${ls.stderr.trim()}`);
  return ls.stdout.toString('utf8').split('\n').filter((l) => l !== '');
}

const rootfsCache = new WeakMap<Containerd, string>();
const imageCache = new WeakMap<Containerd, Map<string, Promise<string>>>();

/**
 * The busybox rootfs for `ctr run --rootfs`, built once per containerd in
 * <dir>/busybox/rootfs. Runs share it: write to /tmp only if you clean up, or
 * build a private copy with buildBusyboxRootfs.
 */
export function busyboxRootfs(c: Containerd): string {
  let dir = rootfsCache.get(c);
  if (dir === undefined) {
    dir = join(c.dir, 'busybox', 'rootfs');
    buildBusyboxRootfs(dir);
    rootfsCache.set(c, dir);
  }
  return dir;
}

/** Builds and imports the busybox image into `c` once; resolves to its ref. */
export function busyboxImage(c: Containerd, ref = DEFAULT_IMAGE_REF): Promise<string> {
  let byRef = imageCache.get(c);
  if (byRef === undefined) imageCache.set(c, (byRef = new Map()));
  let p = byRef.get(ref);
  if (p === undefined) {
    const tar = join(c.dir, 'busybox', `image-${createHash('sha256').update(ref).digest('hex').slice(0, 12)}.tar`);
    p = (async () => {
      const built = await buildBusyboxImage(tar, ref, busyboxRootfs(c));
      const names = await importImage(c, built.tarPath);
      if (!names.includes(ref)) throw new Error(`imported image ${ref} missing from ctr images ls: ${names.join(', ')}`);
      return ref;
    })();
    // Let a failed build be retried rather than cached.
    p.catch(() => byRef.delete(ref));
    byRef.set(ref, p);
  }
  return p;
}
