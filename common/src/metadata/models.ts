/**
 * Notary v1 metadata models and their strict parsers. The shapes follow notary's Go types
 * (tuf/data): capitalised `_type`, no `spec_version`, snapshot/timestamp meta without versions,
 * delegated roles with `name`, `keyids`, `threshold`, `paths`.
 */
import type { JsonValue } from '../canonical/json.js';
import { TrustError } from '../errors.js';
import { MAX_CERTIFICATES_PER_KEY, PublicKey } from '../keys/public-key.js';
import type { WorkMeter } from '../work.js';
import { FieldReader, malformed } from './fields.js';

/**
 * Most keys a root.json may list. Notary's roots list one to a few keys per role; the keys arrive
 * before anything vouches for them, and each costs a key or certificate import.
 */
export const MAX_ROOT_KEYS = 64;
/** Most keys one targets role may delegate to (its `delegations.keys`). */
export const MAX_DELEGATION_KEYS = 1024;

/** The four top-level roles of a Notary v1 repository. */
export type TopLevelRole = 'root' | 'targets' | 'snapshot' | 'timestamp';

/** Notary's `_type` value for each top-level role. */
export const ROLE_TYPE: Readonly<Record<TopLevelRole, string>> = {
  root: 'Root',
  targets: 'Targets',
  snapshot: 'Snapshot',
  timestamp: 'Timestamp',
};

/** The keys allowed to sign a role and how many of them must. */
export interface RoleKeys {
  readonly keyIds: readonly string[];
  readonly threshold: number;
}

/** A file a parent role vouches for: its exact length and hashes (raw bytes, not base64). */
export interface FileMeta {
  readonly length: number;
  readonly hashes: Readonly<Record<string, Buffer>>;
  /** Opaque `custom` data, kept so re-signed metadata does not lose it. */
  readonly custom?: JsonValue;
}

/** Fields every signed role carries. */
export interface CommonMetadata {
  readonly version: number;
  readonly expires: Date;
}

/** root.json: the keys of every top-level role. */
export interface RootMetadata extends CommonMetadata {
  readonly type: 'Root';
  readonly consistentSnapshot: boolean;
  readonly keys: ReadonlyMap<string, PublicKey>;
  readonly roles: Readonly<Record<TopLevelRole, RoleKeys>>;
}

/** A role delegated from a targets role. */
export interface DelegatedRole extends RoleKeys {
  readonly name: string;
  /** Target-name prefixes this role may sign; `""` allows every name. */
  readonly paths: readonly string[];
}

/** targets.json or a delegation such as targets/releases. */
export interface TargetsMetadata extends CommonMetadata {
  readonly type: 'Targets';
  readonly targets: ReadonlyMap<string, FileMeta>;
  readonly delegations: {
    readonly keys: ReadonlyMap<string, PublicKey>;
    readonly roles: readonly DelegatedRole[];
  };
}

/** snapshot.json: lengths and hashes of root, targets and every delegation file. */
export interface SnapshotMetadata extends CommonMetadata {
  readonly type: 'Snapshot';
  readonly meta: ReadonlyMap<string, FileMeta>;
}

/** timestamp.json: length and hashes of the current snapshot. */
export interface TimestampMetadata extends CommonMetadata {
  readonly type: 'Timestamp';
  readonly meta: ReadonlyMap<string, FileMeta>;
}

function readCommon(r: FieldReader, expectedType: string): CommonMetadata {
  const type = r.field('_type').string();
  if (type !== expectedType) {
    throw malformed(r.role, `${r.path}._type`, `is "${type}", expected "${expectedType}"`);
  }
  return { version: r.field('version').integer(1), expires: r.field('expires').time() };
}

/** Throws LIMIT_EXCEEDED when the `keys` object at `r` lists more than `limit` keys; nothing is parsed. */
function checkKeyCount(r: FieldReader, limit: number): void {
  const actual = Object.keys(r.object()).length;
  if (actual > limit) {
    throw new TrustError(
      'LIMIT_EXCEEDED',
      { role: r.role, what: 'keys', limit, actual },
      `${r.role} lists ${actual} keys in ${r.path}, more than the ${limit} accepted`,
    );
  }
}

