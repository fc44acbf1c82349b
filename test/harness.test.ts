import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  busyboxImage,
  busyboxRootfs,
  CONTAINER_PATH,
  DEFAULT_IMAGE_REF,
  isClean,
  runRm,
  startContainerd,
  waitForClean,
  type Containerd,
} from './harness/index.js';
import { RUNC_ROOT, shimSocketPath } from './harness/cleanup.js';
import { isRunning, mountsUnder, processesOwnedBy } from './harness/procfs.js';
import { repoBinDir } from './harness/repo.js';

const c: Containerd = await startContainerd();
t.teardown(() => c.stop());

t.test('containerd runs privately in its temp dir', async (t) => {
  t.match(c.dir, /^\/tmp\/fl-/);
  t.ok(Buffer.byteLength(c.ttrpcAddress) < 108, 'socket paths fit sun_path');
  t.equal(c.ttrpcAddress, `${c.address}.ttrpc`);
  t.ok(existsSync(c.ttrpcAddress), 'ttrpc socket exists');
  const config = readFileSync(join(c.dir, 'config.toml'), 'utf8');
  t.notMatch(config, /\/var\/lib|\/run\/containerd|\/opt\/containerd/, 'no system paths in config');
  const env = readFileSync(`/proc/${c.pid}/environ`, 'utf8').split('\0');
  const path = env.find((e) => e.startsWith('PATH='));
  t.ok(path?.startsWith(`PATH=${repoBinDir()}:`), 'repo bin dir is first on containerd PATH');
  const v = await c.ctr(['version']);
  t.equal(v.code, 0);
  t.match(v.stdout.toString(), /1\.6\.\d+/);
  const plugins = await c.ctr(['plugins', 'ls']);
  t.notMatch(plugins.stdout.toString(), /io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok/, 'CRI not loaded');
});

t.test('ctr run --rm --rootfs with the reference runtime', async (t) => {
  const r = await runRm(c, 'runc', ['echo', 'hello']);
  t.equal(r.stderr, '');
  t.equal(r.code, 0);
  t.equal(r.stdout.toString(), 'hello\n');
  t.equal(r.runtime, 'io.containerd.runc.v2');
  t.ok(existsSync(join(busyboxRootfs(c), 'bin/busybox')));
});

t.test('exit codes propagate through ctr', async (t) => {
  const r = await runRm(c, 'runc', ['sh', '-c', 'exit 3']);
  t.equal(r.code, 3);
});

t.test('stdin reaches the container, then EOF; stderr comes back', async (t) => {
  const r = await runRm(c, 'runc', ['sh', '-c', 'cat; echo oops >&2'], { input: 'from stdin', timeoutMs: 10_000 });
  t.equal(r.timedOut, false, 'EOF delivered');
  t.equal(r.code, 0);
  t.equal(r.stdout.toString(), 'from stdin');
  t.match(r.stderr, /oops/);
  const empty = await runRm(c, 'runc', ['cat'], { timeoutMs: 10_000 });
  t.equal(empty.timedOut, false, 'EOF delivered with no input');
  t.equal(empty.stdout.length, 0);
});

t.test('image-based run', async (t) => {
  const ref = await busyboxImage(c);
  t.equal(ref, DEFAULT_IMAGE_REF);
  const ls = await c.ctr(['images', 'ls', '-q']);
  t.match(ls.stdout.toString(), ref);
  const r = await runRm(c, 'runc', ['echo', 'hi'], { image: true });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.toString(), 'hi\n');
  const cmd = await runRm(c, 'runc', [], { image: true, input: 'echo default-cmd; exit 4\n', timeoutMs: 10_000 });
  t.equal(cmd.stdout.toString(), 'default-cmd\n', 'image config Cmd is sh');
  t.equal(cmd.code, 4);
});

t.test('finished runs leave nothing behind', async (t) => {
  const r = await waitForClean(c);
  t.ok(isClean(r), 'clean');
  t.same(r, { processes: [], mounts: [], bundles: [], fifos: [], sockets: [], tasks: [], containers: [] });
});

