import t, { type Test } from 'tap';
import { once } from 'node:events';
import { closeSync, existsSync, lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import { AlreadyExistsError, CanceledError, DeadlineExceededError, InvalidArgumentError, UnavailableError } from '../src/errdefs/errors.js';
import { isVsockUnsupported, listenVsock, VMADDR_PORT_ANY, vsockListen, vsockLocalPort } from '../src/native/vsock.js';
import {
  formatAgentAddress,
  MAX_VSOCK_PORT,
  parseAgentAddress,
  parseDialAddress,
  parseListenAddress,
  type AgentAddress,
} from '../src/vsock/address.js';
import { dialAgent } from '../src/vsock/dial.js';
import { acceptOne, openPortListener, type PortListener } from '../src/vsock/listener.js';

function scratchDir(t: Pick<Test, 'teardown'>): string {
  const dir = mkdtempSync(join(tmpdir(), 'fv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function readAll(stream: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (text += chunk));
    stream.once('end', () => resolve(text));
    stream.once('error', reject);
  });
}

function closeOnTeardown<T extends PortListener | Duplex>(t: Pick<Test, 'teardown'>, thing: T): T {
  t.teardown(() => {
    if ('destroy' in thing) thing.destroy();
    else thing.close();
  });
  return thing;
}

// ---- address parsing ----

const LONG_PATH = '/' + 'p'.repeat(106); // 107 bytes: the longest sun_path allows

t.test('parseAgentAddress: valid forms', async (t) => {
  const cases: Array<[string, AgentAddress]> = [
    ['vsock://3:10789', { kind: 'vsock-dial', cid: 3, port: 10789 }],
    ['vsock://2:1', { kind: 'vsock-dial', cid: 2, port: 1 }],
    [`vsock://4294967294:${MAX_VSOCK_PORT}`, { kind: 'vsock-dial', cid: 4294967294, port: MAX_VSOCK_PORT }],
    ['vsock://:10789', { kind: 'vsock-listen', port: 10789 }],
    ['hvsock:///run/flint/vm1/fc.vsock:10789', { kind: 'hvsock-dial', path: '/run/flint/vm1/fc.vsock', port: 10789 }],
    ['hvsock:///run/flint/vm1/fc.vsock', { kind: 'hvsock-listen', path: '/run/flint/vm1/fc.vsock' }],
    ['hvsock:///run/a:b/fc.vsock:5', { kind: 'hvsock-dial', path: '/run/a:b/fc.vsock', port: 5 }],
    ['hvsock:///run/a:b/fc.vsock', { kind: 'hvsock-listen', path: '/run/a:b/fc.vsock' }],
    [`hvsock://${LONG_PATH}`, { kind: 'hvsock-listen', path: LONG_PATH }],
  ];
  for (const [text, expected] of cases) {
    const parsed = parseAgentAddress(text);
    t.same(parsed, expected, text);
    t.equal(formatAgentAddress(parsed), text, `${text} round-trips`);
  }
  t.same(parseDialAddress('vsock://3:5'), { kind: 'vsock-dial', cid: 3, port: 5 });
  t.same(parseListenAddress('hvsock:///x.sock'), { kind: 'hvsock-listen', path: '/x.sock' });
});

t.test('parseAgentAddress: errors name the address and the fault', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['tcp://1.2.3.4:5', /unknown scheme/],
    ['', /unknown scheme/],
    ['VSOCK://3:5', /unknown scheme/],
    ['unix:///run/x.sock', /unknown scheme/],
    ['vsock://3', /missing port \(expected vsock:\/\/CID:PORT/],
    ['vsock://', /missing port/],
    ['vsock://3:', /missing port after ":"/],
    ['vsock://:', /missing port after ":"/],
    ['vsock://3:0', /port 0 out of range 1\.\.4294967294/],
    ['vsock://3:4294967295', /port 4294967295 out of range/],
    ['vsock://3:99999999999999999999', /out of range/],
    ['vsock://3:-1', /port "-1" is not a decimal number/],
    ['vsock://3:0x10', /is not a decimal number/],
    ['vsock://3: 5', /is not a decimal number/],
    ['vsock://x:5', /CID "x" is not a decimal number/],
    ['vsock://4294967295:5', /CID 4294967295 out of range/],
    ['hvsock://', /missing socket path/],
    ['hvsock://:5', /missing socket path/],
    ['hvsock://run/x.sock:5', /socket path "run\/x.sock" is relative/],
    ['hvsock://./x.sock', /is relative/],
    ['hvsock:///run/x.sock:', /missing port after ":"/],
    ['hvsock:///run/x.sock:0', /port 0 out of range/],
    ['hvsock:///run/x.sock:4294967295', /out of range/],
    ['hvsock:///run/x.sock:abc', /port "abc" is not a decimal number/],
    ['hvsock:///run/dir/', /names a directory/],
    [`hvsock://${LONG_PATH}p`, /socket path is 108 bytes, longer than sun_path allows \(107\)/],
    [`hvsock://${LONG_PATH}p:5`, /longer than sun_path allows/],
    ['hvsock:///run/x\0y.sock', /NUL/],
  ];
  for (const [text, problem] of cases) {
    t.throws(() => parseAgentAddress(text), InvalidArgumentError, `${JSON.stringify(text)} is an InvalidArgumentError`);
    t.throws(() => parseAgentAddress(text), { message: problem }, `${JSON.stringify(text)}: ${problem}`);
    t.throws(() => parseAgentAddress(text), { message: `invalid agent address ${JSON.stringify(text)}: ` }, 'names the address');
  }
  t.throws(() => parseDialAddress('vsock://:5'), { message: /is a listen address/ });
  t.throws(() => parseDialAddress('hvsock:///x.sock'), { message: /is a listen address/ });
  t.throws(() => parseListenAddress('vsock://3:5'), { message: /is a dial address/ });
  t.throws(() => parseListenAddress('hvsock:///x.sock:5'), { message: /is a dial address/ });
});

