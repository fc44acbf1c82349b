import { join } from 'node:path';
import { io, type google } from '../generated/index.js';
import type { BlkioEntry, RuncStats } from '../runc/runc.js';
import { HOST_CGROUP_FS, isUnified, readFlatKeyed, type CgroupFs, type ProcessCgroups } from './cgroup.js';

const V1 = io.containerd.cgroups.v1;
const V2 = io.containerd.cgroups.v2;

export const CGROUPS_V1_METRICS_TYPE = 'io.containerd.cgroups.v1.Metrics';
export const CGROUPS_V2_METRICS_TYPE = 'io.containerd.cgroups.v2.Metrics';

/**
 * The metrics message containerd expects for the cgroup version the
 * container's `cgroups` are on (the host's when unknown), wrapped in an Any
 * with containerd's type URL; on cgroup v2 with the memory.events counters.
 */
export function metricsAny(stats: RuncStats, cgroups: ProcessCgroups | undefined, cgroupFs: CgroupFs = HOST_CGROUP_FS): google.protobuf.IAny {
  if (cgroups?.unified ?? isUnified(cgroupFs)) {
    const events = cgroups?.unified ? memoryEvents(cgroups.dir) : undefined;
    return { typeUrl: CGROUPS_V2_METRICS_TYPE, value: V2.Metrics.encode(v2Metrics(stats, events)).finish() };
  }
  return { typeUrl: CGROUPS_V1_METRICS_TYPE, value: V1.Metrics.encode(v1Metrics(stats)).finish() };
}

/** A v2 cgroup's memory.events counters; undefined when the file cannot be read. */
export function memoryEvents(dir: string): io.containerd.cgroups.v2.MemoryEvents.$Properties | undefined {
  const values = readFlatKeyed(join(dir, 'memory.events'));
  if (!values) return undefined;
  return { low: values.low ?? 0, high: values.high ?? 0, max: values.max ?? 0, oom: values.oom ?? 0, oomKill: values.oom_kill ?? 0 };
}

/** memory.stat keys (cgroup v1) and the v1 MemoryStat fields they fill. */
const V1_MEMORY_FIELDS: Readonly<Record<string, string>> = {
  cache: 'cache', rss: 'rss', rss_huge: 'rssHuge', mapped_file: 'mappedFile', dirty: 'dirty', writeback: 'writeback',
  pgpgin: 'pgPgIn', pgpgout: 'pgPgOut', pgfault: 'pgFault', pgmajfault: 'pgMajFault',
  inactive_anon: 'inactiveAnon', active_anon: 'activeAnon', inactive_file: 'inactiveFile', active_file: 'activeFile',
  unevictable: 'unevictable', hierarchical_memory_limit: 'hierarchicalMemoryLimit', hierarchical_memsw_limit: 'hierarchicalSwapLimit',
  total_cache: 'totalCache', total_rss: 'totalRss', total_rss_huge: 'totalRssHuge', total_mapped_file: 'totalMappedFile',
  total_dirty: 'totalDirty', total_writeback: 'totalWriteback', total_pgpgin: 'totalPgPgIn', total_pgpgout: 'totalPgPgOut',
  total_pgfault: 'totalPgFault', total_pgmajfault: 'totalPgMajFault', total_inactive_anon: 'totalInactiveAnon',
  total_active_anon: 'totalActiveAnon', total_inactive_file: 'totalInactiveFile', total_active_file: 'totalActiveFile',
  total_unevictable: 'totalUnevictable',
};

export function v1Metrics(stats: RuncStats): io.containerd.cgroups.v1.Metrics {
  const memory: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(stats.memory?.raw ?? {})) {
    const field = V1_MEMORY_FIELDS[key];
    if (field) memory[field] = value;
  }
  const mem = stats.memory;
  const usage = stats.cpu?.usage;
  return V1.Metrics.create({
    pids: { current: stats.pids?.current ?? 0, limit: stats.pids?.limit ?? 0 },
    cpu: {
      usage: { total: usage?.total ?? 0, kernel: usage?.kernel ?? 0, user: usage?.user ?? 0, perCpu: usage?.percpu ?? [] },
      throttling: {
        periods: stats.cpu?.throttling?.periods ?? 0,
        throttledPeriods: stats.cpu?.throttling?.throttled_periods ?? 0,
        throttledTime: stats.cpu?.throttling?.throttled_time ?? 0,
      },
    },
    memory: { ...memory, usage: mem?.usage ?? {}, swap: mem?.swap ?? {}, kernel: mem?.kernel ?? {}, kernelTcp: mem?.kernel_tcp ?? {} },
    blkio: {
      ioServiceBytesRecursive: blkio(stats, 'io_service_bytes_recursive'),
      ioServicedRecursive: blkio(stats, 'io_serviced_recursive'),
      ioQueuedRecursive: blkio(stats, 'io_queue_recursive'),
      ioServiceTimeRecursive: blkio(stats, 'io_service_time_recursive'),
      ioWaitTimeRecursive: blkio(stats, 'io_wait_time_recursive'),
      ioMergedRecursive: blkio(stats, 'io_merged_recursive'),
      ioTimeRecursive: blkio(stats, 'io_time_recursive'),
      sectorsRecursive: blkio(stats, 'sectors_recursive'),
    },
    hugetlb: Object.entries(stats.hugetlb ?? {}).map(([pagesize, h]) => ({ pagesize, usage: h.usage ?? 0, max: h.max ?? 0, failcnt: h.failcnt ?? 0 })),
  });
}

