/**
 * The small subset of ASN.1 DER that notary's key files and root certificates use. Written by hand
 * so the bytes match Go's encoding/asn1 exactly (PrintableString vs UTF8String, UTCTime until 2049,
 * minimal positive INTEGERs) and so reading stays strict: definite, minimal lengths only.
 */

/** Identifier octets this project reads or writes. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** One decoded TLV: `tag` is the whole identifier octet (0x30, 0xa0 for [0] constructed, …). */
export interface DerElement {
  readonly tag: number;
  readonly content: Buffer;
  /** The complete encoding of this element (tag, length and content). */
  readonly encoded: Buffer;
}

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Encodes one element from its identifier octet and content. */
export function tlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

/** SEQUENCE of already-encoded elements. */
export function sequence(...items: Buffer[]): Buffer {
  return tlv(Tag.SEQUENCE, Buffer.concat(items));
}

/** SET of already-encoded elements (callers pass one element, so no DER sorting is needed). */
export function set(...items: Buffer[]): Buffer {
  return tlv(Tag.SET, Buffer.concat(items));
}

/** Context-specific constructed [n] EXPLICIT wrapper. */
export function explicit(tagNumber: number, inner: Buffer): Buffer {
  return tlv(0xa0 | tagNumber, inner);
}

/** A non-negative INTEGER from a small number or from unsigned big-endian bytes, minimally encoded. */
export function integer(value: number | Uint8Array): Buffer {
  let bytes: Buffer;
  if (typeof value === 'number') {
    const digits: number[] = [];
    for (let n = value; n > 0; n = Math.floor(n / 256)) digits.unshift(n % 256);
    bytes = Buffer.from(digits);
  } else {
    bytes = Buffer.from(value);
  }
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  if (bytes.length === 0 || (bytes[0] ?? 0) >= 0x80)
    bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(Tag.INTEGER, bytes);
}

/** OBJECT IDENTIFIER from dotted decimal. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => Number.parseInt(a, 10));
  const [first = 0, second = 0, ...rest] = arcs;
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const chunk: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128))
      chunk.unshift(0x80 | (n & 0x7f));
    out.push(...chunk);
  }
  return tlv(Tag.OID, Buffer.from(out));
}

/** OCTET STRING. */
export function octetString(bytes: Uint8Array): Buffer {
  return tlv(Tag.OCTET_STRING, bytes);
}

/** BIT STRING with the given number of unused trailing bits in the last byte. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  return tlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** BOOLEAN (DER: 0xff for true). */
export function boolean(value: boolean): Buffer {
  return tlv(Tag.BOOLEAN, Buffer.from([value ? 0xff : 0x00]));
}

// Go's encoding/asn1 chooses PrintableString when every character is in this set (no `*`, no `&`),
// otherwise UTF8String; a root certificate's CN must come out the same way.
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** A directory string the way Go marshals an untagged Go string. */
export function directoryString(text: string): Buffer {
  return tlv(
    PRINTABLE.test(text) ? Tag.PRINTABLE_STRING : Tag.UTF8_STRING,
    Buffer.from(text, 'utf8'),
  );
}

/** UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5, as Go does); whole seconds. */
export function time(date: Date): Buffer {
  const year = date.getUTCFullYear();
  const two = (n: number): string => String(n).padStart(2, '0');
  const rest =
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  if (year >= 1950 && year < 2050) {
    return tlv(Tag.UTC_TIME, Buffer.from(two(year % 100) + rest, 'latin1'));
  }
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(String(year).padStart(4, '0') + rest, 'latin1'));
}

/** Thrown by the readers; callers turn it into the TrustError that fits their context. */
export class DerError extends Error {
  override readonly name = 'DerError';
}

/** Reads exactly one element from `bytes`; trailing bytes are an error. */
export function readElement(bytes: Buffer): DerElement {
  const { element, next } = readAt(bytes, 0);
  if (next !== bytes.length) throw new DerError('trailing bytes after the DER element');
  return element;
}

