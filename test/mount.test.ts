import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, UnimplementedError } from '../src/errdefs/errors.js';
import { Bundle, readSpec, safeJoin, validateId, writeFileAtomic } from '../src/bundle/bundle.js';
import {
  assertSafeMountTarget,
  compactLowerdir,
  decodeMountinfoPath,
  MountError,
  mountAll,
  parseMountinfo,
  parseMountOptions,
  readMountinfo,
  unmountAll,
} from '../src/bundle/mount.js';
import {
  MS_BIND,
  MS_NOATIME,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REC,
  MS_RELATIME,
  MS_REMOUNT,
  MS_SHARED,
  MS_SLAVE,
  MS_STRICTATIME,
  MS_SYNCHRONOUS,
} from '../src/native/mount.js';

/** A scratch dir; teardown unmounts anything left below it before deleting. */
function scratch(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'flint-mount-'));
  t.teardown(() => {
    unmountAll(dir);
    // Never rm through a mount: that would delete the mounted source's files.
    if (mountsBelow(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function mountsBelow(dir: string) {
  return readMountinfo().filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'));
}

function mountAt(path: string) {
  return readMountinfo().filter((m) => m.mountPoint === path);
}

t.test('parseMountOptions: flags, propagation and data', async (t) => {
  const cases: Array<[string[], number, number, string]> = [
    [[], 0, 0, ''],
    [['defaults'], 0, 0, ''],
    [['ro'], MS_RDONLY, 0, ''],
    [['ro', 'rw'], 0, 0, ''],
    [['rw', 'ro'], MS_RDONLY, 0, ''],
    [['bind'], MS_BIND, 0, ''],
    [['rbind', 'ro'], MS_BIND | MS_REC | MS_RDONLY, 0, ''],
    [['nosuid', 'nodev', 'noexec'], MS_NOSUID | MS_NODEV | MS_NOEXEC, 0, ''],
    [['nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec'], 0, 0, ''],
    [['remount', 'ro'], MS_REMOUNT | MS_RDONLY, 0, ''],
    [['sync'], MS_SYNCHRONOUS, 0, ''],
    [['sync', 'async'], 0, 0, ''],
    [['relatime'], MS_RELATIME, 0, ''],
    [['relatime', 'norelatime'], 0, 0, ''],
    [['noatime', 'strictatime'], MS_NOATIME | MS_STRICTATIME, 0, ''],
    [['private'], 0, MS_PRIVATE, ''],
    [['rprivate'], 0, MS_PRIVATE | MS_REC, ''],
    [['shared'], 0, MS_SHARED, ''],
    [['rshared'], 0, MS_SHARED | MS_REC, ''],
    [['slave'], 0, MS_SLAVE, ''],
    [['rslave', 'bind'], MS_BIND, MS_SLAVE | MS_REC, ''],
    [['size=64m', 'mode=755'], 0, 0, 'size=64m,mode=755'],
    [
      ['index=off', 'lowerdir=/l2:/l1', 'upperdir=/u', 'workdir=/w', 'ro'],
      MS_RDONLY,
      0,
      'index=off,lowerdir=/l2:/l1,upperdir=/u,workdir=/w',
    ],
  ];
  for (const [options, flags, propagation, data] of cases) {
    const parsed = parseMountOptions(options);
    t.same(
      { flags: parsed.flags, propagation: parsed.propagation, data: parsed.data },
      { flags, propagation, data },
      JSON.stringify(options),
    );
  }
  t.equal(parseMountOptions(['loop']).loop, true);
  t.equal(parseMountOptions(['ro']).loop, false);
});

t.test('compactLowerdir rewrites layers relative to their common parent', async (t) => {
  const base = '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots';
  const got = compactLowerdir([`lowerdir=${base}/12/fs:${base}/3/fs:${base}/1/fs`, `upperdir=${base}/13/fs`, 'index=off']);
  t.same(got, {
    cwd: base,
    options: ['lowerdir=12/fs:3/fs:1/fs', `upperdir=${base}/13/fs`, 'index=off'],
  });
  // A layer that is itself the common dir keeps a non-empty relative path.
  t.same(compactLowerdir(['lowerdir=/a/b:/a/b/c']), { cwd: '/a', options: ['lowerdir=b:b/c'] });
  t.equal(compactLowerdir(['lowerdir=/a/b']), null, 'a single layer is left alone');
  t.equal(compactLowerdir(['lowerdir=/a:/b']), null, 'no common parent');
  t.equal(compactLowerdir(['upperdir=/u']), null, 'no lowerdir');
});

t.test('mountinfo parsing decodes octal escapes', async (t) => {
  t.equal(decodeMountinfoPath('/tmp/a\\040b\\011c\\012d\\134e'), '/tmp/a b\tc\nd\\e');
  const text =
    '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n' +
    '37 36 0:5 / /proc rw - proc proc rw\n' +
    'garbage line\n';
  const mounts = parseMountinfo(text);
  t.equal(mounts.length, 2);
  t.match(mounts[0], {
    id: 36,
    parentId: 35,
    root: '/mnt1',
    mountPoint: '/mnt/with space',
    options: 'rw,noatime',
    optionalFields: ['master:1', 'shared:7'],
    fsType: 'ext3',
    source: '/dev/root',
    superOptions: 'rw,errors=continue',
  });
  t.same(mounts[1]!.optionalFields, []);
  t.ok(readMountinfo().some((m) => m.mountPoint === '/'), 'the live table has a root mount');
});

t.test('tmpfs, bind and overlay mounts, then unmountAll', async (t) => {
  const dir = scratch(t);
  const rootfs = join(dir, 'rootfs');
  const src = join(dir, 'src');
  const [l1, l2, upper, work] = ['l1', 'l2', 'upper', 'work'].map((n) => join(dir, n)) as [string, string, string, string];
  for (const d of [rootfs, src, l1, l2, upper, work]) mkdirSync(d);
  writeFileSync(join(src, 'hello'), 'from-src');
  writeFileSync(join(l1, 'one'), 'layer1');
  writeFileSync(join(l2, 'two'), 'layer2');
  writeFileSync(join(l1, 'shadowed'), 'old');
  writeFileSync(join(l2, 'shadowed'), 'new');

  mountAll([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${l2}:${l1}`, `upperdir=${upper}`, `workdir=${work}`] }], rootfs);
  t.equal(mountAt(rootfs)[0]?.fsType, 'overlay');
  t.equal(readFileSync(join(rootfs, 'one'), 'utf8'), 'layer1');
  t.equal(readFileSync(join(rootfs, 'two'), 'utf8'), 'layer2');
  t.equal(readFileSync(join(rootfs, 'shadowed'), 'utf8'), 'new', 'the first lowerdir is on top');
  writeFileSync(join(rootfs, 'written'), 'x');
  t.ok(existsSync(join(upper, 'written')), 'writes land in upperdir');

  mountAll(
    [
      { type: 'tmpfs', source: 'tmpfs', target: '/run', options: ['nosuid', 'nodev', 'mode=755', 'size=1m'] },
      { type: 'bind', source: src, target: '/mnt/data', options: ['rbind', 'ro', 'rprivate'] },
    ],
    rootfs,
  );
  const run = mountAt(join(rootfs, 'run'));
  t.equal(run[0]?.fsType, 'tmpfs');
  t.match(run[0]?.options, /nosuid/);
  t.match(run[0]?.options, /nodev/);
  const data = mountAt(join(rootfs, 'mnt/data'));
  t.equal(data.length, 1);
  t.match(data[0]?.options, /^ro\b/, 'bind remounted read-only');
  t.equal(readFileSync(join(rootfs, 'mnt/data/hello'), 'utf8'), 'from-src');
  t.throws(() => writeFileSync(join(rootfs, 'mnt/data/new'), 'x'), { code: 'EROFS' });

  // Stack a second tmpfs on /run and nest a bind below it.
  mountAll([{ type: 'tmpfs', source: 'tmpfs', target: '/run', options: [] }], rootfs);
  mountAll([{ type: 'bind', source: src, target: '/run/nested', options: ['bind'] }], rootfs);
  t.equal(mountAt(join(rootfs, 'run')).length, 2, 'two stacked tmpfs');
  t.equal(mountsBelow(rootfs).length, 5);

  unmountAll(rootfs);
  t.equal(mountsBelow(rootfs).length, 0, 'everything below rootfs is gone');
  t.same(readdirSync(rootfs).sort(), [], 'rootfs is an empty dir again');
  t.doesNotThrow(() => unmountAll(rootfs), 'nothing mounted is fine');
  t.doesNotThrow(() => unmountAll(join(dir, 'missing')), 'a missing target is fine');
});

t.test('propagation options are applied by their own mount call', async (t) => {
  const dir = scratch(t);
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['shared'] }], rootfs);
  t.ok(mountAt(rootfs)[0]?.optionalFields.some((f) => f.startsWith('shared:')), 'mount is shared');
  mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['remount', 'private'] }], rootfs);
  t.notOk(mountAt(rootfs)[0]?.optionalFields.some((f) => f.startsWith('shared:')), 'then private');
  t.equal(mountAt(rootfs).length, 1, 'a propagation-only change creates no mount');
  unmountAll(rootfs);
});

t.test('overlay with a lowerdir longer than a page', async (t) => {
  const dir = scratch(t);
  const snapshots = join(dir, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
  const layers: string[] = [];
  for (let i = 1; i <= 64; i++) {
    const fs = join(snapshots, String(i), 'fs');
    mkdirSync(fs, { recursive: true });
    writeFileSync(join(fs, `file${i}`), String(i));
    layers.unshift(fs);
  }
  const upper = join(snapshots, '65', 'fs');
  const work = join(snapshots, '65', 'work');
  mkdirSync(upper, { recursive: true });
  mkdirSync(work);
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  const options = [`lowerdir=${layers.join(':')}`, `upperdir=${upper}`, `workdir=${work}`];
  t.ok(options.join(',').length > 4096, `options are ${options.join(',').length} bytes`);

  const cwd = process.cwd();
  mountAll([{ type: 'overlay', source: 'overlay', options }], rootfs);
  t.equal(process.cwd(), cwd, 'cwd restored');
  t.equal(readFileSync(join(rootfs, 'file1'), 'utf8'), '1');
  t.equal(readFileSync(join(rootfs, 'file64'), 'utf8'), '64');
  unmountAll(rootfs);

  // One layer cannot be shortened: a clear error and nothing mounted.
  const huge = `lowerdir=/${'x'.repeat(4200)}`;
  t.throws(() => mountAll([{ type: 'overlay', source: 'overlay', options: [huge] }], rootfs), {
    name: 'InvalidArgumentError',
    message: /over the 4096-byte limit of mount\(2\)/,
  });
  t.equal(mountsBelow(rootfs).length, 0);
});

t.test('a failing mount undoes the mounts made before it', async (t) => {
  const dir = scratch(t);
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  const missing = join(dir, 'no-such-source');
  let err: unknown;
  try {
    mountAll(
      [
        { type: 'tmpfs', source: 'tmpfs', options: [] },
        { type: 'tmpfs', source: 'tmpfs', target: '/a', options: [] },
        { type: 'bind', source: missing, target: '/b', options: ['rbind'] },
        { type: 'tmpfs', source: 'tmpfs', target: '/c', options: [] },
      ],
      rootfs,
    );
  } catch (e) {
    err = e;
  }
  t.type(err, MountError);
  const me = err as MountError;
  t.equal(me.errno, 'ENOENT');
  t.equal(me.mountType, 'bind');
  t.equal(me.source, missing);
  t.match(me.message, /failed to mount bind \(source ".*no-such-source"\) on .*\/b: ENOENT/);
  t.equal(mountsBelow(rootfs).length, 0, 'earlier mounts were undone');

  const bad = { type: 'tmpfs', source: 'tmpfs', options: ['size=not-a-size'] };
  t.throws(() => mountAll([bad], rootfs), { name: 'MountError', errno: 'EINVAL', mountType: 'tmpfs' });
  t.throws(() => mountAll([{ type: 'ext4', source: 'img', options: ['loop'] }], rootfs), UnimplementedError);
  t.equal(mountsBelow(rootfs).length, 0);
});

t.test('mount targets must stay inside the bundle and off kernel trees', async (t) => {
  const dir = scratch(t);
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'sub'), { recursive: true });
  symlinkSync('/proc', join(rootfs, 'to-proc'));
  symlinkSync('/etc', join(rootfs, 'to-etc'));
  symlinkSync('sub', join(rootfs, 'to-sub'));

  for (const target of ['/', '/proc', '/proc/sys', '/sys', '/sys/fs/cgroup', '/dev', '/dev/shm', '/dev/../proc/1', join(rootfs, 'to-proc')]) {
    t.throws(() => assertSafeMountTarget(target), InvalidArgumentError, `refuses ${target}`);
  }
  t.throws(() => assertSafeMountTarget(join(rootfs, 'to-etc'), rootfs), { message: /outside/ });
  t.throws(() => assertSafeMountTarget(join(dir, 'elsewhere'), rootfs), { message: /outside/ });
  t.equal(assertSafeMountTarget(join(rootfs, 'to-sub', 'x'), rootfs), join(rootfs, 'sub', 'x'));
  t.equal(assertSafeMountTarget('/procfoo/x'), '/procfoo/x', 'only the trees themselves are refused');

  for (const target of ['../../etc', '/to-etc/x', '/to-proc']) {
    t.throws(() => mountAll([{ type: 'tmpfs', source: 'tmpfs', target, options: [] }], rootfs), InvalidArgumentError, target);
  }
  t.equal(mountsBelow(rootfs).length, 0, 'nothing was mounted');
  t.notOk(existsSync('/etc/x'), 'no directory was created outside');
});

t.test('validateId follows containerd identifiers', async (t) => {
  const valid = ['a', 'A1', 'abc-def', 'a.b_c-d', '0', 'x'.repeat(76), 'sha256.0123abc'];
  for (const id of valid) t.doesNotThrow(() => validateId(id), id);
  const pattern = '^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$';
  const invalid: Array<[string, string]> = [
    ['', 'identifier must not be empty'],
    ['x'.repeat(77), `identifier "${'x'.repeat(77)}" greater than maximum length (76 characters)`],
    ['a..b', `identifier "a..b" must match ${pattern}`],
    ['-a', `identifier "-a" must match ${pattern}`],
    ['a-', `identifier "a-" must match ${pattern}`],
    ['a b', `identifier "a b" must match ${pattern}`],
    ['../x', `identifier "../x" must match ${pattern}`],
    ['a/b', `identifier "a/b" must match ${pattern}`],
    ['ünï', `identifier "ünï" must match ${pattern}`],
  ];
  for (const [id, message] of invalid) {
    t.throws(() => validateId(id), new InvalidArgumentError(message), JSON.stringify(id));
  }
});

t.test('safeJoin refuses to escape root', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'flint-join-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'sub'));
  symlinkSync('/etc', join(root, 'abs-out'));
  symlinkSync('../..', join(root, 'sub', 'rel-out'));
  symlinkSync('sub', join(root, 'rel-in'));
  symlinkSync('/nonexistent-flint-target', join(root, 'dangling-out'));

  t.equal(safeJoin(root, 'a/b'), join(root, 'a/b'));
  t.equal(safeJoin(root, '/etc/passwd'), join(root, 'etc/passwd'), 'absolute parts are root-relative');
  t.equal(safeJoin(root, 'sub', '..', 'x'), join(root, 'x'));
  t.equal(safeJoin(root, 'rel-in', 'x'), join(root, 'sub', 'x'), 'symlinks inside root are followed');
  t.equal(safeJoin(root), root);
  for (const parts of [['..'], ['a', '../../x'], ['abs-out'], ['abs-out', 'passwd'], ['sub', 'rel-out', 'x'], ['dangling-out', 'x']]) {
    t.throws(() => safeJoin(root, ...parts), InvalidArgumentError, parts.join('/'));
  }
});

t.test('writeFileAtomic replaces a file in one step', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'flint-atomic-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'address');
  await writeFileAtomic(file, 'unix:///one');
  t.equal(await readFile(file, 'utf8'), 'unix:///one');
  await writeFile(join(dir, 'other'), 'keep');
  await writeFileAtomic(file, Buffer.from('unix:///two'), 0o600);
  t.equal(await readFile(file, 'utf8'), 'unix:///two');
  t.equal((await stat(file)).mode & 0o777, 0o600);
  t.same(readdirSync(dir).sort(), ['address', 'other'], 'no temp files left');

  // Tests run as root, which ignores directory permissions; a directory in
  // the way makes the rename fail instead.
  const sub = join(dir, 'sub');
  mkdirSync(join(sub, 'taken'), { recursive: true });
  await t.rejects(writeFileAtomic(join(sub, 'taken'), 'x'), { code: 'EISDIR' });
  t.same(readdirSync(sub), ['taken'], 'temp file removed after a failure');
});

t.test('Bundle paths and readSpec', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'flint-bundle-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bundle = new Bundle(dir);
  t.match(bundle, {
    path: dir,
    configPath: join(dir, 'config.json'),
    rootfs: join(dir, 'rootfs'),
    logFifo: join(dir, 'log'),
    runcLog: join(dir, 'log.json'),
    initPidFile: join(dir, 'init.pid'),
    addressFile: join(dir, 'address'),
  });
  t.equal(bundle.execPidFile('exec-1'), join(dir, 'exec-1.pid'));
  t.throws(() => bundle.execPidFile('../x'), InvalidArgumentError);

  await t.rejects(bundle.readSpec(), { name: 'InvalidArgumentError', message: new RegExp(`failed to read spec ${bundle.configPath}`) });
  await writeFile(bundle.configPath, '{"ociVersion": ');
  await t.rejects(readSpec(bundle.configPath), { name: 'InvalidArgumentError', message: new RegExp(`invalid spec ${bundle.configPath}`) });
  await writeFile(bundle.configPath, '[1]');
  await t.rejects(readSpec(bundle.configPath), { message: /not a JSON object/ });
  await writeFile(bundle.configPath, JSON.stringify({ ociVersion: '1.0.2', process: { cwd: '/', args: ['sh'] } }));
  const spec = await bundle.readSpec();
  t.same(spec.process?.args, ['sh']);
  t.ok(statSync(bundle.configPath).isFile());
});
