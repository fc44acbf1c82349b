import { containerd } from '../generated/index.js';

type WithContainerId = { decode(data: Uint8Array): { containerId: string } };

const TASK_EVENT_TYPES: Readonly<Record<string, WithContainerId>> = {
  'containerd.events.TaskCreate': containerd.events.TaskCreate,
  'containerd.events.TaskStart': containerd.events.TaskStart,
  'containerd.events.TaskDelete': containerd.events.TaskDelete,
  'containerd.events.TaskExit': containerd.events.TaskExit,
  'containerd.events.TaskOOM': containerd.events.TaskOOM,
  'containerd.events.TaskExecAdded': containerd.events.TaskExecAdded,
  'containerd.events.TaskExecStarted': containerd.events.TaskExecStarted,
  'containerd.events.TaskPaused': containerd.events.TaskPaused,
  'containerd.events.TaskResumed': containerd.events.TaskResumed,
  'containerd.events.TaskCheckpointed': containerd.events.TaskCheckpointed,
};

/** The container a task event is about, or undefined for other events. */
export function eventContainerId(typeUrl: string, value: Uint8Array): string | undefined {
  const type = TASK_EVENT_TYPES[typeUrl];
  if (!type) return undefined;
  try {
    return type.decode(value).containerId;
  } catch {
    return undefined;
  }
}
