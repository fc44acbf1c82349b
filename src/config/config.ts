import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errdefs/errors.js';

/** flint's configuration, as read from JSON (see the README's config reference). */
export interface FlintConfig {
  /** "embedded": the shim runs containers itself with runc; "vm": it forwards to an agent. */
  readonly mode: 'embedded' | 'vm';
  /** "sandbox": one shim per pod/sandbox group (the runc shim's rule); "namespace": one per namespace. */
  readonly group: 'sandbox' | 'namespace';
  readonly runc: {
    readonly binary: string;
    /** runc's state root; the namespace is appended, as the runc shim does. */
    readonly root: string;
    readonly systemdCgroup: boolean;
  };
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /**
   * How long a server whose last container is gone stays, as a spare that
   * the next container's `start` takes instead of starting a new one; 0 makes
   * it exit at once, as the runc shim does.
   */
  readonly spareServerMs: number;
  readonly agent: {
    /** vsock://CID:PORT or hvsock://PATH:PORT; required in vm mode. */
    readonly address: string;
    /** How long the shim retries dialing an agent that is not listening yet. */
    readonly dialTimeoutMs: number;
  };
}

export const DEFAULT_CONFIG_PATH = '/etc/flint/config.json';

export const DEFAULT_CONFIG: FlintConfig = {
  mode: 'embedded',
  group: 'sandbox',
  runc: { binary: 'runc', root: '/run/containerd/runc', systemdCgroup: false },
  logLevel: 'info',
  spareServerMs: 3_000,
  agent: { address: '', dialTimeoutMs: 10_000 },
};

export interface LoadedConfig {
  readonly config: FlintConfig;
  /** The file it came from, or undefined for the defaults. */
  readonly path: string | undefined;
}

/**
 * Finds and reads the configuration: the runtime options' config_path,
 * else $FLINT_CONFIG, else /etc/flint/config.json, else the defaults. An
 * explicitly named file must exist; the well-known path may be absent.
 * `defaultPath` replaces the well-known path (tests use it).
 */
export function loadConfig(configPath?: string, env: NodeJS.ProcessEnv = process.env, defaultPath: string = DEFAULT_CONFIG_PATH): LoadedConfig {
  const explicit = configPath || env.FLINT_CONFIG;
  if (explicit) return { config: readConfigFile(explicit, true)!, path: explicit };
  const fromDefault = readConfigFile(defaultPath, false);
  return fromDefault ? { config: fromDefault, path: defaultPath } : { config: DEFAULT_CONFIG, path: undefined };
}

function readConfigFile(path: string, mustExist: boolean): FlintConfig | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (!mustExist && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InvalidArgumentError(`config ${path}: cannot read: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`config ${path}: invalid JSON: ${(err as Error).message}`);
  }
  return parseConfig(json, path);
}

/** Validates a parsed config object; errors name the file and the key. */
export function parseConfig(json: unknown, source: string): FlintConfig {
  const fail = (key: string, why: string): never => {
    throw new InvalidArgumentError(`config ${source}: key "${key}": ${why}`);
  };
  const root = objectAt(json, '', fail);
  checkKeys(root, ['mode', 'group', 'runc', 'logLevel', 'spareServerMs', 'agent'], '', fail);
  // Only an absent section means the defaults; `null` is a wrong type like any other.
  const runc = objectAt(root.runc === undefined ? {} : root.runc, 'runc', fail);
  checkKeys(runc, ['binary', 'root', 'systemdCgroup'], 'runc.', fail);
  const agent = objectAt(root.agent === undefined ? {} : root.agent, 'agent', fail);
  checkKeys(agent, ['address', 'dialTimeoutMs'], 'agent.', fail);

  const config: FlintConfig = {
    mode: oneOf(root.mode, 'mode', ['embedded', 'vm'] as const, DEFAULT_CONFIG.mode, fail),
    group: oneOf(root.group, 'group', ['sandbox', 'namespace'] as const, DEFAULT_CONFIG.group, fail),
    runc: {
      binary: nonEmptyString(runc.binary, 'runc.binary', DEFAULT_CONFIG.runc.binary, fail),
      root: absolutePath(runc.root, 'runc.root', DEFAULT_CONFIG.runc.root, fail),
      systemdCgroup: bool(runc.systemdCgroup, 'runc.systemdCgroup', DEFAULT_CONFIG.runc.systemdCgroup, fail),
    },
    logLevel: oneOf(root.logLevel, 'logLevel', ['trace', 'debug', 'info', 'warn', 'error'] as const, DEFAULT_CONFIG.logLevel, fail),
    spareServerMs: integerAtLeast(0, root.spareServerMs, 'spareServerMs', DEFAULT_CONFIG.spareServerMs, fail),
    agent: {
      address: agent.address === undefined ? '' : nonEmptyString(agent.address, 'agent.address', '', fail),
      dialTimeoutMs: integerAtLeast(1, agent.dialTimeoutMs, 'agent.dialTimeoutMs', DEFAULT_CONFIG.agent.dialTimeoutMs, fail),
    },
  };
  if (config.mode === 'vm' && !/^(vsock|hvsock):\/\//.test(config.agent.address)) {
    fail('agent.address', `mode "vm" needs an agent address vsock://CID:PORT or hvsock://PATH:PORT, got ${JSON.stringify(config.agent.address)}`);
  }
  return config;
}

type Fail = (key: string, why: string) => never;

function objectAt(value: unknown, key: string, fail: Fail): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(key || '(top level)', 'must be a JSON object');
  return value as Record<string, unknown>;
}

function checkKeys(object: Record<string, unknown>, known: string[], prefix: string, fail: Fail): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) fail(prefix + key, `unknown key (known: ${known.join(', ')})`);
  }
}

function oneOf<T extends string>(value: unknown, key: string, choices: readonly T[], fallback: T, fail: Fail): T {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && (choices as readonly string[]).includes(value)) return value as T;
  return fail(key, `must be one of ${choices.map((c) => JSON.stringify(c)).join(', ')}, got ${JSON.stringify(value)}`);
}

function nonEmptyString(value: unknown, key: string, fallback: string, fail: Fail): string {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && value.length > 0) return value;
  return fail(key, `must be a non-empty string, got ${JSON.stringify(value)}`);
}

function absolutePath(value: unknown, key: string, fallback: string, fail: Fail): string {
  const path = nonEmptyString(value, key, fallback, fail);
  return path.startsWith('/') ? path : fail(key, `must be an absolute path, got ${JSON.stringify(path)}`);
}

function bool(value: unknown, key: string, fallback: boolean, fail: Fail): boolean {
  if (value === undefined) return fallback;
  return typeof value === 'boolean' ? value : fail(key, `must be true or false, got ${JSON.stringify(value)}`);
}

function integerAtLeast(min: number, value: unknown, key: string, fallback: number, fail: Fail): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value) && value >= min) return value;
  return fail(key, `must be ${min === 1 ? 'a positive integer' : `an integer of ${min} or more`}, got ${JSON.stringify(value)}`);
}
