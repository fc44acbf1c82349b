import { UnknownError } from '../../errdefs/errors.js';
import { RuncError } from '../../runc/runc.js';

/**
 * Runs one runc step of a process and words its failure as the runc shim
 * does: what failed, then runc's own message from its log, e.g. "OCI
 * runtime create failed: runc create failed: unable to start container
 * process: …", the text containerd users know. A failure runc's message
 * classified (NotFound, AlreadyExists) and any other error pass unchanged.
 */
export async function runtimeStep<T>(what: string, step: Promise<T>): Promise<T> {
  try {
    return await step;
  } catch (err) {
    if (!(err instanceof RuncError)) throw err;
    throw new UnknownError(`${what}: ${err.runcMessage}`, { cause: err });
  }
}
