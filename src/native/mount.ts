import { native } from './addon.js';

const c = native.constants;

/** mount(2) flags. */
export const MS_RDONLY: number = c.MS_RDONLY;
export const MS_NOSUID: number = c.MS_NOSUID;
export const MS_NODEV: number = c.MS_NODEV;
export const MS_NOEXEC: number = c.MS_NOEXEC;
export const MS_SYNCHRONOUS: number = c.MS_SYNCHRONOUS;
export const MS_REMOUNT: number = c.MS_REMOUNT;
export const MS_MANDLOCK: number = c.MS_MANDLOCK;
export const MS_DIRSYNC: number = c.MS_DIRSYNC;
export const MS_NOSYMFOLLOW: number = c.MS_NOSYMFOLLOW;
export const MS_NOATIME: number = c.MS_NOATIME;
export const MS_NODIRATIME: number = c.MS_NODIRATIME;
export const MS_BIND: number = c.MS_BIND;
export const MS_MOVE: number = c.MS_MOVE;
export const MS_REC: number = c.MS_REC;
export const MS_SILENT: number = c.MS_SILENT;
export const MS_UNBINDABLE: number = c.MS_UNBINDABLE;
export const MS_PRIVATE: number = c.MS_PRIVATE;
export const MS_SLAVE: number = c.MS_SLAVE;
export const MS_SHARED: number = c.MS_SHARED;
export const MS_RELATIME: number = c.MS_RELATIME;
export const MS_STRICTATIME: number = c.MS_STRICTATIME;
export const MS_LAZYTIME: number = c.MS_LAZYTIME;

/** umount2(2) flags. */
export const MNT_FORCE: number = c.MNT_FORCE;
export const MNT_DETACH: number = c.MNT_DETACH;
export const MNT_EXPIRE: number = c.MNT_EXPIRE;
export const UMOUNT_NOFOLLOW: number = c.UMOUNT_NOFOLLOW;

/** mount(2). Pass null for an unused source, fstype or data. */
export function mount(source: string | null, target: string, fstype: string | null, flags = 0, data: string | null = null): void {
  native.mount(source, target, fstype, flags, data);
}

/** umount2(2). */
export function umount2(target: string, flags = 0): void {
  native.umount2(target, flags);
}
