import type { Runc } from '../../runc/runc.js';
import type { Reaper } from '../../sys/reaper.js';
import type { EventSink } from '../events.js';
import type { IoOwner } from '../io/index.js';

/** What a container's processes share: where they live and what they use. */
export interface ProcessContext {
  readonly containerId: string;
  readonly namespace: string;
  readonly bundle: string;
  readonly runc: Runc;
  readonly events: EventSink;
  readonly reaper: Reaper;
  /** The owner of the processes' stdio pipes and FIFOs, when the task asked for one. */
  readonly ioOwner: IoOwner | undefined;
}
