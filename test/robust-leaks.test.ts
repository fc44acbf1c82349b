import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { TaskClient } from '../src/generated/index.js';
import { Client, Metadata, NAMESPACE_KEY } from '../src/ttrpc/index.js';
import { FifoReader } from './harness/fifo-reader.js';
import { HEAP_SNAPSHOT_NODE_OPTIONS, instances, takeHeapCensus, type HeapCensus } from './harness/heap-snapshot.js';
import {
  childrenOf,
  fdCount,
  fdTargets,
  flintServers,
  namespaceCgroups,
  rssBytes,
  runcStateIds,
  zombieChildrenOf,
} from './harness/host-state.js';
import { busyboxImage, busyboxRootfs, isClean, RUNTIMES, startContainerd, waitForClean, type Containerd } from './harness/index.js';
import { pool } from './harness/pool.js';
import { isRunning, mountsUnder } from './harness/procfs.js';

/**
 * Leaks: one long-lived flint server (group "namespace", kept alive by an
 * anchor container) takes 30 create/start/exec/delete cycles through ctr
 * and 200 straight over ttrpc with FIFOs made here, failures mixed in
 * (every 10th an exec of a missing binary, every 15th a create of one),
 * all of them, always. The cycles run in a few lanes at once, which
 * overlaps the processes each step waits for (ctr, runc) and puts
 * concurrent creates and deletes through the server. Afterwards its fds
 * are back to the baseline, no object of a deleted container is still
 * alive in its heap (heap snapshots, which force a full GC, counted by
 * class), its RSS after that GC is near the baseline, it has no zombie or
 * stray children, and no mount, FIFO, bundle, cgroup or runc state of a
 * cycle is left. Deleting the anchor then ends the server.
 * FLINT_LEAK_CTR_CYCLES / FLINT_LEAK_DIRECT_CYCLES override the counts.
 */
const CTR_CYCLES = Number(process.env.FLINT_LEAK_CTR_CYCLES) || 30;
const DIRECT_CYCLES = Number(process.env.FLINT_LEAK_DIRECT_CYCLES) || 200;
const CTR_LANES = 2;
const DIRECT_LANES = 4;
/**
 * The cycles take a few minutes on a 2-core machine, more when it is
 * shared: the file gets more than tap's default per-file bound, still bounded.
 */
t.setTimeout(900_000);
const FD_SLACK = 2;
const RSS_SLACK = 30 * 1024 * 1024;
/** Retained heap may grow a little (compiled code, caches), not per container. */
const HEAP_SLACK = 8 * 1024 * 1024;
/** Per-container and per-process objects of the server: after the cycles no more may live than before. */
const PER_CONTAINER_CLASSES = ['Container', 'InitProcess', 'ExecProcess', 'Runc', 'OomWatcher', 'Poller', 'CleanupStack', 'FifoIO', 'StateMachine', 'Mutex'];
const CALL_TIMEOUT_MS = 30_000;
const OCI_PROCESS_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

const work = mkdtempSync('/tmp/fll-');
const configPath = join(work, 'flint.json');
writeFileSync(configPath, JSON.stringify({ group: 'namespace' }));
// The snapshot signal lets the test force a full GC in the server and count what survives it.
const c: Containerd = await startContainerd({ env: { FLINT_CONFIG: configPath, NODE_OPTIONS: HEAP_SNAPSHOT_NODE_OPTIONS } });
const readers = new Set<FifoReader>();
let client: Client | undefined;
t.teardown(async () => {
  for (const r of readers) r.close();
  await client?.close();
  await c.stop();
  rmSync(work, { recursive: true, force: true });
});
const image = await busyboxImage(c);
const lowerdir = busyboxRootfs(c);

type CtrResult = Awaited<ReturnType<Containerd['ctr']>>;
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
const ctr = (args: readonly string[]): Promise<CtrResult> => c.ctr(args, { timeoutMs: CALL_TIMEOUT_MS });
const bundleOf = (id: string): string => join(c.state, 'io.containerd.runtime.v2.task', c.namespace, id);

async function taskPid(id: string): Promise<number> {
  const r = await ctr(['task', 'ls']);
  const line = r.stdout.toString().split('\n').find((l) => l.startsWith(`${id} `));
  return Number(line?.trim().split(/\s+/)[1] ?? 0);
}

