import { readFileSync } from 'node:fs';

/**
 * Container log files as CRI writes them: one entry per line,
 * `<RFC 3339 nano time> <stdout|stderr> <F|P> <content>\n`, where P (partial)
 * marks a piece of a line longer than max_container_log_line_size and F the
 * piece that ends it. A line's newline is not part of its content.
 */

/** Both streams of a container, reassembled from its log file. */
export interface CriLogStreams {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** Entries whose tag is P. */
  readonly partialEntries: number;
  /** Entries that do not parse (a torn last line, a bad time); none in a finished log. */
  readonly malformed: readonly string[];
}

const ENTRY = /^(\S+) (stdout|stderr) (F|P) /;

/** Reassembles the streams in CRI log text (the whole file). */
export function parseCriLog(text: Buffer): CriLogStreams {
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const malformed: string[] = [];
  let partialEntries = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(0x0a, start);
    const complete = end !== -1;
    if (!complete) end = text.length;
    const entry = text.subarray(start, end);
    start = end + 1;
    const head = ENTRY.exec(entry.subarray(0, 64).toString('latin1'));
    if (!complete || head === null || Number.isNaN(Date.parse(head[1]!))) {
      malformed.push(entry.subarray(0, 80).toString('utf8'));
      continue;
    }
    const stream = head[2] as 'stdout' | 'stderr';
    chunks[stream].push(entry.subarray(head[0].length));
    if (head[3] === 'P') partialEntries++;
    else chunks[stream].push(NEWLINE);
  }
  return { stdout: Buffer.concat(chunks.stdout), stderr: Buffer.concat(chunks.stderr), partialEntries, malformed };
}

const NEWLINE = Buffer.from('\n');

/** parseCriLog of the file at `path`; empty streams while it does not exist. */
export function readCriLog(path: string): CriLogStreams {
  let text: Buffer;
  try {
    text = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    text = Buffer.alloc(0);
  }
  return parseCriLog(text);
}
