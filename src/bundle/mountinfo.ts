import { readFileSync } from 'node:fs';

/** One line of /proc/<pid>/mountinfo, with the escaped fields decoded. */
export interface MountInfo {
  readonly id: number;
  readonly parentId: number;
  /** The path inside the filesystem that is mounted (differs from "/" for bind mounts). */
  readonly root: string;
  readonly mountPoint: string;
  readonly options: string;
  /** Propagation tags such as "shared:5" or "master:2". */
  readonly optionalFields: readonly string[];
  readonly fsType: string;
  readonly source: string;
  readonly superOptions: string;
}

/**
 * Decodes the kernel's octal escapes in mountinfo paths: space, tab,
 * newline and backslash appear as \040, \011, \012 and \134.
 */
export function decodeMountinfoPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses mountinfo text; malformed lines are skipped. */
export function parseMountinfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    // Optional fields (shared:N, master:N, ...) end at a lone "-".
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 4) continue;
    mounts.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      root: decodeMountinfoPath(fields[3]!),
      mountPoint: decodeMountinfoPath(fields[4]!),
      options: fields[5]!,
      optionalFields: fields.slice(6, sep),
      fsType: fields[sep + 1]!,
      source: decodeMountinfoPath(fields[sep + 2]!),
      superOptions: fields[sep + 3]!,
    });
  }
  return mounts;
}

/** The mounts of this process's mount namespace, in mount order. */
export function readMountinfo(): MountInfo[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}
