import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { linkSync, lstatSync, mkdirSync, rmdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { containerd, google } from '../src/generated/index.js';
import { buildBusyboxRootfs } from './harness/busybox.js';
import { runCommand, type CommandResult } from './harness/exec.js';
import { FifoReader } from './harness/fifo-reader.js';
import { isRunning, signal } from './harness/procfs.js';
import { repoBinDir } from './harness/repo.js';
import { listenerPids, taskClientAt } from './harness/shim-server.js';

/**
 * The shim's `start` action as containerd 1.6 runs it: in the bundle, with
 * the runtime options (none here) on stdin, reading its combined output as
 * the address to dial. It prints only that address, writes it to the
 * bundle, and leaves behind a server that holds none of its stdio, or
 * points a container of an existing group at that group's live server.
 */
const NS = 'flint-start-test';
const tmp = mkdtempSync('/tmp/flstart-');
/** containerd's address: only hashed into the socket name here, never dialed. */
const address = join(tmp, 'containerd.sock');
const config = join(tmp, 'flint.json');
// A server ends with its last container, as the runc shim's does; spare servers have test/shim-spare.test.ts.
writeFileSync(config, JSON.stringify({ spareServerMs: 0 }));
const sockets = new Set<string>();

t.teardown(() => {
  for (const socket of sockets) {
    for (const pid of listenerPids(socket)) signal(pid, 'SIGKILL');
    rmSync(socket, { force: true });
  }
  rmSync(tmp, { recursive: true, force: true });
});

/** The address the runc shim would use: unix:///run/containerd/s/<sha256 of address/ns/group>. */
function expectedAddress(group: string): string {
  const socket = `/run/containerd/s/${createHash('sha256').update(`${address}/${NS}/${group}`).digest('hex')}`;
  sockets.add(socket);
  return `unix://${socket}`;
}

function makeBundle(id: string, annotations: Record<string, string> = {}): string {
  const bundle = join(tmp, id);
  mkdirSync(join(bundle, 'rootfs'), { recursive: true });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', process: { args: ['true'], cwd: '/' }, root: { path: 'rootfs' }, annotations }));
  return bundle;
}

/** Runs `start` in `bundle`; `options` is the runtime options Any containerd writes to its stdin. */
function start(id: string, bundle: string, options?: { typeUrl: string; value: Uint8Array }, configFile = config): Promise<CommandResult> {
  const args = ['-namespace', NS, '-address', address, '-publish-binary', '/usr/bin/containerd', '-id', id, 'start'];
  return runCommand(join(repoBinDir(), 'containerd-shim-flint-v2'), args, {
    cwd: bundle,
    input: options ? Buffer.from(google.protobuf.Any.encode(options).finish()) : '',
    env: { ...process.env, FLINT_CONFIG: configFile, TTRPC_ADDRESS: join(tmp, 'no-containerd.ttrpc') },
  });
}

/** Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, … */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * The pids listening on `socket`, once there are any: `start` hands the
 * listening socket to the server over a socketpair, so while it is in
 * flight no process holds it.
 */
async function serversOn(socket: string): Promise<number[]> {
  for (let i = 0; i < 250; i++) {
    const pids = listenerPids(socket);
    if (pids.length > 0) return pids;
    await sleep(20);
  }
  return [];
}

async function shutDown(socket: string, pid: number): Promise<void> {
  const { client, task } = await taskClientAt(socket, NS);
  await task.shutdown({ id: 'any' }).catch(() => {});
  client.close();
  for (let i = 0; i < 250 && isRunning(pid); i++) await sleep(20);
}

t.test('start prints only the address, writes it to the bundle, and leaves a detached server with no stdio of ours', async (t) => {
  const id = 'first';
  const bundle = makeBundle(id);
  const r = await start(id, bundle);
  const want = expectedAddress(id);
  t.same({ code: r.code, stdout: r.stdout.toString(), stderr: r.stderr }, { code: 0, stdout: want, stderr: '' }, 'exit 0, the address and nothing else');
  t.equal(readFileSync(join(bundle, 'address'), 'utf8'), want, '<bundle>/address, for containerd after a restart');
  const socket = want.slice('unix://'.length);
  t.ok(statSync(socket).isSocket(), 'a socket at that path');
  t.equal(statSync(socket).mode & 0o777, 0o600, 'mode 0600');

  const pids = await serversOn(socket);
  t.equal(pids.length, 1, 'one server listens on it');
  const pid = pids[0]!;
  t.same([0, 1, 2].map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`)), ['/dev/null', '/dev/null', '/dev/null'], 'the server holds none of start\'s output pipes, so containerd\'s read of them ends');
  const [, , pgrp, session] = statFields(pid);
  t.same([Number(pgrp), Number(session)], [pid, pid], 'it leads its own process group (and session), as the runc shim\'s Setpgid');
  t.equal(readlinkSync(`/proc/${pid}/cwd`), bundle, 'in the bundle, where its log FIFO is');

  const { client, task } = await taskClientAt(socket, NS);
  t.equal((await task.connect({ id })).shimPid, pid, 'it serves the task API there');
  client.close();

  // A container of the same group (the runc shim's group annotation) joins it.
  const second = makeBundle('second', { 'io.containerd.runc.v2.group': id });
  const again = await start('second', second);
  t.same({ code: again.code, stdout: again.stdout.toString() }, { code: 0, stdout: want }, 'the same group gets the same address');
  t.equal(readFileSync(join(second, 'address'), 'utf8'), want);
  t.same(await serversOn(socket), [pid], 'and no second server');

  await shutDown(socket, pid);
  t.notOk(isRunning(pid), 'Shutdown with no container ends the server');
  t.throws(() => statSync(socket), 'and its socket is gone');
});

t.test('a stale socket nobody answers on is replaced', async (t) => {
  const id = 'stale';
  const bundle = makeBundle(id);
  const want = expectedAddress(id);
  const socket = want.slice('unix://'.length);
  // Bound, linked into place, closed: a socket file with no listener, as a killed server leaves it.
  const dead = net.createServer();
  await new Promise<void>((resolve) => dead.listen(`${socket}.dead`, resolve));
  linkSync(`${socket}.dead`, socket);
  await new Promise((resolve) => dead.close(resolve));
  t.same(listenerPids(socket), [], 'nothing listens on the stale socket');

  const r = await start(id, bundle);
  t.same({ code: r.code, stdout: r.stdout.toString() }, { code: 0, stdout: want });
  const pids = await serversOn(socket);
  t.equal(pids.length, 1, 'a new server listens there');
  const { client, task } = await taskClientAt(socket, NS);
  t.equal((await task.connect({ id })).shimPid, pids[0], 'and answers');
  client.close();
  await shutDown(socket, pids[0]!);
});

/** What the Go client sends for a runtime not named io.containerd.runc.* (WithNoNewKeyring, WithShimCgroup, WithUIDOwner…). */
function createOptions(fields: Record<string, unknown>): { typeUrl: string; value: Uint8Array } {
  return { typeUrl: 'containerd.linux.runc.CreateOptions', value: containerd.linux.runc.CreateOptions.encode(fields).finish() };
}

/** The v1 path of `pid`'s cgroup in each hierarchy, keyed by the hierarchy's name in /proc/<pid>/cgroup. */
function cgroupPaths(pid: number): Record<string, string> {
  const paths: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line)!;
    paths[controllers!] = path!;
  }
  return paths;
}

t.test('containerd.linux.runc.CreateOptions: shim_cgroup holds the server, no_new_keyring reaches runc, io_gid owns the FIFOs', async (t) => {
  // A runc that records its command line, then is runc, with its state in our temp dir.
  const runcRoot = join(tmp, 'runc');
  const calls = join(tmp, 'recorded-runc.calls');
  const recorder = join(tmp, 'recorded-runc');
  writeFileSync(recorder, `#!/bin/sh\necho "$*" >> '${calls}'\nexec runc "$@"\n`, { mode: 0o755 });
  const recordingConfig = join(tmp, 'recording.json');
  writeFileSync(recordingConfig, JSON.stringify({ spareServerMs: 0, runc: { binary: recorder, root: runcRoot } }));
  // shim_cgroup exists in these hierarchies only: the server joins each of them and no other.
  const shimCgroup = `/flint-start-test-${process.pid}`;
  const hierarchies = { memory: 'memory', pids: 'pids', 'name=systemd': 'systemd' };
  const dirs = Object.values(hierarchies).map((h) => join('/sys/fs/cgroup', h, shimCgroup));
  for (const dir of dirs) mkdirSync(dir);
  const id = 'createopts';
  t.teardown(async () => {
    spawnSync('runc', ['--root', join(runcRoot, NS), 'delete', '--force', id], { stdio: 'ignore' });
    // A cgroup goes with rmdir once empty. Only our server can be in it: gone by now, unless the test failed first.
    for (const dir of dirs) {
      for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) signal(Number(pid), 'SIGKILL');
    }
    for (const dir of dirs) {
      for (let i = 0; i < 100 && readFileSync(join(dir, 'cgroup.procs'), 'utf8') !== ''; i++) await sleep(20);
      rmdirSync(dir);
    }
  });

  const bundle = join(tmp, id);
  buildBusyboxRootfs(join(bundle, 'rootfs'));
  spawnSync('runc', ['spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { process: Record<string, unknown> };
  Object.assign(spec.process, { args: ['sleep', '100'], terminal: false, env: ['PATH=/bin'] });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const options = createOptions({ noNewKeyring: true, shimCgroup, ioUid: 1234, ioGid: 5678 });
  const r = await start(id, bundle, options, recordingConfig);
  t.equal(r.code, 0, `start accepts the options ${r.stderr}`);
  const socket = r.stdout.toString().slice('unix://'.length);
  sockets.add(socket);
  const [pid] = await serversOn(socket);

  const { client, task } = await taskClientAt(socket, NS);
  const stdout = new FifoReader(join(tmp, `${id}.stdout`));
  try {
    const created = await task.create({ id, bundle, stdout: stdout.path, options });
    t.ok(created.pid > 0, 'Create takes the same options');
    // The server moves before it serves: by its first answer it is there.
    const placed = cgroupPaths(pid!);
    for (const name of Object.keys(hierarchies)) t.equal(placed[name], shimCgroup, `the server is in ${shimCgroup} on the ${name} hierarchy`);
    t.not(placed.cpu, shimCgroup, 'and where it has no such cgroup, left where it was');
    t.equal(lstatSync(stdout.path).gid, 5678, 'the stdout FIFO is given to io_gid (runc then gives its uid to the process user)');
    const create = readFileSync(calls, 'utf8').split('\n').find((line) => line.split(' ').includes('create'));
    t.match(create, /(^| )--no-new-keyring( |$)/, 'runc create: --no-new-keyring');
    await task.delete({ id });
  } finally {
    stdout.close();
    client.close();
  }
  await shutDown(socket, pid!);
});

t.test('a shim_cgroup that exists nowhere fails start with an error naming it, and leaves no server', async (t) => {
  const id = 'nocgroup';
  const bundle = makeBundle(id);
  const want = expectedAddress(id);
  const r = await start(id, bundle, createOptions({ shimCgroup: '/flint-no-such-cgroup' }));
  t.equal(r.code, 1, 'start fails');
  t.match(r.stderr, /failed to load cgroup \/flint-no-such-cgroup: it exists in no cgroup hierarchy under \/sys\/fs\/cgroup/, `the error names the cgroup: ${r.stderr.trim()}`);
  t.same(listenerPids(want.slice('unix://'.length)), [], 'no server listens for the group');
  t.throws(() => statSync(want.slice('unix://'.length)), 'and no socket is left');
});

t.test('afterwards: no server is left, nor one that start spawned early and did not need', async (t) => {
  const inTmp = (): number[] => {
    const pids: number[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        if (readlinkSync(`/proc/${name}/cwd`).startsWith(`${tmp}/`) && isRunning(Number(name))) pids.push(Number(name));
      } catch {
        // gone, or not ours to read
      }
    }
    return pids;
  };
  let left = inTmp();
  for (let i = 0; i < 250 && left.length > 0; i++) {
    await sleep(20);
    left = inTmp();
  }
  t.same(left, [], 'no process runs in the bundles');
});
