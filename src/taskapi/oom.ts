import { closeSync, existsSync, openSync, readFileSync, readSync, writeFileSync, constants } from 'node:fs';
import { join } from 'node:path';
import { EFD_CLOEXEC, EFD_NONBLOCK, eventfd } from '../native/eventfd.js';
import { Poller } from '../native/poll.js';

const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * Tells when the kernel's OOM killer acts in a container's memory cgroup.
 * cgroup v1: an eventfd registered on memory.oom_control through
 * cgroup.event_control. cgroup v2: memory.events is watched and its
 * oom_kill counter compared. Either way `onOom` runs once per OOM kill.
 */
export class OomWatcher {
  private stopWatching: (() => void) | undefined;

  constructor(private readonly onOom: () => void) {}

  /** Starts watching the memory cgroup of `pid`; does nothing where there is none. */
  watch(pid: number): void {
    this.close();
    try {
      this.stopWatching = isUnified() ? this.watchV2(pid) : this.watchV1(pid);
    } catch {
      // The process may already be gone, or the cgroup lack a memory controller:
      // then there is nothing to watch, as with the runc shim.
    }
  }

  /**
   * Stops watching. The container's exit can be handled before the kernel's
   * notification is read, so the counter is read one last time first.
   */
  close(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
  }

  private watchV1(pid: number): (() => void) | undefined {
    const path = cgroupPath(pid, (controllers) => controllers.split(',').includes('memory'));
    if (path === undefined) return undefined;
    const dir = join(CGROUP_ROOT, 'memory', path);
    const efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const control = openSync(join(dir, 'memory.oom_control'), constants.O_RDONLY);
    try {
      writeFileSync(join(dir, 'cgroup.event_control'), `${efd} ${control}`);
    } catch (err) {
      closeSync(efd);
      closeSync(control);
      throw err;
    }
    let kills = oomKillCount(join(dir, 'memory.oom_control'));
    const counter = Buffer.alloc(8);
    const poller = new Poller(efd, () => {
      try {
        readSync(efd, counter, 0, 8, null);
      } catch {
        return;
      }
      // The eventfd also fires when the cgroup is removed: only a grown
      // oom_kill count (or, on old kernels, no count at all) is an OOM.
      const now = oomKillCount(join(dir, 'memory.oom_control'));
      if (now === undefined && !existsSync(dir)) return;
      if (now === undefined || now > (kills ?? 0)) this.onOom();
      kills = now;
    });
    poller.start(true, false);
    poller.unref();
    return () => {
      poller.close();
      const now = oomKillCount(join(dir, 'memory.oom_control'));
      if (now !== undefined && now > (kills ?? 0)) this.onOom();
      closeSync(efd);
      closeSync(control);
    };
  }

  private watchV2(pid: number): (() => void) | undefined {
    const path = cgroupPath(pid, (controllers) => controllers === '');
    if (path === undefined) return undefined;
    const events = join(CGROUP_ROOT, path, 'memory.events');
    let kills = memoryEventCount(events, 'oom_kill') ?? 0;
    const timer = setInterval(() => {
      const now = memoryEventCount(events, 'oom_kill');
      if (now === undefined) return;
      if (now > kills) this.onOom();
      kills = now;
    }, 500);
    timer.unref();
    return () => {
      clearInterval(timer);
      const now = memoryEventCount(events, 'oom_kill');
      if (now !== undefined && now > kills) this.onOom();
    };
  }
}

function isUnified(): boolean {
  return existsSync(join(CGROUP_ROOT, 'cgroup.controllers'));
}

/** The cgroup path of `pid` for the hierarchy whose controller list matches. */
function cgroupPath(pid: number, match: (controllers: string) => boolean): string | undefined {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':', 3) as [string, string | undefined, string | undefined];
    if (controllers !== undefined && path !== undefined && match(controllers)) return path;
  }
  return undefined;
}

function oomKillCount(file: string): number | undefined {
  return memoryEventCount(file, 'oom_kill');
}

function memoryEventCount(file: string, key: string): number | undefined {
  try {
    const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${key} `));
    return line === undefined ? undefined : Number(line.split(' ')[1]);
  } catch {
    return undefined;
  }
}
