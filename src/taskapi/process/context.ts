import type { Runc } from '../../runc/runc.js';
import type { Reaper } from '../../sys/reaper.js';
import type { EventSink } from '../events.js';

/** What a container's processes share: where they live and what they use. */
export interface ProcessContext {
  readonly containerId: string;
  readonly namespace: string;
  readonly bundle: string;
  readonly runc: Runc;
  readonly events: EventSink;
  readonly reaper: Reaper;
}
