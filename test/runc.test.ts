import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { AlreadyExistsError, CanceledError, DeadlineExceededError, NotFoundError } from '../src/errdefs/errors.js';
import { FdStream } from '../src/native/fd-stream.js';
import { pipe } from '../src/native/fd.js';
import { ConsoleSocket } from '../src/runc/console-socket.js';
import { Runc, RuncError } from '../src/runc/runc.js';

const tmp = mkdtempSync(join(tmpdir(), 'flint-runc-'));
const runc = new Runc({ root: join(tmp, 'runc'), log: join(tmp, 'log.json') });
const containers = new Set<string>();
const fds: number[] = [];

t.teardown(async () => {
  for (const id of containers) {
    await runc.kill(id, 'KILL', { all: true }).catch(() => {});
    await runc.delete(id, { force: true }).catch(() => {});
  }
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // already closed by a stream
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});

/** A bundle with a busybox rootfs, from `runc spec` with our process. */
function makeBundle(name: string, args: string[], terminal = false): string {
  const bundle = join(tmp, name);
  const bin = join(bundle, 'rootfs', 'bin');
  mkdirSync(bin, { recursive: true });
  copyFileSync('/bin/busybox', join(bin, 'busybox'));
  for (const applet of ['sh', 'echo', 'sleep', 'true', 'cat']) symlinkSync('busybox', join(bin, applet));
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const configPath = join(bundle, 'config.json');
  const spec = JSON.parse(readFileSync(configPath, 'utf8'));
  spec.process.args = args;
  spec.process.terminal = terminal;
  spec.root.readonly = false;
  writeFileSync(configPath, JSON.stringify(spec, null, 2));
  return bundle;
}

function tracked(id: string): string {
  containers.add(id);
  return id;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function status(id: string): Promise<string> {
  return (await runc.state(id)).status;
}

interface Collected {
  text(): string;
  ended(): boolean;
}

function collect(stream: Readable): Collected {
  let text = '';
  let ended = false;
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (text += chunk));
  stream.on('end', () => (ended = true));
  return { text: () => text, ended: () => ended };
}

function processSpec(args: string[]): object {
  return { terminal: false, user: { uid: 0, gid: 0 }, args, env: ['PATH=/bin'], cwd: '/' };
}

t.test('global flags come first', async (t) => {
  const r = new Runc({ root: '/r', log: '/l.json', systemdCgroup: true, criu: '/usr/sbin/criu' });
  t.same(r.globalArgs(), ['--root', '/r', '--log', '/l.json', '--log-format', 'json', '--systemd-cgroup', '--criu', '/usr/sbin/criu']);
  t.equal(r.binary, 'runc');
});

