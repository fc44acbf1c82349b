import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { shimIdentities, shimSocketPath } from './cleanup.js';
import type { Containerd } from './containerd.js';
import { mountsUnder, processesOwnedBy, type ProcInfo } from './procfs.js';
import { listenerPids } from './shim-server.js';
import { spareSocketPath } from '../../src/shim/socket-address.js';

/** Everything a finished scenario may have left behind; every list is empty when clean. */
export interface LeftoverReport {
  /**
   * Processes other than containerd whose argv names the harness dir (shims,
   * ctr) and their descendants. A flint server waiting as the containerd's
   * spare (spareServerMs) serves nothing and leaves by itself: it is not a
   * leftover (test/shim-spare.test.ts checks that it leaves).
   */
  readonly processes: readonly ProcInfo[];
  /** Mount points under the harness dir. */
  readonly mounts: readonly string[];
  /** `<ns>/<id>` bundle dirs under <state>/io.containerd.runtime.v2.task and work dirs under <root>/... */
  readonly bundles: readonly string[];
  /** Anything under the ctr FIFO dir. */
  readonly fifos: readonly string[];
  /** Shim sockets in /run/containerd/s for ids this harness knows. */
  readonly sockets: readonly string[];
  /** Task ids containerd still lists in the inspected namespace (default the harness's). */
  readonly tasks: readonly string[];
  /** Container ids containerd still lists in the inspected namespace. */
  readonly containers: readonly string[];
}

/**
 * Inspects `c` for leftovers of finished containers. Tasks and containers are
 * listed in `namespace`, by default the harness's own (CRI uses k8s.io).
 */
export async function leftovers(c: Containerd, namespace = c.namespace): Promise<LeftoverReport> {
  const processes = processesOwnedBy(c.dir, [c.pid, ...spareServerPids(c)]);
  const namespaces = new Set([c.namespace, namespace]);
  const bundles: string[] = [];
  for (const base of [c.state, c.root]) {
    const dir = join(base, 'io.containerd.runtime.v2.task');
    for (const ns of safeReaddir(dir)) {
      namespaces.add(ns);
      for (const id of safeReaddir(join(dir, ns))) bundles.push(`${ns}/${id}`);
    }
  }
  const socketCandidates = new Set<string>();
  for (const ns of namespaces) for (const id of c.knownIds) socketCandidates.add(shimSocketPath(c.address, ns, id));
  for (const { namespace, id } of shimIdentities(processes)) socketCandidates.add(shimSocketPath(c.address, namespace, id));
  const [tasks, containers] = await Promise.all([listIds(c, 'tasks', namespace), listIds(c, 'containers', namespace)]);
  return {
    processes,
    mounts: mountsUnder(c.dir).map((m) => m.mountPoint),
    bundles: [...new Set(bundles)],
    fifos: walk(c.fifoDir),
    sockets: [...socketCandidates].filter(isSocket),
    tasks,
    containers,
  };
}

/** The flint server waiting as `c`'s spare, if one is (the listener on its spare socket). */
export function spareServerPids(c: Containerd): number[] {
  const path = spareSocketPath(c.address, { TTRPC_ADDRESS: c.ttrpcAddress });
  return existsSync(path) ? listenerPids(path) : [];
}

/** A report of things left behind: every property a list, empty when clean. */
export type ListReport<R> = { readonly [K in keyof R]: readonly unknown[] };

/** True when every list in the report is empty. */
export function isClean<R extends ListReport<R>>(r: R): boolean {
  return Object.values<readonly unknown[]>(r).every((v) => v.length === 0);
}

/**
 * Polls leftovers() until clean or `timeoutMs` passes and returns the last
 * report. Shims exit asynchronously after `ctr run --rm` returns, so tests
 * should use this rather than a single leftovers() call.
 */
export function waitForClean(c: Containerd, timeoutMs = 5_000, namespace = c.namespace): Promise<LeftoverReport> {
  return pollUntilClean(() => leftovers(c, namespace), timeoutMs);
}

/** Calls `inspect` until its report is clean or `timeoutMs` passes; returns the last report. */
export async function pollUntilClean<R extends ListReport<R>>(inspect: () => Promise<R>, timeoutMs: number): Promise<R> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await inspect();
    if (isClean(r) || Date.now() >= deadline) return r;
    await sleep(50);
  }
}

async function listIds(c: Containerd, kind: 'tasks' | 'containers', namespace: string): Promise<string[]> {
  const r = await c.ctr([kind, 'ls', '-q'], { timeoutMs: 5_000, namespace });
  if (r.code !== 0) return [`<ctr ${kind} ls failed: ${r.stderr.trim()}>`];
  return r.stdout.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of safeReaddir(dir)) {
    const p = join(dir, e);
    out.push(p);
    try {
      if (statSync(p).isDirectory()) out.push(...walk(p));
    } catch {
      // vanished
    }
  }
  return out;
}

function isSocket(p: string): boolean {
  try {
    return statSync(p).isSocket();
  } catch {
    return false;
  }
}
