import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { TaskClient } from '../../src/generated/index.js';
import { Client } from '../../src/ttrpc/client.js';
import { Metadata, NAMESPACE_KEY } from '../../src/ttrpc/metadata.js';
import type { Containerd } from './containerd.js';

/** The unix socket path of the shim serving container `id` (from the bundle's `address` file). */
export function shimSocketOf(c: Containerd, id: string, namespace = c.namespace): string {
  const address = readFileSync(join(c.state, 'io.containerd.runtime.v2.task', namespace, id, 'address'), 'utf8').trim();
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

/**
 * Pids of the processes holding the listening unix socket bound at `path`.
 * Found through the socket's inode (/proc/net/unix, then /proc/<pid>/fd),
 * not argv, so it does not depend on how the server was started. A socket
 * bound under a temporary name and linked into place (`<path>.<suffix>`, as
 * the shim's `start` does) counts too.
 */
export function listenerPids(path: string): number[] {
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || f[5] !== '01') continue; // 01: listening
    const bound = f.slice(7).join(' ');
    if (bound === path || bound.startsWith(`${path}.`)) inodes.add(`socket:[${f[6]}]`);
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${name}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${name}/fd/${fd}`))) {
          pids.push(Number(name));
          break;
        }
      } catch {
        // closed while scanning
      }
    }
  }
  return pids;
}

/** The pid of the shim server listening on `socket`; throws unless there is exactly one. */
export function shimPidOf(socket: string): number {
  const pids = listenerPids(socket);
  if (pids.length !== 1) throw new Error(`expected one shim server on ${socket}, found ${pids.join(',') || 'none'}`);
  return pids[0]!;
}

/** VmRSS of a process in KiB, or undefined when it is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A ttrpc Task client on a unix socket, with the containerd namespace in its metadata. */
export async function taskClientAt(path: string, namespace: string): Promise<{ client: Client; task: TaskClient }> {
  const client = await Client.connect(path, { metadata: new Metadata({ [NAMESPACE_KEY]: namespace }) });
  return { client, task: new TaskClient(client) };
}
