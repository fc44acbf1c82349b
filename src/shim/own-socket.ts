import { lstatSync, readFileSync, rmSync } from 'node:fs';
import { socketPath } from './socket-address.js';

/**
 * The server's socket file, removed when the server ends, whichever way it
 * ends. `start` names it in its handoff; a server given its listener as
 * fd 3 (the way the runc shim starts its own) learns it, as the runc shim
 * does, from the `address` file `start` writes into the bundle, read once
 * containerd has connected and the file is surely there.
 *
 * The file is removed only while it is still the one learned: a server that
 * lingers after Shutdown (its events still draining) must not remove the
 * socket a successor of its group has bound at the same path since.
 */
export class OwnSocket {
  private file: { path: string; dev: number; ino: number } | undefined;
  private known = false;

  constructor(
    address: string | undefined,
    private readonly addressFile?: string,
  ) {
    if (address) this.learn(socketPath(address));
  }

  /** Learns the path from the bundle's address file, unless it is known already. */
  recall(): void {
    if (this.known || !this.addressFile) return;
    try {
      this.learn(socketPath(readFileSync(this.addressFile, 'utf8').trim()));
    } catch {
      // No address file (yet): nothing to remove then.
    }
  }

  /** Removes the socket file if it is still ours; later calls do nothing. */
  remove(): void {
    this.recall();
    const file = this.file;
    this.file = undefined;
    if (!file) return;
    try {
      const now = lstatSync(file.path);
      if (now.dev === file.dev && now.ino === file.ino) rmSync(file.path, { force: true });
    } catch {
      // Gone already.
    }
  }

  private learn(path: string): void {
    this.known = true;
    try {
      const stat = lstatSync(path);
      if (stat.isSocket()) this.file = { path, dev: stat.dev, ino: stat.ino };
    } catch {
      // Not there: nothing of ours to remove.
    }
  }
}