// The anchor keeps the one namespace-wide server alive through every cycle.
const anchor = c.newId('anchor');
{
  const r = await ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, image, anchor, 'sleep', '100000']);
  if (r.code !== 0) throw new Error(`anchor: ${r.stderr}`);
}
const anchorPid = await taskPid(anchor);
const anchorSpec = JSON.parse(readFileSync(join(bundleOf(anchor), 'config.json'), 'utf8')) as Record<string, any>;
const address = readFileSync(join(bundleOf(anchor), 'address'), 'utf8').trim();
/** The server, once the spare servers `start` may have launched have gone. */
async function theServer(): Promise<number> {
  const deadline = Date.now() + 10_000;
  let servers = flintServers(c);
  while (servers.length !== 1 && Date.now() < deadline) {
    await sleep(100);
    servers = flintServers(c);
  }
  if (servers.length !== 1) throw new Error(`want one flint server, found ${servers.map((p) => `${p.pid} ${p.argv.join(' ')}`).join('; ')}`);
  return servers[0]!.pid;
}
const server = await theServer();
client = await Client.connect(address, { metadata: new Metadata({ [NAMESPACE_KEY]: c.namespace }) });
const task = new TaskClient(client);
const call = { timeoutMs: CALL_TIMEOUT_MS };

/** One cycle through ctr; returns what failed unexpectedly (empty when all went as planned). */
async function ctrCycle(i: number): Promise<string[]> {
  const problems: string[] = [];
  const id = c.newId(`lc${i}`);
  const badCreate = i % 15 === 0;
  const run = await ctr(['run', '-d', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, image, id, ...(badCreate ? ['/no/such/binary'] : ['sleep', '1000'])]);
  if (badCreate) {
    if (run.code === 0 || !/no\/such\/binary/.test(run.stderr)) problems.push(`create of a missing binary: ${run.code} ${run.stderr}`);
    const rm = await ctr(['container', 'rm', id]);
    if (rm.code !== 0) problems.push(`rm after failed create: ${rm.stderr}`);
    return problems;
  }
  if (run.code !== 0) return [`run: ${run.stderr}`];
  const badExec = i % 10 === 0;
  const exec = await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'e', id, ...(badExec ? ['/no/such/binary'] : ['sh', '-c', `echo cycle ${i}`])]);
  if (badExec ? exec.code === 0 : exec.code !== 0 || exec.stdout.toString() !== `cycle ${i}\n`) problems.push(`exec: ${exec.code} ${exec.stdout} ${exec.stderr}`);
  const del = await ctr(['task', 'delete', '-f', id]);
  if (del.code !== 0) problems.push(`delete -f: ${del.stderr}`);
  const rm = await ctr(['container', 'rm', id]);
  if (rm.code !== 0) problems.push(`rm: ${rm.stderr}`);
  return problems;
}

/**
 * One cycle straight to the server: Create (overlay rootfs over the
 * busybox dir, stdio FIFOs), Start, Exec+Start+Wait, Kill, Wait, Delete.
 */
async function directCycle(i: number): Promise<string[]> {
  const problems: string[] = [];
  const id = `ld-${i}-${process.pid}`;
  const bundle = join(work, 'b', id);
  const rootfs = [
    {
      type: 'overlay',
      source: 'overlay',
      options: [`lowerdir=${lowerdir}`, `upperdir=${join(bundle, 'upper')}`, `workdir=${join(bundle, 'work')}`],
    },
  ];
  for (const d of ['upper', 'work']) mkdirSync(join(bundle, d), { recursive: true });
  const badCreate = i % 15 === 0;
  const spec = structuredClone(anchorSpec);
  spec.process.args = badCreate ? ['/no/such/binary'] : ['sleep', '1000'];
  spec.process.terminal = false;
  spec.linux.cgroupsPath = `/${c.namespace}/${id}`;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const out = new FifoReader(join(work, `${id}.out`));
  const execOut = new FifoReader(join(work, `${id}.exec`));
  readers.add(out).add(execOut);
  try {
    try {
      await task.create({ id, bundle, rootfs, stdin: '', stdout: out.path, stderr: out.path, terminal: false }, call);
      if (badCreate) problems.push('create of a missing binary succeeded');
    } catch (err) {
      if (!badCreate) return [`create: ${(err as Error).message}`];
      if (!/no\/such\/binary/.test((err as Error).message)) problems.push(`create failed oddly: ${(err as Error).message}`);
      return problems;
    }
    await task.start({ id }, call);
    const badExec = i % 10 === 0;
    const processSpec = { ...spec.process, args: badExec ? ['/no/such/binary'] : ['echo', `cycle ${i}`] };
    await task.exec({ id, execId: 'e', stdout: execOut.path, stderr: execOut.path, terminal: false, spec: { typeUrl: OCI_PROCESS_TYPE, value: Buffer.from(JSON.stringify(processSpec)) } }, call);
    try {
      await task.start({ id, execId: 'e' }, call);
      if (badExec) problems.push('exec of a missing binary started');
      const exit = await task.wait({ id, execId: 'e' }, call);
      if (exit.exitStatus !== 0) problems.push(`exec exit ${exit.exitStatus}`);
      const text = await execOut.waitFor(`cycle ${i}\n`);
      if (!badExec && text !== `cycle ${i}\n`) problems.push(`exec output ${JSON.stringify(text)}`);
    } catch (err) {
      if (!badExec) problems.push(`exec start: ${(err as Error).message}`);
    }
    await task.delete({ id, execId: 'e' }, call);
    await task.kill({ id, signal: 9, all: false }, call);
    const exit = await task.wait({ id }, call);
    if (exit.exitStatus !== 137) problems.push(`init exit ${exit.exitStatus}`);
    await task.delete({ id }, call);
  } catch (err) {
    problems.push(`cycle: ${(err as Error).message}`);
    await task.kill({ id, signal: 9, all: true }, call).catch(() => {});
    await task.delete({ id }, call).catch(() => {});
  } finally {
    const mounts = mountsUnder(bundle).map((m) => m.mountPoint);
    if (mounts.length > 0) problems.push(`mounts left: ${mounts.join(' ')}`);
    out.close();
    execOut.close();
    readers.delete(out);
    readers.delete(execOut);
    rmSync(bundle, { recursive: true, force: true });
  }
  return problems;
}

