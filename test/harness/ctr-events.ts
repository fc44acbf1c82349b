import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CTR_BIN, type Containerd } from './containerd.js';

/** One line of `ctr events`: `<timestamp> <namespace> <topic> <event as JSON>`. */
export interface CtrEvent {
  readonly namespace: string;
  readonly topic: string;
  /** The event's fields as ctr prints them (container_id, exit_status, ...). */
  readonly fields: Readonly<Record<string, unknown>>;
}

/**
 * The task events `ctr events` shows while `action` runs, in order, for
 * container `id` in `namespace` (default the harness namespace). ctr is
 * given time to subscribe before `action` and to print after it.
 */
export async function taskEventsDuring(c: Containerd, id: string, action: () => Promise<unknown>, namespace = c.namespace): Promise<CtrEvent[]> {
  const events = spawn(CTR_BIN, ['--address', c.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let text = '';
  events.stdout.on('data', (d: Buffer) => (text += d.toString()));
  await sleep(300);
  try {
    await action();
    await sleep(1_000);
  } finally {
    events.kill('SIGTERM');
  }
  return text
    .split('\n')
    .map(parseLine)
    .filter((e): e is CtrEvent => e !== undefined && e.namespace === namespace && e.topic.startsWith('/tasks/') && e.fields.container_id === id);
}

function parseLine(line: string): CtrEvent | undefined {
  // The timestamp has spaces of its own ("2006-01-02 15:04:05.999 +0000 UTC"): match from the end.
  const m = / (\S+) (\/[^\s{]+) (\{.*\})\s*$/.exec(line);
  if (!m) return undefined;
  try {
    return { namespace: m[1]!, topic: m[2]!, fields: JSON.parse(m[3]!) as Record<string, unknown> };
  } catch {
    return undefined;
  }
}
