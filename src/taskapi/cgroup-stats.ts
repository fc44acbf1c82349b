import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BlkioEntry, MemoryEntry, RuncStats } from '../runc/runc.js';
import { readFlatKeyed, type ProcessCgroups } from './cgroup.js';

/** cpuacct.stat counts in USER_HZ ticks, which Linux fixes at 100 a second. */
const NS_PER_TICK = 1e9 / 100;

/**
 * A container's cgroup statistics, read from its cgroup files as the runc
 * shim reads them (containerd's cgroups package), in the shape of runc's
 * `events --stats` data that metrics.ts turns into containerd's Metrics.
 * The files outlive the container's processes until `runc delete`, so a
 * stopped container has statistics too, as under the runc shim, where
 * `runc events` would refuse.
 */
export function readCgroupStats(cgroups: ProcessCgroups): RuncStats {
  return cgroups.unified ? readV2(cgroups.dir) : readV1(cgroups.dirs);
}

function readV1(dirs: Readonly<Record<string, string>>): RuncStats {
  const file = (controller: string, name: string): string | undefined => {
    const dir = dirs[controller];
    return dir === undefined ? undefined : join(dir, name);
  };
  const cpuStat = flatKeyed(file('cpu', 'cpu.stat'));
  const cpuacctStat = flatKeyed(file('cpuacct', 'cpuacct.stat'));
  const memoryStat = flatKeyed(file('memory', 'memory.stat'));
  const memory = (prefix: string): MemoryEntry => ({
    usage: number(file('memory', `${prefix}usage_in_bytes`)),
    max: number(file('memory', `${prefix}max_usage_in_bytes`)),
    failcnt: number(file('memory', `${prefix}failcnt`)),
    limit: number(file('memory', `${prefix}limit_in_bytes`)),
  });
  return {
    cpu: {
      usage: {
        total: number(file('cpuacct', 'cpuacct.usage')),
        percpu: numbers(file('cpuacct', 'cpuacct.usage_percpu')),
        kernel: (cpuacctStat.system ?? 0) * NS_PER_TICK,
        user: (cpuacctStat.user ?? 0) * NS_PER_TICK,
      },
      throttling: { periods: cpuStat.nr_periods ?? 0, throttled_periods: cpuStat.nr_throttled ?? 0, throttled_time: cpuStat.throttled_time ?? 0 },
    },
    memory: {
      cache: memoryStat.cache ?? 0,
      usage: memory('memory.'),
      swap: memory('memory.memsw.'),
      kernel: memory('memory.kmem.'),
      kernel_tcp: memory('memory.kmem.tcp.'),
      raw: memoryStat,
    },
    pids: pids(dirs.pids),
    blkio: dirs.blkio === undefined ? {} : blkioV1(dirs.blkio),
    hugetlb: hugetlb(dirs.hugetlb, (size) => ({ usage: `hugetlb.${size}.usage_in_bytes`, max: `hugetlb.${size}.max_usage_in_bytes`, failcnt: `hugetlb.${size}.failcnt` })),
  };
}

/** The blkio files runc and containerd read (CFQ's), and the throttle ones a kernel without CFQ has instead. */
const BLKIO_V1_FILES: Readonly<Record<string, string>> = {
  io_service_bytes_recursive: 'blkio.io_service_bytes_recursive',
  io_serviced_recursive: 'blkio.io_serviced_recursive',
  io_queue_recursive: 'blkio.io_queued_recursive',
  io_service_time_recursive: 'blkio.io_service_time_recursive',
  io_wait_time_recursive: 'blkio.io_wait_time_recursive',
  io_merged_recursive: 'blkio.io_merged_recursive',
  io_time_recursive: 'blkio.time_recursive',
  sectors_recursive: 'blkio.sectors_recursive',
};
const BLKIO_V1_THROTTLE_FILES: Readonly<Record<string, string>> = {
  io_service_bytes_recursive: 'blkio.throttle.io_service_bytes_recursive',
  io_serviced_recursive: 'blkio.throttle.io_serviced_recursive',
};

function blkioV1(dir: string): Record<string, BlkioEntry[]> {
  const read = (files: Readonly<Record<string, string>>) =>
    Object.fromEntries(Object.entries(files).map(([key, name]) => [key, blkioEntries(join(dir, name))]));
  const cfq = read(BLKIO_V1_FILES);
  if (cfq.io_service_bytes_recursive!.length > 0 || cfq.io_serviced_recursive!.length > 0) return cfq;
  return read(BLKIO_V1_THROTTLE_FILES);
}