t.test('container lifecycle with stdio', async (t) => {
  const bundle = makeBundle('life', ['/bin/sh', '-c', 'echo hello-out; echo hello-err >&2; exec sleep 1000']);
  const id = tracked('life');
  const pidFile = join(bundle, 'init.pid');

  const [outRead, outWrite] = pipe();
  fds.push(outWrite);
  const outStream = new FdStream(outRead); // owns outRead
  t.teardown(() => outStream.destroy());
  const stdout = collect(outStream);
  let stderr: Collected | undefined;
  let runcPid = 0;
  await runc.create(id, {
    bundle,
    pidFile,
    stdio: ['ignore', outWrite, 'pipe'],
    onStart: (child) => {
      runcPid = child.pid!;
      stderr = collect(child.stderr!);
    },
  });
  // The container holds its own copy now.
  closeSync(outWrite);
  fds.splice(fds.indexOf(outWrite), 1);
  t.ok(runcPid > 0, 'onStart saw the runc process');
  const pid = Number(readFileSync(pidFile, 'utf8'));
  t.ok(pid > 0, `init pid ${pid}`);
  t.equal(await status(id), 'created');
  t.same(await runc.ps(id), [pid]);

  await t.rejects(runc.create(id, { bundle }), AlreadyExistsError, 'same id twice');

  await runc.start(id);
  await waitFor('stdout', () => (stdout.text().includes('hello-out') ? true : undefined));
  await waitFor('stderr', () => (stderr?.text().includes('hello-err') ? true : undefined));
  t.equal(stdout.text(), 'hello-out\n');
  t.equal(stderr?.text(), 'hello-err\n');
  t.equal(await status(id), 'running');

  await runc.pause(id);
  t.equal(await status(id), 'paused');
  await runc.resume(id);
  t.equal(await status(id), 'running');

  await runc.update(id, { pids: { limit: 50 } });
  const stats = await runc.stats(id);
  t.equal(stats.pids?.limit, 50, 'update applied the pids limit');
  t.ok((stats.pids?.current ?? 0) >= 1, 'pids.current');
  t.ok((stats.cpu?.usage?.total ?? 0) > 0, 'cpu usage');
  t.ok((stats.memory?.usage?.usage ?? 0) > 0, 'memory usage');

  const before = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('runc-process-')));
  const execOut = join(tmp, 'exec.out');
  const execFd = openSync(execOut, 'w');
  fds.push(execFd);
  const execPidFile = join(bundle, 'exec1.pid');
  await runc.exec(id, processSpec(['/bin/sh', '-c', 'echo exec-out; echo exec-err >&2']), {
    pidFile: execPidFile,
    stdio: ['ignore', execFd, execFd],
  });
  t.ok(Number(readFileSync(execPidFile, 'utf8')) > 0, 'exec pid file written');
  await waitFor('exec output', () => (readFileSync(execOut, 'utf8').includes('exec-err') ? true : undefined));
  t.match(readFileSync(execOut, 'utf8'), /exec-out\n/);
  const leftover = readdirSync(tmpdir()).filter((n) => n.startsWith('runc-process-') && !before.has(n));
  t.same(leftover, [], 'the process spec temp dir was removed');

  await t.rejects(runc.exec(id, processSpec(['/bin/nothere'])), {
    name: 'RuncError',
    message: /^runc exec failed: .*(no such file|executable file not found)/,
  });

  await runc.kill(id, 9);
  await waitFor('container to stop', async () => ((await status(id)) === 'stopped' ? true : undefined));
  await waitFor('stdout EOF', () => (stdout.ended() ? true : undefined));
  await t.rejects(runc.kill(id, 'TERM'), NotFoundError, 'kill of a stopped container');
  const err = await runc.kill(id, 'TERM').catch((e: unknown) => e);
  t.type((err as Error).cause, RuncError);
  t.match((err as Error).message, /container not running/);

  await runc.delete(id);
  containers.delete(id);
  await t.rejects(runc.state(id), NotFoundError);
  await t.rejects(runc.kill(id, 9), { name: 'NotFoundError', message: /container does not exist/ });
  await t.rejects(runc.delete(id), NotFoundError);
  await t.rejects(runc.ps(id), NotFoundError);
});

t.test('create reports runc\'s own error', async (t) => {
  const bundle = makeBundle('missing-bin', ['/bin/nothere']);
  const id = tracked('missing-bin');
  const err = await runc.create(id, { bundle, pidFile: join(bundle, 'init.pid') }).catch((e: unknown) => e);
  t.type(err, RuncError);
  const re = err as RuncError;
  t.match(re.runcMessage, /no such file or directory|executable file not found/);
  t.match(re.message, /^runc create failed: /);
  t.notMatch(re.message, /runc create failed: runc create failed/, 'prefix not doubled');
  t.equal(re.exitCode, 1);
  await runc.delete(id, { force: true }).catch(() => {});

  await t.rejects(runc.create('bad-bundle', { bundle: join(tmp, 'no-such-bundle') }), {
    name: 'RuncError',
    message: /^runc create failed: .+/,
  });
});

