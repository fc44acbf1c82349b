import { InvalidArgumentError } from '../../errdefs/errors.js';

/** Where one process's stdio goes, as containerd hands it over. */
export interface StdioPaths {
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

export type StdioTarget =
  | { kind: 'null' }
  | { kind: 'fifo'; stdin: string; stdout: string; stderr: string }
  | { kind: 'file'; path: string }
  | { kind: 'binary'; path: string; args: readonly string[] };

/**
 * Reads containerd's stdio strings: plain paths (or fifo://) are FIFOs the
 * client made; `file:///path` appends output to a file; `binary:///path?k=v`
 * pipes output to a logger process. All empty means no IO at all.
 */
export function parseStdio(paths: StdioPaths): StdioTarget {
  if (!paths.stdin && !paths.stdout && !paths.stderr) return { kind: 'null' };
  const scheme = schemeOf(paths.stdout);
  if (scheme === 'file' || scheme === 'binary') {
    const url = parseUrl(paths.stdout);
    // WHATWG URLs give file:// the path "/": that is no file either.
    if (!url.pathname || url.pathname === '/') throw new InvalidArgumentError(`stdout ${JSON.stringify(paths.stdout)}: ${scheme} URI has no path`);
    if (scheme === 'file') return { kind: 'file', path: decodePath(url, paths.stdout) };
    const args: string[] = [];
    for (const [key, value] of url.searchParams) args.push(key, value);
    return { kind: 'binary', path: decodePath(url, paths.stdout), args };
  }
  return { kind: 'fifo', stdin: fifoPath(paths.stdin), stdout: fifoPath(paths.stdout), stderr: fifoPath(paths.stderr) };
}

function schemeOf(value: string): string {
  const match = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value);
  return match ? match[1]!.toLowerCase() : '';
}

function parseUrl(value: string): URL {
  try {
    return new URL(value);
  } catch {
    throw new InvalidArgumentError(`invalid stdio URI ${JSON.stringify(value)}`);
  }
}

// decodeURIComponent throws a plain URIError on a stray '%'; the caller sent it.
function decodePath(url: URL, value: string): string {
  try {
    return decodeURIComponent(url.pathname);
  } catch {
    throw new InvalidArgumentError(`invalid stdio URI ${JSON.stringify(value)}: bad percent-encoding in its path`);
  }
}

function fifoPath(value: string): string {
  const scheme = schemeOf(value);
  if (scheme === '') return value;
  if (scheme === 'fifo') return decodePath(parseUrl(value), value);
  throw new InvalidArgumentError(`unsupported stdio scheme ${JSON.stringify(scheme)} in ${JSON.stringify(value)}`);
}
