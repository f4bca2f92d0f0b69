/**
 * Strict readers over an untyped configuration tree. Every failure names the key path
 * (`rules[1].trust.rootKeys[0]`) and the problem, so an operator can fix the file from the message.
 */
import { TrustError } from '@kpack-trust/common';

/** A value at a path of the configuration document. */
export class ConfigNode {
  readonly source: string;
  readonly path: string;
  readonly value: unknown;

  constructor(source: string, path: string, value: unknown) {
    this.source = source;
    this.path = path;
    this.value = value;
  }

  /** Throws CONFIG_INVALID naming this node's path. */
  fail(problem: string): never {
    throw configError(this.source, this.path, problem);
  }

  /** True when the key is absent (or explicitly null, which YAML writes as an empty value). */
  get absent(): boolean {
    return this.value === undefined || this.value === null;
  }

  /** A mapping whose keys must all be in `allowed`; an unknown key is an error naming it. */
  object(allowed: readonly string[]): ObjectNode {
    if (!isRecord(this.value)) this.fail(`must be a mapping, got ${describe(this.value)}`);
    const record = this.value;
    for (const key of Object.keys(record)) {
      if (!allowed.includes(key)) {
        throw configError(
          this.source,
          this.child(key),
          `is not a known key (allowed here: ${allowed.join(', ')})`,
        );
      }
    }
    return new ObjectNode(this.source, this.path, record);
  }

  /** A list; each element as a node. */
  array(): ConfigNode[] {
    if (!Array.isArray(this.value)) this.fail(`must be a list, got ${describe(this.value)}`);
    return (this.value as unknown[]).map(
      (v, i) => new ConfigNode(this.source, `${this.path}[${i}]`, v),
    );
  }

  /** A single string or a list of strings, as a list. */
  stringList(): string[] {
    if (typeof this.value === 'string') return [this.string()];
    return this.array().map((n) => n.string());
  }

  string(): string {
    const text = this.value;
    if (typeof text !== 'string') return this.fail(`must be a string, got ${describe(text)}`);
    if (text === '') this.fail('must not be empty');
    return text;
  }

  boolean(): boolean {
    const flag = this.value;
    if (typeof flag !== 'boolean') return this.fail(`must be true or false, got ${describe(flag)}`);
    return flag;
  }

  /** An integer within [min, max]. */
  integer(min: number, max: number): number {
    const n = this.value;
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
      return this.fail(`must be an integer, got ${describe(n)}`);
    }
    if (n < min || n > max) this.fail(`must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  /** One of a fixed set of strings. */
  oneOf<T extends string>(choices: readonly T[]): T {
    const s = this.string();
    if (!(choices as readonly string[]).includes(s)) {
      this.fail(`must be one of ${choices.map((c) => `"${c}"`).join(', ')}, got "${s}"`);
    }
    return s as T;
  }

  private child(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }
}

/** A validated mapping: child access by key. */
export class ObjectNode extends ConfigNode {
  private readonly record: Readonly<Record<string, unknown>>;

  constructor(source: string, path: string, record: Readonly<Record<string, unknown>>) {
    super(source, path, record);
    this.record = record;
  }

  /** The child node (possibly absent). */
  field(key: string): ConfigNode {
    const value = Object.hasOwn(this.record, key) ? this.record[key] : undefined;
    return new ConfigNode(this.source, this.path === '' ? key : `${this.path}.${key}`, value);
  }

  /** The child node, which must be present. */
  required(key: string): ConfigNode {
    const node = this.field(key);
    if (node.absent) node.fail('is required');
    return node;
  }

  has(key: string): boolean {
    return !this.field(key).absent;
  }
}

/** The CONFIG_INVALID error for `path` of `source`. */
export function configError(source: string, path: string, problem: string): TrustError {
  const where = path === '' ? source : `${source}: ${path}`;
  return new TrustError('CONFIG_INVALID', { source, path, problem }, `${where} ${problem}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 60))}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${value}`;
  return typeof value;
}
