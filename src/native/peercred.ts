import { native } from './addon.js';

/** Credentials of the process that connected a unix socket (as of connect time). */
export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** getsockopt(SO_PEERCRED) on a connected unix socket fd. */
export function peerCred(fd: number): PeerCred {
  return native.peerCred(fd);
}
