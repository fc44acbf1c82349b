import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errdefs/errors.js';

/** The parts of an OCI runtime spec (config.json) flint reads; the rest passes through. */
export interface OciSpec {
  ociVersion?: string;
  process?: OciProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: {
    namespaces?: Array<{ type: string; path?: string }>;
    resources?: Record<string, unknown>;
    cgroupsPath?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface OciProcess {
  terminal?: boolean;
  user?: { uid: number; gid: number; additionalGids?: number[]; umask?: number };
  args?: string[];
  env?: string[];
  cwd: string;
  [key: string]: unknown;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/**
 * Reads and parses an OCI config.json. Any failure (missing, unreadable,
 * not JSON, not an object) is an InvalidArgumentError naming the file,
 * since the bundle came from the caller.
 */
export async function readSpec(file: string): Promise<OciSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`failed to read spec ${file}: ${(err as Error).message}`, { cause: err });
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`invalid spec ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw new InvalidArgumentError(`invalid spec ${file}: not a JSON object`);
  }
  return spec as OciSpec;
}
