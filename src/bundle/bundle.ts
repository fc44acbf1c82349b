import { join, resolve } from 'node:path';
import { validateId } from './identifiers.js';
import { readSpec, type OciSpec } from './spec.js';

export { MAX_ID_LENGTH, ID_PATTERN, validateId } from './identifiers.js';
export { safeJoin } from './safe-join.js';
export { writeFileAtomic } from './write-file-atomic.js';
export { readSpec, type OciSpec, type OciProcess, type OciMount } from './spec.js';

/** File names inside a bundle, as containerd and the runc shim use them. */
export const CONFIG_FILE = 'config.json';
export const ROOTFS_DIR = 'rootfs';
/** FIFO the shim's log goes to; containerd reads it. */
export const LOG_FIFO = 'log';
/** runc's own --log file. */
export const RUNC_LOG_FILE = 'log.json';
export const INIT_PID_FILE = 'init.pid';
export const ADDRESS_FILE = 'address';

/** The well-known paths of one bundle directory. */
export class Bundle {
  readonly path: string;
  readonly configPath: string;
  readonly rootfs: string;
  readonly logFifo: string;
  readonly runcLog: string;
  readonly initPidFile: string;
  readonly addressFile: string;

  constructor(dir: string) {
    this.path = resolve(dir);
    this.configPath = join(this.path, CONFIG_FILE);
    this.rootfs = join(this.path, ROOTFS_DIR);
    this.logFifo = join(this.path, LOG_FIFO);
    this.runcLog = join(this.path, RUNC_LOG_FILE);
    this.initPidFile = join(this.path, INIT_PID_FILE);
    this.addressFile = join(this.path, ADDRESS_FILE);
  }

  /** `<bundle>/<execId>.pid`; the id is validated so it stays one path component. */
  execPidFile(execId: string): string {
    validateId(execId);
    return join(this.path, `${execId}.pid`);
  }

  /** The bundle's config.json; InvalidArgumentError naming the file if unusable. */
  readSpec(): Promise<OciSpec> {
    return readSpec(this.configPath);
  }
}
