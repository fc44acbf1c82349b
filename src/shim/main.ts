import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { parseShimArgs, type ShimArgs } from './args.js';
import type { Handoff } from './handoff.js';
import { versionText } from './version.js';

/** The listening socket of a server started the runc shim's way. */
const LISTENER_FD = 3;

/**
 * The shim's command line: `-v`, `start`, `delete`, or (no action) the
 * long-lived server that `start` spawns. `start` prints only the address
 * and errors go to stderr with a non-zero exit, because containerd reads
 * the combined output as the answer. Each action loads only its own
 * modules: `start` and `delete` run once per container and their start-up
 * time is the shim's start latency.
 */
export async function shimMain(argv: readonly string[], scriptPath: string): Promise<void> {
  let args;
  try {
    args = parseShimArgs(argv);
  } catch (err) {
    process.stderr.write(`containerd-shim-flint-v2: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (args.version) {
    process.stdout.write(versionText('containerd-shim-flint-v2'));
    return;
  }
  try {
    switch (args.action) {
      case 'start':
        process.stdout.write(await start(args, scriptPath));
        return;
      case 'delete': {
        const { deleteShim } = await import('./delete.js');
        process.stdout.write(await deleteShim(args));
        return;
      }
      case undefined:
        await serve(args);
        return;
    }
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
}

/**
 * `start`: a spare server of this containerd takes the container if there
 * is one; otherwise a new server boots while start works out where it
 * should listen. A container that most likely joins its group's live server
 * (a CRI app container) neither reserves a spare nor boots a server early:
 * only if its group turns out to have no server does it look for either.
 */
async function start(args: ShimArgs, scriptPath: string): Promise<string> {
  const [{ handOver, ServerHandoff, serverLikelyNeeded }, { SpareClaim }, { spareSocketPath }, { readSpec }] = await Promise.all([
    import('./handoff.js'),
    import('./spare-claim.js'),
    import('./socket-address.js'),
    import('../bundle/spec.js'),
  ]);
  const serverArgv = [scriptPath, '-namespace', args.namespace, '-id', args.id, '-address', args.address, ...(args.debug ? ['-debug'] : [])];
  const cwd = args.bundle || process.cwd();
  const spec = await readSpec(join(cwd, 'config.json'));
  const likelyNeeded = serverLikelyNeeded(args.id, spec.annotations);
  const spare = likelyNeeded ? await SpareClaim.reserve(spareSocketPath(args.address)) : undefined;
  const early = likelyNeeded && !spare ? ServerHandoff.spawn(serverArgv, cwd) : undefined;
  try {
    const { startShim } = await import('./start.js');
    let fresh = early;
    // The pre-spawned server first, a new one after that.
    const takeServer = () => {
      const server = fresh ?? ServerHandoff.spawn(serverArgv, cwd);
      fresh = undefined;
      return server;
    };
    return await startShim(args, spec, async (listenerFd, message) => {
      // Not reserved early because the group was thought alive: a spare may serve it still.
      const claim = likelyNeeded ? spare : await SpareClaim.reserve(spareSocketPath(args.address));
      if (claim && (await claim.send(listenerFd, message))) return;
      handOver(takeServer, listenerFd, message);
    });
  } finally {
    spare?.close();
    early?.close();
  }
}

interface ServedGroup {
  readonly args: ShimArgs;
  readonly listenerFd: number;
  readonly configPath: string | undefined;
  readonly shimCgroup: string | undefined;
}

/**
 * The long-lived server: handed its socket by `start`, or given it as fd 3
 * like the runc shim's. Once its group is done it may wait as a spare and
 * serve the group a later `start` hands it.
 */
async function serve(args: ShimArgs): Promise<void> {
  const [{ adoptEnvironment, isHandoffServer, receiveHandoff }, { serveGroup }] = await Promise.all([import('./handoff.js'), import('./serve.js')]);
  process.on('SIGPIPE', () => {});
  // What to serve: the flags of this process, overridden by what a handoff says.
  const groupOf = ({ listenerFd, message }: Handoff): ServedGroup => ({ args: { ...args, ...message, action: undefined }, listenerFd, configPath: message.configPath, shimCgroup: message.shimCgroup });
  let group: ServedGroup;
  if (isHandoffServer()) {
    const handoff = await receiveHandoff();
    if (!handoff) process.exit(0);
    group = groupOf(handoff);
  } else {
    group = { args, listenerFd: LISTENER_FD, configPath: undefined, shimCgroup: undefined };
  }
  for (let asSpare = false; ; asSpare = true) {
    const { spareMs } = await serveGroup(group.args, group.listenerFd, { configPath: group.configPath, shimCgroup: group.shimCgroup }, asSpare);
    if (spareMs === 0) break;
    const [{ waitAsSpare }, { spareSocketPath }] = await Promise.all([import('./spare-wait.js'), import('./socket-address.js')]);
    const next = await waitAsSpare(spareSocketPath(group.args.address), spareMs);
    if (!next) break;
    try {
      process.chdir(next.message.bundle);
    } catch {
      // The bundle went away while it was handed over: nothing to serve.
      closeSync(next.listenerFd);
      break;
    }
    // Served as a fresh server would be: with what containerd gave the claiming start, not the one that spawned us.
    if (next.message.env) adoptEnvironment(next.message.env);
    group = groupOf(next);
  }
  process.exit(0);
}
