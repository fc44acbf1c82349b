import { closeSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadConfig, type FlintConfig } from '../config/config.js';
import { TaskDescriptor, type TaskService } from '../generated/index.js';
import { peerCred } from '../native/peercred.js';
import { Reaper } from '../sys/reaper.js';
import { traced } from '../sys/traced.js';
import type { EventPublisher } from '../taskapi/events.js';
import { RuncTaskService } from '../taskapi/service.js';
import { VmTaskService } from '../vm/vm-task-service.js';
import { Server } from '../ttrpc/server.js';
import { requireSameUser } from '../ttrpc/unix-creds.js';
import type { ShimArgs } from './args.js';
import { closeShimLogger, createShimLogger, shimLogLevel } from './logger.js';
import { ForwardingPublisher } from './publisher.js';
import { OwnSocket } from './own-socket.js';
import { ServerCgroups } from './shim-cgroup.js';

/** How long shutdown waits for queued events to reach containerd. */
const PUBLISHER_DRAIN_MS = 5_000;

/** What the task's runtime options ask of the server of a group. */
export interface GroupOptions {
  readonly configPath: string | undefined;
  readonly shimCgroup: string | undefined;
}

/** This process's cgroups: it may serve several groups in turn, as a spare. */
const serverCgroups = new ServerCgroups();

/** How a group's serving ended: idle (its last container gone), or a signal. */
export interface GroupEnd {
  /** How long to stay as a spare server (0: exit now). */
  readonly spareMs: number;
}

/**
 * Serves one group: the task API on the listening socket `listenerFd`
 * (handed over by `start`, or inherited as fd 3) until Shutdown finds no
 * container left, or SIGTERM/SIGINT. `configPath` is the config file the
 * task's runtime options named, if any, and `shimCgroup` the cgroup they put
 * the server in (serving starts there, or not at all); `asSpare` when this process served
 * before and waited as a spare. Everything it set up is gone when
 * it resolves: the socket file, the connections, the log, the publisher
 * (drained first), the signal handlers.
 */
export async function serveGroup(args: ShimArgs, listenerFd: number, options: GroupOptions, asSpare: boolean): Promise<GroupEnd> {
  const { config } = loadConfig(options.configPath);
  const log = createShimLogger(join(process.cwd(), 'log'), shimLogLevel(config.logLevel, args.debug), { runtime: 'flint', namespace: args.namespace });
  try {
    serverCgroups.place(options.shimCgroup);
  } catch (err) {
    // `start` found the cgroup; it went away since. containerd's dial then fails and the log says why.
    log.error({ err, shimCgroup: options.shimCgroup }, 'cannot move the shim into shim_cgroup; not serving');
    closeShimLogger(log);
    closeSync(listenerFd);
    return { spareMs: 0 };
  }
  const reaper = Reaper.get();
  const publisher = new ForwardingPublisher(process.env.TTRPC_ADDRESS || `${args.address}.ttrpc`, log.child({ component: 'publisher' }));
  const server = new Server({
    handshake: requireSameUser(peerCred),
    onError: (err) => log.warn({ err }, 'ttrpc connection error'),
  });

  const socket = new OwnSocket(args.socket || undefined, join(process.cwd(), 'address'));
  // Every way out, a crash included, leaves no socket file behind.
  const removeSocket = () => socket.remove();
  process.on('exit', removeSocket);

  let ended: (end: GroupEnd) => void;
  const done = new Promise<GroupEnd>((resolve) => (ended = resolve));
  let shuttingDown = false;
  const shutdown = async (reason: string, spareMs: number): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ reason }, 'shutting down');
    process.off('SIGTERM', onSigterm).off('SIGINT', onSigint);
    // First: a new start for this group then binds afresh instead of probing us.
    socket.remove();
    process.off('exit', removeSocket);
    await Promise.race([server.close(), new Promise((resolve) => setTimeout(resolve, 1_000))]);
    server.destroy();
    // VM mode: relay what the agent still has, then stop taking events, before the publisher drains what it has.
    await closeService();
    await publisher.close(PUBLISHER_DRAIN_MS);
    log.flush();
    closeShimLogger(log);
    ended({ spareMs });
  };

  const service = createService(config, { args, reaper, publisher, log, onShutdown: () => void shutdown('shutdown requested', config.spareServerMs), onAgentLost: () => socket.remove() });
  const closeService = () => (service instanceof VmTaskService ? service.close() : undefined);
  server.register(TaskDescriptor, traced(service, log, 'task'));

  const listener = net.createServer();
  listener.listen({ fd: listenerFd });
  listener.once('connection', () => socket.recall());
  server.serve(listener);

  const onSigterm = () => void shutdown('SIGTERM', 0);
  const onSigint = () => void shutdown('SIGINT', 0);
  process.on('SIGTERM', onSigterm).on('SIGINT', onSigint);
  // A fresh server's uptime is its start-up time; a spare was up already.
  log.info({ id: args.id, mode: config.mode, ...(asSpare ? { spare: true } : { startupMs: Math.round(performance.now()) }) }, 'shim serving');
  return done;
}

interface ServiceDeps {
  readonly args: ShimArgs;
  readonly reaper: Reaper;
  readonly publisher: EventPublisher;
  readonly log: Logger;
  readonly onShutdown: () => void;
  readonly onAgentLost: () => void;
}

function createService(config: FlintConfig, deps: ServiceDeps): TaskService {
  if (config.mode === 'vm') {
    return new VmTaskService({
      namespace: deps.args.namespace,
      address: config.agent.address,
      dialTimeoutMs: config.agent.dialTimeoutMs,
      events: deps.publisher,
      log: deps.log.child({ component: 'vm' }),
      onShutdown: deps.onShutdown,
      onAgentLost: deps.onAgentLost,
    });
  }
  return new RuncTaskService({
    namespace: deps.args.namespace,
    events: deps.publisher,
    reaper: deps.reaper,
    log: deps.log,
    config,
    loadConfig: (path) => loadConfig(path).config,
    onShutdown: deps.onShutdown,
  });
}
