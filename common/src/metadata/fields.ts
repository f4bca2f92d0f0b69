/**
 * Strict field readers for metadata parsing: every failure names the role and the JSON path of the
 * field, so a hostile or broken document is reported precisely instead of surfacing as a TypeError.
 */
import { TrustError } from '../errors.js';
import type { JsonValue } from '../canonical/json.js';

/** A JSON object as a record. */
export type JsonObject = { [key: string]: JsonValue };

/** Reports a malformed field of a role. */
export function malformed(
  role: string,
  field: string,
  problem: string,
): TrustError<'METADATA_MALFORMED'> {
  return new TrustError(
    'METADATA_MALFORMED',
    { role, field, problem },
    `${role} metadata is malformed: ${field} ${problem}`,
  );
}

/** Reads JSON values with the role and path context needed for precise errors. */
export class FieldReader {
  constructor(
    readonly role: string,
    readonly path: string,
    readonly value: JsonValue | undefined,
  ) {}

  /** Descends into a field of an object. */
  field(name: string): FieldReader {
    const obj = this.object();
    return new FieldReader(this.role, `${this.path}.${name}`, obj[name]);
  }

  /** Whether the field exists (is not undefined). */
  present(): boolean {
    return this.value !== undefined;
  }

  object(): JsonObject {
    const v = this.value;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      throw malformed(this.role, this.path, v === undefined ? 'is missing' : 'must be an object');
    }
    return v;
  }

  array(): FieldReader[] {
    const v = this.value;
    if (!Array.isArray(v)) {
      throw malformed(this.role, this.path, v === undefined ? 'is missing' : 'must be an array');
    }
    return v.map((item, i) => new FieldReader(this.role, `${this.path}[${i}]`, item));
  }

  /** Entries of an object, each as a reader. */
  entries(): [string, FieldReader][] {
    const obj = this.object();
    return Object.keys(obj).map((k) => [
      k,
      new FieldReader(this.role, `${this.path}.${k}`, obj[k]),
    ]);
  }

  string(): string {
    if (typeof this.value !== 'string') {
      throw malformed(
        this.role,
        this.path,
        this.value === undefined ? 'is missing' : 'must be a string',
      );
    }
    return this.value;
  }

  boolean(): boolean {
    if (typeof this.value !== 'boolean') {
      throw malformed(
        this.role,
        this.path,
        this.value === undefined ? 'is missing' : 'must be a boolean',
      );
    }
    return this.value;
  }

  /** A non-negative safe integer, optionally at least `min`. */
  integer(min = 0): number {
    const v = this.value;
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
      throw malformed(this.role, this.path, v === undefined ? 'is missing' : 'must be an integer');
    }
    if (v < min) throw malformed(this.role, this.path, `must be at least ${min}`);
    return v;
  }

  /** Standard base64 (Go's encoding/base64.StdEncoding, padded). */
  base64(): Buffer {
    const text = this.string();
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
      throw malformed(this.role, this.path, 'must be standard padded base64');
    }
    return Buffer.from(text, 'base64');
  }

  /** An RFC 3339 timestamp as Go's time.Time marshals it (0–9 fractional digits, Z or an offset). */
  time(): Date {
    const text = this.string();
    const m =
      /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.exec(text);
    const ms = m
      ? Date.parse(
          text.replace(/\.(\d{1,9})/, (_, f: string) => `.${f.slice(0, 3).padEnd(3, '0')}`),
        )
      : NaN;
    if (Number.isNaN(ms)) throw malformed(this.role, this.path, 'must be an RFC 3339 time');
    return new Date(ms);
  }
}