// ---- hvsock port listeners ----

t.test('openPortListener over hvsock: ports share one socket; the last close removes it', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const api = closeOnTeardown(t, await openPortListener(`hvsock://${path}`, 10789));
  const stdout = closeOnTeardown(t, await openPortListener(`hvsock://${path}`, 11001));
  t.equal(api.port, 10789);
  t.ok(lstatSync(path).isSocket(), 'socket file created');
  await t.rejects(openPortListener(`hvsock://${path}`, 10789), AlreadyExistsError, 'a port listens once');

  api.on('connection', (conn: Duplex) => closeOnTeardown(t, conn).end('api'));
  stdout.on('connection', (conn: Duplex) => closeOnTeardown(t, conn).end('stdout'));
  const viaAddress = closeOnTeardown(t, await dialAgent(`hvsock://${path}:10789`, undefined, { timeoutMs: 2000 }));
  const viaOverride = closeOnTeardown(t, await dialAgent(`hvsock://${path}:10789`, 11001, { timeoutMs: 2000 }));
  t.equal(await readAll(viaAddress), 'api');
  t.equal(await readAll(viaOverride), 'stdout', 'the port argument overrides the address port');

  const closed = once(api, 'close');
  api.close();
  await closed;
  t.ok(existsSync(path), 'still serving the other port');
  await t.rejects(dialAgent(`hvsock://${path}:10789`, undefined, { timeoutMs: 150 }), UnavailableError);

  stdout.close();
  await once(stdout, 'close');
  t.notOk(existsSync(path), 'socket removed with the last port');

  const reopened = closeOnTeardown(t, await openPortListener(parseListenAddress(`hvsock://${path}`), 10789));
  t.ok(lstatSync(path).isSocket(), 'a later open starts a fresh server');
  reopened.close();
});

t.test('openPortListener: concurrent opens on one path share the server', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const listeners = await Promise.all([1, 2, 3].map((port) => openPortListener(`hvsock://${path}`, port)));
  for (const l of listeners) closeOnTeardown(t, l);
  t.same(
    listeners.map((l) => l.port),
    [1, 2, 3],
  );
  for (const l of listeners) l.on('connection', (conn: Duplex) => closeOnTeardown(t, conn).end(String(l.port)));
  const replies = await Promise.all([1, 2, 3].map(async (port) => readAll(closeOnTeardown(t, await dialAgent(`hvsock://${path}:${port}`, undefined, { timeoutMs: 2000 })))));
  t.same(replies, ['1', '2', '3']);
});

