import type { Duplex } from 'node:stream';
import { Code } from './codes.js';
import { RpcError } from './errors.js';
import type { Handshake } from './server.js';

/** The peer's identity as SO_PEERCRED reports it. */
export interface PeerCredentials {
  readonly uid: number;
  readonly gid: number;
}

/** Reads SO_PEERCRED of a socket fd (the shim wires src/native/peercred.ts here). */
export type PeerCredGetter = (fd: number) => PeerCredentials;

/** The fd under a net.Socket (unix or TCP); undefined for other streams. */
export function socketFd(stream: Duplex): number | undefined {
  const handle = (stream as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * A handshake that admits only peers with this uid and gid (-1 matches
 * any), like Go ttrpc's UnixSocketRequireUidGid. Streams without an fd
 * (not a socket) are refused.
 */
export function requireUidGid(getPeerCred: PeerCredGetter, uid: number, gid: number): Handshake {
  return (stream) => {
    const fd = socketFd(stream);
    if (fd === undefined) throw new RpcError(Code.PermissionDenied, 'ttrpc: a unix socket connection is required');
    const cred = getPeerCred(fd);
    if ((uid !== -1 && cred.uid !== uid) || (gid !== -1 && cred.gid !== gid)) {
      throw new RpcError(Code.PermissionDenied, `ttrpc: invalid credentials: peer uid=${cred.uid} gid=${cred.gid}`);
    }
  };
}

/**
 * A handshake that admits only peers running as our effective uid and gid,
 * like Go ttrpc's UnixSocketRequireSameUser (used by containerd and the runc shim).
 */
export function requireSameUser(getPeerCred: PeerCredGetter): Handshake {
  return requireUidGid(getPeerCred, process.geteuid!(), process.getegid!());
}
