import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { writeFileAtomic } from '../bundle/write-file-atomic.js';
import { readSpec } from '../bundle/spec.js';
import { loadConfig } from '../config/config.js';
import { google } from '../generated/index.js';
import { decodeTaskOptions } from '../taskapi/options.js';
import type { ShimArgs } from './args.js';
import type { HandoffMessage, ServerHandoff } from './handoff.js';
import { shimGroup } from './group.js';
import { shimSocketAddress, socketPath } from './socket-address.js';

const PROBE_TIMEOUT_MS = 1_000;

/**
 * `start`: finds or starts the server for this container's group and
 * returns its address, which containerd dials. It is called with the bundle
 * as cwd and the task's runtime options (an Any) on stdin.
 *
 * The server was spawned before this runs (see handoff.ts), detached and
 * with no stdio of ours, because containerd waits for EOF on this process's
 * output before it dials; here it is handed the listening socket, or let go
 * when a live server of the group already answers.
 */
export async function startShim(args: ShimArgs, takeServer: () => ServerHandoff): Promise<string> {
  const bundle = args.bundle || process.cwd();
  const options = decodeTaskOptions(readOptionsFromStdin());
  const { config } = loadConfig(options.configPath);
  const spec = await readSpec(join(bundle, 'config.json'));
  const address = shimSocketAddress(args.address, args.namespace, shimGroup(config, args.id, spec.annotations));
  const path = socketPath(address);

  const listener = await listenOrReuse(path);
  if (listener) {
    try {
      handOver(takeServer, listenerFd(listener), {
        namespace: args.namespace,
        id: args.id,
        address: args.address,
        socket: address,
        debug: args.debug,
        configPath: options.configPath,
      });
    } catch (err) {
      rmSync(path, { force: true });
      throw err;
    }
    listener.unref();
  }
  await writeFileAtomic(join(bundle, 'address'), address, 0o600);
  return address;
}

/**
 * Gives the listening socket to a server. The pre-spawned one may be gone
 * before it hears from us (a crash at boot: the socketpair answers EPIPE);
 * a fresh server then takes its place, once.
 */
export function handOver(takeServer: () => ServerHandoff, fd: number, message: HandoffMessage): void {
  try {
    takeServer().send(fd, message);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPIPE' && code !== 'ECONNRESET') throw err;
    takeServer().send(fd, message);
  }
}

/** containerd writes the options Any to stdin; /dev/null when there are none. */
function readOptionsFromStdin(): google.protobuf.Any | undefined {
  let data: Buffer;
  try {
    data = readFileSync(0);
  } catch {
    return undefined;
  }
  return data.length > 0 ? google.protobuf.Any.decode(data) : undefined;
}

/**
 * Listens on the shim socket, or returns undefined when a live server
 * already answers there (this container joins its group). A socket nobody
 * answers on is stale: it is replaced.
 *
 * The socket is bound under a temporary name and hard-linked into place:
 * link(2) fails if the name exists, so two starts of one group cannot both
 * win, and libuv, which unlinks a listener's bound path when Node closes it
 * at exit, only ever removes the temporary name.
 */
async function listenOrReuse(path: string): Promise<net.Server | undefined> {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o711 });
  const temporary = `${path}.${process.pid}`;
  rmSync(temporary, { force: true });
  const server = await listen(temporary);
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(temporary, path);
        return server;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (await answers(path)) {
          server.close();
          return undefined;
        }
        rmSync(path, { force: true });
      }
    }
    throw new Error(`cannot bind shim socket ${path}: the name stays taken`);
  } finally {
    rmSync(temporary, { force: true });
  }
}

function listen(path: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ path }, () => {
      server.off('error', reject);
      try {
        chmodSync(path, 0o600);
        resolve(server);
      } catch (err) {
        server.close();
        reject(err);
      }
    });
  });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function listenerFd(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('shim socket has no fd to hand over');
  return fd;
}
