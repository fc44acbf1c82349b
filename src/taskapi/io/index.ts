import { fchownSync, fstatSync } from 'node:fs';
import { BinaryIO } from './binary-io.js';
import { FifoIO } from './fifo-io.js';
import { FileIO } from './file-io.js';
import { NullIO } from './null-io.js';
import type { ProcessIO } from './process-io.js';
import { parseStdio, type StdioPaths } from './stdio-uri.js';

export type { ProcessIO, RuncStdio } from './process-io.js';
export type { StdioPaths } from './stdio-uri.js';

/** A uid and gid to give stdio to (the runc options' io_uid and io_gid). */
export interface IoOwner {
  readonly uid: number;
  readonly gid: number;
}

/**
 * Opens the stdio containerd asked for, before runc is run. With an
 * `owner`, the pipes and FIFOs handed to the process become theirs, as the
 * runc shim's pipes do: a process running as another user (say, root of a
 * user namespace) can then reopen its own stdio through /proc/self/fd.
 */
export async function openProcessIO(paths: StdioPaths, env: { id: string; namespace: string }, owner?: IoOwner): Promise<ProcessIO> {
  const io = await open(paths, env);
  if (!owner) return io;
  try {
    for (const fd of io.stdio) {
      if (typeof fd === 'number' && fstatSync(fd).isFIFO()) fchownSync(fd, owner.uid, owner.gid);
    }
  } catch (err) {
    await io.close();
    throw err;
  }
  return io;
}

async function open(paths: StdioPaths, env: { id: string; namespace: string }): Promise<ProcessIO> {
  const target = parseStdio(paths);
  switch (target.kind) {
    case 'null':
      return new NullIO();
    case 'fifo':
      return new FifoIO(target, paths.terminal);
    case 'file':
      return new FileIO(target.path, paths.terminal);
    case 'binary':
      return BinaryIO.start(target.path, target.args, paths.terminal, env);
  }
}
