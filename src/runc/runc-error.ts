import { AlreadyExistsError, FlintError, NotFoundError, UnknownError } from '../errdefs/errors.js';

/**
 * A runc invocation that failed. `runcMessage` is runc's own explanation
 * (from its JSON log, else its stderr, else the exit status); `message` is
 * `runc <command> failed: <runcMessage>`. The task service words the steps
 * of a process as the runc shim does (taskapi/process/runtime-error.ts).
 */
export class RuncError extends UnknownError {
  readonly command: string;
  readonly runcMessage: string;
  /** Exit code of runc, or null when it died from a signal or never ran. */
  readonly exitCode: number | null;
  readonly exitSignal: NodeJS.Signals | null;

  constructor(command: string, runcMessage: string, exitCode: number | null, exitSignal: NodeJS.Signals | null) {
    super(`runc ${command} failed: ${stripPrefix(command, runcMessage)}`);
    this.command = command;
    this.runcMessage = runcMessage;
    this.exitCode = exitCode;
    this.exitSignal = exitSignal;
  }
}

// runc 1.1 already prefixes some messages with "runc create failed: ";
// repeating it would read "runc create failed: runc create failed: …".
function stripPrefix(command: string, msg: string): string {
  const prefix = `runc ${command} failed: `;
  return msg.startsWith(prefix) ? msg.slice(prefix.length) : msg;
}

/**
 * The last `"level":"error"` message in a chunk of runc's JSON log. Lines
 * that are not JSON (a log shared with a text-mode writer, a torn last line)
 * are skipped rather than failing the lookup.
 */
export function lastErrorInLog(text: string): string {
  let found = '';
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed[0] !== '{') continue;
    try {
      const entry = JSON.parse(trimmed) as { level?: unknown; msg?: unknown };
      if (entry.level === 'error' && typeof entry.msg === 'string' && entry.msg.trim() !== '') {
        found = entry.msg.trim();
      }
    } catch {
      // not a log record
    }
  }
  return found;
}

// The messages runc 1.1 uses for these conditions (libcontainer's
// ErrNotExist/ErrExist/ErrNotRunning and os.ErrProcessDone).
const NOT_EXIST = /container does not exist|container not exist|\bdoes not exist\b/i;
const ALREADY_EXISTS = /already exists/i;
const NOT_RUNNING = /container not running|process already finished|no such process/i;

/**
 * Turns a RuncError into the domain error callers branch on: NotFound for a
 * missing container (or, for kill, a process that already exited),
 * AlreadyExists for a duplicate id, the RuncError itself otherwise. The
 * mapped error keeps the RuncError as its `cause`.
 */
export function classifyRuncError(err: RuncError): FlintError {
  const msg = err.runcMessage;
  if (err.command === 'kill' && NOT_RUNNING.test(msg)) {
    return new NotFoundError(`process already finished: ${err.message}`, { cause: err });
  }
  if (ALREADY_EXISTS.test(msg)) {
    return new AlreadyExistsError(err.message, { cause: err });
  }
  // "does not exist" alone is too broad for create/exec/restore, where it
  // can name a missing file in the bundle rather than the container.
  if (/container (?:does )?not exist/i.test(msg) || (!CREATES.has(err.command) && NOT_EXIST.test(msg))) {
    return new NotFoundError(err.message, { cause: err });
  }
  return err;
}

const CREATES: ReadonlySet<string> = new Set(['create', 'exec', 'restore', 'run']);