/** memory.stat keys (cgroup v2) and the v2 MemoryStat fields they fill. */
const V2_MEMORY_FIELDS = [
  'anon', 'file', 'kernel_stack', 'slab', 'sock', 'shmem', 'file_mapped', 'file_dirty', 'file_writeback', 'anon_thp',
  'inactive_anon', 'active_anon', 'inactive_file', 'active_file', 'unevictable', 'slab_reclaimable', 'slab_unreclaimable',
  'pgfault', 'pgmajfault', 'workingset_refault', 'workingset_activate', 'workingset_nodereclaim', 'pgrefill', 'pgscan',
  'pgsteal', 'pgactivate', 'pgdeactivate', 'pglazyfree', 'pglazyfreed', 'thp_fault_alloc', 'thp_collapse_alloc',
];

export function v2Metrics(stats: RuncStats, memoryEvents?: io.containerd.cgroups.v2.MemoryEvents.$Properties): io.containerd.cgroups.v2.Metrics {
  const memory: Record<string, unknown> = {};
  for (const key of V2_MEMORY_FIELDS) {
    const value = stats.memory?.raw?.[key];
    if (value !== undefined) memory[camel(key)] = value;
  }
  const usage = stats.cpu?.usage;
  const ioByDevice = new Map<string, { major: number; minor: number; rbytes: number; wbytes: number; rios: number; wios: number }>();
  const account = (entries: BlkioEntry[], read: 'rbytes' | 'rios', write: 'wbytes' | 'wios') => {
    for (const e of entries) {
      const key = `${e.major}:${e.minor}`;
      const dev = ioByDevice.get(key) ?? { major: e.major ?? 0, minor: e.minor ?? 0, rbytes: 0, wbytes: 0, rios: 0, wios: 0 };
      const op = (e.op ?? '').toLowerCase();
      if (op === 'read') dev[read] += e.value ?? 0;
      if (op === 'write') dev[write] += e.value ?? 0;
      ioByDevice.set(key, dev);
    }
  };
  account(blkio(stats, 'io_service_bytes_recursive'), 'rbytes', 'wbytes');
  account(blkio(stats, 'io_serviced_recursive'), 'rios', 'wios');
  return V2.Metrics.create({
    pids: { current: stats.pids?.current ?? 0, limit: stats.pids?.limit ?? 0 },
    cpu: {
      usageUsec: Math.floor((usage?.total ?? 0) / 1000),
      userUsec: Math.floor((usage?.user ?? 0) / 1000),
      systemUsec: Math.floor((usage?.kernel ?? 0) / 1000),
      nrPeriods: stats.cpu?.throttling?.periods ?? 0,
      nrThrottled: stats.cpu?.throttling?.throttled_periods ?? 0,
      throttledUsec: Math.floor((stats.cpu?.throttling?.throttled_time ?? 0) / 1000),
    },
    memory: {
      ...memory,
      usage: stats.memory?.usage?.usage ?? 0,
      usageLimit: stats.memory?.usage?.limit ?? 0,
      swapUsage: stats.memory?.swap?.usage ?? 0,
      swapLimit: stats.memory?.swap?.limit ?? 0,
    },
    ...(memoryEvents ? { memoryEvents } : {}),
    io: { usage: [...ioByDevice.values()] },
    hugetlb: Object.entries(stats.hugetlb ?? {}).map(([pagesize, h]) => ({ pagesize, current: h.usage ?? 0, max: h.max ?? 0 })),
  });
}

function blkio(stats: RuncStats, key: string): BlkioEntry[] {
  return (stats.blkio?.[key] ?? []).map((e) => ({ ...e, op: e.op ?? '' }));
}

function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
