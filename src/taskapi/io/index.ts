import { BinaryIO } from './binary-io.js';
import { FifoIO } from './fifo-io.js';
import { FileIO } from './file-io.js';
import { NullIO } from './null-io.js';
import type { ProcessIO } from './process-io.js';
import { parseStdio, type StdioPaths } from './stdio-uri.js';

export type { ProcessIO, RuncStdio } from './process-io.js';
export type { StdioPaths } from './stdio-uri.js';

/** Opens the stdio containerd asked for, before runc is run. */
export async function openProcessIO(paths: StdioPaths, env: { id: string; namespace: string }): Promise<ProcessIO> {
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
