import { InvalidArgumentError } from '../errdefs/errors.js';
import { flint, type google } from '../generated/index.js';

export const EXTRA_DATA_TYPE = 'flint.vm.v1.ExtraData';

/** The vsock ports a process's stdio travels on; 0 for a stream that is not used. */
export interface StdioPorts {
  readonly stdin: number;
  readonly stdout: number;
  readonly stderr: number;
}

/**
 * What the shim tells the agent beyond the task request, in the request's
 * Any (CreateTaskRequest.options / ExecProcessRequest.spec): the OCI spec
 * (config.json for a task, the process spec for an exec), the caller's own
 * runtime options, and the stdio ports.
 */
export interface ExtraData {
  readonly jsonSpec: Uint8Array;
  readonly runcOptions: google.protobuf.IAny | undefined;
  readonly ports: StdioPorts;
}

export function wrapExtraData(data: ExtraData): google.protobuf.IAny {
  const message = flint.vm.v1.ExtraData.create({
    jsonSpec: data.jsonSpec,
    stdinPort: data.ports.stdin,
    stdoutPort: data.ports.stdout,
    stderrPort: data.ports.stderr,
    ...(data.runcOptions ? { runcOptions: data.runcOptions } : {}),
  });
  return { typeUrl: EXTRA_DATA_TYPE, value: flint.vm.v1.ExtraData.encode(message).finish() };
}

export function unwrapExtraData(any: google.protobuf.IAny | null | undefined, what: string): ExtraData {
  if (!any || any.typeUrl !== EXTRA_DATA_TYPE) {
    throw new InvalidArgumentError(`${what} has type ${JSON.stringify(any?.typeUrl ?? '')}, want ${EXTRA_DATA_TYPE} (the flint shim's envelope)`);
  }
  let message: flint.vm.v1.ExtraData;
  try {
    message = flint.vm.v1.ExtraData.decode(any.value ?? new Uint8Array());
  } catch (err) {
    throw new InvalidArgumentError(`${what}: ${EXTRA_DATA_TYPE} does not decode: ${(err as Error).message}`);
  }
  const runcOptions = message.runcOptions && (message.runcOptions.typeUrl || message.runcOptions.value?.length) ? message.runcOptions : undefined;
  return {
    jsonSpec: message.jsonSpec,
    runcOptions,
    ports: { stdin: message.stdinPort, stdout: message.stdoutPort, stderr: message.stderrPort },
  };
}
