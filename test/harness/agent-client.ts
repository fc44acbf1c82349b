import { EventBridgeClient, StdioPortsClient, TaskClient, type containerd } from '../../src/generated/index.js';
import { Client } from '../../src/ttrpc/client.js';
import { Metadata, NAMESPACE_KEY } from '../../src/ttrpc/metadata.js';
import { wrapExtraData, type StdioPorts } from '../../src/vm/extra-data.js';
import { dialHybrid } from '../../src/vsock/hybrid-dial.js';
import { AGENT_API_PORT } from './raw-ttrpc.js';

/** The agent's services on one connection, as the VM-mode shim uses them. */
export interface AgentClients {
  readonly task: TaskClient;
  readonly events: EventBridgeClient;
  readonly ports: StdioPortsClient;
}

/** Dials the agent's API port over its hybrid vsock socket, runs `body`, and closes the connection. */
export async function withAgentClient<T>(socket: string, body: (clients: AgentClients) => Promise<T>): Promise<T> {
  const stream = await dialHybrid(socket, AGENT_API_PORT, { timeoutMs: 5_000 });
  const client = new Client(stream);
  try {
    return await body({ task: new TaskClient(client), events: new EventBridgeClient(client), ports: new StdioPortsClient(client) });
  } finally {
    await client.close();
  }
}

/** Call options naming a containerd namespace, as the shim forwards it. */
export function inNamespace(namespace: string, timeoutMs = 20_000): { metadata: Metadata; timeoutMs: number } {
  return { metadata: new Metadata({ [NAMESPACE_KEY]: namespace }), timeoutMs };
}

/** The error a call fails with, or undefined if it succeeds. */
export async function failure(p: Promise<unknown>): Promise<{ code?: number; message?: string } | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => e as { code?: number; message?: string },
  );
}

const NO_PORTS: StdioPorts = { stdin: 0, stdout: 0, stderr: 0 };

/** A CreateTaskRequest as the VM-mode shim sends it: the spec and the ports in the envelope. */
export function agentCreateRequest(
  id: string,
  opts: { spec?: object; rootfs?: containerd.types.IMount[]; ports?: StdioPorts; stdout?: string; stderr?: string } = {},
): containerd.task.v2.ICreateTaskRequest {
  return {
    id,
    bundle: '/ignored',
    rootfs: opts.rootfs ?? [],
    stdout: opts.stdout ?? '',
    stderr: opts.stderr ?? '',
    options: wrapExtraData({ jsonSpec: Buffer.from(JSON.stringify(opts.spec ?? {})), runcOptions: undefined, ports: opts.ports ?? NO_PORTS }),
  };
}