function readAt(bytes: Buffer, offset: number): { element: DerElement; next: number } {
  const tag = bytes[offset];
  const first = bytes[offset + 1];
  if (tag === undefined || first === undefined) throw new DerError('truncated DER element');
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let length = first;
  let header = 2;
  if (first & 0x80) {
    const count = first & 0x7f;
    if (count === 0) throw new DerError('indefinite length is not DER');
    if (count > 4) throw new DerError('DER length too large');
    length = 0;
    for (let i = 0; i < count; i++) {
      const b = bytes[offset + 2 + i];
      if (b === undefined) throw new DerError('truncated DER length');
      if (i === 0 && b === 0) throw new DerError('non-minimal DER length');
      length = length * 256 + b;
    }
    if (length < 0x80) throw new DerError('non-minimal DER length');
    header += count;
  }
  const end = offset + header + length;
  if (end > bytes.length) throw new DerError('DER element runs past the end of its input');
  return {
    element: {
      tag,
      content: bytes.subarray(offset + header, end),
      encoded: bytes.subarray(offset, end),
    },
    next: end,
  };
}

/** The elements inside a constructed element (SEQUENCE, SET, [n]). */
export function children(element: DerElement): DerElement[] {
  if ((element.tag & 0x20) === 0) throw new DerError('primitive element has no children');
  const out: DerElement[] = [];
  let offset = 0;
  while (offset < element.content.length) {
    const { element: child, next } = readAt(element.content, offset);
    out.push(child);
    offset = next;
  }
  return out;
}

/** Checks the identifier octet, for readable errors when a structure is not what it should be. */
export function expectTag(element: DerElement | undefined, tag: number, what: string): DerElement {
  if (!element || element.tag !== tag)
    throw new DerError(`${what} is missing or has the wrong type`);
  return element;
}

/** Dotted decimal form of an OBJECT IDENTIFIER. */
export function readOid(element: DerElement): string {
  expectTag(element, Tag.OID, 'object identifier');
  const arcs: number[] = [];
  let value = 0;
  for (const byte of element.content) {
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw new DerError('object identifier arc too large');
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    }
  }
  const [head, ...rest] = arcs;
  if (head === undefined || (element.content.at(-1) ?? 0) & 0x80) {
    throw new DerError('malformed object identifier');
  }
  const first = head < 80 ? Math.floor(head / 40) : 2;
  return [first, head - first * 40, ...rest].join('.');
}

/** A non-negative INTEGER small enough for a JavaScript number (iteration counts, versions). */
export function readSmallInteger(element: DerElement): number {
  expectTag(element, Tag.INTEGER, 'integer');
  const bytes = element.content;
  if (bytes.length === 0 || (bytes[0] ?? 0) & 0x80)
    throw new DerError('integer is empty or negative');
  if (bytes.length > 6) throw new DerError('integer too large');
  return bytes.reduce((n, b) => n * 256 + b, 0);
}

/** The text of a directory string (PrintableString, UTF8String, IA5String, T61String, BMPString). */
export function readString(element: DerElement): string {
  switch (element.tag) {
    case Tag.UTF8_STRING:
    case Tag.PRINTABLE_STRING:
    case Tag.IA5_STRING:
      return element.content.toString('utf8');
    case Tag.T61_STRING:
      return element.content.toString('latin1');
    case Tag.BMP_STRING: {
      const swapped = Buffer.from(element.content);
      if (swapped.length % 2 !== 0) throw new DerError('odd-length BMPString');
      return swapped.swap16().toString('utf16le');
    }
    default:
      throw new DerError('not a directory string');
  }
}

/** A UTCTime or GeneralizedTime as a Date (whole seconds, `Z` only, as RFC 5280 requires). */
export function readTime(element: DerElement): Date {
  const text = element.content.toString('latin1');
  let match: RegExpExecArray | null;
  let year: number;
  if (element.tag === Tag.UTC_TIME && (match = /^(\d\d)(\d{10})Z$/.exec(text))) {
    const yy = Number(match[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (element.tag === Tag.GENERALIZED_TIME && (match = /^(\d{4})(\d{10})Z$/.exec(text))) {
    year = Number(match[1]);
  } else {
    throw new DerError('malformed certificate time');
  }
  const d = match[2] ?? '';
  const part = (i: number): number => Number(d.slice(i, i + 2));
  const date = new Date(0);
  date.setUTCFullYear(year, part(0) - 1, part(2));
  date.setUTCHours(part(4), part(6), part(8), 0);
  // Date silently rolls 31 February over into March; a certificate time must name a real instant.
  const actual = [
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
  ];
  if (actual.some((v, i) => v !== part(i * 2)) || date.getUTCSeconds() !== part(8)) {
    throw new DerError('certificate time is not a valid date');
  }
  return date;
}
