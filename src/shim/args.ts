import yargs from 'yargs';

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

/**
 * Parses the shim's flags. Go's flag package takes `-name value`,
 * `-name=value` and `--name value` alike; yargs does too once short-option
 * grouping is off (otherwise `-id` would mean `-i -d`).
 */
export function parseShimArgs(argv: readonly string[]): ShimArgs {
  const parsed = yargs([...argv])
    // Go's flag package: a repeated flag keeps its last value, never a list.
    .parserConfiguration({ 'short-option-groups': false, 'camel-case-expansion': true, 'strip-dashed': true, 'duplicate-arguments-array': false })
    .scriptName('containerd-shim-flint-v2')
    .usage('$0 [flags] [start|delete]')
    .option('namespace', { type: 'string', default: '', requiresArg: true, describe: 'namespace that owns the shim' })
    .option('id', { type: 'string', default: '', requiresArg: true, describe: 'id of the task' })
    .option('address', { type: 'string', default: '', requiresArg: true, describe: 'grpc address of containerd' })
    .option('publish-binary', { type: 'string', default: '', requiresArg: true, describe: 'path to publish binary (used for publishing events)' })
    .option('bundle', { type: 'string', default: '', requiresArg: true, describe: 'path to the bundle if not workdir' })
    .option('socket', { type: 'string', default: '', requiresArg: true, describe: 'socket path to serve' })
    .option('debug', { type: 'boolean', default: false, describe: 'enable debug output in logs' })
    .option('v', { type: 'boolean', default: false, describe: 'show the shim version and exit' })
    .version(false)
    .help(false)
    .strictOptions()
    .exitProcess(false)
    .fail((message, err) => {
      throw err ?? new Error(message);
    })
    .parseSync();
  const positional = parsed._.map(String);
  if (positional.length > 1) throw new Error(`too many arguments: ${positional.join(' ')}`);
  const action = positional[0];
  if (action !== undefined && action !== 'start' && action !== 'delete') throw new Error(`unknown action ${JSON.stringify(action)}: want start or delete`);
  return {
    namespace: parsed.namespace,
    id: parsed.id,
    address: parsed.address,
    publishBinary: parsed.publishBinary,
    bundle: parsed.bundle,
    socket: parsed.socket,
    debug: parsed.debug,
    version: parsed.v,
    action,
  };
}