t.test('openPortListener: argument errors', async (t) => {
  await t.rejects(openPortListener('hvsock:///tmp/x.sock'), { message: /port to listen on is required/ });
  await t.rejects(openPortListener('hvsock:///tmp/x.sock', 0), InvalidArgumentError);
  await t.rejects(openPortListener('vsock://3:10789'), { message: /is a dial address/ });
  await t.rejects(dialAgent('vsock://:10789'), { message: /is a listen address/ });
  await t.rejects(dialAgent('hvsock:///tmp/x.sock:1', 0), InvalidArgumentError);
});

t.test('acceptOne: first connection wins, then the port is closed', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  const keepAlive = closeOnTeardown(t, await openPortListener(`hvsock://${path}`, 10789));
  const stdin = await openPortListener(`hvsock://${path}`, 11000);
  const accepted = acceptOne(stdin, { timeoutMs: 3000 });
  const host = closeOnTeardown(t, await dialAgent(`hvsock://${path}:11000`, undefined, { timeoutMs: 2000 }));
  const guest = closeOnTeardown(t, await accepted);
  t.ok(stdin.closed, 'listener closed after the first connection');
  host.end('input');
  t.equal(await readAll(guest), 'input');
  await t.rejects(dialAgent(`hvsock://${path}:11000`, undefined, { timeoutMs: 200 }), UnavailableError, 'a second peer gets no ack');
  t.notOk(keepAlive.closed);
});

t.test('acceptOne: timeout, abort, and a listener closed underneath', async (t) => {
  const path = join(scratchDir(t), 'agent.vsock');
  closeOnTeardown(t, await openPortListener(`hvsock://${path}`, 10789));

  const slow = await openPortListener(`hvsock://${path}`, 1);
  await t.rejects(acceptOne(slow, { timeoutMs: 100 }), DeadlineExceededError);
  t.ok(slow.closed, 'closed on timeout');

  const aborted = await openPortListener(`hvsock://${path}`, 2);
  const controller = new AbortController();
  const pending = acceptOne(aborted, { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await t.rejects(pending, CanceledError);
  t.ok(aborted.closed, 'closed on abort');
  const preAborted = await openPortListener(`hvsock://${path}`, 4);
  await t.rejects(acceptOne(preAborted, { signal: AbortSignal.abort() }), CanceledError);
  t.ok(preAborted.closed);

  const yanked = await openPortListener(`hvsock://${path}`, 3);
  const waiting = acceptOne(yanked);
  await sleep(20);
  yanked.close();
  await t.rejects(waiting, UnavailableError);
});

// ---- AF_VSOCK listen side (never dialed) ----

function vsockSkipReason(): string | false {
  try {
    closeSync(vsockListen(VMADDR_PORT_ANY));
    return false;
  } catch (err) {
    if (isVsockUnsupported(err)) return 'kernel has no AF_VSOCK (EAFNOSUPPORT)';
    throw err;
  }
}

/** A port that was free a moment ago (bound and released), so the test does not collide with a real agent. */
function freeVsockPort(): number {
  const probe = listenVsock(VMADDR_PORT_ANY);
  const { port } = probe.address();
  probe.close();
  return port;
}

t.test('openPortListener over vsock creates an AF_VSOCK listener (never connected)', { skip: vsockSkipReason() }, async (t) => {
  const port = freeVsockPort();
  const listener = closeOnTeardown(t, await openPortListener(`vsock://:${port}`));
  t.equal(listener.port, port);
  t.throws(() => vsockListen(port), { code: 'EADDRINUSE' }, 'the port is bound');
  await t.rejects(openPortListener(`vsock://:${port}`), AlreadyExistsError);

  const closed = once(listener, 'close');
  listener.close();
  listener.close();
  await closed;
  t.ok(listener.closed);
  const rebound = vsockListen(port);
  t.equal(vsockLocalPort(rebound), port, 'close() released the port');
  closeSync(rebound);

  const other = freeVsockPort();
  const overridden = closeOnTeardown(t, await openPortListener(parseListenAddress('vsock://:10789'), other));
  t.equal(overridden.port, other, 'the port argument overrides the address port');
  const result = await acceptOne(overridden, { timeoutMs: 50 }).catch((e: unknown) => e);
  t.type(result, DeadlineExceededError, 'acceptOne times out on an AF_VSOCK listener too');
  t.ok(overridden.closed);
});