t.test('stop() tears down containerd, a live task and its shim', async (t) => {
  const id = c.newId('live');
  const run = await c.ctr(['run', '-d', '--null-io', '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sleep', '1000']);
  t.equal(run.code, 0, run.stderr);
  const shims = processesOwnedBy(c.dir, [c.pid]).filter((p) => p.argv.some((a) => a.includes('containerd-shim-runc-v2')));
  t.ok(shims.length > 0, 'a shim is running');
  const socket = shimSocketPath(c.address, c.namespace, id);
  t.ok(existsSync(socket), 'shim socket where the contract says');
  t.ok(mountsUnder(c.dir).length === 0, 'rootfs runs mount nothing under the harness dir');

  const pid = c.pid;
  const report = await c.stop();
  t.equal(report.containerdKilled, false, 'containerd exited on SIGTERM');
  t.same(report.killed, [], 'the task was removed through containerd, so its shim exited by itself');
  t.notOk(isRunning(pid), 'containerd gone');
  for (const s of shims) t.notOk(isRunning(s.pid), `shim ${s.pid} gone`);
  t.same(processesOwnedBy(c.dir), [], 'no processes left');
  t.same(mountsUnder(c.dir), [], 'no mounts left');
  t.notOk(existsSync(c.dir), 'temp dir removed');
  t.notOk(existsSync(socket), 'shim socket removed');
  t.notOk(existsSync(join(RUNC_ROOT, c.namespace)), 'runc state dir removed');
  const cgroups = readdirSync('/sys/fs/cgroup').filter((h) => existsSync(join('/sys/fs/cgroup', h, c.namespace)));
  t.same(cgroups, [], 'no cgroups left');
  t.same(await c.stop(), report, 'stop is idempotent');
});

t.test('stop() cleans up after a containerd that died under its shims', async (t) => {
  const c2 = await startContainerd();
  t.teardown(() => c2.stop());
  t.not(c2.namespace, c.namespace, 'namespaces are unique per containerd');
  const id = c2.newId('orphan');
  const run = await c2.ctr(['run', '-d', '--null-io', '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c2), id, 'sleep', '1000']);
  t.equal(run.code, 0, run.stderr);
  const imageId = c2.newId('orphan-img');
  const imageRun = await c2.ctr(['run', '-d', '--null-io', await busyboxImage(c2), imageId, 'sleep', '1000']);
  t.equal(imageRun.code, 0, imageRun.stderr);
  const mounts = mountsUnder(c2.dir).map((m) => m.mountPoint);
  t.same(mounts, [join(c2.state, 'io.containerd.runtime.v2.task', c2.namespace, imageId, 'rootfs')], 'image task rootfs mounted');
  const owned = processesOwnedBy(c2.dir, [c2.pid]);
  t.ok(owned.some((p) => p.argv.includes('sleep')), 'container process is found through the shim');
  process.kill(c2.pid, 'SIGKILL');
  const report = await c2.stop();
  t.same(report.killed.map((p) => p.pid).sort(), owned.map((p) => p.pid).sort(), 'orphaned shim and container killed');
  t.same(
    [...report.removedSockets].sort(),
    [id, imageId].map((i) => shimSocketPath(c2.address, c2.namespace, i)).sort(),
    'dead shim sockets removed',
  );
  t.same(report.unmounted, mounts, 'rootfs unmounted');
  t.same(processesOwnedBy(c2.dir), []);
  t.same(mountsUnder(c2.dir), []);
  t.notOk(existsSync(c2.dir));
  t.notOk(existsSync(join(RUNC_ROOT, c2.namespace)), 'runc state dir removed');
  const cgroups = readdirSync('/sys/fs/cgroup').filter((h) => existsSync(join('/sys/fs/cgroup', h, c2.namespace)));
  t.same(cgroups, [], 'no cgroups left');
});
