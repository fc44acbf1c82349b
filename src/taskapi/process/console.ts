import { FdStream } from '../../native/fd-stream.js';
import { ConsoleSocket } from '../../runc/console-socket.js';
import type { ConsoleHandle } from './process-base.js';

/**
 * Runs a runc call that takes `--console-socket` and collects the pty
 * master runc sends back. The socket is gone afterwards, whatever happened.
 */
export async function withConsoleSocket(run: (socketPath: string) => Promise<void>): Promise<ConsoleHandle> {
  const socket = await ConsoleSocket.listen();
  try {
    const abort = new AbortController();
    const master = socket.receiveMaster(abort.signal);
    master.catch(() => {}); // observed below; a failed run must not leave it unhandled
    try {
      await run(socket.path);
    } catch (err) {
      abort.abort();
      throw err;
    }
    const { fd } = await master;
    return { stream: new FdStream(fd), fd };
  } finally {
    await socket.close();
  }
}
