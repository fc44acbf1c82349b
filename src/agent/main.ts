import pino from 'pino';
import yargs from 'yargs';
import { loadConfig } from '../config/config.js';
import { EventBridgeDescriptor, StdioPortsDescriptor, TaskDescriptor } from '../generated/index.js';
import { Reaper } from '../sys/reaper.js';
import { traced } from '../sys/traced.js';
import { RuncTaskService } from '../taskapi/service.js';
import { peerCred } from '../native/peercred.js';
import { Server } from '../ttrpc/server.js';
import { requireSameUser } from '../ttrpc/unix-creds.js';
import { parseListenAddress } from '../vsock/address.js';
import { openPortListener } from '../vsock/listener.js';
import { AgentTaskService } from './agent-service.js';
import { EventQueue } from './event-queue.js';
import { removeStaleBundles } from './recover.js';
import { StdioPortAllocator } from './stdio-ports.js';

/** The agent's ttrpc port, as firecracker-containerd's agent. */
export const AGENT_PORT = 10789;
export const DEFAULT_LISTEN = `vsock://:${AGENT_PORT}`;
export const DEFAULT_ROOT = '/run/flint-agent';

/**
 * flint-agent: serves the task API (and the event bridge) over ttrpc on
 * vsock inside a VM, or on a hybrid vsock unix socket outside one.
 */
export async function agentMain(argv: readonly string[]): Promise<void> {
  const args = await yargs([...argv])
    .scriptName('flint-agent')
    .usage('$0 [--listen ADDR] [--root DIR] [--debug]\n\nThe flint in-VM agent: the containerd task API over ttrpc on vsock, carried out with runc.')
    .option('listen', { type: 'string', default: DEFAULT_LISTEN, describe: 'vsock://:PORT (AF_VSOCK, any CID) or hvsock://PATH (a Firecracker-style hybrid vsock unix socket; the API is on port 10789)' })
    .option('root', { type: 'string', default: DEFAULT_ROOT, describe: 'directory for bundles, per namespace and task' })
    .option('exit-when-empty', { type: 'boolean', default: false, describe: 'exit once the last task is deleted' })
    .option('debug', { type: 'boolean', default: false, describe: 'log at debug level' })
    .strict()
    .help()
    .version(false)
    .parseAsync();

  const log = pino({ level: args.debug ? 'debug' : 'info', base: { pid: process.pid, component: 'flint-agent' } }, pino.destination(2));
  const listenAddress = parseListenAddress(args.listen);
  const apiPort = listenAddress.kind === 'vsock-listen' ? listenAddress.port : AGENT_PORT;
  const { config } = loadConfig();
  await removeStaleBundles(args.root, log);
  const events = new EventQueue();
  let stopping = false;
  let agent: AgentTaskService | undefined;

  const stop = async (reason: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'agent stopping');
    listener.close();
    await agent?.deleteAll();
    server.destroy();
    process.exit(0);
  };

  const inner = new RuncTaskService({
    namespace: 'default',
    events,
    reaper: Reaper.get(),
    log,
    config,
    loadConfig: (path) => loadConfig(path).config,
    onShutdown: () => {},
  });
  agent = new AgentTaskService(inner, {
    root: args.root,
    listenAddress: args.listen,
    log,
    onShutdown: () => void stop('shutdown requested'),
    ...(args.exitWhenEmpty ? { onEmpty: () => void stop('last task deleted') } : {}),
  });
  const server = new Server({
    // Outside a VM the API is a unix socket: like containerd's ttrpc, admit only our own user.
    ...(listenAddress.kind === 'hvsock-listen' ? { handshake: requireSameUser(peerCred) } : {}),
    onError: (err) => log.debug({ err }, 'ttrpc connection error'),
  });
  server.register(TaskDescriptor, traced(agent, log, 'task'));
  server.register(EventBridgeDescriptor, events);
  server.register(StdioPortsDescriptor, new StdioPortAllocator());
  const listener = await openPortListener(listenAddress, apiPort);
  server.serve(listener);

  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGPIPE', () => {});
  log.info({ listen: args.listen, port: apiPort, root: args.root }, 'agent serving');
}
