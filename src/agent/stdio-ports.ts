import { FailedPreconditionError } from '../errdefs/errors.js';
import type { flint, StdioPortsService } from '../generated/index.js';
import { MAX_VSOCK_PORT } from '../vsock/address.js';

/** The first stdio port, as firecracker-containerd. */
export const FIRST_STDIO_PORT = 11000;

/**
 * The StdioPorts service: hands out vsock ports for stdio streams, from
 * 11000 up. Every shim using this agent asks here, and a port is never
 * handed out twice in the agent's life, so two shims never dial the same
 * port, and a late connection to an old port is never taken for a new
 * process's stream.
 */
export class StdioPortAllocator implements StdioPortsService {
  private next = FIRST_STDIO_PORT;

  /** One port per stream asked for; 0 for the others. */
  async allocate(request: flint.vm.v1.AllocatePortsRequest): Promise<flint.vm.v1.AllocatePortsResponse.$Properties> {
    const wanted = [request.stdin, request.stdout, request.stderr].filter(Boolean).length;
    if (this.next + wanted - 1 > MAX_VSOCK_PORT) throw new FailedPreconditionError(`every vsock port up to ${MAX_VSOCK_PORT} has been handed out; restart the agent`);
    return {
      stdinPort: request.stdin ? this.next++ : 0,
      stdoutPort: request.stdout ? this.next++ : 0,
      stderrPort: request.stderr ? this.next++ : 0,
    };
  }
}
