import { closeSync, readSync, writeSync } from 'node:fs';
import { Duplex, type DuplexOptions } from 'node:stream';

import { isErrno } from './errno.js';
import { Poller, POLL_READABLE, POLL_WRITABLE } from './poll.js';
import { setNonblocking } from './fd.js';
import { shutdownWrite } from './socket.js';

/** Options for FdStream; the rest are passed to stream.Duplex. */
export interface FdStreamOptions extends DuplexOptions {
  /** Close the fd when the stream is destroyed (default true). */
  readonly closeFd?: boolean;
  /** Bytes per read(2) (default 64 KiB). */
  readonly readChunkSize?: number;
}

interface PendingWrite {
  readonly chunk: Buffer;
  offset: number;
  readonly callback: (err?: Error | null) => void;
}

const DEFAULT_CHUNK = 64 * 1024;

/**
 * A Duplex over any nonblocking stream fd (AF_VSOCK, pty master, socketpair)
 * that net.Socket cannot wrap. It polls the fd on Node's event loop and only
 * watches what it needs: readable while the consumer wants data, writable
 * while a write is stuck on EAGAIN, so there is no busy loop and never more
 * than one unwritten chunk held beyond the Duplex buffer.
 *
 * read() returning 0 is EOF, and so is EIO, which is how a pty master reports
 * that the slave side closed. end() shuts down the write side of sockets.
 * The constructor throws if the fd cannot be polled (e.g. a regular file);
 * the fd then stays the caller's.
 */
export class FdStream extends Duplex {
  readonly fd: number;
  private readonly closeFd: boolean;
  private readonly poller: Poller;
  private scratch: Buffer;
  private wantRead = false;
  private readEnded = false;
  private pending: PendingWrite | null = null;
  private pollingReadable = false;
  private pollingWritable = false;
  private released = false;

  constructor(fd: number, options: FdStreamOptions = {}) {
    const { closeFd = true, readChunkSize = DEFAULT_CHUNK, ...duplexOptions } = options;
    super(duplexOptions);
    this.fd = fd;
    this.closeFd = closeFd;
    this.scratch = Buffer.allocUnsafe(readChunkSize);
    setNonblocking(fd, true);
    this.poller = new Poller(fd, (err, events) => this.onPoll(err, events));
  }

  /** Lets the process exit while this stream waits for I/O (like net.Socket#unref). */
  unref(): this {
    if (!this.released) this.poller.unref();
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    if (!this.released) this.poller.ref();
    return this;
  }

  override _read(): void {
    this.wantRead = true;
    this.readSome();
    this.updatePolling();
  }

  override _write(chunk: Buffer | string, encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
    this.pending = { chunk: buf, offset: 0, callback };
    this.flushPending();
    this.updatePolling();
  }

  override _final(callback: (err?: Error | null) => void): void {
    try {
      shutdownWrite(this.fd);
    } catch (err) {
      // Not a socket (pty, pipe): nothing to signal. Not connected: the peer is gone already.
      if (!isErrno(err, 'ENOTSOCK') && !isErrno(err, 'ENOTCONN')) {
        callback(err as Error);
        return;
      }
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (err?: Error | null) => void): void {
    this.released = true;
    this.poller.close();
    const pending = this.pending;
    this.pending = null;
    if (pending) {
      const aborted: NodeJS.ErrnoException = new Error('write aborted: stream destroyed');
      aborted.code = 'ERR_STREAM_DESTROYED';
      pending.callback(aborted);
    }
    if (this.closeFd) {
      try {
        closeSync(this.fd);
      } catch (err) {
        if (!isErrno(err, 'EBADF')) {
          callback(error ?? (err as Error));
          return;
        }
      }
    }
    callback(error);
  }

  private onPoll(err: NodeJS.ErrnoException | null, events: number): void {
    if (this.released) return;
    if (err) {
      // libuv stopped the handle; a read or write surfaces the real errno (or EOF).
      this.pollingReadable = false;
      this.pollingWritable = false;
      events = POLL_READABLE | POLL_WRITABLE;
    }
    let progressed = false;
    if (events & POLL_READABLE && this.wantRead) progressed = this.readSome() || progressed;
    if (events & POLL_WRITABLE && this.pending) progressed = this.flushPending() || progressed;
    if (err && !progressed && !this.destroyed) {
      this.destroy(err);
      return;
    }
    this.updatePolling();
  }

  /** One read(2). Returns whether anything happened (data, EOF or an error). */
  private readSome(): boolean {
    if (this.readEnded || this.released) return false;
    let n: number;
    try {
      n = readSync(this.fd, this.scratch, 0, this.scratch.length, null);
    } catch (err) {
      if (isErrno(err, 'EAGAIN') || isErrno(err, 'EWOULDBLOCK')) return false;
      if (!isErrno(err, 'EIO')) {
        this.destroy(err as Error);
        return true;
      }
      n = 0; // pty master: the slave side is closed
    }
    if (n === 0) {
      this.readEnded = true;
      this.wantRead = false;
      this.push(null);
      return true;
    }
    let chunk: Buffer;
    if (n === this.scratch.length) {
      // A full buffer is handed over whole; small reads are copied so they
      // do not pin a 64 KiB allocation each while queued.
      chunk = this.scratch;
      this.scratch = Buffer.allocUnsafe(chunk.length);
    } else {
      chunk = Buffer.from(this.scratch.subarray(0, n));
    }
    this.wantRead = this.push(chunk);
    return true;
  }

  /** Writes as much of the pending chunk as the fd takes. Returns whether anything happened. */
  private flushPending(): boolean {
    const pending = this.pending;
    if (!pending || this.released) return false;
    let progressed = false;
    while (pending.offset < pending.chunk.length) {
      try {
        pending.offset += writeSync(this.fd, pending.chunk, pending.offset, pending.chunk.length - pending.offset);
        progressed = true;
      } catch (err) {
        if (isErrno(err, 'EAGAIN') || isErrno(err, 'EWOULDBLOCK')) return progressed;
        this.pending = null;
        pending.callback(err as Error);
        return true;
      }
    }
    this.pending = null;
    pending.callback();
    return true;
  }

  private updatePolling(): void {
    if (this.released) return;
    const readable = this.wantRead && !this.readEnded;
    const writable = this.pending !== null;
    if (readable === this.pollingReadable && writable === this.pollingWritable) return;
    this.pollingReadable = readable;
    this.pollingWritable = writable;
    this.poller.start(readable, writable);
  }
}
