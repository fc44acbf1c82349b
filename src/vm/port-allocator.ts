import type { StdioPorts } from './extra-data.js';

/** The first stdio port, as firecracker-containerd. */
export const FIRST_STDIO_PORT = 11000;

/**
 * Hands out vsock ports for stdio streams, from 11000 up. A port is never
 * reused within a shim, so a late connection to an old port can never be
 * mistaken for a new process's stream.
 */
export class PortAllocator {
  private next = FIRST_STDIO_PORT;

  /** One port per stream in use; 0 for the others. */
  allocate(streams: { stdin: boolean; stdout: boolean; stderr: boolean }): StdioPorts {
    return {
      stdin: streams.stdin ? this.next++ : 0,
      stdout: streams.stdout ? this.next++ : 0,
      stderr: streams.stderr ? this.next++ : 0,
    };
  }
}