/** The server's fd count once it has settled to at most `limit` (polls up to 15 s). */
async function settledFds(limit: number): Promise<number> {
  const deadline = Date.now() + 15_000;
  let fds = fdCount(server);
  while (fds > limit && Date.now() < deadline) {
    await sleep(200);
    fds = fdCount(server);
  }
  return fds;
}

/** Host state of the namespace apart from the anchor's. */
function foreignState(): Record<string, string[]> {
  return {
    runcState: runcStateIds(c.namespace).filter((id) => id !== anchor),
    cgroups: namespaceCgroups(c.namespace).filter((p) => !p.endsWith(`/${anchor}`)),
    bundles: readdirSync(join(c.state, 'io.containerd.runtime.v2.task', c.namespace)).filter((id) => id !== anchor),
    mounts: mountsUnder(c.dir).map((m) => m.mountPoint).filter((p) => p !== join(bundleOf(anchor), 'rootfs')),
    workMounts: mountsUnder(work).map((m) => m.mountPoint),
    workFiles: readdirSync(work).filter((f) => f !== 'flint.json' && f !== 'b'),
    workBundles: existsSync(join(work, 'b')) ? readdirSync(join(work, 'b')) : [],
    servers: flintServers(c).map((p) => String(p.pid)).filter((p) => p !== String(server)),
  };
}

