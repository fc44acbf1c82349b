import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { busyboxRootfs, CONTAINER_PATH, startContainerd, waitForClean, isClean, type Containerd } from './harness/index.js';
import { listProcesses } from './harness/procfs.js';
import { RUNTIMES } from './harness/scenario.js';
import { shimPidOf } from './harness/shim-server.js';
import { shimSocketAddress, socketPath } from '../src/shim/socket-address.js';

/**
 * The shim's configuration through containerd: where it is looked up, what
 * a bad file does, grouping, and log URIs.
 */
const dir = mkdtempSync('/tmp/fcfg-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function runArgs(c: Containerd, id: string, extra: string[], cmd: string[]): string[] {
  return ['run', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, ...extra, '--rootfs', busyboxRootfs(c), id, ...cmd];
}

t.test('a bad config makes start fail, naming the file and the key', async (t) => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ group: 'pod' }));
  const c = await startContainerd({ env: { FLINT_CONFIG: bad } });
  t.teardown(() => c.stop());
  const r = await c.ctr(['run', '--rm', ...runArgs(c, c.newId('bad'), [], ['true']).slice(1)]);
  t.not(r.code, 0, 'ctr run fails');
  t.match(r.stderr, bad, 'names the file');
  t.match(r.stderr, /key "group"/, 'names the key');
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'nothing left', { report });
});

t.test('--runtime-config-path wins over $FLINT_CONFIG, and its settings take effect', async (t) => {
  // $FLINT_CONFIG is not even JSON: reading it would fail start. The chosen
  // file names a runc wrapper that logs each command before running runc,
  // so its log shows the file's runc.binary was used.
  const bad = join(dir, 'env-bad.json');
  writeFileSync(bad, '{ not json');
  const calls = join(dir, 'wrapper-calls.log');
  const wrapper = join(dir, 'runc-wrapper.sh');
  writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> ${calls}\nexec runc "$@"\n`);
  chmodSync(wrapper, 0o755);
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ runc: { binary: wrapper } }));
  const c = await startContainerd({ env: { FLINT_CONFIG: bad } });
  t.teardown(() => c.stop());
  const id = c.newId('path');
  const r = await c.ctr(['run', '--rm', '--runtime-config-path', good, ...runArgs(c, id, [], ['echo', 'ok']).slice(1)]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.toString(), 'ok\n');
  const commands = readFileSync(calls, 'utf8').split('\n').map((line) => line.split(' ').find((word) => ['create', 'start', 'delete'].includes(word)));
  t.same(commands.filter((w) => w !== undefined).slice(0, 2), ['create', 'start'], 'runc create and start went through the chosen file\'s runc.binary');
  t.match(readFileSync(calls, 'utf8'), id, 'for this container');
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'nothing left', { report });
});

t.test('grouping by annotation: io.containerd.runc.v2.group, then io.kubernetes.cri.sandbox-id, else the id', async (t) => {
  const c = await startContainerd();
  t.teardown(() => c.stop());
  const runs: { id: string; annotations: string[] }[] = [
    { id: c.newId('ga'), annotations: ['io.containerd.runc.v2.group=pod-1'] },
    { id: c.newId('gb'), annotations: ['io.kubernetes.cri.sandbox-id=pod-1'] },
    { id: c.newId('gc'), annotations: ['io.containerd.runc.v2.group=pod-2', 'io.kubernetes.cri.sandbox-id=pod-1'] },
    { id: c.newId('gd'), annotations: [] },
  ];
  for (const { id, annotations } of runs) {
    const r = await c.ctr(['run', '-d', ...runArgs(c, id, annotations.flatMap((a) => ['--annotation', a]), ['sleep', '1000']).slice(1)]);
    t.equal(r.code, 0, r.stderr);
  }
  const [a, b, cc, d] = runs.map(({ id }) => readFileSync(join(c.state, 'io.containerd.runtime.v2.task', c.namespace, id, 'address'), 'utf8'));
  t.equal(a, shimSocketAddress(c.address, c.namespace, 'pod-1'), 'the group annotation names the group');
  t.equal(b, a, 'a sandbox id equal to that group joins the same server');
  t.equal(cc, shimSocketAddress(c.address, c.namespace, 'pod-2'), 'the group annotation wins over the sandbox id');
  t.equal(d, shimSocketAddress(c.address, c.namespace, runs[3]!.id), 'without annotations: a server of its own');
  t.equal(new Set([a, cc, d]).size, 3);
  t.equal(shimPidOf(socketPath(a!)), shimPidOf(socketPath(b!)), 'one process serves both containers of pod-1');
  // The server is a child subreaper: runc exits after create, and the container's init is reparented to it.
  const listed = (await c.ctr(['task', 'ls'])).stdout.toString().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  const parents = runs.map(({ id }, i) => {
    const pid = Number(listed.find(([task]) => task === id)?.[1]);
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    return ppid === shimPidOf(socketPath([a, b, cc, d][i]!));
  });
  t.same(parents, [true, true, true, true], 'each container\'s init is a child of the server that serves it');
  const exec = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'e', runs[1]!.id, 'sh', '-c', 'exit 6']);
  t.equal(exec.code, 6, 'a call for the second container of the group reaches it');
  for (const { id } of runs) {
    await c.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    await c.ctr(['task', 'delete', '-f', id]);
    await c.ctr(['container', 'delete', id]);
  }
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'every server exits after its last container', { report });
});

t.test('group "namespace": one shim server serves every container of the namespace', async (t) => {
  const config = join(dir, 'ns.json');
  writeFileSync(config, JSON.stringify({ group: 'namespace' }));
  const c = await startContainerd({ env: { FLINT_CONFIG: config } });
  t.teardown(() => c.stop());
  const ids = [c.newId('g1'), c.newId('g2'), c.newId('g3')];
  for (const id of ids) {
    const r = await c.ctr(['run', '-d', ...runArgs(c, id, [], ['sleep', '1000']).slice(1)]);
    t.equal(r.code, 0, r.stderr);
  }
  const addresses = ids.map((id) => readFileSync(join(c.state, 'io.containerd.runtime.v2.task', c.namespace, id, 'address'), 'utf8'));
  t.equal(new Set(addresses).size, 1, 'one address for all three');
  const servers = listProcesses().filter((p) => p.argv.some((a) => a.endsWith('bundle/shim.js')) && p.argv.includes(c.address) && !p.argv.includes('start') && !p.argv.includes('delete'));
  t.equal(servers.length, 1, 'one server process');
  const exec = await c.ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'e', ids[1]!, 'sh', '-c', 'exit 4']);
  t.equal(exec.code, 4, 'exec routed to the right container');
  for (const id of ids) {
    await c.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    await c.ctr(['task', 'delete', '-f', id]);
    await c.ctr(['container', 'delete', id]);
  }
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'the server exits after its last container', { report });
});

t.test('file:// and binary:// log URIs: the output goes where the runc shim sends it', async (t) => {
  const c = await startContainerd();
  t.teardown(() => c.stop());
  // containerd's shim-logger protocol: stdout on fd 3, stderr on fd 4, fd 5 closed when ready;
  // the URI's query comes as arguments ("out <file>").
  const logger = join(dir, 'logger.sh');
  writeFileSync(logger, '#!/bin/sh\nexec 5>&-\necho "$CONTAINER_NAMESPACE/$CONTAINER_ID" > "$2"\ncat <&3 >> "$2" &\ncat <&4 >> "$2.err"\nwait\n');
  chmodSync(logger, 0o755);
  const seen: Record<string, unknown> = {};
  for (const runtime of ['runc', 'flint'] as const) {
    const args = (id: string, uri: string, cmd: string[]) => ['run', '--rm', '--runtime', RUNTIMES[runtime], '--log-uri', uri, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, ...cmd];
    const logFile = join(dir, 'logs', `${runtime}.log`);
    const f = await c.ctr(args(c.newId(`file-${runtime}`), `file://${logFile}`, ['sh', '-c', 'echo to-file; echo err-to-file >&2; exit 2']));
    const captured = join(dir, `captured-${runtime}.log`);
    const id = c.newId(`bin-${runtime}`);
    const b = await c.ctr(args(id, `binary://${logger}?out=${encodeURIComponent(captured)}`, ['sh', '-c', 'echo to-logger; echo err-to-logger >&2; exit 3']));
    // The logger, and the runc shim's copy to a file:// log, may still be writing when ctr returns.
    const deadline = Date.now() + 5_000;
    const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');
    const complete = () => ['to-file', 'err-to-file'].every((l) => read(logFile).includes(l)) && read(captured).includes('to-logger') && read(`${captured}.err`).includes('err-to-logger');
    while (!complete() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    seen[runtime] = {
      file: { code: f.code, stdout: f.stdout.toString(), text: readFileSync(logFile, 'utf8').split('\n').sort().join('\n') },
      binary: { code: b.code, stdout: b.stdout.toString(), out: read(captured).replace(id, '<id>'), err: read(`${captured}.err`) },
    };
  }
  t.same(seen.flint, seen.runc, 'flint behaves like containerd-shim-runc-v2');
  t.same(seen.flint, {
    file: { code: 2, stdout: '', text: '\nerr-to-file\nto-file' },
    binary: { code: 3, stdout: '', out: `${c.namespace}/<id>\nto-logger\n`, err: 'err-to-logger\n' },
  }, 'file://: both streams in the file; binary://: the logger gets the ids in its environment, stdout on fd 3, stderr on fd 4');
  const report = await waitForClean(c, 10_000);
  t.ok(isClean(report), 'nothing left, loggers included', { report });
});

