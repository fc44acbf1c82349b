import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { CONTAINER_PATH } from './busybox.js';
import { taskEventsDuring } from './ctr-events.js';
import { busyboxImage, busyboxRootfs } from './busybox.js';
import type { Containerd } from './containerd.js';
import { FifoReader } from './fifo-reader.js';
import { leftovers } from './leftovers.js';
import { OCI_PROCESS_TYPE } from '../../src/taskapi/service.js';
import { RUNTIMES, runRm, type RuntimeName } from './scenario.js';
import { shimSocketOf, taskClientAt } from './shim-server.js';

/**
 * The ctr scenarios every flint mode must pass. Each runs under the
 * reference runtime (containerd-shim-runc-v2) and under flint, and the
 * observations must match: the Go shim is the oracle. `c` is a private
 * containerd whose environment decides flint's mode (FLINT_CONFIG).
 */
export function defineCtrScenarios(t: Test, c: Containerd): void {
  const RUNTIME_NAMES: RuntimeName[] = ['runc', 'flint'];

  /** Runs `observe` under both runtimes and checks flint saw what runc saw. */
  async function compare<T>(t: Test, name: string, observe: (runtime: RuntimeName) => Promise<T>): Promise<T> {
    const seen: Partial<Record<RuntimeName, T>> = {};
    for (const runtime of RUNTIME_NAMES) seen[runtime] = await observe(runtime);
    t.same(seen.flint, seen.runc, `${name}: flint behaves like containerd-shim-runc-v2`);
    return seen.flint as T;
  }

  type CtrResult = Awaited<ReturnType<Containerd['ctr']>>;

  async function ctr(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CtrResult> {
    return c.ctr(args, { timeoutMs: opts.timeoutMs ?? 30_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  }

  async function runDetached(runtime: RuntimeName, id: string, cmd: string[], flags: string[] = []): Promise<void> {
    const r = await ctr(['run', '-d', '--runtime', RUNTIMES[runtime], '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, ...flags, '--rootfs', busyboxRootfs(c), id, ...cmd]);
    if (r.code !== 0) throw new Error(`ctr run -d ${id}: ${r.stderr}`);
  }

  async function removeContainer(id: string): Promise<void> {
    await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    await ctr(['task', 'delete', '-f', id]);
    await ctr(['container', 'delete', id]);
  }

  /** The STATUS column of `ctr task ls` for one task, or '' when it is not listed. */
  async function taskStatus(id: string): Promise<string> {
    const line = (await ctr(['task', 'ls'])).stdout.toString().split('\n').find((l) => l.split(/\s+/)[0] === id);
    return line?.trim().split(/\s+/)[2] ?? '';
  }

  t.test('run --rm: exit code, stdout and stderr kept apart', async (t) => {
    const seen = await compare(t, 'exit and streams', async (runtime) => {
      const r = await runRm(c, runtime, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
      return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
    });
    t.same(seen, { code: 3, stdout: 'out\n', stderr: 'err\n' });
  });

  t.test('a signal death reports 128+signal', async (t) => {
    const seen = await compare(t, 'signal exit', async (runtime) => {
      const id = c.newId(`sig-${runtime}`);
      const run = runRm(c, runtime, ['sleep', '1000'], { id, timeoutMs: 30_000 });
      // Wait for RUNNING, not merely listed: a task killed while still
      // CREATED never starts, and ctr then exits 1 under either runtime.
      for (let i = 0; i < 200 && (await taskStatus(id)) !== 'RUNNING'; i++) await sleep(50);
      await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      return (await run).code;
    });
    t.equal(seen, 137);
  });

  t.test('piped stdin reaches the container, then EOF', async (t) => {
    const seen = await compare(t, 'stdin', async (runtime) => {
      const r = await runRm(c, runtime, ['sh', '-c', 'wc -c; cat'], { input: 'twelve bytes', timeoutMs: 15_000 });
      return { code: r.code, stdout: r.stdout.toString().trim(), timedOut: r.timedOut };
    });
    t.same(seen, { code: 0, stdout: '12', timedOut: false });
  });

  /**
   * Flint only: the runc shim hangs here. ctr 1.6 sends CloseIO only for an
   * EOF it reads after NewTask has returned (containerd/containerd#4489);
   * stdin that ends sooner, while the task is being created, must still
   * reach the process as EOF, so the shim must not hold stdin open for it.
   */
  t.test('stdin that ends while the task is created still reaches the process as EOF', async (t) => {
    for (let i = 0; i < 3; i++) {
      const id = c.newId('eof');
      const r = await ctr(['run', '--rm', '--runtime', RUNTIMES.flint, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH, '--rootfs', busyboxRootfs(c), id, 'sh', '-c', 'cat; echo done'], { input: 'x\n', timeoutMs: 20_000 });
      if (r.timedOut) await removeContainer(id);
      t.same({ code: r.code, stdout: r.stdout.toString(), timedOut: r.timedOut }, { code: 0, stdout: 'x\ndone\n', timedOut: false }, `run ${i}: cat saw the input, then EOF`);
    }
  });

  t.test('50 MB of stdout arrive intact', async (t) => {
    // seq 1 6500000 writes 50,888,895 bytes; its digest is computed here too.
    let expected = '';
    for (let i = 1; i <= 6_500_000; i++) expected += `${i}\n`;
    const digest = createHash('sha256').update(expected).digest('hex');
    const seen = await compare(t, '50 MB stdout', async (runtime) => {
      const r = await runRm(c, runtime, ['seq', '1', '6500000'], { timeoutMs: 120_000 });
      return { code: r.code, bytes: r.stdout.length, sha256: createHash('sha256').update(r.stdout).digest('hex') };
    });
    t.same(seen, { code: 0, bytes: Buffer.byteLength(expected), sha256: digest });
  });

  t.test('run -d, exec, ps, pause/resume, kill, task rm', async (t) => {
    await compare(t, 'detached lifecycle', async (runtime) => {
      const id = c.newId(`life-${runtime}`);
      await runDetached(runtime, id, ['sleep', '1000']);
      try {
        const exec = await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'e1', id, 'sh', '-c', 'echo in-exec; exit 5']);
        const ps = await ctr(['task', 'ps', id]);
        const pause = await ctr(['task', 'pause', id]);
        const pausedStatus = await taskStatus(id);
        const resume = await ctr(['task', 'resume', id]);
        const runningStatus = await taskStatus(id);
        const kill = await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
        let stoppedStatus = '';
        for (let i = 0; i < 100 && stoppedStatus !== 'STOPPED'; i++) {
          stoppedStatus = await taskStatus(id);
          if (stoppedStatus !== 'STOPPED') await sleep(50);
        }
        const rm = await ctr(['task', 'rm', id]);
        // ctr task rm exits 0 and reports a non-zero exit status as a warning.
        const rmExitStatus = /exit with non-zero exit code (\d+)/.exec(rm.stderr)?.[1];
        return {
          exec: { code: exec.code, stdout: exec.stdout.toString() },
          psLines: ps.stdout.toString().trim().split('\n').length,
          pause: pause.code,
          pausedStatus,
          resume: resume.code,
          runningStatus,
          kill: kill.code,
          stoppedStatus,
          rm: { code: rm.code, stdout: rm.stdout.toString(), exitStatus: rmExitStatus },
        };
      } finally {
        await removeContainer(id);
      }
    }).then((seen) => {
      t.same(seen.exec, { code: 5, stdout: 'in-exec\n' });
      t.equal(seen.psLines, 2, 'ps lists a header and the one process');
      t.equal(seen.pausedStatus, 'PAUSED');
      t.equal(seen.runningStatus, 'RUNNING');
      t.equal(seen.stoppedStatus, 'STOPPED');
      t.equal(seen.rm.code, 0, 'task rm succeeds');
      t.equal(seen.rm.exitStatus, '137', 'task rm reports the SIGKILLed task\'s exit status');
    });
  });

  t.test('exec of a duplicate id fails, the first one unaffected', async (t) => {
    await compare(t, 'duplicate exec', async (runtime) => {
      const id = c.newId(`dup-${runtime}`);
      await runDetached(runtime, id, ['sleep', '1000']);
      try {
        const first = ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'same', id, 'sleep', '2']);
        await sleep(500);
        const second = await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'same', id, 'true']);
        const firstResult = await first;
        return { first: firstResult.code, secondFailed: second.code !== 0, secondError: /already exists/.test(second.stderr) };
      } finally {
        await removeContainer(id);
      }
    }).then((seen) => {
      t.same(seen, { first: 0, secondFailed: true, secondError: true }, 'the second exec fails with "already exists", the first runs to exit 0');
    });
  });

  t.test('an image-based run mounts the overlay rootfs', async (t) => {
    await busyboxImage(c);
    const seen = await compare(t, 'image run', async (runtime) => {
      const r = await runRm(c, runtime, ['sh', '-c', 'cat /proc/mounts | grep -c " / overlay"; echo ok > /tmp/x; cat /tmp/x'], { image: true });
      return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
    });
    t.same(seen, { code: 0, stdout: '1\nok\n', stderr: '' });
  });

  /** Runs ctr under a pseudo-terminal (util-linux `script`), as `-t` needs one. */
  function ctrWithTty(args: string[], input: string): Promise<{ code: number; output: string }> {
    const [verb, ...rest] = args;
    const command = ['/usr/bin/ctr', '--address', c.address, '-n', c.namespace, verb!, ...(verb === 'run' ? ['--env', CONTAINER_PATH] : []), ...rest].map((a) => `'${a}'`).join(' ');
    return new Promise((resolve, reject) => {
      const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, output });
      });
      setTimeout(() => child.stdin.end(input), 500);
    });
  }

  t.test('-t gives the process a terminal, for run and for exec', async (t) => {
    const seen = await compare(t, 'tty', async (runtime) => {
      const id = c.newId(`tty-${runtime}`);
      const run = await ctrWithTty(['run', '--rm', '-t', '--runtime', RUNTIMES[runtime], '--fifo-dir', c.fifoDir, '--rootfs', busyboxRootfs(c), id, 'sh', '-c', 'tty; exit 7'], '');
      const execId = c.newId(`ttyx-${runtime}`);
      await runDetached(runtime, execId, ['sleep', '1000']);
      try {
        const exec = await ctrWithTty(['task', 'exec', '-t', '--fifo-dir', c.fifoDir, '--exec-id', 'x1', execId, 'sh', '-c', 'test -t 0 && echo is-a-tty; exit 6'], '');
        return { run: { code: run.code, tty: /\/dev\/pts\/\d+|\/dev\/console/.test(run.output) }, exec: { code: exec.code, tty: /is-a-tty/.test(exec.output) } };
      } finally {
        await removeContainer(execId);
      }
    });
    t.same(seen, { run: { code: 7, tty: true }, exec: { code: 6, tty: true } });
  });

  t.test('run --no-pivot: the client\'s create options (containerd.linux.runc.CreateOptions for flint) are taken', async (t) => {
    const seen = await compare(t, 'no-pivot', async (runtime) => {
      const r = await runRm(c, runtime, ['echo', 'pivot-free'], { flags: ['--no-pivot'] });
      return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
    });
    t.same(seen, { code: 0, stdout: 'pivot-free\n', stderr: '' });
  });

  t.test('an exec asking for a terminal gets one though its process spec says terminal:false', async (t) => {
    // ctr always writes the two alike, so the request goes to the shim directly.
    const seen = await compare(t, 'exec terminal from the request', async (runtime) => {
      const id = c.newId(`ttyreq-${runtime}`);
      await runDetached(runtime, id, ['sleep', '1000']);
      const { client, task } = await taskClientAt(shimSocketOf(c, id), c.namespace);
      const out = new FifoReader(join(c.fifoDir, `${id}-ttyreq.stdout`));
      try {
        const spec = { args: ['sh', '-c', 'test -t 1 && echo is-a-tty; exit 6'], cwd: '/', env: [CONTAINER_PATH], terminal: false, user: { uid: 0, gid: 0 } };
        await task.exec({ id, execId: 'tty', terminal: true, stdout: out.path, spec: { typeUrl: OCI_PROCESS_TYPE, value: Buffer.from(JSON.stringify(spec)) } });
        const started = await task.start({ id, execId: 'tty' }).then(() => 'started', (err: Error) => err.message);
        if (started !== 'started') return { started };
        const { exitStatus } = await task.wait({ id, execId: 'tty' });
        return { started, exitStatus, tty: /is-a-tty/.test(await out.waitFor('is-a-tty')) };
      } finally {
        await client.close();
        out.close();
        await removeContainer(id);
      }
    });
    t.same(seen, { started: 'started', exitStatus: 6, tty: true });
  });

  /** The task topics `ctr events` shows while `action` runs, for container `id`. */
  async function topicsDuring(id: string, action: () => Promise<unknown>): Promise<string[]> {
    return (await taskEventsDuring(c, id, action)).map((e) => e.topic);
  }

  t.test('events arrive in order: create, start, exec-added, exec-started, exit, delete', async (t) => {
    const seen = await compare(t, 'event order', async (runtime) => {
      const id = c.newId(`ev-${runtime}`);
      return topicsDuring(id, async () => {
        await runDetached(runtime, id, ['sleep', '1000']);
        await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'ex', id, 'true']);
        await ctr(['task', 'pause', id]);
        await ctr(['task', 'resume', id]);
        await removeContainer(id);
      });
    });
    t.same(seen, [
      '/tasks/create',
      '/tasks/start',
      '/tasks/exec-added',
      '/tasks/exec-started',
      '/tasks/exit',
      '/tasks/paused',
      '/tasks/resumed',
      '/tasks/exit',
      '/tasks/delete',
    ]);
  });

  /** `ctr task metrics` of a task: ctr's exit code, the memory limit and the process count it shows. */
  async function metrics(id: string): Promise<{ code: number; limit: number | undefined; pids: number | undefined }> {
    const r = await ctr(['task', 'metrics', '--format', 'json', id]);
    if (r.code !== 0) return { code: r.code, limit: undefined, pids: undefined };
    const shown = JSON.parse(r.stdout.toString()) as { memory?: { usage?: { limit?: number } }; pids?: { current?: number } };
    return { code: r.code, limit: shown.memory?.usage?.limit, pids: shown.pids?.current };
  }

  t.test('task metrics reports cgroup stats, also once the task has stopped', async (t) => {
    const seen = await compare(t, 'metrics', async (runtime) => {
      const id = c.newId(`met-${runtime}`);
      await runDetached(runtime, id, ['sleep', '1000'], ['--memory-limit', '67108864']);
      try {
        const running = await metrics(id);
        await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
        for (let i = 0; i < 100 && (await taskStatus(id)) !== 'STOPPED'; i++) await sleep(50);
        return { running, stopped: await metrics(id) };
      } finally {
        await removeContainer(id);
      }
    });
    t.same(seen, { running: { code: 0, limit: 67108864, pids: 1 }, stopped: { code: 0, limit: 67108864, pids: undefined } }, 'a stopped task has no process (ctr leaves the zero count out)');
  });

  t.test('task checkpoint fails with runc\'s words (criu cannot dump on this kernel), the task runs on', async (t) => {
    const seen = await compare(t, 'checkpoint', async (runtime) => {
      const id = c.newId(`ckpt-${runtime}`);
      await runDetached(runtime, id, ['sleep', '1000']);
      try {
        const r = await ctr(['task', 'checkpoint', id]);
        return { failed: r.code !== 0, criuFailed: /criu failed: type DUMP/.test(r.stderr), status: await taskStatus(id) };
      } finally {
        await removeContainer(id);
      }
    });
    t.same(seen, { failed: true, criuFailed: true, status: 'RUNNING' });
  });

  t.test('an OOM kill under --memory-limit publishes /tasks/oom, between start and exit', async (t) => {
    const seen = await compare(t, 'oom', async (runtime) => {
      const id = c.newId(`oom-${runtime}`);
      const topics = await topicsDuring(id, async () => {
        await runRm(c, runtime, ['sh', '-c', 'x=$(head -c 50000000 /dev/zero | tr "\\0" a); echo never'], {
          id,
          flags: ['--memory-limit', '16777216'],
          timeoutMs: 60_000,
        });
      });
      // The kernel may report one OOM as several: repeats in a row count once.
      return topics.filter((topic, i) => topic !== topics[i - 1]);
    });
    t.same(seen, ['/tasks/create', '/tasks/start', '/tasks/oom', '/tasks/exit', '/tasks/delete']);
  });

  t.test('a create that fails gives runc\'s error and leaves nothing', async (t) => {
    const seen = await compare(t, 'failed create', async (runtime) => {
      const id = c.newId(`fail-${runtime}`);
      const r = await runRm(c, runtime, ['/no/such/binary'], { id });
      // Right after ctr returns, before any shim has had time to exit.
      const left = await leftovers(c);
      return {
        failed: r.code !== 0,
        mentionsBinary: /no\/such\/binary/.test(r.stderr) && /executable file not found|no such file/.test(r.stderr),
        // ctr's own line, the error containerd got from the shim.
        ctrError: r.stderr.trim().split('\n').at(-1),
        left: {
          bundle: left.bundles.includes(`${c.namespace}/${id}`),
          task: left.tasks.includes(id),
          container: left.containers.includes(id),
          mounts: left.mounts.filter((m) => m.includes(id)),
          fifos: left.fifos.filter((f) => f.includes(id)),
        },
      };
    });
    t.same(seen, {
      failed: true,
      mentionsBinary: true,
      ctrError: 'ctr: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/no/such/binary": stat /no/such/binary: no such file or directory: unknown',
      left: { bundle: false, task: false, container: false, mounts: [], fifos: [] },
    });
  });
}
