/**
 * The parse memo of the admission webhooks: what a whole AdmissionReview body means (the pod's
 * containers and the spec to decide), kept by the body's bytes with the uid cut out, so a Pod sent
 * again under a new `request.uid` (kube-apiserver makes one per call, and a ReplicaSet scaling up
 * sends the same pod template many times over) skips `JSON.parse` of the whole defaulted Pod —
 * most of what `/mutate` cost beyond the ImagePolicyWebhook path.
 *
 * Only the parse is kept, never a decision: every review still asks the engine, whose own memo is
 * tied to the trust cache's freshness, so nothing here can outlive a collection's TTL or expiry,
 * a reconfiguration, or detection mode's warnings.
 *
 * Why a hit parses as the remembered body did, with only the uid changed. The entry was made from
 * a body A = P + M + S that `JSON.parse` accepted, where the scan below (requestUidSpan) proved M
 * to be the whole content of the string token that `JSON.parse` makes `request.uid` (the last
 * "uid" member of the last "request" member: JSON.parse keeps the last of duplicate keys), and M
 * holds only uid bytes (see UID_BYTE: no quote, no backslash, no control or non-ASCII byte, so
 * the token is M itself, unescaped). A body B hits only when it is P + M' + S byte for byte with
 * M' of uid bytes too. A tokenizer reading B is in the same state as for A at the end of P (inside
 * the opening quote of that token), reads M' as plain string content up to the same closing quote,
 * and is in the same state again at S; and UTF-8 decoding resynchronises at the ASCII quotes on
 * either side, so decoding B gives decoding A with M' for M. So B parses to A's document with
 * `request.uid` = M', and the parse result, which never looks at the uid's value beyond its
 * length, is A's. Everything else — other spacing, escapes in the uid, a body over the size
 * bound, anything malformed — is simply not memoised and takes the full parse.
 */
import { LRUCache } from 'lru-cache';

/** Bytes `start` (inclusive) to `end` (exclusive) of a body. */
export interface ByteSpan {
  readonly start: number;
  readonly end: number;
}

/** Bounds of a memo. */
export interface AdmissionMemoLimits {
  /** Entries at most. */
  readonly maxEntries: number;
  /** Bytes of kept bodies at most, all entries together. */
  readonly maxBytes: number;
  /** Larger bodies are not memoised. */
  readonly maxBodyBytes: number;
}

/** 1,024 parses of bodies up to 64 KiB, 8 MiB of body bytes in all (a defaulted Pod is ~2.5 KB). */
export const DEFAULT_ADMISSION_MEMO_LIMITS: AdmissionMemoLimits = Object.freeze({
  maxEntries: 1024,
  maxBytes: 8 * 1024 * 1024,
  maxBodyBytes: 64 * 1024,
});

/** kube-apiserver's uids are 36-character UUIDs; parseAdmissionReview accepts up to 128 characters. */
const MAX_UID_BYTES = 128;

/** Where the uid's value starts in the apiserver's compact encoding (request.uid comes first). */
const UID_MARKER = Buffer.from('"uid":"', 'latin1');

/** Bytes a memoised uid may hold: ASCII letters, digits, `-`, `.`, `_`, `:` (UUIDs and then some). */
const UID_BYTE = new Uint8Array(256);
for (const range of ['09', 'AZ', 'az']) {
  for (let b = range.charCodeAt(0); b <= range.charCodeAt(1); b++) UID_BYTE[b] = 1;
}
for (const c of '-._:') UID_BYTE[c.charCodeAt(0)] = 1;

/** A body seen: its bytes without the uid, and where the uid was. */
interface Sighting {
  /** The body with the uid's bytes cut out. */
  readonly rest: Buffer;
  /** Where the uid was: rest[0, split) came before it, rest[split, …) after. */
  readonly split: number;
}

/** One remembered body and what it meant. */
interface Entry<Plan> extends Sighting {
  readonly plan: Plan;
}

/** A memoised parse, and the uid of the body it was found for. */
export interface MemoHit<Plan> {
  readonly uid: string;
  readonly plan: Plan;
}

/** The parse memo of one handler; `scope` keeps the webhooks' plans apart. */
export class AdmissionMemo<Plan> {
  private readonly entries: LRUCache<string, Entry<Plan>>;
  /** Bodies seen once (a quarter of the bounds): only a body seen again is scanned and kept. */
  private readonly seen: LRUCache<string, Sighting>;
  private readonly maxBodyBytes: number;
  private last:
    | {
        readonly body: Buffer;
        readonly scope: string;
        readonly found: { span: ByteSpan; key: string } | undefined;
      }
    | undefined;