t.test('checkpoint failure carries criu\'s message', async (t) => {
  const bundle = makeBundle('ckpt', ['/bin/sleep', '1000']);
  const id = tracked('ckpt');
  await runc.create(id, { bundle });
  await runc.start(id);
  const err = await runc
    .checkpoint(id, { imagePath: join(tmp, 'ckpt-img'), workPath: join(tmp, 'ckpt-work'), leaveRunning: true })
    .catch((e: unknown) => e);
  t.type(err, RuncError, 'checkpoint fails on this kernel');
  const re = err as RuncError;
  t.ok(re.runcMessage.length > 0);
  t.notMatch(re.runcMessage, /^exit status/, 'runc\'s text, not a generic status');
  t.match(re.message, /^runc checkpoint failed: .*criu/);
  await runc.kill(id, 9);
  await waitFor('container to stop', async () => ((await status(id)) === 'stopped' ? true : undefined));
  await runc.delete(id);
  containers.delete(id);
});

t.test('console socket receives the pty master', async (t) => {
  const bundle = makeBundle('tty', ['/bin/sh', '-c', 'echo tty-ok; exec sleep 1000'], true);
  const id = tracked('tty');
  const listener = await ConsoleSocket.listen();
  t.teardown(() => listener.close());
  t.ok(listener.path.length < 108, 'socket path fits sun_path');
  const master = listener.receiveMaster(AbortSignal.timeout(10_000));
  await runc.create(id, { bundle, consoleSocket: listener.path, stdio: ['pipe', 'pipe', 'pipe'] });
  const { fd, name } = await master;
  // runc 1.1 labels the master with the path it opened.
  t.equal(name, '/dev/ptmx');
  t.ok(fd > 2, `master fd ${fd}`);
  const tty = new FdStream(fd);
  t.teardown(() => tty.destroy());
  const out = collect(tty);
  await runc.start(id);
  await waitFor('tty output', () => (out.text().includes('tty-ok') ? true : undefined));
  t.match(out.text(), /tty-ok\r\n/, 'output came through the pty');
  await runc.kill(id, 9);
  await waitFor('container to stop', async () => ((await status(id)) === 'stopped' ? true : undefined));
  await runc.delete(id);
  containers.delete(id);

  await listener.close();
  await t.rejects(listener.receiveMaster(), CanceledError, 'closed listener');
  const other = await ConsoleSocket.listen();
  await t.rejects(other.receiveMaster(AbortSignal.timeout(50)), DeadlineExceededError);
  await other.close();
  t.throws(() => readdirSync(other.path), { code: 'ENOENT' }, 'socket dir removed');
});