function readKeys(
  r: FieldReader,
  limit: number,
  work?: WorkMeter,
  only?: ReadonlySet<string>,
): Map<string, PublicKey> {
  checkKeyCount(r, limit);
  const keys = new Map<string, PublicKey>();
  for (const [id, keyReader] of r.entries()) {
    if (only && !only.has(id)) continue;
    if (work) work.keysParsed++;
    const key = PublicKey.fromJson(keyReader.value, { role: r.role, field: keyReader.path });
    // A key listed under an id it does not hash to could smuggle a second copy of one key into a
    // threshold; notary rejects such metadata, and so do we.
    if (key.id !== id) {
      throw malformed(
        r.role,
        keyReader.path,
        `is listed under id ${id} but its content hashes to ${key.id}`,
      );
    }
    keys.set(id, key);
  }
  return keys;
}

function readRoleKeys(r: FieldReader): RoleKeys {
  const keyIds = r
    .field('keyids')
    .array()
    .map((k) => k.string());
  if (new Set(keyIds).size !== keyIds.length)
    throw malformed(r.role, `${r.path}.keyids`, 'lists a key twice');
  return { keyIds, threshold: r.field('threshold').integer(1) };
}

/** Parses one FileMeta: length and hashes are required, custom is optional. */
export function readFileMeta(r: FieldReader): FileMeta {
  const hashes: Record<string, Buffer> = {};
  for (const [alg, h] of r.field('hashes').entries()) hashes[alg] = h.base64();
  const custom = r.field('custom');
  return {
    length: r.field('length').integer(0),
    hashes,
    ...(custom.present() && custom.value !== null ? { custom: custom.value as JsonValue } : {}),
  };
}

function readMeta(r: FieldReader): Map<string, FileMeta> {
  const meta = new Map<string, FileMeta>();
  for (const [name, m] of r.entries()) meta.set(name, readFileMeta(m));
  return meta;
}

/** The version of a root.json's `signed` value (checking `_type`), without parsing any key. */
export function rootVersionOf(signed: JsonValue, role = 'root'): number {
  return readCommon(new FieldReader(role, 'signed', signed), 'Root').version;
}

/** The root role of a root.json and only its keys: what a trust anchor is checked against. */
export interface RootRoleKeys extends CommonMetadata {
  readonly root: RoleKeys;
  /** The root-role keys parsed (all, or those selected), each checked against its id; no other key. */
  readonly keys: ReadonlyMap<string, PublicKey>;
}

/**
 * Reads the version and the root role's keys of root.json without parsing any other key, so a root
 * that no pinned key anchors is refused before the rest of its (attacker-sized) key list is
 * imported; `select` narrows further which root-role keys are parsed (the rest are only checked to
 * be listed). parseRoot still checks the whole file before the root is trusted.
 */
export function parseRootRoleKeys(
  signed: JsonValue,
  role = 'root',
  work?: WorkMeter,
  select?: (keyId: string) => boolean,
): RootRoleKeys {
  const r = new FieldReader(role, 'signed', signed);
  const common = readCommon(r, 'Root');
  const root = readRoleKeys(r.field('roles').field('root'));
  const keysReader = r.field('keys');
  checkKeyCount(keysReader, MAX_ROOT_KEYS);
  const listed = keysReader.object();
  for (const id of root.keyIds) {
    if (!Object.hasOwn(listed, id)) {
      throw malformed(
        role,
        'signed.roles.root.keyids',
        `names key ${id} that is not in signed.keys`,
      );
    }
  }
  const wanted = new Set(select ? root.keyIds.filter(select) : root.keyIds);
  const keys = readKeys(keysReader, MAX_ROOT_KEYS, work, wanted);
  return { ...common, root, keys };
}

/** Parses the `signed` portion of root.json. */
export function parseRoot(signed: JsonValue, role = 'root', work?: WorkMeter): RootMetadata {
  const r = new FieldReader(role, 'signed', signed);
  const common = readCommon(r, 'Root');
  const keys = readKeys(r.field('keys'), MAX_ROOT_KEYS, work);
  const rolesReader = r.field('roles');
  const roles = {} as Record<TopLevelRole, RoleKeys>;
  for (const name of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
    const rk = readRoleKeys(rolesReader.field(name));
    for (const id of rk.keyIds) {
      if (!keys.has(id))
        throw malformed(
          role,
          `signed.roles.${name}.keyids`,
          `names key ${id} that is not in signed.keys`,
        );
    }
    roles[name] = rk;
  }
  const cs = r.field('consistent_snapshot');
  return {
    type: 'Root',
    ...common,
    consistentSnapshot: cs.present() ? cs.boolean() : false,
    keys,
    roles,
  };
}