  constructor(limits: AdmissionMemoLimits = DEFAULT_ADMISSION_MEMO_LIMITS) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isSafeInteger(value) || (value as number) < 1) {
        throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
      }
    }
    this.maxBodyBytes = limits.maxBodyBytes;
    this.entries = new LRUCache<string, Entry<Plan>>({
      max: limits.maxEntries,
      maxSize: limits.maxBytes,
      // The key is a few dozen characters; the body bytes are what count.
      sizeCalculation: (entry) => entry.rest.length + 64,
    });
    this.seen = new LRUCache<string, Sighting>({
      max: Math.ceil(limits.maxEntries / 4),
      maxSize: Math.ceil(limits.maxBytes / 4),
      sizeCalculation: (sighting) => sighting.rest.length + 64,
    });
  }

  /** Entries held (for tests and diagnostics). */
  get size(): number {
    return this.entries.size;
  }

  /** The plan remembered for `body` with any uid in place of the remembered one, or undefined. */
  lookup(scope: string, body: Buffer): MemoHit<Plan> | undefined {
    const found = this.locate(scope, body);
    if (found === undefined) return undefined;
    const { span, key } = found;
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    // The fingerprint only finds the entry: the bytes on either side of the uid must be equal.
    if (!sameAround(body, span, entry)) return undefined;
    return { uid: body.toString('latin1', span.start, span.end), plan: entry.plan };
  }

  /**
   * Remembers what `body` — which `JSON.parse` accepted and whose `request.uid` is `uid` — means,
   * when the uid can be cut out provably (see the module comment) and the same body but for the
   * uid was seen before; returns whether it did. The first sighting only keeps a copy of the
   * bytes, so a stream of bodies that never repeat (pods that all differ) costs a fingerprint
   * and a copy each, not the scan.
   */
  remember(scope: string, body: Buffer, uid: string, plan: Plan): boolean {
    const found = this.locate(scope, body);
    if (found === undefined) return false;
    const { span, key } = found;
    if (body.toString('latin1', span.start, span.end) !== uid) return false;
    const before = this.seen.get(key);
    if (before === undefined || !sameAround(body, span, before)) {
      const rest = Buffer.allocUnsafe(body.length - (span.end - span.start));
      body.copy(rest, 0, 0, span.start);
      body.copy(rest, span.start, span.end);
      this.seen.set(key, { rest, split: span.start });
      return false;
    }
    this.seen.delete(key);
    const parsed = requestUidSpan(body);
    if (parsed === undefined || parsed.start !== span.start || parsed.end !== span.end) {
      return false;
    }
    this.entries.set(key, { rest: before.rest, split: before.split, plan });
    return true;
  }

  /**
   * The candidate uid span and fingerprint of a body, found once for the lookup and the remember
   * that follows it on a miss (the same Buffer, which nothing writes to).
   */
  private locate(scope: string, body: Buffer): { span: ByteSpan; key: string } | undefined {
    // A body too large to memoise is not held on to either.
    if (body.length > this.maxBodyBytes) return undefined;
    const last = this.last;
    if (last !== undefined && last.body === body && last.scope === scope) return last.found;
    const span = candidateUid(body, this.maxBodyBytes);
    const found = span === undefined ? undefined : { span, key: fingerprint(scope, body, span) };
    this.last = { body, scope, found };
    return found;
  }
}

/**
 * Where the uid would be in the apiserver's compact encoding: the content after the first
 * `"uid":"`, up to the next quote, when it is 1–128 uid bytes. Only a guess: remember() proves it
 * for the body it keeps, and lookup() accepts a body only byte-equal around it.
 */
function candidateUid(body: Buffer, maxBodyBytes: number): ByteSpan | undefined {
  if (body.length > maxBodyBytes) return undefined;
  const marker = body.indexOf(UID_MARKER);
  if (marker < 0) return undefined;
  const start = marker + UID_MARKER.length;
  const limit = Math.min(body.length, start + MAX_UID_BYTES + 1);
  for (let i = start; i < limit; i++) {
    const b = body[i] as number;
    if (b === 0x22) return i === start ? undefined : { start, end: i };
    if (UID_BYTE[b] !== 1) return undefined;
  }
  return undefined;
}

/** True when `body` is `seen`'s bytes around the uid at `span`, byte for byte. */
function sameAround(body: Buffer, span: ByteSpan, { rest, split }: Sighting): boolean {
  return (
    span.start === split &&
    body.length - span.end === rest.length - split &&
    body.compare(rest, 0, split, 0, split) === 0 &&
    body.compare(rest, split, rest.length, span.end, body.length) === 0
  );
}

