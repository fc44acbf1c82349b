import { parseShimArgs, type ShimArgs } from './args.js';
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
 * `start`: the server boots while start works out where it should listen,
 * unless this container most likely joins a live server.
 */
async function start(args: ShimArgs, scriptPath: string): Promise<string> {
  const { ServerHandoff, serverLikelyNeeded } = await import('./handoff.js');
  const serverArgv = [scriptPath, '-namespace', args.namespace, '-id', args.id, '-address', args.address, ...(args.debug ? ['-debug'] : [])];
  const cwd = args.bundle || process.cwd();
  const early = serverLikelyNeeded() ? ServerHandoff.spawn(serverArgv, cwd) : undefined;
  let spare = early;
  // The pre-spawned server first, a fresh one for each later call.
  const takeServer = () => {
    const server = spare ?? ServerHandoff.spawn(serverArgv, cwd);
    spare = undefined;
    return server;
  };
  try {
    const { startShim } = await import('./start.js');
    return await startShim(args, takeServer);
  } finally {
    early?.close();
  }
}

/** The long-lived server: handed its socket by `start`, or given it as fd 3 like the runc shim's. */
async function serve(args: ShimArgs): Promise<void> {
  const { isHandoffServer, receiveHandoff } = await import('./handoff.js');
  if (!isHandoffServer()) {
    const { serveShim } = await import('./serve.js');
    await serveShim(args, LISTENER_FD, undefined);
    return;
  }
  const [{ serveShim }, handoff] = await Promise.all([import('./serve.js'), receiveHandoff()]);
  if (!handoff) process.exit(0);
  const { listenerFd, message } = handoff;
  await serveShim({ ...args, ...message, action: undefined }, listenerFd, message.configPath);
}
