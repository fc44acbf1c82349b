import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { containerd } from '../src/generated/index.js';
import { GO_ZERO_TIME_SECONDS } from '../src/sys/exit-status.js';
import { writeRuncSettings } from '../src/taskapi/runc-settings.js';
import { DEFAULT_CONFIG } from '../src/config/config.js';
import { buildBusyboxRootfs } from './harness/busybox.js';
import { runCommand, type CommandResult } from './harness/exec.js';
import { createFailingRunc, REAL_RUNC } from './harness/failing-runc.js';
import { isRunning, mountsUnder, unmountUnder } from './harness/procfs.js';
import { repoBinDir, repoRoot } from './harness/repo.js';

/**
 * The shim's `delete` action, as containerd 1.6 runs it after every task
 * (and after a server died): `<shim> -namespace NS -address A
 * -publish-binary B -id ID -bundle DIR delete`, in the bundle. It removes
 * what a dead server left (runc state, the rootfs mount), answers with a
 * binary DeleteResponse, and, like the runc shim, only warns about a step
 * that fails, so containerd goes on to delete the bundle.
 */
const NS = 'flint-delete-test';
const tmp = mkdtempSync('/tmp/fldel-');
const runcRoot = join(tmp, 'runc');
const config = join(tmp, 'flint.json');
/** The runc root of the config, where a bundle without runc settings would be looked for. */
const configRuncRoot = join(tmp, 'config-runc');
writeFileSync(config, JSON.stringify({ runc: { root: configRuncRoot } }));
const snapshot = join(tmp, 'snapshot');
buildBusyboxRootfs(snapshot);
const failing = createFailingRunc(join(tmp, 'failing-runc'));
const created: string[] = [];

t.teardown(() => {
  for (const id of created) {
    try {
      execFileSync(REAL_RUNC, ['--root', join(runcRoot, NS), 'delete', '--force', id], { stdio: 'ignore' });
    } catch {
      // deleted by the test
    }
  }
  unmountUnder(tmp);
  rmSync(tmp, { recursive: true, force: true });
});

