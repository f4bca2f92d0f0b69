/**
 * Building new versions of a Notary v1 repository's roles: a fresh repository (root v1, targets and
 * snapshot v2 as the Go client's first publish makes them), target changes on a verified collection,
 * and a matching snapshot and timestamp. Pure: models in, signed file bytes out; the signer and the
 * test fixtures drive it.
 */
import type { MetadataSigner } from '../keys/signer.js';
import type { PublicKey } from '../keys/public-key.js';
import type {
  DelegatedRole,
  FileMeta,
  RootMetadata,
  SnapshotMetadata,
  TargetsMetadata,
  TimestampMetadata,
  TopLevelRole,
} from '../metadata/models.js';
import {
  defaultExpiry,
  fileMetaOf,
  rootJson,
  signMetadata,
  snapshotJson,
  targetsJson,
  timestampJson,
} from '../metadata/write.js';

/** The public keys of the four top-level roles of a new repository. */
export interface RootKeys {
  readonly root: readonly PublicKey[];
  readonly targets: readonly PublicKey[];
  readonly snapshot: readonly PublicKey[];
  readonly timestamp: readonly PublicKey[];
}

/** A root model for the given keys, threshold 1 for every role, as `notary init` makes it. */
export function newRoot(keys: RootKeys, now: Date, version = 1): RootMetadata {
  const all = new Map<string, PublicKey>();
  const roles = {} as Record<TopLevelRole, { keyIds: string[]; threshold: number }>;
  for (const role of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
    for (const k of keys[role]) all.set(k.id, k);
    roles[role] = { keyIds: keys[role].map((k) => k.id), threshold: 1 };
  }
  return {
    type: 'Root',
    version,
    expires: defaultExpiry('root', now),
    consistentSnapshot: false,
    keys: all,
    roles,
  };
}

/** An empty targets role; the Go client's first publish writes targets at version 2. */
export function newTargets(now: Date, version = 2): TargetsMetadata {
  return {
    type: 'Targets',
    version,
    expires: defaultExpiry('targets', now),
    targets: new Map(),
    delegations: { keys: new Map(), roles: [] },
  };
}

/** A target entry as Docker Content Trust writes it: the manifest's sha256 and length. */
export function imageTarget(sha256Hex: string, length: number): FileMeta {
  return { length, hashes: { sha256: Buffer.from(sha256Hex, 'hex') } };
}

/** Target changes for one role: entries to add or replace, names to remove. */
export interface TargetChanges {
  readonly set?: ReadonlyMap<string, FileMeta>;
  readonly remove?: readonly string[];
}

/** Whether applying `changes` would alter the role at all (re-signing the same digest is a no-op). */
export function changesAnything(current: TargetsMetadata, changes: TargetChanges): boolean {
  for (const [name, meta] of changes.set ?? []) {
    const existing = current.targets.get(name);
    if (!existing || !sameFileMeta(existing, meta)) return true;
  }
  return (changes.remove ?? []).some((name) => current.targets.has(name));
}

function sameFileMeta(a: FileMeta, b: FileMeta): boolean {
  if (a.length !== b.length) return false;
  const algs = new Set([...Object.keys(a.hashes), ...Object.keys(b.hashes)]);
  return [...algs].every((alg) => {
    const x = a.hashes[alg];
    const y = b.hashes[alg];
    return x !== undefined && y !== undefined && x.equals(y);
  });
}

/** The next version of a targets role with `changes` applied, its expiry renewed. */
export function nextTargets(
  current: TargetsMetadata,
  changes: TargetChanges,
  now: Date,
): TargetsMetadata {
  const targets = new Map(current.targets);
  for (const name of changes.remove ?? []) targets.delete(name);
  for (const [name, meta] of changes.set ?? []) targets.set(name, meta);
  return {
    ...current,
    version: current.version + 1,
    expires: defaultExpiry('targets', now),
    targets,
  };
}

/** Adds (or replaces) a delegated role and its keys on a targets role. */
export function withDelegation(
  parent: TargetsMetadata,
  role: { name: string; keys: readonly PublicKey[]; threshold?: number; paths?: readonly string[] },
): TargetsMetadata {
  const keys = new Map(parent.delegations.keys);
  for (const k of role.keys) keys.set(k.id, k);
  const delegated: DelegatedRole = {
    name: role.name,
    keyIds: role.keys.map((k) => k.id),
    threshold: role.threshold ?? 1,
    paths: role.paths ?? [''],
  };
  const roles = parent.delegations.roles.filter((d) => d.name !== role.name).concat(delegated);
  return { ...parent, delegations: { keys, roles } };
}

/** A snapshot listing the given files (role name → exact bytes), one version past `previous`. */
export function nextSnapshot(
  previous: SnapshotMetadata | undefined,
  files: ReadonlyMap<string, Uint8Array>,
  now: Date,
): SnapshotMetadata {
  const meta = new Map(previous?.meta ?? []);
  for (const [role, bytes] of files) meta.set(role, fileMetaOf(bytes));
  return {
    type: 'Snapshot',
    version: (previous?.version ?? 1) + 1,
    expires: defaultExpiry('snapshot', now),
    meta,
  };
}

/** A timestamp for the given snapshot bytes, one version past `previous`. */
export function nextTimestamp(
  previous: TimestampMetadata | undefined,
  snapshotBytes: Uint8Array,
  now: Date,
): TimestampMetadata {
  return {
    type: 'Timestamp',
    version: (previous?.version ?? 0) + 1,
    expires: defaultExpiry('timestamp', now),
    meta: new Map([['snapshot', fileMetaOf(snapshotBytes)]]),
  };
}

/** Signs a role model into file bytes. */
export function signRole(
  model: RootMetadata | TargetsMetadata | SnapshotMetadata | TimestampMetadata,
  signers: readonly MetadataSigner[],
): Promise<Buffer> {
  switch (model.type) {
    case 'Root':
      return signMetadata(rootJson(model), signers);
    case 'Targets':
      return signMetadata(targetsJson(model), signers);
    case 'Snapshot':
      return signMetadata(snapshotJson(model), signers);
    case 'Timestamp':
      return signMetadata(timestampJson(model), signers);
  }
}
