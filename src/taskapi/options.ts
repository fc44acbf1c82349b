import { InvalidArgumentError } from '../errdefs/errors.js';
// The small options module, not generated/index.js: `start` decodes these and nothing else.
import { containerd, runtimeoptions, type google } from '../generated/options.js';

export const RUNC_OPTIONS_TYPE = 'containerd.runc.v1.Options';
export const RUNTIME_OPTIONS_TYPE = 'runtimeoptions.v1.Options';

/** What a task's runtime options ask for: runc settings, or a config file. */
export interface TaskOptions {
  readonly runc: containerd.runc.v1.Options | undefined;
  readonly configPath: string | undefined;
}

/**
 * Reads CreateTaskRequest.options (or the `start` stdin): containerd sends
 * containerd.runc.v1.Options from `ctr --runc-*` flags, and
 * runtimeoptions.v1.Options with a config_path from CRI or
 * `ctr run --runtime-config-path`. Any other type is refused by name.
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
    }
  } catch (err) {
    throw new InvalidArgumentError(`runtime options of type ${JSON.stringify(typeUrl)} do not decode: ${(err as Error).message}`);
  }
  throw new InvalidArgumentError(`unsupported runtime options type ${JSON.stringify(any.typeUrl)}: want ${RUNC_OPTIONS_TYPE} or ${RUNTIME_OPTIONS_TYPE}`);
}
