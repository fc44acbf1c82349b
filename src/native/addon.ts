import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Called by a Poller; `err` is set when libuv reports the fd broken (it has then stopped polling). */
export type PollCallback = (err: NodeJS.ErrnoException | null, events: number) => void;

/** A libuv poll handle on Node's loop. It never closes the fd it watches. */
export interface NativePoller {
  /** Level-triggered: fires on every loop turn while the condition holds. (false, false) stops. */
  start(readable: boolean, writable: boolean): void;
  stop(): void;
  /** Releases the handle for good; further start() calls throw ERR_POLLER_CLOSED. */
  close(): void;
  ref(): void;
  unref(): void;
}

/** Kernel constants compiled into the addon, so TypeScript never hard-codes them. */
export interface NativeConstants {
  readonly VMADDR_CID_ANY: number;
  readonly VMADDR_PORT_ANY: number;
  readonly VMADDR_CID_HYPERVISOR: number;
  readonly VMADDR_CID_HOST: number;
  readonly MS_RDONLY: number;
  readonly MS_NOSUID: number;
  readonly MS_NODEV: number;
  readonly MS_NOEXEC: number;
  readonly MS_SYNCHRONOUS: number;
  readonly MS_REMOUNT: number;
  readonly MS_MANDLOCK: number;
  readonly MS_DIRSYNC: number;
  readonly MS_NOSYMFOLLOW: number;
  readonly MS_NOATIME: number;
  readonly MS_NODIRATIME: number;
  readonly MS_BIND: number;
  readonly MS_MOVE: number;
  readonly MS_REC: number;
  readonly MS_SILENT: number;
  readonly MS_UNBINDABLE: number;
  readonly MS_PRIVATE: number;
  readonly MS_SLAVE: number;
  readonly MS_SHARED: number;
  readonly MS_RELATIME: number;
  readonly MS_STRICTATIME: number;
  readonly MS_LAZYTIME: number;
  readonly MNT_FORCE: number;
  readonly MNT_DETACH: number;
  readonly MNT_EXPIRE: number;
  readonly UMOUNT_NOFOLLOW: number;
  readonly EFD_CLOEXEC: number;
  readonly EFD_NONBLOCK: number;
  readonly EFD_SEMAPHORE: number;
  readonly POLL_READABLE: number;
  readonly POLL_WRITABLE: number;
  readonly POLL_DISCONNECT: number;
}

/**
 * The raw addon (native/*.cc). Every function throws Node-style errors:
 * `code` = errno name, `errno` = negative errno (as Node's fs does), `syscall`.
 * Use the typed wrappers in this directory rather than this object.
 */
export interface NativeAddon {
  setChildSubreaper(): void;
  waitpidNoHang(pid: number): { pid: number; status: number; signal: number | null } | null;
  spawn(file: string, argv: string[], envp: string[], stdio: [number, number, number]): number;
  pipe(): [number, number];
  mkfifo(path: string, mode: number): void;
  setPipeSize(fd: number, size: number): number;
  unreadBytes(fd: number): number;
  writersLeft(fd: number): boolean;
  setNonblocking(fd: number, on: boolean): void;
  accept4(fd: number): number | null;
  socketError(fd: number): number;
  shutdownWrite(fd: number): void;
  socketpair(): [number, number];
  vsockListen(port: number, cid: number, backlog: number): number;
  vsockConnect(cid: number, port: number): number;
  vsockLocalAddress(fd: number): { cid: number; port: number };
  recvFd(fd: number): { fd: number; data: Buffer } | null;
  sendFd(fd: number, fdToSend: number, data: Buffer): number;
  openPty(): { master: number; slave: number; name: string };
  setWinsize(fd: number, rows: number, cols: number): void;
  getWinsize(fd: number): { rows: number; cols: number };
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  eventfd(initval: number, flags: number): number;
  Poller: new (fd: number, callback: PollCallback) => NativePoller;
  readonly constants: NativeConstants;
}

const ADDON_PATH = join('build', 'Release', 'flint.node');

/**
 * Finds build/Release/flint.node by walking up from this file, so the same
 * code works from src/ (ts runners), dist/src/ and an installed copy.
 * FLINT_NATIVE_ADDON overrides the search.
 */
function findAddon(): string {
  const override = process.env.FLINT_NATIVE_ADDON;
  if (override) return override;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, ADDON_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`flint native addon not found (${ADDON_PATH} above ${fileURLToPath(import.meta.url)}); run \`npx node-gyp rebuild\``);
}

/** The loaded addon. */
export const native: NativeAddon = createRequire(import.meta.url)(findAddon()) as NativeAddon;
