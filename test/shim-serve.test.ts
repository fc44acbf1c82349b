import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FifoReader } from './harness/fifo-reader.js';
import { repoRoot, spawnFlint } from './harness/repo.js';
import { taskClientAt } from './harness/shim-server.js';
import { spareSocketPath } from '../src/shim/socket-address.js';

/**
 * The shim server started the runc shim's way: its listening socket
 * inherited as fd 3, its bundle as cwd, no handoff from `start`. It serves
 * the task API there, ends on Shutdown or SIGTERM, and removes its socket
 * file (learned from the bundle's address file) on the way out, but never a
 * socket some later server bound at that path. It logs into the bundle's
 * `log` FIFO, more with `-debug`.
 */

const NS = 'flint-serve-test';
const tmp = mkdtempSync(join(tmpdir(), 'flint-serve-'));
const config = join(tmp, 'config.json');
writeFileSync(config, '{}');
const children = new Set<ChildProcess>();
t.teardown(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

let servers = 0;

interface Served {
  readonly child: ChildProcess;
  readonly socket: string;
  readonly exited: Promise<number | null>;
  /** The bundle's `log` FIFO, read as containerd reads it. */
  readonly log: FifoReader;
}

/**
 * A listening socket at `<tmp>/s<n>.sock`, bound under a temporary name and
 * linked into place like `start` does, so closing our copy unlinks nothing;
 * then the built shim server with it as fd 3 and a bundle whose address
 * file names it and whose `log` FIFO is being read.
 */
async function startServer(flags: readonly string[] = []): Promise<Served> {
  const n = ++servers;
  const socket = join(tmp, `s${n}.sock`);
  const bundle = join(tmp, `bundle-${n}`);
  mkdirSync(bundle);
  writeFileSync(join(bundle, 'address'), `unix://${socket}`);
  const log = new FifoReader(join(bundle, 'log'));
  t.teardown(() => log.close());
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(`${socket}.tmp`, resolve));
  linkSync(`${socket}.tmp`, socket);
  rmSync(`${socket}.tmp`);
  const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd;
  const child = spawnFlint(process.execPath, [join(repoRoot(), 'dist', 'bundle', 'shim.js'), '-namespace', NS, '-id', `c${n}`, '-address', join(tmp, 'containerd.sock'), ...flags], {
    cwd: bundle,
    stdio: ['ignore', 'ignore', 'ignore', fd],
    extraEnv: { FLINT_CONFIG: config, TTRPC_ADDRESS: join(tmp, 'no-containerd.ttrpc') },
  });
  children.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => children.delete(child));
  listener.close();
  return { child, socket, exited, log };
}

/** The JSON lines the server has logged so far, once one with message `last` is among them. */
async function logLines(log: FifoReader, last: string): Promise<{ level: number; msg: string; call?: string; reason?: string }[]> {
  const text = await log.waitFor(`"msg":"${last}"`);
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { level: number; msg: string; call?: string; reason?: string });
}

t.test('served on fd 3; Shutdown with no container ends it and removes the socket file', async (t) => {
  const { child, socket, exited } = await startServer();
  const { client, task } = await taskClientAt(socket, NS);
  t.equal((await task.connect({ id: 'c1' })).shimPid, child.pid, 'the server answers on the inherited socket');
  await task.shutdown({ id: 'c1' }).catch(() => {});
  client.close();
  t.equal(await exited, 0, 'exits 0');
  t.notOk(existsSync(socket), 'its socket file is removed');
});

t.test('after Shutdown it waits as the spare server; SIGTERM ends the wait and leaves no socket file', async (t) => {
  const { child, socket, exited } = await startServer();
  const spare = spareSocketPath(join(tmp, 'containerd.sock'), { TTRPC_ADDRESS: join(tmp, 'no-containerd.ttrpc') });
  const { client, task } = await taskClientAt(socket, NS);
  await task.shutdown({ id: 'spare' }).catch(() => {});
  client.close();
  for (let i = 0; i < 100 && !existsSync(spare); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(existsSync(spare), 'the spare socket is there');
  t.equal(child.exitCode, null, 'the server waits');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0, not by the signal');
  t.notOk(existsSync(spare), 'the spare socket is removed');
});

t.test('SIGTERM: a graceful exit, the connected client sees the close, the socket file is removed', async (t) => {
  const { child, socket, exited } = await startServer();
  const { client, task } = await taskClientAt(socket, NS);
  await task.connect({ id: 'c2' });
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0, not by the signal');
  await closed;
  t.pass('the client\'s connection was closed');
  t.notOk(existsSync(socket), 'its socket file is removed');
  await t.rejects(task.connect({ id: 'c2' }), 'nothing answers afterwards');
});

t.test('SIGINT: a graceful exit too', async (t) => {
  const { child, socket, exited, log } = await startServer();
  const { client, task } = await taskClientAt(socket, NS);
  await task.connect({ id: 'c4' });
  child.kill('SIGINT');
  t.equal(await exited, 0, 'exits 0, not by the signal');
  client.close();
  t.notOk(existsSync(socket), 'its socket file is removed');
  t.match(await logLines(log, 'shutting down'), [{ msg: 'shim serving' }, { msg: 'shutting down', reason: 'SIGINT' }], 'it logged why it went');
});

t.test('logs go to the bundle\'s log FIFO: info by default, debug lines with -debug', async (t) => {
  const plain = await startServer();
  const debug = await startServer(['-debug']);
  for (const { child, socket, exited } of [plain, debug]) {
    const { client, task } = await taskClientAt(socket, NS);
    await task.connect({ id: 'c5' });
    client.close();
    child.kill('SIGTERM');
    await exited;
  }
  const plainLines = await logLines(plain.log, 'shutting down');
  t.same(plainLines.filter((l) => l.level < 30), [], 'without -debug: no debug lines');
  t.ok(plainLines.some((l) => l.msg === 'shim serving' && l.level === 30), 'the info lines are there');
  const debugLines = await logLines(debug.log, 'shutting down');
  t.ok(debugLines.some((l) => l.level === 20 && l.call === 'task.connect'), 'with -debug: each call is logged at debug level');
});

t.test('a socket file bound anew at the path by a successor is left alone', async (t) => {
  const { child, socket, exited } = await startServer();
  const { client, task } = await taskClientAt(socket, NS);
  await task.connect({ id: 'c3' });
  client.close();
  // A successor of the group replaces the path while this server lingers.
  rmSync(socket);
  const successor = net.createServer();
  await new Promise<void>((resolve) => successor.listen(socket, resolve));
  t.teardown(() => new Promise((resolve) => successor.close(resolve)));
  child.kill('SIGTERM');
  t.equal(await exited, 0);
  t.ok(existsSync(socket), 'the successor\'s socket file is still there');
});
