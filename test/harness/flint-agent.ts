import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processesOwnedBy, signal, unmountUnder } from './procfs.js';
import { repoRoot, spawnFlint } from './repo.js';

const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 10_000;

const live = new Set<string>();
let exitHookInstalled = false;

/**
 * Last resort when a test dies without its teardown: SIGKILL each live
 * agent and what it started (its containers are its descendants), unmount
 * and remove its dir. Synchronous, as 'exit' handlers must be.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const dir of live) {
      for (const p of processesOwnedBy(dir)) signal(p.pid, 'SIGKILL');
      try {
        unmountUnder(dir);
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // a dying process may still hold a mount; nothing more can be done synchronously
      }
    }
  });
}

/** A flint-agent serving on a hybrid vsock unix socket in a temp dir. */
export interface AgentHandle {
  /** The temp dir holding the socket, the agent root and the VM-mode config. */
  readonly dir: string;
  /** The hybrid vsock unix socket (hvsock://<socket>). */
  readonly socket: string;
  /** The agent's --root. */
  readonly root: string;
  /** A flint config file selecting VM mode with this agent (for FLINT_CONFIG or --runtime-config-path). */
  readonly configPath: string;
  /** The current agent process (a new one after restart()). */
  readonly pid: number;
  readonly child: ChildProcess;
  /** True while the agent process has not exited. */
  readonly alive: boolean;
  /** Resolves when the current agent process exits, with its exit code (null after a signal). */
  readonly exited: Promise<number | null>;
  /** Signals the agent and waits for it to exit (SIGKILL after a grace period); idempotent. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a new agent on the same socket, root and config, once the current one is gone. */
  restart(): Promise<void>;
  /** stop(), then removes the temp dir (the root only if the agent left no mounts). */
  dispose(): Promise<void>;
}

/** Options for startAgent. */
export interface StartAgentOptions {
  /** --root; default <dir>/root. */
  readonly root?: string;
  /** Mode of the temp dir; default 0700 (0711 lets other users reach the socket's own mode bits). */
  readonly dirMode?: number;
  /** More flint-agent flags, e.g. ['--exit-when-empty']. */
  readonly args?: readonly string[];
}

/** One agent process and what the handle needs of it. */
interface AgentProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  hasExited: boolean;
  stderr: string;
}

function spawnAgent(socket: string, root: string, args: readonly string[]): AgentProcess {
  const child = spawnFlint(join(repoRoot(), 'bin/flint-agent'), ['--listen', `hvsock://${socket}`, '--root', root, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const agent: AgentProcess = {
    child,
    hasExited: false,
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code) => ((agent.hasExited = true), resolve(code)))),
  };
  child.stderr!.on('data', (b: Buffer) => {
    if (agent.stderr.length < 64_000) agent.stderr += b.toString();
  });
  return agent;
}

/**
 * Starts bin/flint-agent on hvsock://<tmp>/fc.vsock and waits for the socket
 * to appear. The agent runs outside any VM, exactly as test/shim-vm.test.ts does.
 */
export async function startAgent(opts: StartAgentOptions = {}): Promise<AgentHandle> {
  installExitHook();
  const dir = mkdtempSync('/tmp/fag-');
  live.add(dir);
  if (opts.dirMode !== undefined) chmodSync(dir, opts.dirMode);
  const socket = join(dir, 'fc.vsock');
  const root = opts.root ?? join(dir, 'root');
  mkdirSync(root, { recursive: true });
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify({ mode: 'vm', agent: { address: `hvsock://${socket}:10789`, dialTimeoutMs: 3000 } }));
  let current = spawnAgent(socket, root, opts.args ?? []);
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (current.hasExited) return;
    current.child.kill(signal);
    const timedOut = await Promise.race([current.exited.then(() => false), sleep(STOP_GRACE_MS).then(() => true)]);
    if (timedOut) {
      current.child.kill('SIGKILL');
      await current.exited;
    }
  };
  const waitForSocket = async (): Promise<void> => {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!existsSync(socket)) {
      if (current.hasExited || Date.now() > deadline) {
        await handle.dispose();
        throw new Error(`flint-agent did not start: ${current.stderr.slice(-2000)}`);
      }
      await sleep(50);
    }
  };
  const handle: AgentHandle = {
    dir,
    socket,
    root,
    configPath,
    get pid() {
      return current.child.pid!;
    },
    get child() {
      return current.child;
    },
    get alive() {
      return !current.hasExited;
    },
    get exited() {
      return current.exited;
    },
    stop,
    restart: async () => {
      await stop();
      // A killed agent leaves its socket file; the new one must be waited for, not the old file.
      rmSync(socket, { force: true });
      current = spawnAgent(socket, root, opts.args ?? []);
      await waitForSocket();
    },
    dispose: async () => {
      await stop();
      // Containers the agent could not delete on its way out are its descendants still.
      for (const p of processesOwnedBy(dir)) signal(p.pid, 'SIGKILL');
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      live.delete(dir);
    },
  };
  await waitForSocket();
  return handle;
}
