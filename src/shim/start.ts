import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../bundle/write-file-atomic.js';
import type { OciSpec } from '../bundle/spec.js';
import { loadConfig } from '../config/config.js';
import { google } from '../generated/options.js';
import { decodeTaskOptions } from '../taskapi/options.js';
import type { ShimArgs } from './args.js';
import { listenerFd, listenExclusive } from './exclusive-listener.js';
import type { HandoffMessage } from './handoff.js';
import { shimGroup } from './group.js';
import { shimCgroupDirs } from './shim-cgroup.js';
import { shimSocketAddress, socketPath } from './socket-address.js';

/** Gives a server the listening socket and what to serve. */
export type HandOver = (listenerFd: number, message: HandoffMessage) => Promise<void>;

/**
 * `start`: finds or starts the server for this container's group and
 * returns its address, which containerd dials. It is called with the bundle
 * as cwd and the task's runtime options (an Any) on stdin; `spec` is the
 * bundle's config.json.
 *
 * A live server of the group gets the container; otherwise this binds the
 * group's socket and `handOver` gives it to a server: a spare, or one
 * spawned detached with no stdio of ours, because containerd waits for EOF
 * on this process's output before it dials (see handoff.ts).
 */
export async function startShim(args: ShimArgs, spec: OciSpec, handOver: HandOver): Promise<string> {
  const bundle = args.bundle || process.cwd();
  const options = decodeTaskOptions(readOptionsFromStdin());
  const { config } = loadConfig(options.configPath);
  const address = shimSocketAddress(args.address, args.namespace, shimGroup(config, args.id, spec.annotations));
  const path = socketPath(address);

  // A live server of the group answers at the path: this container joins it.
  const listener = await listenExclusive(path);
  if (listener) {
    const shimCgroup = options.runc?.shimCgroup || undefined;
    try {
      // Checked here so that a cgroup that is not there fails `start`, as with the runc shim.
      if (shimCgroup) shimCgroupDirs(shimCgroup);
      await handOver(listenerFd(listener), {
        namespace: args.namespace,
        id: args.id,
        address: args.address,
        socket: address,
        bundle,
        debug: args.debug,
        configPath: options.configPath,
        shimCgroup,
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
