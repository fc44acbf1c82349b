import { chmodSync, linkSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { probeSocket } from './socket-probe.js';

/**
 * Listens on the unix socket `path` (mode 0600), or returns undefined when a
 * live process already answers there. A socket nobody answers on is stale:
 * it is replaced. `pauseOnConnect` is passed to the net.Server.
 *
 * The socket is bound under a temporary name and hard-linked into place:
 * link(2) fails if the name exists, so two processes cannot both win, and
 * libuv, which unlinks a listener's bound path when Node closes it, only
 * ever removes the temporary name.
 */
export async function listenExclusive(path: string, options: { pauseOnConnect?: boolean } = {}): Promise<net.Server | undefined> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
  const temporary = `${path}.${process.pid}`;
  rmSync(temporary, { force: true });
  const server = await listen(temporary, options.pauseOnConnect ?? false);
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(temporary, path);
        return server;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if ((await probeSocket(path)) === 'answers') {
          server.close();
          return undefined;
        }
        rmSync(path, { force: true });
      }
    }
    throw new Error(`cannot bind socket ${path}: the name stays taken`);
  } catch (err) {
    server.close();
    throw err;
  } finally {
    rmSync(temporary, { force: true });
  }
}

/** The fd of a listening net.Server, to hand to another process. */
export function listenerFd(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd to hand over');
  return fd;
}

function listen(path: string, pauseOnConnect: boolean): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ pauseOnConnect });
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
