/**
 * Writing Notary v1 metadata the way notary's Go client does: models → the `signed` JSON with Go's
 * field names, signatures over its canonical bytes, and the envelope as Go's json.Marshal writes it
 * (canonical `signed`, then HTML-escaped), so the real `notary` tools accept and re-verify it.
 */
import { createHash } from 'node:crypto';
import { canonicalString, goHtmlEscape, type JsonValue } from '../canonical/json.js';
import type { MetadataSigner } from '../keys/signer.js';
import type { PublicKey } from '../keys/public-key.js';
import type { JsonObject } from './fields.js';
import type {
  DelegatedRole,
  FileMeta,
  RootMetadata,
  SnapshotMetadata,
  TargetsMetadata,
  TimestampMetadata,
  TopLevelRole,
} from './models.js';

/** Go's time.Time JSON form (RFC3339Nano): UTC, fractional seconds without trailing zeros. */
export function formatExpires(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, (_, ms: string) => {
    const trimmed = ms.replace(/0+$/, '');
    return trimmed ? `.${trimmed}Z` : 'Z';
  });
}

/** Notary's default lifetimes (notary/tuf/data DefaultExpires). */
export function defaultExpiry(role: TopLevelRole | 'delegation', now: Date): Date {
  const d = new Date(now.getTime());
  switch (role) {
    case 'root':
      d.setUTCFullYear(d.getUTCFullYear() + 10);
      return d;
    case 'timestamp':
      return new Date(now.getTime() + 14 * 24 * 3600 * 1000);
    default:
      d.setUTCFullYear(d.getUTCFullYear() + 3);
      return d;
  }
}

/** Length plus sha256 and sha512 of exact bytes, as snapshot and timestamp list them. */
export function fileMetaOf(bytes: Uint8Array): FileMeta {
  return {
    length: bytes.byteLength,
    hashes: {
      sha256: createHash('sha256').update(bytes).digest(),
      sha512: createHash('sha512').update(bytes).digest(),
    },
  };
}

function fileMetaJson(meta: FileMeta): JsonObject {
  const hashes: JsonObject = {};
  for (const [alg, h] of Object.entries(meta.hashes)) hashes[alg] = h.toString('base64');
  return {
    length: meta.length,
    hashes,
    ...(meta.custom !== undefined ? { custom: meta.custom } : {}),
  };
}

function metaMapJson(meta: ReadonlyMap<string, FileMeta>): JsonObject {
  const out: JsonObject = {};
  for (const [name, m] of meta) out[name] = fileMetaJson(m);
  return out;
}

function keysJson(keys: ReadonlyMap<string, PublicKey>): JsonObject {
  const out: JsonObject = {};
  for (const [id, key] of keys) out[id] = key.toJson() as unknown as JsonValue;
  return out;
}

/** The `signed` object of a root. */
export function rootJson(root: RootMetadata): JsonObject {
  const roles: JsonObject = {};
  for (const [name, r] of Object.entries(root.roles)) {
    roles[name] = { keyids: [...r.keyIds], threshold: r.threshold };
  }
  return {
    _type: 'Root',
    consistent_snapshot: root.consistentSnapshot,
    expires: formatExpires(root.expires),
    keys: keysJson(root.keys),
    roles,
    version: root.version,
  };
}

function delegatedRoleJson(d: DelegatedRole): JsonObject {
  return { keyids: [...d.keyIds], name: d.name, paths: [...d.paths], threshold: d.threshold };
}

/** The `signed` object of targets or a delegation; `delegations` is always present, as notary writes it. */
export function targetsJson(targets: TargetsMetadata): JsonObject {
  return {
    _type: 'Targets',
    delegations: {
      keys: keysJson(targets.delegations.keys),
      roles: targets.delegations.roles.map(delegatedRoleJson),
    },
    expires: formatExpires(targets.expires),
    targets: metaMapJson(targets.targets),
    version: targets.version,
  };
}

/** The `signed` object of a snapshot. */
export function snapshotJson(snapshot: SnapshotMetadata): JsonObject {
  return {
    _type: 'Snapshot',
    expires: formatExpires(snapshot.expires),
    meta: metaMapJson(snapshot.meta),
    version: snapshot.version,
  };
}

/** The `signed` object of a timestamp. */
export function timestampJson(timestamp: TimestampMetadata): JsonObject {
  return {
    _type: 'Timestamp',
    expires: formatExpires(timestamp.expires),
    meta: metaMapJson(timestamp.meta),
    version: timestamp.version,
  };
}

/**
 * Signs `signed` with every signer and returns the file bytes. Signatures are made over the canonical
 * UTF-8 bytes; the file is the canonical envelope with Go's HTML escaping, exactly what notary
 * publishes (the signature entries carry keyid, method, sig in Go's struct order).
 */
export async function signMetadata(
  signed: JsonObject,
  signers: readonly MetadataSigner[],
): Promise<Buffer> {
  const canonical = canonicalString(signed);
  const data = Buffer.from(canonical, 'utf8');
  const signatures: string[] = [];
  for (const s of signers) {
    const sig = Buffer.from(await s.sign(data)).toString('base64');
    signatures.push(
      `{"keyid":${JSON.stringify(s.publicKey.id)},"method":${JSON.stringify(s.method)},"sig":${JSON.stringify(sig)}}`,
    );
  }
  return Buffer.from(
    goHtmlEscape(`{"signed":${canonical},"signatures":[${signatures.join(',')}]}`),
    'utf8',
  );
}