t.test(`${CTR_CYCLES} ctr cycles and ${DIRECT_CYCLES} direct ones through one server leak nothing`, async (t) => {
  // Warm up: lazily loaded modules, pools and the first connections are not leaks.
  for (let i = 1; i <= 3; i++) t.same(await directCycle(1000 + i), [], `warm-up direct cycle ${i}`);
  for (let i = 1; i <= 2; i++) t.same(await ctrCycle(1000 + i), [], `warm-up ctr cycle ${i}`);
  t.equal(await theServer(), server, 'one server serves the namespace');
  await sleep(1_500);
  const fifosBefore = readdirSync(c.fifoDir).sort();
  const baseFds = fdCount(server);
  const baseFdTargets = fdTargets(server);
  const serverCwd = readlinkSync(`/proc/${server}/cwd`);
  const baseHeap = await takeHeapCensus(server, serverCwd);
  // RSS is compared after forced full GCs (the snapshots): V8 otherwise lets the heap
  // grow by tens of MiB before collecting. Both figures include the first snapshot's
  // own allocations, which the second one reuses.
  await sleep(1_000);
  const baseRss = rssBytes(server);
  t.comment(`baseline: ${baseFds} fds, RSS ${mib(baseRss)} MiB after a full GC, live heap ${mib(baseHeap.totalBytes)} MiB`);

  const started = Date.now();
  const ctrResults = await pool(
    CTR_LANES,
    Array.from({ length: CTR_CYCLES }, (_, k) => async () => (await ctrCycle(k + 1)).map((p) => `ctr ${k + 1}: ${p}`)),
  );
  t.same(ctrResults.flat(), [], `${CTR_CYCLES} ctr cycles, ${CTR_LANES} at a time, went as planned (${Date.now() - started} ms)`);

  const directStarted = Date.now();
  const samples: string[] = [];
  const directResults = await pool(
    DIRECT_LANES,
    Array.from({ length: DIRECT_CYCLES }, (_, k) => async () => {
      const i = k + 1;
      const problems = (await directCycle(i)).map((p) => `direct ${i}: ${p}`);
      if (i % 50 === 0) samples.push(`${i}: ${fdCount(server)} fds, ${mib(rssBytes(server))} MiB`);
      return problems;
    }),
  );
  t.comment(`during the direct cycles: ${samples.join('; ')}`);
  t.same(directResults.flat(), [], `${DIRECT_CYCLES} direct cycles, ${DIRECT_LANES} at a time, went as planned (${Date.now() - directStarted} ms)`);
  t.ok(isRunning(server), 'the same server served them all');
  t.ok(existsSync(address.replace(/^unix:\/\//, '')), 'its socket survived every `delete` containerd ran for the cycles');
  t.equal(await theServer(), server, 'and no other server runs');

  const fds = await settledFds(baseFds + FD_SLACK);
  t.ok(fds <= baseFds + FD_SLACK, `fds back to baseline: ${baseFds} -> ${fds}`, fds > baseFds + FD_SLACK ? { before: baseFdTargets, after: fdTargets(server) } : {});
  const rssBeforeGc = rssBytes(server);
  const heap = await takeHeapCensus(server, serverCwd);
  await sleep(1_000);
  const rss = rssBytes(server);
  t.ok(rss <= baseRss + RSS_SLACK, `RSS after a full GC near baseline: ${mib(baseRss)} -> ${mib(rss)} MiB (${mib(rssBeforeGc)} MiB before the GC)`);
  t.ok(heap.totalBytes <= baseHeap.totalBytes + HEAP_SLACK, `live heap near baseline: ${mib(baseHeap.totalBytes)} -> ${mib(heap.totalBytes)} MiB`);
  const count = (census: HeapCensus) => Object.fromEntries(PER_CONTAINER_CLASSES.map((name) => [name, instances(census, name)]));
  const before = count(baseHeap);
  const after = count(heap);
  t.comment(`live objects before: ${JSON.stringify(before)}; after: ${JSON.stringify(after)}`);
  t.ok(before.Container! >= 1 && before.Runc! >= 1, 'the census sees the anchor\'s Container and Runc (class names survive bundling)');
  t.same(
    Object.fromEntries(PER_CONTAINER_CLASSES.map((name) => [name, Math.min(after[name]!, before[name]!)])),
    after,
    'no per-container object outlives its container',
  );

  await sleep(500);
  t.same(zombieChildrenOf(server), [], 'no zombie children');
  t.same(childrenOf(server).map((p) => `${p.pid} ${p.argv.join(' ')}`), childrenOf(server).filter((p) => p.pid === anchorPid).map((p) => `${p.pid} ${p.argv.join(' ')}`), 'no child but the anchor\'s init');
  t.ok(childrenOf(server).some((p) => p.pid === anchorPid), 'the anchor\'s init is the server\'s child');
  t.same(foreignState(), { runcState: [], cgroups: [], bundles: [], mounts: [], workMounts: [], workFiles: [], workBundles: [], servers: [] }, 'no runc state, cgroup, bundle, mount, FIFO or server of any cycle');
  t.same(readdirSync(c.fifoDir).sort(), fifosBefore, 'ctr\'s FIFO dir holds only the anchor\'s FIFOs');
  const tasks = (await ctr(['task', 'ls', '-q'])).stdout.toString().trim().split('\n');
  t.same(tasks, [anchor], 'containerd lists only the anchor');
});

t.test('deleting the anchor ends the server and leaves nothing', async (t) => {
  const del = await ctr(['task', 'delete', '-f', anchor]);
  t.equal(del.code, 0, del.stderr);
  const rm = await ctr(['container', 'rm', anchor]);
  t.equal(rm.code, 0, rm.stderr);
  await client?.close();
  client = undefined;
  const deadline = Date.now() + 10_000;
  while (isRunning(server) && Date.now() < deadline) await sleep(100);
  t.notOk(isRunning(server), 'the server exited');
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'harness clean', { report });
  t.same(runcStateIds(c.namespace), [], 'no runc state');
  t.same(namespaceCgroups(c.namespace), [], 'no cgroups');
  t.same(flintServers(c), [], 'no flint server');
  t.notOk(existsSync(address.replace(/^unix:\/\//, '')), 'the server socket is gone');
});
