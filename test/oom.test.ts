import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { OomWatcher } from '../src/taskapi/oom.js';

/**
 * OomWatcher on fake cgroup trees: directories in a temp dir laid out like
 * /sys/fs/cgroup and /proc. The files are real and so are the eventfd and
 * inotify the watcher sets up; only the kernel's writes are done by the test.
 */

const tmp = mkdtempSync(join(tmpdir(), 'flint-oom-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const PID = 4242;

function cgroupFs(name: string, unified: boolean): { fs: { root: string; proc: string }; dir: string } {
  const root = join(tmp, name, 'cgroup');
  const proc = join(tmp, name, 'proc');
  mkdirSync(join(proc, String(PID)), { recursive: true });
  const dir = unified ? join(root, 'ctr') : join(root, 'memory', 'ctr');
  mkdirSync(dir, { recursive: true });
  if (unified) writeFileSync(join(root, 'cgroup.controllers'), 'memory pids\n');
  writeFileSync(join(proc, String(PID), 'cgroup'), unified ? '0::/ctr\n' : '4:memory:/ctr\n2:cpu,cpuacct:/ctr\n');
  return { fs: { root, proc }, dir };
}

/** A pino logger whose JSON lines are kept in `lines`. */
function capturingLogger(): { log: pino.Logger; lines: Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  return { log: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) }), lines };
}
const quiet = pino({ enabled: false });

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await sleep(20);
  return condition();
}

t.test('cgroup v1: registers an eventfd on memory.oom_control; a grown oom_kill count is one OOM', async (t) => {
  const { fs, dir } = cgroupFs('v1', false);
  const oomControl = join(dir, 'memory.oom_control');
  writeFileSync(oomControl, 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n');
  writeFileSync(join(dir, 'cgroup.event_control'), '');
  let ooms = 0;
  const watcher = new OomWatcher(() => ooms++, quiet, fs);
  watcher.watch(PID);
  const registration = readFileSync(join(dir, 'cgroup.event_control'), 'utf8');
  t.match(registration, /^\d+ \d+$/, `"<eventfd> <oom_control fd>" written to cgroup.event_control: ${registration}`);
  // The kernel signals the eventfd; here nothing does, so close() reads the counter one last time.
  writeFileSync(oomControl, 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n');
  watcher.close();
  t.equal(ooms, 1, 'the kill counted before close is reported');
  watcher.close();
  t.equal(ooms, 1, 'closing twice reports nothing more');
});

t.test('cgroup v1: an unchanged counter at close is no OOM', async (t) => {
  const { fs, dir } = cgroupFs('v1-quiet', false);
  writeFileSync(join(dir, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 3\n');
  writeFileSync(join(dir, 'cgroup.event_control'), '');
  let ooms = 0;
  const watcher = new OomWatcher(() => ooms++, quiet, fs);
  watcher.watch(PID);
  watcher.close();
  t.equal(ooms, 0, 'kills before the watch began are not this container\'s news');
});

t.test('cgroup v2: memory.events is watched (inotify), each grown oom_kill is reported once', async (t) => {
  const { fs, dir } = cgroupFs('v2', true);
  const events = join(dir, 'memory.events');
  writeFileSync(events, 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n');
  let ooms = 0;
  const watcher = new OomWatcher(() => ooms++, quiet, fs);
  t.teardown(() => watcher.close());
  watcher.watch(PID);
  writeFileSync(events, 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n');
  writeFileSync(events, 'low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n');
  t.ok(await until(() => ooms === 1), 'the oom_kill increment is seen while the watch runs, before any close');
  writeFileSync(events, 'low 0\nhigh 0\nmax 6\noom 1\noom_kill 1\n');
  writeFileSync(events, 'low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n');
  t.ok(await until(() => ooms === 2), 'and the next one');
  watcher.close();
  t.equal(ooms, 2, 'close finds nothing new');
});

t.test('cgroup v2: a kill not yet noticed is reported at close', async (t) => {
  const { fs, dir } = cgroupFs('v2-close', true);
  const events = join(dir, 'memory.events');
  writeFileSync(events, 'oom 0\noom_kill 0\n');
  let ooms = 0;
  const watcher = new OomWatcher(() => ooms++, quiet, fs);
  watcher.watch(PID);
  writeFileSync(events, 'oom 1\noom_kill 1\n');
  watcher.close();
  t.equal(ooms, 1);
});

t.test('no memory cgroup, or no such process: nothing to watch, nothing thrown', async (t) => {
  const { fs, dir } = cgroupFs('none', false);
  writeFileSync(join(fs.proc, String(PID), 'cgroup'), '2:cpu,cpuacct:/ctr\n');
  writeFileSync(join(dir, 'memory.oom_control'), 'oom_kill 0\n');
  writeFileSync(join(dir, 'cgroup.event_control'), '');
  const { log, lines } = capturingLogger();
  const watcher = new OomWatcher(() => t.fail('no OOM'), log, fs);
  watcher.watch(PID);
  watcher.watch(PID + 1);
  writeFileSync(join(dir, 'memory.oom_control'), 'oom_kill 1\n');
  watcher.close();
  t.equal(readFileSync(join(dir, 'cgroup.event_control'), 'utf8'), '', 'no eventfd was registered');
  t.same(lines, [], 'and nothing to log: there was nothing to watch');
});

t.test('a registration that fails is logged as an error naming the cgroup and the cause, not swallowed', async (t) => {
  const { fs, dir } = cgroupFs('v1-broken', false);
  // A memory cgroup without memory.oom_control: the registration cannot open it.
  writeFileSync(join(dir, 'cgroup.event_control'), '');
  const { log, lines } = capturingLogger();
  const watcher = new OomWatcher(() => t.fail('no OOM'), log, fs);
  watcher.watch(PID);
  watcher.close();
  t.equal(lines.length, 1, 'one line logged');
  t.match(lines[0], { level: 50, msg: 'add cg to OOM monitor', pid: PID, cgroup: dir, err: { code: 'ENOENT', message: /memory\.oom_control/ } }, 'at error level, as the runc shim logs it');
  t.equal(readFileSync(join(dir, 'cgroup.event_control'), 'utf8'), '', 'nothing registered');
});
