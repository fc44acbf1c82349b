import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { busyboxImage, busyboxRootfs, CONTAINER_PATH, startContainerd, waitForClean, isClean } from '../test/harness/index.js';

/**
 * The README's `make demo`: flint as containerd's runtime, end to end, on a
 * containerd of its own that never touches the system's.
 */
const RUNTIME = 'io.containerd.flint.v2';

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

const c = await startContainerd();
const events = spawn('/usr/bin/ctr', ['--address', c.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
let eventLog = '';
events.stdout.on('data', (chunk: Buffer) => (eventLog += chunk.toString()));

async function ctr(args: string[], input?: string): Promise<number> {
  process.stdout.write(`$ ctr ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}\n`);
  const r = await c.ctr(args, { timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });
  process.stdout.write(r.stdout.toString());
  if (r.stderr) process.stdout.write(r.stderr);
  process.stdout.write(`(exit status ${r.code})\n`);
  return r.code;
}

let failed = false;
try {
  const rootfs = busyboxRootfs(c);
  const common = ['--runtime', RUNTIME, '--fifo-dir', c.fifoDir, '--env', CONTAINER_PATH];
  say('a container prints to stdout and stderr, and exits 3');
  failed ||= (await ctr(['run', '--rm', ...common, '--rootfs', rootfs, 'demo-hello', 'sh', '-c', 'echo hello from flint; uname -a; echo to stderr >&2; exit 3'])) !== 3;

  say('an image-based container (overlay rootfs from the busybox image)');
  const image = await busyboxImage(c);
  failed ||= (await ctr(['run', '--rm', ...common, image, 'demo-image', 'sh', '-c', 'cat /etc/hostname 2>/dev/null; echo rootfs: $(grep " / " /proc/mounts | cut -d" " -f3)'])) !== 0;

  say('a long-running container, an exec into it, ps, and a kill');
  failed ||= (await ctr(['run', '-d', ...common, '--rootfs', rootfs, 'demo-server', 'sleep', '1000'])) !== 0;
  failed ||= (await ctr(['task', 'exec', '--fifo-dir', c.fifoDir, '--exec-id', 'say-hi', 'demo-server', 'sh', '-c', 'echo exec says hi; exit 5'])) !== 5;
  await ctr(['task', 'ps', 'demo-server']);
  await ctr(['task', 'ls']);
  await ctr(['task', 'kill', '-s', 'SIGKILL', 'demo-server']);
  await sleep(300);
  await ctr(['task', 'rm', 'demo-server']);
  await ctr(['container', 'rm', 'demo-server']);

  await sleep(500);
  say('the event stream containerd received from flint');
  process.stdout.write(
    eventLog
      .split('\n')
      .filter((line) => line.includes('/tasks/'))
      .map((line) => line.replace(/^\S+ \S+ \S+ /, ''))
      .join('\n') + '\n',
  );
} finally {
  events.kill('SIGTERM');
  const report = await waitForClean(c, 10_000);
  await c.stop();
  say(isClean(report) ? 'cleaned up: no shims, mounts, FIFOs or bundles left' : `left behind: ${JSON.stringify(report)}`);
  if (!isClean(report)) failed = true;
}
process.exit(failed ? 1 : 0);
