import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Heap snapshots of a Node process started with
 * NODE_OPTIONS=--heapsnapshot-signal=<signal> (no inspector, no network):
 * the signal makes it run a full GC and write
 * Heap.<date>.<time>.<pid>.<tid>.<seq>.heapsnapshot into its cwd. Counting
 * the objects of named classes across two snapshots tells a leak from
 * garbage V8 has not collected yet.
 */

/** The NODE_OPTIONS value that arms the snapshot signal. */
export const HEAP_SNAPSHOT_NODE_OPTIONS = '--heapsnapshot-signal=SIGUSR2';

interface RawSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Live objects per constructor name, and the total size of all live nodes. */
export interface HeapCensus {
  readonly objects: ReadonlyMap<string, number>;
  readonly totalBytes: number;
}

/**
 * Signals `pid` (whose cwd is `cwd`), waits (bounded) for the snapshot file
 * to be complete, reads its census and removes it.
 */
export async function takeHeapCensus(pid: number, cwd: string, timeoutMs = 60_000): Promise<HeapCensus> {
  const ours = (name: string): boolean => name.startsWith('Heap.') && name.includes(`.${pid}.`) && name.endsWith('.heapsnapshot');
  for (const old of readdirSync(cwd).filter(ours)) rmSync(join(cwd, old), { force: true });
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + timeoutMs;
  let lastSize = -1;
  for (;;) {
    const file = readdirSync(cwd).find(ours);
    if (file !== undefined) {
      const path = join(cwd, file);
      // Parse only once the size has held still for a poll: the writer streams it out.
      const size = sizeOf(path);
      const census = size > 0 && size === lastSize ? tryCensus(path) : undefined;
      lastSize = size;
      if (census) {
        rmSync(path, { force: true });
        return census;
      }
    }
    if (Date.now() > deadline) throw new Error(`no complete heap snapshot from ${pid} in ${cwd} after ${timeoutMs} ms`);
    await sleep(250);
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1;
  }
}

/** The census of a complete snapshot file, or undefined while it is still being written. */
function tryCensus(path: string): HeapCensus | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  let raw: RawSnapshot;
  try {
    raw = JSON.parse(text) as RawSnapshot;
  } catch {
    return undefined; // torn: still being written
  }
  return census(raw);
}

function census(raw: RawSnapshot): HeapCensus {
  const fields = raw.snapshot.meta.node_fields;
  const types = raw.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const objects = new Map<string, number>();
  let totalBytes = 0;
  for (let i = 0; i < raw.nodes.length; i += width) {
    totalBytes += raw.nodes[i + sizeAt]!;
    if (types[raw.nodes[i + typeAt]!] !== 'object') continue;
    const name = raw.strings[raw.nodes[i + nameAt]!]!;
    objects.set(name, (objects.get(name) ?? 0) + 1);
  }
  return { objects, totalBytes };
}

/**
 * Live instances of a class in a census. Bundlers may rename a class to
 * avoid a clash (`Runc2`) or for a self-reference (`_Container`), so those
 * count too.
 */
export function instances(census: HeapCensus, className: string): number {
  let n = 0;
  const re = new RegExp(`^_?${className}\\d*$`);
  for (const [name, count] of census.objects) if (re.test(name)) n += count;
  return n;
}
