import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from '../src/generated/index.js';
import type { RuncStats } from '../src/runc/runc.js';
import { cgroupsOf } from '../src/taskapi/cgroup.js';
import { readCgroupStats } from '../src/taskapi/cgroup-stats.js';
import { CGROUPS_V1_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, memoryEvents, metricsAny, v1Metrics, v2Metrics } from '../src/taskapi/metrics.js';

/**
 * The metrics containerd gets from a container's cgroup files, read into
 * the shape of runc's `events --stats` data, for both cgroup versions. The
 * cgroup trees are directories in a temp dir laid out like /sys/fs/cgroup
 * and /proc, read by the same code that reads the real ones.
 */

const tmp = mkdtempSync(join(tmpdir(), 'flint-metrics-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** Shaped like runc 1.1's `events --stats` data on a cgroup v1 host. */
const V1_STATS: RuncStats = {
  cpu: { usage: { total: 5_000_000, percpu: [3_000_000, 2_000_000], kernel: 1_000_000, user: 4_000_000 }, throttling: { periods: 10, throttled_periods: 2, throttled_time: 7_000 } },
  memory: {
    usage: { limit: 67108864, usage: 1_048_576, max: 2_097_152, failcnt: 1 },
    swap: { limit: 134217728, usage: 1_048_576 },
    kernel: { usage: 4096 },
    kernel_tcp: { usage: 0 },
    raw: { cache: 8192, rss: 4096, total_rss: 4096, pgfault: 33, not_a_field: 9 },
  },
  pids: { current: 3, limit: 100 },
  blkio: {
    io_service_bytes_recursive: [
      { major: 8, minor: 0, op: 'Read', value: 512 },
      { major: 8, minor: 0, op: 'Write', value: 1024 },
      { major: 8, minor: 16, op: 'Read', value: 256 },
    ],
    io_serviced_recursive: [
      { major: 8, minor: 0, op: 'Read', value: 2 },
      { major: 8, minor: 0, op: 'Write', value: 3 },
    ],
  },
  hugetlb: { '2MB': { usage: 0, max: 0, failcnt: 0 } },
};

/** Shaped like runc's data on a cgroup v2 host: v2 memory.stat keys in raw. */
const V2_STATS: RuncStats = {
  ...V1_STATS,
  memory: { usage: { limit: 67108864, usage: 1_048_576 }, swap: { limit: 0, usage: 0 }, raw: { anon: 4096, file: 8192, file_dirty: 1, workingset_refault: 5, pgfault: 33 } },
};

t.test('v1Metrics: memory.stat keys, usage entries, cpu, pids, blkio, hugetlb', async (t) => {
  const m = v1Metrics(V1_STATS);
  t.same([m.memory!.cache, m.memory!.rss, m.memory!.totalRss, m.memory!.pgFault], [8192, 4096, 4096, 33], 'memory.stat keys land in their fields');
  t.notOk('not_a_field' in m.memory!, 'unknown memory.stat keys are left out');
  t.same([m.memory!.usage!.limit, m.memory!.usage!.usage, m.memory!.usage!.max, m.memory!.usage!.failcnt], [67108864, 1_048_576, 2_097_152, 1]);
  t.equal(m.memory!.swap!.limit, 134217728);
  t.same([m.cpu!.usage!.total, m.cpu!.usage!.kernel, m.cpu!.usage!.user, m.cpu!.usage!.perCpu], [5_000_000, 1_000_000, 4_000_000, [3_000_000, 2_000_000]]);
  t.same([m.cpu!.throttling!.periods, m.cpu!.throttling!.throttledPeriods, m.cpu!.throttling!.throttledTime], [10, 2, 7_000]);
  t.same([m.pids!.current, m.pids!.limit], [3, 100]);
  t.same(
    m.blkio!.ioServiceBytesRecursive!.map((e) => [e.major, e.minor, e.op, e.value]),
    [[8, 0, 'Read', 512], [8, 0, 'Write', 1024], [8, 16, 'Read', 256]],
  );
  t.same(m.blkio!.ioQueuedRecursive, [], 'a blkio key runc left out is empty');
  t.same(m.hugetlb!.map((h) => h.pagesize), ['2MB']);
  const decoded = io.containerd.cgroups.v1.Metrics.decode(io.containerd.cgroups.v1.Metrics.encode(m).finish());
  t.equal(decoded.memory!.usage!.limit, 67108864, 'survives the wire');
});

t.test('v2Metrics: camel-cased memory.stat keys, microseconds, io summed per device, memory events', async (t) => {
  const events = { low: 1, high: 2, max: 3, oom: 4, oomKill: 5 };
  const m = v2Metrics(V2_STATS, events);
  t.same([m.memory!.anon, m.memory!.file, m.memory!.fileDirty, m.memory!.workingsetRefault, m.memory!.pgfault], [4096, 8192, 1, 5, 33]);
  t.same([m.memory!.usage, m.memory!.usageLimit], [1_048_576, 67108864]);
  t.same([m.cpu!.usageUsec, m.cpu!.userUsec, m.cpu!.systemUsec, m.cpu!.throttledUsec], [5_000, 4_000, 1_000, 7], 'nanoseconds become microseconds');
  t.same([m.cpu!.nrPeriods, m.cpu!.nrThrottled], [10, 2]);
  const byDevice = Object.fromEntries(m.io!.usage!.map((u) => [`${u.major}:${u.minor}`, [u.rbytes, u.wbytes, u.rios, u.wios]]));
  t.same(byDevice, { '8:0': [512, 1024, 2, 3], '8:16': [256, 0, 0, 0] });
  t.same(m.memoryEvents, events, 'memory events are carried');
  const decoded = io.containerd.cgroups.v2.Metrics.decode(io.containerd.cgroups.v2.Metrics.encode(m).finish());
  t.equal(Number(decoded.memoryEvents!.oomKill), 5, 'memory events survive the wire');
  t.equal(v2Metrics(V2_STATS).memoryEvents, null, 'without memory events none are sent');
});

/** A fake cgroup fs: `unified` decides whether cgroup.controllers exists; pid 4242 lives in /flint/ctr. */
function cgroupFs(name: string, unified: boolean): { root: string; proc: string; dir: string } {
  const root = join(tmp, name, 'cgroup');
  const proc = join(tmp, name, 'proc');
  mkdirSync(join(proc, '4242'), { recursive: true });
  const dir = unified ? join(root, 'flint', 'ctr') : join(root, 'memory', 'flint', 'ctr');
  mkdirSync(dir, { recursive: true });
  if (unified) {
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
    writeFileSync(join(proc, '4242', 'cgroup'), '0::/flint/ctr\n');
  } else {
    writeFileSync(join(proc, '4242', 'cgroup'), '12:pids:/flint/ctr\n5:memory:/flint/ctr\n1:name=systemd:/flint/ctr\n0::/\n');
  }
  return { root, proc, dir };
}

t.test('metricsAny on cgroup v2: the v2 type, with memory.events read from the init\'s cgroup', async (t) => {
  const fs = cgroupFs('v2', true);
  writeFileSync(join(fs.dir, 'memory.events'), 'low 0\nhigh 7\nmax 8\noom 2\noom_kill 1\n');
  t.same(memoryEvents(fs.dir), { low: 0, high: 7, max: 8, oom: 2, oomKill: 1 });
  const any = metricsAny(V2_STATS, cgroupsOf(4242, fs), fs);
  t.equal(any.typeUrl, CGROUPS_V2_METRICS_TYPE);
  const m = io.containerd.cgroups.v2.Metrics.decode(any.value!);
  t.same([m.memoryEvents!.high, m.memoryEvents!.max, m.memoryEvents!.oom, m.memoryEvents!.oomKill].map(Number), [7, 8, 2, 1]);
  t.equal(Number(m.memory!.usageLimit), 67108864);

  const gone = metricsAny(V2_STATS, cgroupsOf(999_999, fs), fs);
  t.equal(gone.typeUrl, CGROUPS_V2_METRICS_TYPE, 'a process that is gone: still the host\'s cgroup version');
  t.equal(io.containerd.cgroups.v2.Metrics.decode(gone.value!).memoryEvents, null, 'with no memory events');
});

t.test('metricsAny on cgroup v1: the v1 type', async (t) => {
  const fs = cgroupFs('v1', false);
  const any = metricsAny(V1_STATS, cgroupsOf(4242, fs), fs);
  t.equal(any.typeUrl, CGROUPS_V1_METRICS_TYPE);
  t.equal(Number(io.containerd.cgroups.v1.Metrics.decode(any.value!).memory!.usage!.limit), 67108864);
});

t.test('cgroupsOf: one directory per v1 controller, a shared hierarchy serving each; the v2 one; none for a process gone', async (t) => {
  const v1 = cgroupFs('v1-of', false);
  writeFileSync(join(v1.proc, '4242', 'cgroup'), '12:pids:/a\n4:cpu,cpuacct:/a\n5:memory:/a\n1:name=systemd:/a\n0::/\n');
  t.same(cgroupsOf(4242, v1), {
    unified: false,
    dirs: { pids: join(v1.root, 'pids', 'a'), cpu: join(v1.root, 'cpu,cpuacct', 'a'), cpuacct: join(v1.root, 'cpu,cpuacct', 'a'), memory: join(v1.root, 'memory', 'a') },
  }, 'named hierarchies and the v2 line of a hybrid host are left out');
  const v2 = cgroupFs('v2-of', true);
  t.same(cgroupsOf(4242, v2), { unified: true, dir: v2.dir });
  t.equal(cgroupsOf(999_999, v2), undefined);
});

/** Writes `files` (name → content) into `dir`. */
function writeFiles(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
}

t.test('readCgroupStats on cgroup v1: what runc and containerd read from each controller', async (t) => {
  const fs = cgroupFs('v1-stats', false);
  writeFileSync(join(fs.proc, '4242', 'cgroup'), '12:pids:/c\n4:cpu,cpuacct:/c\n5:memory:/c\n7:blkio:/c\n');
  writeFiles(join(fs.root, 'pids', 'c'), { 'pids.current': '3\n', 'pids.max': 'max\n' });
  writeFiles(join(fs.root, 'cpu,cpuacct', 'c'), {
    'cpu.stat': 'nr_periods 10\nnr_throttled 2\nthrottled_time 7000\n',
    'cpuacct.usage': '5000000\n',
    'cpuacct.usage_percpu': '3000000 2000000 \n',
    'cpuacct.stat': 'user 4\nsystem 1\n',
  });
  writeFiles(join(fs.root, 'memory', 'c'), {
    'memory.stat': 'cache 8192\nrss 4096\ntotal_rss 4096\nhierarchical_memory_limit 67108864\n',
    'memory.usage_in_bytes': '1048576\n',
    'memory.max_usage_in_bytes': '2097152\n',
    'memory.failcnt': '1\n',
    'memory.limit_in_bytes': '67108864\n',
    'memory.memsw.limit_in_bytes': '134217728\n',
    'memory.kmem.usage_in_bytes': '4096\n',
  });
  writeFiles(join(fs.root, 'blkio', 'c'), {
    'blkio.io_service_bytes_recursive': 'Total 0\n',
    'blkio.throttle.io_service_bytes_recursive': '8:0 Read 512\n8:0 Write 1024\n8:0 Total 1536\nTotal 1536\n',
    'blkio.throttle.io_serviced_recursive': '8:0 Read 2\n8:0 Write 3\nTotal 5\n',
  });
  const cgroups = cgroupsOf(4242, fs)!;
  const stats = readCgroupStats(cgroups);
  t.same(stats.pids, { current: 3, limit: 0 }, 'pids.max "max" is no limit: 0');
  t.same(stats.cpu, { usage: { total: 5_000_000, percpu: [3_000_000, 2_000_000], kernel: 10_000_000, user: 40_000_000 }, throttling: { periods: 10, throttled_periods: 2, throttled_time: 7000 } }, 'cpuacct.stat ticks in nanoseconds');
  t.same(stats.memory!.usage, { usage: 1_048_576, max: 2_097_152, failcnt: 1, limit: 67108864 });
  t.same(stats.memory!.swap, { usage: 0, max: 0, failcnt: 0, limit: 134217728 }, 'swap is memsw; files that are missing read as 0');
  t.equal(stats.memory!.kernel!.usage, 4096);
  t.same(stats.blkio!.io_service_bytes_recursive, [{ major: 8, minor: 0, op: 'Read', value: 512 }, { major: 8, minor: 0, op: 'Write', value: 1024 }], 'no CFQ counts: the throttle ones, without the totals');
  const any = metricsAny(stats, cgroups, fs);
  t.equal(any.typeUrl, CGROUPS_V1_METRICS_TYPE);
  const m = io.containerd.cgroups.v1.Metrics.decode(any.value!);
  t.same([m.memory!.cache, m.memory!.rss, m.memory!.hierarchicalMemoryLimit, m.memory!.usage!.limit, m.pids!.current].map(Number), [8192, 4096, 67108864, 67108864, 3], 'and they reach containerd\'s v1 Metrics');
});

t.test('readCgroupStats on cgroup v2: cpu.stat, memory files, io.stat, pids', async (t) => {
  const fs = cgroupFs('v2-stats', true);
  writeFiles(fs.dir, {
    'cpu.stat': 'usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 7\n',
    'memory.stat': 'anon 4096\nfile 8192\npgfault 33\n',
    'memory.current': '1048576\n',
    'memory.max': '67108864\n',
    'memory.swap.current': '0\n',
    'memory.swap.max': 'max\n',
    'memory.events': 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n',
    'pids.current': '2\n',
    'pids.max': '100\n',
    'io.stat': '8:0 rbytes=512 wbytes=1024 rios=2 wios=3 dbytes=0 dios=0\n',
  });
  const cgroups = cgroupsOf(4242, fs)!;
  const any = metricsAny(readCgroupStats(cgroups), cgroups, fs);
  t.equal(any.typeUrl, CGROUPS_V2_METRICS_TYPE);
  const m = io.containerd.cgroups.v2.Metrics.decode(any.value!);
  t.same([m.cpu!.usageUsec, m.cpu!.userUsec, m.cpu!.systemUsec, m.cpu!.nrPeriods, m.cpu!.nrThrottled, m.cpu!.throttledUsec].map(Number), [5000, 4000, 1000, 10, 2, 7]);
  t.same([m.memory!.anon, m.memory!.file, m.memory!.usage, m.memory!.usageLimit].map(Number), [4096, 8192, 1_048_576, 67108864]);
  t.same([m.pids!.current, m.pids!.limit].map(Number), [2, 100]);
  t.same(m.io!.usage!.map((u) => [u.major, u.minor, u.rbytes, u.wbytes, u.rios, u.wios].map(Number)), [[8, 0, 512, 1024, 2, 3]]);
  t.equal(Number(m.memoryEvents!.oomKill), 1, 'with memory.events');
});
