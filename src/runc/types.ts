import type { Readable, Stream, Writable } from 'node:stream';

/**
 * One of the container's standard streams as handed to runc: an fd number
 * (inherited by runc and, for create/exec/restore, passed on to the
 * container), a stream backed by an fd, or a child_process keyword.
 */
export type StdioEntry = number | Stream | 'ignore' | 'pipe' | 'inherit' | null | undefined;
export type Stdio = readonly [StdioEntry, StdioEntry, StdioEntry];

/**
 * A running runc: what Runc needs of a child process. Node's ChildProcess is
 * one; so is the shim's ReapedChild (sys/reaped-child.ts).
 */
export interface RuncChild {
  readonly pid?: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal?: NodeJS.Signals | number): boolean;
  once(event: 'error', listener: (err: Error) => void): this;
  once(event: 'exit' | 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

/** Options shared by every call. */
export interface CallOptions {
  /** Aborting kills runc with SIGKILL; the call then rejects with Canceled/DeadlineExceeded. */
  readonly signal?: AbortSignal;
}

/** Options of calls whose runc child hands its stdio to a container process. */
export interface IoOptions extends CallOptions {
  /** The container's stdin/stdout/stderr; ignored when a console socket is used. Default: all 'ignore'. */
  readonly stdio?: Stdio;
  /** Called once runc has been spawned, e.g. to learn its pid or read 'pipe' streams. */
  readonly onStart?: (child: RuncChild) => void;
}

export interface CreateOptions extends IoOptions {
  readonly bundle: string;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
  readonly noPivot?: boolean;
  readonly noNewKeyring?: boolean;
}

export interface ExecOptions extends IoOptions {
  readonly pidFile?: string;
  readonly consoleSocket?: string;
  /** Default true: runc returns once the process runs, as containerd uses it. */
  readonly detach?: boolean;
}

export interface KillOptions extends CallOptions {
  readonly all?: boolean;
}

export interface DeleteOptions extends CallOptions {
  readonly force?: boolean;
}

export type CgroupsMode = 'soft' | 'full' | 'strict';

export interface CheckpointOptions extends CallOptions {
  readonly imagePath?: string;
  readonly workPath?: string;
  readonly parentPath?: string;
  readonly leaveRunning?: boolean;
  readonly preDump?: boolean;
  readonly tcpEstablished?: boolean;
  readonly externalUnixSockets?: boolean;
  /** Checkpoint a container that owns a terminal (runc --shell-job). */
  readonly terminal?: boolean;
  readonly fileLocks?: boolean;
  readonly emptyNamespaces?: readonly string[];
  readonly cgroupsMode?: CgroupsMode;
}

export interface RestoreOptions extends Omit<CheckpointOptions, 'leaveRunning' | 'preDump'>, IoOptions {
  readonly bundle: string;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
  /** Default true. */
  readonly detach?: boolean;
  readonly noSubreaper?: boolean;
  readonly noPivot?: boolean;
}

/** `runc state` output. */
export interface RuncState {
  readonly ociVersion: string;
  readonly id: string;
  readonly pid: number;
  readonly status: 'creating' | 'created' | 'running' | 'paused' | 'stopped' | string;
  readonly bundle: string;
  readonly rootfs: string;
  readonly created: string;
  readonly owner?: string;
  readonly annotations?: Record<string, string>;
}

/**
 * The `data` of `runc events --stats` (runc's types.Stats). Counters beyond
 * 2^53 (e.g. an unlimited memory limit) lose precision in JSON.parse.
 */
export interface RuncStats {
  readonly cpu?: {
    readonly usage?: {
      readonly total?: number;
      readonly percpu?: number[];
      readonly percpu_kernel?: number[];
      readonly percpu_user?: number[];
      readonly kernel?: number;
      readonly user?: number;
    };
    readonly throttling?: { readonly periods?: number; readonly throttled_periods?: number; readonly throttled_time?: number };
  };
  readonly memory?: {
    readonly cache?: number;
    readonly usage?: MemoryEntry;
    readonly swap?: MemoryEntry;
    readonly kernel?: MemoryEntry;
    readonly kernel_tcp?: MemoryEntry;
    readonly raw?: Record<string, number>;
  };
  readonly pids?: { readonly current?: number; readonly limit?: number };
  readonly blkio?: Record<string, BlkioEntry[] | undefined>;
  readonly hugetlb?: Record<string, { readonly usage?: number; readonly max?: number; readonly failcnt?: number }>;
  readonly [key: string]: unknown;
}

export interface MemoryEntry {
  readonly limit?: number;
  readonly usage?: number;
  readonly max?: number;
  readonly failcnt?: number;
}

export interface BlkioEntry {
  readonly major?: number;
  readonly minor?: number;
  readonly op?: string;
  readonly value?: number;
}
