import { InvalidArgumentError } from '../errdefs/errors.js';
// The small options module, not generated/index.js: `start` decodes these and nothing else.
import { containerd, runtimeoptions, type google } from '../generated/options.js';

export const RUNC_OPTIONS_TYPE = 'containerd.runc.v1.Options';
export const RUNTIME_OPTIONS_TYPE = 'runtimeoptions.v1.Options';
export const LINUX_RUNC_CREATE_OPTIONS_TYPE = 'containerd.linux.runc.CreateOptions';

/** What a task's runtime options ask for: runc settings, or a config file. */
export interface TaskOptions {
  readonly runc: containerd.runc.v1.Options | undefined;
  readonly configPath: string | undefined;
}

/**
 * Reads CreateTaskRequest.options (or the `start` stdin): containerd sends
 * containerd.runc.v1.Options from `ctr --runc-*` flags,
 * runtimeoptions.v1.Options with a config_path from CRI or
 * `ctr run --runtime-config-path`, and containerd.linux.runc.CreateOptions
 * from the Go client's task options (`ctr run --no-pivot`, `--uidmap`,
 * WithNoNewKeyring, WithShimCgroup…) for any runtime not named
 * io.containerd.runc.*. Any other type is refused by name.
 */
export function decodeTaskOptions(any: google.protobuf.IAny | null | undefined): TaskOptions {
  if (!any || (!any.typeUrl && (!any.value || any.value.length === 0))) return { runc: undefined, configPath: undefined };
  const typeUrl = (any.typeUrl ?? '').replace(/^type\.googleapis\.com\//, '');
  const value = any.value ?? new Uint8Array();
  try {
    switch (typeUrl) {
      case RUNC_OPTIONS_TYPE:
        return { runc: containerd.runc.v1.Options.decode(value), configPath: undefined };
      case RUNTIME_OPTIONS_TYPE:
        return { runc: undefined, configPath: runtimeoptions.v1.Options.decode(value).configPath || undefined };
      case LINUX_RUNC_CREATE_OPTIONS_TYPE:
        return { runc: fromCreateOptions(containerd.linux.runc.CreateOptions.decode(value)), configPath: undefined };
    }
  } catch (err) {
    throw new InvalidArgumentError(`runtime options of type ${JSON.stringify(typeUrl)} do not decode: ${(err as Error).message}`);
  }
  throw new InvalidArgumentError(
    `unsupported runtime options type ${JSON.stringify(any.typeUrl)}: want ${RUNC_OPTIONS_TYPE}, ${RUNTIME_OPTIONS_TYPE} or ${LINUX_RUNC_CREATE_OPTIONS_TYPE}`,
  );
}

/**
 * The create options as the runc options they overlap with. The rest
 * (open_tcp, external_unix_sockets, terminal, file_locks, empty_namespaces,
 * cgroups_mode) only shape a restore from a checkpoint, which flint refuses
 * on its own; the runc binary, root and systemd cgroups come from the config.
 */
function fromCreateOptions(create: containerd.linux.runc.CreateOptions): containerd.runc.v1.Options {
  return containerd.runc.v1.Options.create({
    noPivotRoot: create.noPivotRoot,
    noNewKeyring: create.noNewKeyring,
    shimCgroup: create.shimCgroup,
    ioUid: create.ioUid,
    ioGid: create.ioGid,
    criuWorkPath: create.criuWorkPath,
    criuImagePath: create.criuImagePath,
  });
}
