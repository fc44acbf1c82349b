import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerCgroups, shimCgroupDirs } from '../src/shim/shim-cgroup.js';

/**
 * shim_cgroup placement on fake cgroup trees: directories in a temp dir laid
 * out like /sys/fs/cgroup and /proc, where "moving" a process is writing its
 * pid to cgroup.procs, as it is on the real ones (test/shim-start.test.ts
 * moves a real server).
 */

const tmp = mkdtempSync(join(tmpdir(), 'flint-shimcg-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const PID = 4242;

/** A tree whose process (and "self") is in `home` on each of `hierarchies`, with `cgroups` made in the named hierarchies. */
function cgroupFs(name: string, lines: string[], cgroups: Record<string, string[]>, unified = false): { root: string; proc: string } {
  const root = join(tmp, name, 'cgroup');
  const proc = join(tmp, name, 'proc');
  for (const pid of [String(PID), 'self']) {
    mkdirSync(join(proc, pid), { recursive: true });
    writeFileSync(join(proc, pid, 'cgroup'), `${lines.join('\n')}\n`);
  }
  mkdirSync(root, { recursive: true });
  if (unified) writeFileSync(join(root, 'cgroup.controllers'), 'memory pids\n');
  for (const [hierarchy, dirs] of Object.entries(cgroups)) {
    for (const dir of dirs) mkdirSync(join(root, hierarchy, dir), { recursive: true });
  }
  return { root, proc };
}

function procsOf(fs: { root: string }, ...path: string[]): string | undefined {
  const file = join(fs.root, ...path, 'cgroup.procs');
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

const HYBRID_LINES = ['9:name=systemd:/home', '8:pids:/home', '4:memory:/home', '2:cpu,cpuacct:/home', '0::/v2-home'];

t.test('cgroup v1 (hybrid): the pid goes into every hierarchy that has the cgroup, named ones too, and not the v2 one', async (t) => {
  const fs = cgroupFs('hybrid', HYBRID_LINES, { systemd: ['/home', '/shim'], pids: ['/home'], memory: ['/home', '/shim'], 'cpu,cpuacct': ['/home'], unified: ['/shim'] });
  new ServerCgroups(PID, fs).place('/shim');
  t.equal(procsOf(fs, 'memory', 'shim'), String(PID), 'memory');
  t.equal(procsOf(fs, 'systemd', 'shim'), String(PID), 'name=systemd, mounted as systemd');
  t.equal(procsOf(fs, 'unified', 'shim'), undefined, 'the hybrid v2 hierarchy is left alone, as by containerd\'s cgroups.V1');
  t.equal(procsOf(fs, 'pids', 'home'), undefined, 'a hierarchy without the cgroup: not moved');
  t.same(shimCgroupDirs('/shim', fs), [join(fs.root, 'systemd', 'shim'), join(fs.root, 'memory', 'shim')], 'the dirs start checks for');
});

t.test('a group without shim_cgroup after one with it: the server goes back to where it started', async (t) => {
  const fs = cgroupFs('home', HYBRID_LINES, { systemd: ['/home', '/shim'], pids: ['/home'], memory: ['/home', '/shim'], 'cpu,cpuacct': ['/home'] });
  const cgroups = new ServerCgroups(PID, fs);
  cgroups.place(undefined);
  t.equal(procsOf(fs, 'memory', 'home'), undefined, 'never moved: nothing to undo');
  cgroups.place('/shim');
  cgroups.place('');
  for (const hierarchy of ['systemd', 'pids', 'memory', 'cpu,cpuacct']) t.equal(procsOf(fs, hierarchy, 'home'), String(PID), `back in its own cgroup on ${hierarchy}`);
});

t.test('cgroup v2: the unified cgroup', async (t) => {
  const fs = cgroupFs('v2', ['0::/home'], { '': ['/home', '/pods/shim'] }, true);
  new ServerCgroups(PID, fs).place('/pods/shim');
  t.equal(procsOf(fs, 'pods', 'shim'), String(PID));
});

t.test('a cgroup no hierarchy has, or a path out of the hierarchy: InvalidArgument naming it, nothing moved', async (t) => {
  const fs = cgroupFs('missing', HYBRID_LINES, { systemd: ['/home'], memory: ['/home', '/shim'] });
  const cgroups = new ServerCgroups(PID, fs);
  t.throws(() => cgroups.place('/nowhere'), { name: 'InvalidArgumentError', message: `failed to load cgroup /nowhere: it exists in no cgroup hierarchy under ${fs.root}` });
  t.throws(() => cgroups.place('/../../escape'), { name: 'InvalidArgumentError', message: /shim_cgroup "\/..\/..\/escape" leaves the cgroup hierarchy/ });
  t.equal(procsOf(fs, 'memory', 'shim'), undefined, 'nothing written');
});
