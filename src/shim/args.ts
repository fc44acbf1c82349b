import parser from 'yargs-parser';

/** The command line containerd gives a shim, Go-flag style (`-namespace ns`). */
export interface ShimArgs {
  readonly namespace: string;
  readonly id: string;
  readonly address: string;
  readonly publishBinary: string;
  readonly bundle: string;
  readonly socket: string;
  readonly debug: boolean;
  readonly version: boolean;
  /** "start", "delete", or undefined for the long-lived server. */
  readonly action: 'start' | 'delete' | undefined;
}

const STRING_FLAGS = ['namespace', 'id', 'address', 'publish-binary', 'bundle', 'socket'] as const;
const BOOLEAN_FLAGS = ['debug', 'v'] as const;
const KNOWN_FLAGS: ReadonlySet<string> = new Set<string>([...STRING_FLAGS, ...BOOLEAN_FLAGS]);

/**
 * Parses the shim's flags. Go's flag package takes `-name value`,
 * `-name=value` and `--name value` alike; so does yargs's parser once
 * short-option grouping is off (otherwise `-id` would mean `-i -d`).
 *
 * This is yargs-parser, the parser inside yargs, without yargs's usage and
 * help machinery: `start` and `delete` run once per container, and loading
 * yargs itself costs more than everything else they do.
 */
export function parseShimArgs(argv: readonly string[]): ShimArgs {
  const parsed = parser.detailed([...argv], {
    string: [...STRING_FLAGS],
    boolean: [...BOOLEAN_FLAGS],
    configuration: {
      'short-option-groups': false,
      'camel-case-expansion': false,
      // Go's flag package: a repeated flag keeps its last value, never a list.
      'duplicate-arguments-array': false,
      'parse-numbers': false,
      'parse-positional-numbers': false,
    },
  });
  if (parsed.error) throw parsed.error;
  const flags = parsed.argv as Record<string, unknown> & { _: (string | number)[] };
  for (const key of Object.keys(flags)) {
    if (key !== '_' && key !== '--' && !KNOWN_FLAGS.has(key)) throw new Error(`Unknown argument: ${key}`);
  }
  assertFlagValues(argv);
  const positional = flags._.map(String);
  if (positional.length > 1) throw new Error(`too many arguments: ${positional.join(' ')}`);
  const action = positional[0];
  if (action !== undefined && action !== 'start' && action !== 'delete') throw new Error(`unknown action ${JSON.stringify(action)}: want start or delete`);
  const text = (name: (typeof STRING_FLAGS)[number]): string => {
    const value = flags[name];
    return typeof value === 'string' ? value : '';
  };
  return {
    namespace: text('namespace'),
    id: text('id'),
    address: text('address'),
    publishBinary: text('publish-binary'),
    bundle: text('bundle'),
    socket: text('socket'),
    debug: flags.debug === true,
    version: flags.v === true,
    action,
  };
}

/** A value flag needs a value, as in Go: a bare `-id` at the end is an error, not an empty id. */
function assertFlagValues(argv: readonly string[]): void {
  argv.forEach((arg, index) => {
    const name = /^--?([a-z-]+)$/.exec(arg)?.[1];
    if (name && (STRING_FLAGS as readonly string[]).includes(name) && index === argv.length - 1) {
      throw new Error(`flag needs an argument: -${name}`);
    }
  });
}
