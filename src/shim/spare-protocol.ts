/**
 * How `start` claims a spare server (spare-claim.ts is `start`'s side,
 * spare-wait.ts the spare's), in two phases, and who owns the group's
 * listening socket at each step. The rule it keeps: a fresh server gets the
 * socket only while `start` holds it alone, or once `start` knows the spare
 * will never serve it; so under no timing do both serve one socket.
 *
 * 1. Reserve. `start` connects to the spare's socket and reads SO_PEERCRED
 *    of the connection: the spare must run as `start`'s own euid, with a pid
 *    `start` can see. The spare checks the claimant's uid the same way. A
 *    spare that is free reserves itself for this claimant (any other is
 *    closed at once) and writes READY: its build, as one line of JSON;
 *    `start` goes on only with a spare of its own build. Nothing has been
 *    sent yet: the listening socket is `start`'s alone. Whatever goes wrong
 *    here (no READY in time, another user or build, the connection closed),
 *    `start` closes the connection and gives the socket to a fresh server;
 *    the spare, reading EOF where the socket would come, is free again. A
 *    reservation never used is dropped by the spare after a while: if `start`
 *    sent the socket just then, it sits unread in a connection the spare
 *    closes, and the kernel drops it with the connection; `start` reads EOF.
 *
 * 2. Hand over. `start` sends the listening socket and the handoff message
 *    (SCM_RIGHTS). From here the socket may be the spare's, and `start`
 *    gives it to no one else unless it knows the spare will not serve it.
 *    The spare, having received the socket, either
 *    - cannot take it (a malformed message, another build, it is leaving):
 *      closes its copy first, then answers NAK; or
 *    - answers ACK and serves, but only once that write succeeded: a failed
 *      write means the claimant is gone (no one will dial the socket, and a
 *      claimant that failed may leave it to someone else), so the spare
 *      closes its copy and waits on.
 *    `start` then reads
 *    - ACK: the spare serves. Done.
 *    - NAK: the spare has closed its copy. A fresh server gets the socket.
 *    - EOF with no answer: the spare never wrote ACK (a stream delivers what
 *      was written before the EOF), so it does not serve: it died, or closed
 *      the connection unread. A fresh server gets the socket.
 *    - nothing within ACK_TIMEOUT_MS, or something else: `start` cannot tell
 *      whether the spare will serve. It SIGKILLs the spare (same user; the
 *      pid from SO_PEERCRED, a process that still holds our connection, so
 *      not a reused pid) and waits for the connection to close, which the
 *      kernel does once that process is gone with its copy of the socket.
 *      Only then does a fresh server get the socket, whatever was read after
 *      the kill. containerd dials only once `start` has answered, so the
 *      killed spare cannot have served anyone meanwhile.
 */

/** The byte a spare answers with once it has taken the socket and will serve it. */
export const SPARE_ACK = 0x6b;
/** The byte a spare answers with after closing its copy of a socket it will not serve. */
export const SPARE_NAK = 0x6e;
/**
 * The largest handoff message a claimant sends a spare, which must read it
 * whole in one recvmsg: well inside the buffer of the native recvFd
 * (native/fdpass.cc kMaxData, 64 KiB), and inside what Linux puts in the one
 * skb that carries the fd (up to 32 KiB of pages and a head). A claim that
 * would send more is not made; a fresh server, spawned with that same
 * environment, serves instead.
 */
export const MAX_SPARE_HANDOFF_BYTES = 32 * 1024;
/** A READY line longer than this is not from a spare. */
const MAX_READY_BYTES = 1024;

/** What a spare says when it has reserved itself for a claimant. */
export interface SpareReady {
  readonly build: string;
}

export function encodeReady(ready: SpareReady): Buffer {
  return Buffer.from(`${JSON.stringify(ready)}\n`);
}

/**
 * Reads READY from what the spare has written so far: 'more' until a whole
 * line is there; undefined when it is not a READY line, or more than one.
 */
export function decodeReady(received: Buffer): SpareReady | 'more' | undefined {
  const end = received.indexOf(0x0a);
  if (end < 0) return received.length > MAX_READY_BYTES ? undefined : 'more';
  if (end !== received.length - 1) return undefined;
  try {
    const ready = JSON.parse(received.subarray(0, end).toString('utf8')) as Partial<SpareReady>;
    return typeof ready.build === 'string' ? { build: ready.build } : undefined;
  } catch {
    return undefined;
  }
}