/** A key that finds the entry of a body: the scope, the lengths, and a sample of the other bytes. */
function fingerprint(scope: string, body: Buffer, span: ByteSpan): string {
  let hash = 0x811c9dc5;
  // FNV-1a over every 8th byte on both sides: cheap, and lookup() compares every byte anyway.
  for (let i = 0; i < span.start; i += 8) hash = Math.imul(hash ^ (body[i] as number), 0x01000193);
  for (let i = span.end; i < body.length; i += 8) {
    hash = Math.imul(hash ^ (body[i] as number), 0x01000193);
  }
  return `${scope}\n${span.start}\n${body.length - span.end}\n${hash >>> 0}`;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** True for the bytes that end a JSON number or literal. */
function endsScalar(b: number): boolean {
  return (
    b === 0x2c || b === 0x7d || b === 0x5d || b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d
  );
}

/** True when the key token body[start, end) (without quotes) means `name` (ASCII). */
function keyIs(body: Buffer, start: number, end: number, name: string): boolean {
  let escaped = false;
  let same = end - start === name.length;
  for (let i = start; i < end; i++) {
    const b = body[i] as number;
    // A non-ASCII byte decodes to a non-ASCII character: never an ASCII name.
    if (b >= 0x80) return false;
    if (b === BACKSLASH) escaped = true;
    else if (same && b !== name.charCodeAt(i - start)) same = false;
  }
  if (!escaped) return same;
  try {
    return JSON.parse(`"${body.toString('latin1', start, end)}"`) === name;
  } catch {
    return false;
  }
}

/**
 * The byte span of the content of the string token that `JSON.parse` makes `request.uid`, for a
 * body it accepted: the value of the last "uid" member of the object that is the value of the
 * last "request" member of the top-level object (duplicate keys: the last one wins). Undefined
 * when that value is absent or not a string. Reads the bytes, not the decoded text: JSON's
 * structure is all ASCII, and UTF-8 (valid or not, as decoded with replacement characters) never
 * makes a non-ASCII byte into an ASCII character or the reverse. One pass, linear in the body.
 */
export function requestUidSpan(body: Buffer): ByteSpan | undefined {
  const n = body.length;
  // Per open container: is it an object, and is its next string a key.
  const isObject: boolean[] = [];
  const expectKey: boolean[] = [];
  /** The member whose value comes next: 'request' at depth 1, 'uid' directly inside it. */
  let pending: 'request' | 'uid' | 'other' | undefined;
  let inRequest = false;
  let requestUid: ByteSpan | undefined;
  let found: ByteSpan | undefined;

  // A value was read at the current depth (containers: when opened).
  const value = (span: ByteSpan | undefined): void => {
    const depth = isObject.length;
    if (depth === 1 && pending === 'request') found = undefined;
    if (depth === 2 && inRequest && pending === 'uid') requestUid = span;
    pending = undefined;
  };

  let i = 0;
  while (i < n) {
    const b = body[i] as number;
    const depth = isObject.length;
    if (b === QUOTE) {
      // The closing quote: the next one not escaped by an odd run of backslashes (memchr, not a
      // loop over every byte: most of a Pod is strings).
      let j = body.indexOf(QUOTE, i + 1);
      for (;;) {
        if (j < 0) return undefined;
        let k = j - 1;
        while (body[k] === BACKSLASH) k--;
        if ((j - 1 - k) % 2 === 0) break;
        j = body.indexOf(QUOTE, j + 1);
      }
      if (depth > 0 && isObject[depth - 1] === true && expectKey[depth - 1] === true) {
        expectKey[depth - 1] = false;
        if (depth === 1) pending = keyIs(body, i + 1, j, 'request') ? 'request' : 'other';
        else if (depth === 2 && inRequest) pending = keyIs(body, i + 1, j, 'uid') ? 'uid' : 'other';
        else pending = 'other';
      } else {
        value({ start: i + 1, end: j });
      }
      i = j + 1;
    } else if (b === 0x7b || b === 0x5b) {
      const opensRequest = depth === 1 && pending === 'request' && b === 0x7b;
      value(undefined);
      if (opensRequest) {
        inRequest = true;
        requestUid = undefined;
      }
      isObject.push(b === 0x7b);
      expectKey.push(b === 0x7b);
      i++;
    } else if (b === 0x7d || b === 0x5d) {
      isObject.pop();
      expectKey.pop();
      if (inRequest && isObject.length === 1) {
        inRequest = false;
        found = requestUid;
      }
      i++;
    } else if (b === 0x2c) {
      if (depth > 0 && isObject[depth - 1] === true) expectKey[depth - 1] = true;
      i++;
    } else if (b === 0x3a || b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) {
      i++;
    } else {
      // A number or a literal (true, false, null).
      value(undefined);
      while (i < n && !endsScalar(body[i] as number)) i++;
    }
  }
  return found;
}