/** How parseTargets treats the keys a role delegates to. */
export interface TargetsParseOptions {
  /** Counts each delegation key parsed. */
  readonly work?: WorkMeter;
  /**
   * false: check the shape of `delegations` (key count, roles naming listed keys) but import no
   * key; `delegations.keys` comes back empty. For a role whose signatures failed, whose keys are
   * never used (each import costs up to MAX_CERTIFICATES_PER_KEY certificate parses).
   */
  readonly importKeys?: boolean;
}

/**
 * The keys a targets role lists in `delegations.keys`, by id and unparsed (at most
 * MAX_DELEGATION_KEYS, else LIMIT_EXCEEDED): what a caller counts before paying for the imports.
 */
export function listedDelegationKeys(
  signed: JsonValue,
  role = 'targets',
): ReadonlyMap<string, unknown> {
  const d = new FieldReader(role, 'signed', signed).field('delegations');
  if (!d.present()) return new Map();
  const keysReader = d.field('keys');
  checkKeyCount(keysReader, MAX_DELEGATION_KEYS);
  return new Map(Object.entries(keysReader.object()));
}

/**
 * How many certificates importing this key JSON would parse — the PEM blocks an x509 key's
 * `keyval.public` holds, counted without parsing, at most one above MAX_CERTIFICATES_PER_KEY (a
 * larger bundle is refused before any is parsed) — else 0. Certificates, not keys, are what
 * imports cost: measured alone, about 0.14 ms for a bare ecdsa key, 0.5 ms for one certificate,
 * 2.6 ms for ten.
 */
export function certificatesIn(key: unknown): number {
  if (typeof key !== 'object' || key === null) return 0;
  const { keytype, keyval } = key as { keytype?: unknown; keyval?: unknown };
  if (typeof keytype !== 'string' || !keytype.endsWith('-x509')) return 0;
  if (typeof keyval !== 'object' || keyval === null) return 0;
  const encoded = (keyval as { public?: unknown }).public;
  if (typeof encoded !== 'string') return 0;
  const text = Buffer.from(encoded, 'base64').toString('latin1');
  let count = 0;
  for (
    let at = text.indexOf('-----BEGIN ');
    at !== -1 && count <= MAX_CERTIFICATES_PER_KEY;
    at = text.indexOf('-----BEGIN ', at + 1)
  ) {
    count++;
  }
  return count;
}

/** Parses the `signed` portion of targets.json or a delegation (`role` names which, for errors). */
export function parseTargets(
  signed: JsonValue,
  role = 'targets',
  options: TargetsParseOptions = {},
): TargetsMetadata {
  const r = new FieldReader(role, 'signed', signed);
  const common = readCommon(r, 'Targets');
  const targets = readMeta(r.field('targets'));
  const d = r.field('delegations');
  let keys = new Map<string, PublicKey>();
  let listed: { has(id: string): boolean } = keys;
  if (d.present()) {
    if (options.importKeys === false) {
      listed = listedDelegationKeys(signed, role);
    } else {
      keys = readKeys(d.field('keys'), MAX_DELEGATION_KEYS, options.work);
      listed = new Set(keys.keys());
    }
  }
  const roles: DelegatedRole[] = [];
  if (d.present()) {
    for (const entry of d.field('roles').array()) {
      const name = entry.field('name').string();
      if (!name.startsWith(`${role}/`) || name.length <= role.length + 1) {
        throw malformed(role, `${entry.path}.name`, `"${name}" is not a direct child of ${role}`);
      }
      const rk = readRoleKeys(entry);
      for (const id of rk.keyIds) {
        if (!listed.has(id))
          throw malformed(
            role,
            `${entry.path}.keyids`,
            `names key ${id} that is not in delegations.keys`,
          );
      }
      const pathsReader = entry.field('paths');
      const paths = pathsReader.present() ? pathsReader.array().map((p) => p.string()) : [];
      roles.push({ name, ...rk, paths });
    }
  }
  return { type: 'Targets', ...common, targets, delegations: { keys, roles } };
}

/** Parses the `signed` portion of snapshot.json. */
export function parseSnapshot(signed: JsonValue): SnapshotMetadata {
  const r = new FieldReader('snapshot', 'signed', signed);
  return { type: 'Snapshot', ...readCommon(r, 'Snapshot'), meta: readMeta(r.field('meta')) };
}

/** Parses the `signed` portion of timestamp.json. */
export function parseTimestamp(signed: JsonValue): TimestampMetadata {
  const r = new FieldReader('timestamp', 'signed', signed);
  return { type: 'Timestamp', ...readCommon(r, 'Timestamp'), meta: readMeta(r.field('meta')) };
}
