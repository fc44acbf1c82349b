import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoBinDir, RUNTIMES, startContainerd, type Containerd } from '../test/harness/index.js';
import { isRunning } from '../test/harness/procfs.js';
import { errorText, type BenchSettings, type RunTarget } from './common.js';
import type { Row } from './report.js';
import { VM_LABEL, vmStartRow, vmThroughputRow } from './vm-rows.js';

const AGENT_READY_MS = 5_000;
const AGENT_STOP_GRACE_MS = 3_000;

/** A started flint-agent listening on a hybrid-vsock unix socket. */
export interface Agent {
  readonly child: ChildProcess;
  /** hvsock://<dir>/fc.vsock:<port>, for the shim's config. */
  readonly address: string;
  stop(): Promise<void>;
}

/** Why VM mode is skipped, or the started agent. */
export type AgentOutcome = { readonly agent: Agent } | { readonly unavailable: string };

/**
 * Starts `bin/flint-agent --listen hvsock://<dir>/fc.vsock --root <dir>/agent`
 * in its own process group, and waits a few seconds for it to create its
 * socket. Anything else (no agent, FLINT_BENCH_VM=0, early exit, no socket)
 * is reported as a reason, never thrown.
 */
export async function startAgent(dir: string, s: BenchSettings): Promise<AgentOutcome> {
  if (!s.vm) return { unavailable: 'disabled by FLINT_BENCH_VM=0' };
  const launcher = join(repoBinDir(), 'flint-agent');
  if (!existsSync(launcher)) return { unavailable: `${launcher} does not exist` };
  const root = join(dir, 'agent');
  mkdirSync(root, { recursive: true });
  const socket = join(dir, 'fc.vsock');
  // The launcher is a node script; run it with this node so PATH does not matter.
  const child = spawn(process.execPath, [launcher, '--listen', `hvsock://${socket}`, '--root', root], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString('utf8')).slice(-2000)));
  let exit: string | undefined;
  child.once('exit', (code, sig) => (exit = `exited ${sig ?? code}`));
  child.once('error', (err) => (exit = `failed to spawn: ${err.message}`));
  // If the bench dies before stop(), the agent must not outlive it.
  const onProcessExit = (): void => {
    if (child.pid !== undefined && exit === undefined) killGroup(child.pid, 'SIGKILL');
  };
  process.once('exit', onProcessExit);
  const stop = async (): Promise<void> => {
    process.off('exit', onProcessExit);
    if (child.pid === undefined || exit !== undefined) return;
    // Its own process group, so a VM it started goes too.
    killGroup(child.pid, 'SIGTERM');
    const deadline = Date.now() + AGENT_STOP_GRACE_MS;
    while (exit === undefined && Date.now() < deadline) await sleep(50);
    if (exit === undefined) killGroup(child.pid, 'SIGKILL');
  };
  const deadline = Date.now() + AGENT_READY_MS;
  while (Date.now() < deadline && exit === undefined) {
    if (readdirSync(dir).some((f) => f.startsWith('fc.vsock')) && child.pid !== undefined && isRunning(child.pid)) {
      return { agent: { child, address: `hvsock://${socket}:${s.agentPort}`, stop } };
    }
    await sleep(100);
  }
  await stop();
  const why = exit ?? `no socket at ${socket} after ${AGENT_READY_MS / 1000} s`;
  const detail = errorLine(stderr);
  return { unavailable: `flint-agent ${why}${detail ? `: ${detail}` : ''}` };
}

/** The line of an agent's stderr that says what went wrong: node's "Error ..." line, else the last one. */
function errorLine(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('Node.js v'));
  return lines.find((l) => /error/i.test(l)) ?? lines.at(-1);
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    // already gone
  }
}

/** flint in VM mode: a containerd whose shims read a {"mode":"vm"} config, and the agent they talk to. */
export interface VmMode {
  readonly target: RunTarget;
  readonly agentAddress: string;
  /** Stops the containerd, then the agent. */
  stop(): Promise<void>;
}

/**
 * Starts the agent and a containerd with FLINT_CONFIG pointing at
 * {"mode":"vm","agent":{"address":"hvsock://<dir>/fc.vsock:<port>"}}, or says why not.
 */
export async function startVmMode(dir: string, s: BenchSettings): Promise<{ vm: VmMode } | { unavailable: string }> {
  const outcome = await startAgent(dir, s);
  if ('unavailable' in outcome) return outcome;
  const { agent } = outcome;
  const configPath = join(dir, 'vm.json');
  writeFileSync(configPath, `${JSON.stringify({ mode: 'vm', agent: { address: agent.address } }, null, 2)}\n`);
  let c: Containerd;
  try {
    c = await startContainerd({ env: { FLINT_CONFIG: configPath } });
  } catch (err) {
    await agent.stop();
    return { unavailable: `containerd for VM mode did not start: ${errorText(err)}` };
  }
  return {
    vm: {
      target: { label: VM_LABEL, c, runtime: RUNTIMES.flint },
      agentAddress: agent.address,
      stop: async () => {
        try {
          await c.stop();
        } finally {
          await agent.stop();
        }
      },
    },
  };
}

/** The VM rows when VM mode could not be set up. */
export function unavailableVmRows(reason: string): Row[] {
  const note = `not available: ${reason}`;
  return [vmStartRow(undefined, undefined, note), vmThroughputRow(undefined, undefined, note)];
}
