import { containerd } from '../generated/index.js';
import { timestampOf } from '../sys/exit-status.js';
import type { ExitStatus } from '../sys/exit-status.js';

/** One task event as it leaves the task service: topic and the Any it carries. */
export interface TaskEvent {
  readonly topic: string;
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/**
 * Where the task service sends its events: the shim forwards them to
 * containerd, the agent queues them for the host. `publish` never blocks and
 * never throws; events leave in the order they were published.
 */
export interface EventPublisher {
  publish(namespace: string, event: TaskEvent): void;
}

/** An EventPublisher bound to one namespace, as a container's processes use it. */
export interface EventSink {
  publish(event: TaskEvent): void;
}

export function sinkFor(publisher: EventPublisher, namespace: string): EventSink {
  return { publish: (event) => publisher.publish(namespace, event) };
}

const ev = containerd.events;

function event<T>(topic: string, type: { encode(m: T): { finish(): Uint8Array } }, typeName: string, message: T): TaskEvent {
  return { topic, typeUrl: `containerd.events.${typeName}`, value: type.encode(message).finish() };
}

export const taskEvents = {
  create(m: { containerId: string; bundle: string; rootfs: containerd.types.IMount[]; io: { stdin: string; stdout: string; stderr: string; terminal: boolean }; checkpoint: string; pid: number }): TaskEvent {
    return event('/tasks/create', ev.TaskCreate, 'TaskCreate', ev.TaskCreate.create(m));
  },
  start(containerId: string, pid: number): TaskEvent {
    return event('/tasks/start', ev.TaskStart, 'TaskStart', ev.TaskStart.create({ containerId, pid }));
  },
  exit(containerId: string, id: string, exit: ExitStatus): TaskEvent {
    return event('/tasks/exit', ev.TaskExit, 'TaskExit', ev.TaskExit.create({ containerId, id, pid: exit.pid, exitStatus: exit.status, exitedAt: timestampOf(exit.exitedAt) }));
  },
  delete(containerId: string, id: string, pid: number, exit: ExitStatus | undefined): TaskEvent {
    return event('/tasks/delete', ev.TaskDelete, 'TaskDelete', ev.TaskDelete.create({ containerId, id, pid, exitStatus: exit?.status ?? 0, exitedAt: timestampOf(exit?.exitedAt) }));
  },
  oom(containerId: string): TaskEvent {
    return event('/tasks/oom', ev.TaskOOM, 'TaskOOM', ev.TaskOOM.create({ containerId }));
  },
  execAdded(containerId: string, execId: string): TaskEvent {
    return event('/tasks/exec-added', ev.TaskExecAdded, 'TaskExecAdded', ev.TaskExecAdded.create({ containerId, execId }));
  },
  execStarted(containerId: string, execId: string, pid: number): TaskEvent {
    return event('/tasks/exec-started', ev.TaskExecStarted, 'TaskExecStarted', ev.TaskExecStarted.create({ containerId, execId, pid }));
  },
  paused(containerId: string): TaskEvent {
    return event('/tasks/paused', ev.TaskPaused, 'TaskPaused', ev.TaskPaused.create({ containerId }));
  },
  resumed(containerId: string): TaskEvent {
    return event('/tasks/resumed', ev.TaskResumed, 'TaskResumed', ev.TaskResumed.create({ containerId }));
  },
};
