/** The key containerd puts its namespace under on every call to a shim. */
export const NAMESPACE_KEY = 'containerd-namespace-ttrpc';

/** One metadata entry as it travels in ttrpc.Request.metadata. */
export interface KeyValue {
  key: string;
  value: string;
}

export type MetadataInit = Metadata | Readonly<Record<string, string | readonly string[]>> | Iterable<readonly [string, string]>;

/**
 * Call metadata: a multi-valued map from lower-case keys to strings. On the
 * wire each value is one KeyValue, so a key with two values is sent twice.
 */
export class Metadata {
  private readonly map = new Map<string, string[]>();

  constructor(init?: MetadataInit) {
    if (init === undefined) return;
    if (init instanceof Metadata) {
      for (const [key, values] of init.map) this.map.set(key, [...values]);
    } else if (Symbol.iterator in init) {
      for (const [key, value] of init as Iterable<readonly [string, string]>) this.append(key, value);
    } else {
      for (const [key, value] of Object.entries(init)) {
        if (typeof value === 'string') this.append(key, value);
        else this.append(key, ...value);
      }
    }
  }

  /** All values of `key`, empty when it is not set. */
  get(key: string): string[] {
    return [...(this.map.get(key.toLowerCase()) ?? [])];
  }

  /** The first value of `key`. */
  getFirst(key: string): string | undefined {
    return this.map.get(key.toLowerCase())?.[0];
  }

  has(key: string): boolean {
    return this.map.has(key.toLowerCase());
  }

  /** Replaces the values of `key`; no values deletes it. */
  set(key: string, ...values: string[]): this {
    if (values.length === 0) this.map.delete(key.toLowerCase());
    else this.map.set(key.toLowerCase(), [...values]);
    return this;
  }

  append(key: string, ...values: string[]): this {
    if (values.length === 0) return this;
    const k = key.toLowerCase();
    const current = this.map.get(k);
    if (current) current.push(...values);
    else this.map.set(k, [...values]);
    return this;
  }

  delete(key: string): boolean {
    return this.map.delete(key.toLowerCase());
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  get size(): number {
    return this.map.size;
  }

  clone(): Metadata {
    return new Metadata(this);
  }

  /** A copy in which each key of `other` replaces the same key here. */
  merge(other: Metadata | undefined): Metadata {
    const merged = this.clone();
    if (other) for (const [key, values] of other.map) merged.map.set(key, [...values]);
    return merged;
  }

  toKeyValues(): KeyValue[] {
    const out: KeyValue[] = [];
    for (const [key, values] of this.map) for (const value of values) out.push({ key, value });
    return out;
  }

  toJSON(): Record<string, string[]> {
    return Object.fromEntries([...this.map].map(([key, values]) => [key, [...values]]));
  }

  static fromKeyValues(entries: Iterable<{ key?: string | null; value?: string | null }>): Metadata {
    const md = new Metadata();
    for (const { key, value } of entries) md.append(key ?? '', value ?? '');
    return md;
  }
}