/** "8:0 Read 4096" lines ("8:0 4096" for files with no operation); the "Total" lines are left out. */
function blkioEntries(file: string): BlkioEntry[] {
  const entries: BlkioEntry[] = [];
  for (const line of lines(file)) {
    const fields = line.split(/\s+/);
    const device = /^(\d+):(\d+)$/.exec(fields[0] ?? '');
    if (!device || fields.length < 2) continue;
    const [op, value] = fields.length >= 3 ? [fields[1]!, fields[2]!] : ['', fields[1]!];
    if (op === 'Total') continue;
    entries.push({ major: Number(device[1]), minor: Number(device[2]), op, value: Number(value) });
  }
  return entries;
}

function readV2(dir: string): RuncStats {
  const cpuStat = flatKeyed(join(dir, 'cpu.stat'));
  const memoryStat = flatKeyed(join(dir, 'memory.stat'));
  const usec = (key: string): number => (cpuStat[key] ?? 0) * 1000;
  const read: BlkioEntry[] = [];
  const serviced: BlkioEntry[] = [];
  // "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"
  for (const line of lines(join(dir, 'io.stat'))) {
    const [device, ...pairs] = line.split(/\s+/);
    const [major, minor] = (device ?? '').split(':').map(Number);
    const values = Object.fromEntries(pairs.map((pair) => pair.split('=')).map(([k, v]) => [k, Number(v)]));
    read.push({ major, minor, op: 'Read', value: values.rbytes ?? 0 }, { major, minor, op: 'Write', value: values.wbytes ?? 0 });
    serviced.push({ major, minor, op: 'Read', value: values.rios ?? 0 }, { major, minor, op: 'Write', value: values.wios ?? 0 });
  }
  return {
    cpu: {
      usage: { total: usec('usage_usec'), user: usec('user_usec'), kernel: usec('system_usec') },
      throttling: { periods: cpuStat.nr_periods ?? 0, throttled_periods: cpuStat.nr_throttled ?? 0, throttled_time: usec('throttled_usec') },
    },
    memory: {
      cache: memoryStat.file ?? 0,
      usage: { usage: number(join(dir, 'memory.current')), limit: number(join(dir, 'memory.max')) },
      swap: { usage: number(join(dir, 'memory.swap.current')), limit: number(join(dir, 'memory.swap.max')) },
      raw: memoryStat,
    },
    pids: pids(dir),
    blkio: { io_service_bytes_recursive: read, io_serviced_recursive: serviced },
    hugetlb: hugetlb(dir, (size) => ({ usage: `hugetlb.${size}.current`, max: `hugetlb.${size}.max` })),
  };
}

function pids(dir: string | undefined): { current: number; limit: number } {
  if (dir === undefined) return { current: 0, limit: 0 };
  return { current: number(join(dir, 'pids.current')), limit: number(join(dir, 'pids.max')) };
}

/** Per huge page size ("2MB"), the values of the files `names` gives for it. */
function hugetlb(dir: string | undefined, names: (size: string) => Record<string, string>): Record<string, Record<string, number>> {
  if (dir === undefined) return {};
  const sizes = new Set<string>();
  try {
    for (const name of readdirSync(dir)) {
      const size = /^hugetlb\.([^.]+)\./.exec(name)?.[1];
      if (size) sizes.add(size);
    }
  } catch {
    return {};
  }
  const out: Record<string, Record<string, number>> = {};
  for (const size of sizes) {
    out[size] = Object.fromEntries(Object.entries(names(size)).map(([key, name]) => [key, number(join(dir, name))]));
  }
  return out;
}

function text(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function lines(file: string): string[] {
  return (text(file) ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

/**
 * A file holding one number; a missing file reads as 0, and so does "max"
 * (cgroup v2's "no limit"), which is what runc and containerd report for
 * pids.max. (An unlimited memory.max, 2^64-1 in containerd's v2 metrics,
 * would not survive a JS number either.)
 */
function number(file: string | undefined): number {
  const value = Number(text(file)?.trim());
  return Number.isFinite(value) ? value : 0;
}

function numbers(file: string | undefined): number[] {
  return (text(file) ?? '').trim().split(/\s+/).filter((v) => v !== '').map(Number);
}

function flatKeyed(file: string | undefined): Record<string, number> {
  return (file === undefined ? undefined : readFlatKeyed(file)) ?? {};
}
