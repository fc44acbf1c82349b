import { closeSync, constants, openSync } from 'node:fs';
import { writersLeft } from '../../native/fd.js';

const { O_WRONLY, O_NONBLOCK } = constants;

/**
 * The shim's own writer of a stdin FIFO. While it is open the process sees
 * EOF only after CloseIO, whatever the client's writers do (a client may
 * detach and attach again): the runc shim's contract.
 *
 * It is opened once the process is created, not before, and not at all when
 * the client's writer has already come and gone by then. containerd's
 * clients (ctr 1.6, containerd/containerd#4489) send CloseIO for an EOF only
 * once NewTask or Exec has returned; an EOF that comes during the create is
 * never sent, and with the writer held from the start the process would
 * wait on stdin forever. Not holding it lets that EOF through.
 */
export class StdinKeepAlive {
  private fd: number | undefined;

  constructor(private readonly path: string) {}

  /**
   * Opens the writer, unless the client's writers have left the FIFO that
   * `readerFd` reads. False when they have: stdin is ending as if by CloseIO.
   */
  hold(readerFd: number | undefined): boolean {
    if (this.fd !== undefined) return true;
    if (readerFd === undefined || writersLeft(readerFd)) return false;
    // The reader is open, so a non-blocking open for writing cannot fail with ENXIO.
    this.fd = openSync(this.path, O_WRONLY | O_NONBLOCK);
    return true;
  }

  /** CloseIO: the process sees EOF once the client's writers are gone too. */
  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