t.test('containerd logging at debug starts the shim with -debug: the server\'s debug lines reach containerd\'s log', async (t) => {
  const seen: Record<string, { levels: number[]; calls: string[] }> = {};
  for (const level of ['info', 'debug']) {
    const c = await startContainerd({ logLevel: level });
    try {
      const r = await c.ctr(['run', '--rm', ...runArgs(c, c.newId(`log-${level}`), [], ['echo', 'ok']).slice(1)]);
      t.equal(r.code, 0, r.stderr);
      await waitForClean(c, 10_000);
      // containerd copies the shim's log FIFO into its own stderr, line by line as written.
      const deadline = Date.now() + 5_000;
      const flintLines = () => c.readLog().split('\n').filter((l) => l.startsWith('{') && l.includes('"runtime":"flint"')).map((l) => JSON.parse(l) as { level: number; msg: string; call?: string });
      while (!flintLines().some((l) => l.msg === 'shutting down') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      const lines = flintLines();
      seen[level] = { levels: [...new Set(lines.map((l) => l.level))].sort(), calls: lines.filter((l) => l.call !== undefined && l.msg === 'call').map((l) => l.call!) };
    } finally {
      await c.stop();
    }
  }
  t.same(seen.info, { levels: [30], calls: [] }, 'containerd at info: the shim logs at info, JSON lines into containerd\'s log');
  t.ok(seen.debug!.levels.includes(20), 'containerd at debug: debug lines too');
  const calls = seen.debug!.calls;
  t.ok(calls.includes('task.create') && calls.indexOf('task.create') < calls.indexOf('task.start'), `each task call is logged, in order: ${calls.join(' ')}`);
});