let bundles = 0;
/** A bundle like containerd's: config.json, and the snapshot bind-mounted on rootfs. */
function makeBundle(id: string): string {
  const bundle = join(tmp, `bundle-${++bundles}`, id);
  mkdirSync(join(bundle, 'rootfs'), { recursive: true });
  execFileSync(REAL_RUNC, ['spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as Record<string, any>;
  spec.process.args = ['sleep', '1000'];
  spec.process.terminal = false;
  spec.process.env = ['PATH=/bin'];
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  execFileSync('mount', ['--bind', snapshot, join(bundle, 'rootfs')]);
  return bundle;
}

/** What the server leaves in a bundle: the runc settings it ran with. */
async function recordSettings(bundle: string, binary: string): Promise<void> {
  await writeRuncSettings(bundle, { ...DEFAULT_CONFIG.runc, binary, root: runcRoot, noPivotRoot: false, noNewKeyring: false, criuPath: undefined });
}

/** A container a server created with the real runc and then died: its bundle, settings and runc state, and the init's pid. */
async function createdByDeadServer(id: string): Promise<{ bundle: string; pid: number }> {
  const bundle = makeBundle(id);
  await recordSettings(bundle, REAL_RUNC);
  created.push(id);
  execFileSync(REAL_RUNC, ['--root', join(runcRoot, NS), 'create', '--bundle', bundle, '--pid-file', join(bundle, 'init.pid'), id], { stdio: 'ignore' });
  return { bundle, pid: Number(readFileSync(join(bundle, 'init.pid'), 'utf8')) };
}

/** Runs `delete` as containerd does, through the installed launcher or the bundled entry point. */
function deleteCommand(id: string, bundle: string, via: 'launcher' | 'node' = 'node'): Promise<CommandResult> {
  const args = ['-namespace', NS, '-address', join(tmp, 'containerd.sock'), '-publish-binary', '/usr/bin/containerd', '-id', id, '-bundle', bundle, 'delete'];
  const env = { ...process.env, FLINT_CONFIG: config };
  if (via === 'launcher') return runCommand(join(repoBinDir(), 'containerd-shim-flint-v2'), args, { cwd: bundle, env });
  return runCommand(process.execPath, [join(repoRoot(), 'dist', 'bundle', 'shim.js'), ...args], { cwd: bundle, env });
}

function checkResponse(t: Test, r: CommandResult, pid: number): containerd.task.v2.DeleteResponse {
  t.equal(r.code, 0, `delete exits 0 (${r.stderr.trim()})`);
  const response = containerd.task.v2.DeleteResponse.decode(r.stdout);
  t.equal(response.pid, pid, 'the init pid from init.pid');
  t.equal(response.exitStatus, 137, 'exit status 137, as the runc shim reports a task it cleaned up after');
  const seconds = Number(response.exitedAt?.seconds ?? GO_ZERO_TIME_SECONDS);
  t.ok(Math.abs(seconds - Date.now() / 1000) < 60, 'exited_at is now');
  return response;
}

t.test('after a dead server: runc state removed, init killed, rootfs unmounted; a second run changes nothing', async (t) => {
  const id = 'dead-server';
  const { bundle, pid } = await createdByDeadServer(id);
  t.ok(isRunning(pid), 'the container\'s init waits in runc init');

  const first = await deleteCommand(id, bundle);
  checkResponse(t, first, pid);
  t.equal(first.stderr, '', 'no warnings');
  t.notOk(existsSync(join(runcRoot, NS, id)), 'runc state removed (runc delete --force)');
  for (let i = 0; i < 100 && isRunning(pid); i++) await new Promise((resolve) => setTimeout(resolve, 20));
  t.notOk(isRunning(pid), 'the init is gone');
  t.same(mountsUnder(join(bundle, 'rootfs')), [], 'rootfs unmounted');

  const second = await deleteCommand(id, bundle);
  checkResponse(t, second, pid);
  t.equal(second.stderr, '', 'idempotent: nothing left to do, nothing to warn about');
});

t.test('a bundle with nothing in it: pid 0, no warnings', async (t) => {
  const bundle = join(tmp, 'empty-bundle', 'never-created');
  mkdirSync(bundle, { recursive: true });
  const r = await deleteCommand('never-created', bundle);
  checkResponse(t, r, 0);
  t.equal(r.stderr, '');
  t.notOk(existsSync(configRuncRoot), 'no runc root made for it (runc makes one on any call)');
});

t.test('runc failing to delete: a warning naming runc\'s error, and the rootfs is unmounted all the same', async (t) => {
  const id = 'runc-fails';
  const bundle = makeBundle(id);
  await recordSettings(bundle, failing.binary);
  writeFileSync(join(bundle, 'init.pid'), '4242424');
  failing.failAt('delete');
  const r = await deleteCommand(id, bundle);
  checkResponse(t, r, 4242424);
  t.ok(failing.calls().includes('!delete'), 'the runc of the settings was asked to delete');
  t.match(r.stderr, /^failed to remove runc container: runc delete failed: injected failure at delete$/m, 'warned with runc\'s own message');
  t.same(mountsUnder(join(bundle, 'rootfs')), [], 'rootfs unmounted anyway');
});

t.test('a corrupt flint-runc.json: a warning naming the file, not a silent delete from the default runc root', async (t) => {
  const id = 'corrupt-settings';
  const { bundle, pid } = await createdByDeadServer(id);
  writeFileSync(join(bundle, 'flint-runc.json'), '{"binary": "/usr/sbin/ru');
  const r = await deleteCommand(id, bundle);
  checkResponse(t, r, pid);
  t.match(r.stderr, /^failed to remove runc container: .*\/flint-runc\.json is corrupt: /m, `warned, naming the file: ${r.stderr.trim()}`);
  t.ok(existsSync(join(runcRoot, NS, id)), 'the container is left for a delete that can find it, not reported gone');
  t.same(mountsUnder(join(bundle, 'rootfs')), [], 'the other steps still ran: rootfs unmounted');
  execFileSync(REAL_RUNC, ['--root', join(runcRoot, NS), 'delete', '--force', id], { stdio: 'ignore' });
});

t.test('after a clean teardown the launcher answers from the delete marker without starting Node', async (t) => {
  const bundle = join(tmp, 'clean-bundle', 'clean');
  mkdirSync(bundle, { recursive: true });
  const marker = containerd.task.v2.DeleteResponse.encode({ pid: 77, exitStatus: 3, exitedAt: { seconds: 1_700_000_000, nanos: 5 } }).finish();
  writeFileSync(join(bundle, 'flint-deleted'), marker);
  const r = await deleteCommand('clean', bundle, 'launcher');
  t.equal(r.code, 0);
  t.same(Buffer.from(r.stdout), Buffer.from(marker), 'the task\'s own exit, recorded by the server');
});
