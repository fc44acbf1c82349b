import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { handOver, ServerHandoff, type HandoffMessage } from '../src/shim/handoff.js';

/**
 * `start` hands its listening socket to the server it pre-spawned. One
 * that is gone by then (its end of the socketpair closed) must not fail the
 * container: a fresh server takes its place. The "servers" here are small
 * node scripts run the way ServerHandoff.spawn runs the real one.
 */

const tmp = mkdtempSync(join(tmpdir(), 'flint-handoff-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const message: HandoffMessage = { namespace: 'ns', id: 'c1', address: '/run/c.sock', socket: 'unix:///run/s/x', bundle: tmp, debug: false, configPath: '/etc/flint/config.json' };

async function until(path: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!existsSync(path) && Date.now() < deadline) await sleep(20);
  return existsSync(path);
}

t.test('a pre-spawned server gone before the handoff: the socket goes to a fresh one', async (t) => {
  const closed = join(tmp, 'closed');
  const report = join(tmp, 'report.json');
  // Closes its end of the handoff, says so, and lingers: the socketpair is dead while the process lives.
  const dead = ServerHandoff.spawn(['-e', `const fs = require('fs'); fs.closeSync(3); fs.writeFileSync(${JSON.stringify(closed)}, ''); setTimeout(() => {}, 5000);`], tmp);
  t.ok(await until(closed, 15_000), 'the pre-spawned server closed its end');
  // Receives as the real server does, and writes down what it got.
  const handoff = pathToFileURL(join(import.meta.dirname, '../src/shim/handoff.js')).href;
  const receiver = `import { writeFileSync } from 'node:fs'; import { receiveHandoff } from ${JSON.stringify(handoff)};
const h = await receiveHandoff(); writeFileSync(${JSON.stringify(report)}, JSON.stringify({ message: h?.message, fd: h?.listenerFd })); process.exit(0);`;
  const servers = [dead];
  const takeServer = (): ServerHandoff => {
    const next = servers.shift() ?? ServerHandoff.spawn(['--input-type=module', '-e', receiver], tmp);
    return next;
  };
  const fd = openSync('/dev/null', 'r');
  try {
    handOver(takeServer, fd, message);
  } finally {
    closeSync(fd);
    dead.close();
  }
  t.ok(await until(report, 15_000), 'the fresh server got the handoff');
  const got = JSON.parse(readFileSync(report, 'utf8')) as { message: HandoffMessage; fd: number };
  t.same(got.message, message, 'with the message');
  t.ok(got.fd >= 0, 'and a listener fd');
});

t.test('other failures are not papered over', async (t) => {
  let calls = 0;
  const takeServer = (): ServerHandoff => {
    calls++;
    const server = ServerHandoff.spawn(['-e', ''], tmp);
    server.close();
    return server;
  };
  t.throws(() => handOver(takeServer, 0, message), /already closed/, 'a closed handoff is an error');
  t.equal(calls, 1, 'and no second server is started for it');
});
