import { closeSync, constants, existsSync, openSync, readSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { EFD_CLOEXEC, EFD_NONBLOCK, eventfd } from '../native/eventfd.js';
import { Poller } from '../native/poll.js';
import { HOST_CGROUP_FS, memoryCgroupOf, readFlatKeyed, type CgroupFs } from './cgroup.js';

/**
 * Tells when the kernel's OOM killer acts in a container's memory cgroup.
 * cgroup v1: an eventfd registered on memory.oom_control through
 * cgroup.event_control. cgroup v2: inotify on memory.events, whose oom_kill
 * counter is compared, as containerd's cgroups package does. Either way
 * `onOom` runs once per grown oom_kill count (once per notification on old
 * v1 kernels without the counter).
 */
export class OomWatcher {
  private stopWatching: (() => void) | undefined;

  constructor(
    private readonly onOom: () => void,
    private readonly log: Pick<Logger, 'error'>,
    private readonly cgroupFs: CgroupFs = HOST_CGROUP_FS,
  ) {}

  /**
   * Starts watching the memory cgroup of `pid`; does nothing where there is
   * none (no such process, no memory controller). A registration that fails
   * is logged, as by the runc shim, and the container runs on unwatched:
   * its OOM kills then go unreported, which the log is there to explain.
   */
  watch(pid: number): void {
    this.close();
    const cgroup = memoryCgroupOf(pid, this.cgroupFs);
    if (!cgroup) return;
    try {
      this.stopWatching = cgroup.unified ? this.watchV2(cgroup.dir) : this.watchV1(cgroup.dir);
    } catch (err) {
      this.log.error({ err, pid, cgroup: cgroup.dir }, 'add cg to OOM monitor');
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

  private watchV1(dir: string): () => void {
    const oomControl = join(dir, 'memory.oom_control');
    const efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    let control: number | undefined;
    try {
      control = openSync(oomControl, constants.O_RDONLY);
      writeFileSync(join(dir, 'cgroup.event_control'), `${efd} ${control}`);
    } catch (err) {
      closeSync(efd);
      if (control !== undefined) closeSync(control);
      throw err;
    }
    const counter = new OomKillCounter(oomControl);
    const buffer = Buffer.alloc(8);
    const poller = new Poller(efd, () => {
      try {
        readSync(efd, buffer, 0, 8, null);
      } catch {
        return;
      }
      // The eventfd also fires when the cgroup is removed: only a grown
      // oom_kill count (or, on old kernels, no count at all) is an OOM.
      const grown = counter.grown();
      if (grown === undefined ? existsSync(dir) : grown) this.onOom();
    });
    poller.start(true, false);
    poller.unref();
    return () => {
      poller.close();
      if (counter.grown()) this.onOom();
      closeSync(efd);
      closeSync(control);
    };
  }

  private watchV2(dir: string): () => void {
    const events = join(dir, 'memory.events');
    const counter = new OomKillCounter(events);
    const check = (): void => {
      if (counter.grown()) this.onOom();
    };
    // cgroupfs notifies modifications of memory.events through inotify.
    const watcher: FSWatcher = watch(events, { persistent: false }, check);
    watcher.on('error', (err) => this.log.error({ err, cgroup: dir }, 'OOM monitor stopped'));
    return () => {
      watcher.close();
      check();
    };
  }
}

/** The oom_kill counter of a flat-keyed cgroup file, remembered between reads. */
class OomKillCounter {
  private last: number;

  constructor(private readonly file: string) {
    this.last = this.read() ?? 0;
  }

  /** Whether the count grew since the last call; undefined when there is no count to read. */
  grown(): boolean | undefined {
    const now = this.read();
    if (now === undefined) return undefined;
    const grown = now > this.last;
    this.last = now;
    return grown;
  }

  private read(): number | undefined {
    return readFlatKeyed(this.file)?.oom_kill;
  }
}
