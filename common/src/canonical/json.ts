/**
 * Canonical JSON exactly as notary's Go encoder (docker/go canonical/json) writes it, because
 * signatures are made and checked over these bytes, never over the bytes on the wire.
 *
 * Rules (observed against notary 0.7.0):
 * - no insignificant whitespace;
 * - object keys sorted by the byte order of their UTF-8 encoding (= code point order), which differs
 *   from JavaScript's UTF-16 sort for astral characters versus U+E000–U+FFFF;
 * - strings escape only `"` and `\`; every other character is written raw as UTF-8. A control
 *   character would produce invalid JSON, so notary can never publish one: we refuse it;
 * - integers only (the Go encoder rejects floats).
 */
import { TrustError } from '../errors.js';

/** A JSON value as JSON.parse returns it. */
export type JsonValue =
  null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Returns the canonical UTF-8 bytes of a JSON value. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalString(value), 'utf8');
}

/** Returns the canonical text of a JSON value (encode as UTF-8 before hashing or signing). */
export function canonicalString(value: unknown): string {
  const parts: string[] = [];
  write(value, '$', parts);
  return parts.join('');
}

function write(value: unknown, path: string, out: string[]): void {
  if (value === null) {
    out.push('null');
  } else if (typeof value === 'boolean') {
    out.push(value ? 'true' : 'false');
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new TrustError(
        'NOT_CANONICALIZABLE',
        { path, problem: `number ${value} is not a safe integer` },
        `canonical JSON allows only integers, found ${value} at ${path}`,
      );
    }
    out.push(String(value));
  } else if (typeof value === 'string') {
    out.push(quote(value, path));
  } else if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item: unknown, i) => {
      if (i > 0) out.push(',');
      write(item, `${path}[${i}]`, out);
    });
    out.push(']');
  } else if (typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort(compareUtf8);
    out.push('{');
    keys.forEach((key, i) => {
      if (i > 0) out.push(',');
      out.push(quote(key, path), ':');
      write(record[key], `${path}.${key}`, out);
    });
    out.push('}');
  } else {
    throw new TrustError(
      'NOT_CANONICALIZABLE',
      { path, problem: `a ${typeof value} has no JSON form` },
      `cannot canonicalize a ${typeof value} at ${path}`,
    );
  }
}

// Control characters (U+0000–U+001F) are written raw by the Go canonical encoder, which makes the
// output unparseable; notary therefore never publishes them and neither do we.
const CONTROL = /[\u0000-\u001f]/;
const NEEDS_ESCAPE = /["\\]/g;

function quote(text: string, path: string): string {
  if (CONTROL.test(text)) {
    throw new TrustError(
      'NOT_CANONICALIZABLE',
      { path, problem: 'string contains a control character' },
      `canonical JSON cannot carry a control character (string at ${path})`,
    );
  }
  // Lone surrogates become U+FFFD when encoded as UTF-8, as Go's decoder would have made them.
  return `"${text.replace(NEEDS_ESCAPE, '\\$&')}"`;
}

const SURROGATE = /[\ud800-\udfff]/;

/**
 * Orders strings by their UTF-8 bytes. For strings without surrogates UTF-16 order is the same, so
 * the common case stays a plain comparison; otherwise compare code point by code point.
 */
export function compareUtf8(a: string, b: string): number {
  if (!SURROGATE.test(a) && !SURROGATE.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  const ca = Array.from(a, codePoint);
  const cb = Array.from(b, codePoint);
  const n = Math.min(ca.length, cb.length);
  for (let i = 0; i < n; i++) {
    const d = (ca[i] ?? 0) - (cb[i] ?? 0);
    if (d !== 0) return d;
  }
  return ca.length - cb.length;
}

function codePoint(ch: string): number {
  // Lone surrogates encode as U+FFFD, so they sort as it.
  const cp = ch.codePointAt(0) ?? 0;
  return cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp;
}

/**
 * The HTML escaping Go's ordinary encoder applies when it writes metadata to the wire
 * (json.Marshal of the signed envelope). Only `<`, `>`, `&`, U+2028 and U+2029 change.
 */
export function goHtmlEscape(json: string): string {
  return json.replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Parses JSON bytes, reporting failure as METADATA_MALFORMED for the named role. */
export function parseJson(bytes: Uint8Array, role: string): JsonValue {
  try {
    return JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'),
    ) as JsonValue;
  } catch (err) {
    throw new TrustError(
      'METADATA_MALFORMED',
      { role, field: '$', problem: 'not JSON' },
      `${role} metadata is not valid JSON`,
      { cause: err },
    );
  }
}