t.test('a failing runc binary: the message comes from what it appended to the log', async (t) => {
  const dir = join(tmp, 'fake');
  mkdirSync(dir);
  const script = (body: string): string => {
    const path = join(dir, `runc-${Math.random().toString(36).slice(2)}`);
    writeFileSync(
      path,
      `#!/bin/sh\nlog=""\nfor a in "$@"; do [ "$prev" = "--log" ] && log="$a"; prev="$a"; done\n${body}\n`,
      { mode: 0o755 },
    );
    return path;
  };
  const log = join(dir, 'log.json');
  writeFileSync(log, '{"level":"error","msg":"an old failure","time":"2024-01-01T00:00:00Z"}\n');

  const fromLog = new Runc({
    binary: script(
      `echo '{"level":"info","msg":"starting","time":"t"}' >> "$log"\n` +
        `echo '{"level":"error","msg":"fake failure: cgroup went away","time":"t"}' >> "$log"\n` +
        `echo '{"level":"warning","msg":"after","time":"t"}' >> "$log"\n` +
        'echo "stderr noise" >&2\nexit 1',
    ),
    root: join(dir, 'root'),
    log,
  });
  const err = await fromLog.start('x').catch((e: unknown) => e);
  t.type(err, RuncError);
  t.equal((err as RuncError).message, 'runc start failed: fake failure: cgroup went away');
  t.equal((err as RuncError).runcMessage, 'fake failure: cgroup went away');

  const fromStderr = new Runc({ binary: script('echo "only on stderr" >&2\nexit 2'), root: dir, log });
  await t.rejects(fromStderr.pause('x'), { message: 'runc pause failed: only on stderr', exitCode: 2 });

  const silent = new Runc({ binary: script('exit 3'), root: dir, log });
  await t.rejects(silent.resume('x'), { message: 'runc resume failed: exit status 3' });

  const notFound = new Runc({ binary: script(`echo '{"level":"error","msg":"container does not exist"}' >> "$log"\nexit 1`), root: dir, log });
  await t.rejects(notFound.delete('x'), NotFoundError);

  const args = join(dir, 'args');
  const spawned: string[] = [];
  const recorder = new Runc({
    binary: script(`printf '%s\\n' "$@" > ${args}\ncat > ${args}.stdin\nenv > ${args}.env`),
    root: '/r',
    log,
    env: { ...process.env, NOTIFY_SOCKET: '/run/systemd/notify' },
    spawn: (command, argv, options) => {
      spawned.push(argv[argv.indexOf('json') + 1]!);
      return spawn(command, argv, options);
    },
  });
  await recorder.update('c', { pids: { limit: 5 } });
  t.same(readFileSync(args, 'utf8').trim().split('\n'), ['--root', '/r', '--log', log, '--log-format', 'json', 'update', '--resources', '-', 'c']);
  t.same(JSON.parse(readFileSync(`${args}.stdin`, 'utf8')), { pids: { limit: 5 } });
  t.notMatch(readFileSync(`${args}.env`, 'utf8'), /NOTIFY_SOCKET/, 'NOTIFY_SOCKET removed');
  t.same(spawned, ['update'], 'runc was started through the spawn hook');
  await recorder.kill('c', 15, { all: true });
  t.same(readFileSync(args, 'utf8').trim().split('\n').slice(6), ['kill', '--all', 'c', '15']);
  await recorder.create('c', { bundle: '/b', pidFile: '/b/init.pid', consoleSocket: '/s', noPivot: true, noNewKeyring: true });
  t.same(readFileSync(args, 'utf8').trim().split('\n').slice(6), [
    'create', '--bundle', '/b', '--pid-file', '/b/init.pid', '--console-socket', '/s', '--no-pivot', '--no-new-keyring', 'c',
  ]);
  await recorder.checkpoint('c', {
    imagePath: '/i', workPath: '/w', leaveRunning: true, tcpEstablished: true, externalUnixSockets: true,
    terminal: true, fileLocks: true, emptyNamespaces: ['network'], cgroupsMode: 'soft',
  });
  t.same(readFileSync(args, 'utf8').trim().split('\n').slice(6), [
    'checkpoint', '--image-path', '/i', '--work-path', '/w', '--tcp-established', '--ext-unix-sk', '--shell-job',
    '--file-locks', '--manage-cgroups-mode', 'soft', '--empty-ns', 'network', '--leave-running', 'c',
  ]);
  await recorder.restore('c', { bundle: '/b', imagePath: '/i', pidFile: '/p', noSubreaper: true });
  t.same(readFileSync(args, 'utf8').trim().split('\n').slice(6), [
    'restore', '--image-path', '/i', '--detach', '--pid-file', '/p', '--no-subreaper', '--bundle', '/b', 'c',
  ]);

  const slow = new Runc({ binary: script('exec sleep 30'), root: dir, log });
  await t.rejects(slow.start('x', { signal: AbortSignal.timeout(200) }), DeadlineExceededError);
  const controller = new AbortController();
  const pending = slow.state('x', { signal: controller.signal });
  setTimeout(() => controller.abort(), 100);
  await t.rejects(pending, CanceledError);

  await t.rejects(new Runc({ binary: join(dir, 'does-not-exist'), root: dir, log }).start('x'), {
    name: 'RuncError',
    message: /ENOENT/,
  });
});
