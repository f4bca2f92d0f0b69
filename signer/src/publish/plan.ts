/**
 * Planning one publish: from the verified state of a repository (or none, for a new GUN), the keys
 * we hold and the tags of a build, the exact signed files to POST. Pure apart from signing: no I/O,
 * the clock is injected. The rules follow what notary's Go client and `docker trust` produce, so the
 * real `notary` CLI keeps working on repositories we write, and we keep working on theirs.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  PublicKey,
  TrustError,
  checkRootCertificate,
  isTrustError,
  createRootCertificate,
  defaultExpiry,
  localSigner,
  newRoot,
  newTargets,
  nextSnapshot,
  nextTargets,
  childPathRestrictions,
  parentOf,
  signRole,
  changesAnything,
  type FileMeta,
  type MetadataSigner,
  type PublishFile,
  type RootMetadata,
  type TargetsMetadata,
  type TrustedCollection,
} from '@kpack-trust/common';

/** The private keys a publish may sign with (a key store's RepositoryKeys, plus a client-held snapshot key). */
export interface SigningKeys {
  readonly root?: { readonly privateKey: KeyObject; readonly certificatePem?: string };
  readonly targets?: KeyObject;
  /** Only for repositories whose snapshot key is client-held (`notary init` without `-r`). */
  readonly snapshot?: KeyObject;
  readonly delegations: ReadonlyMap<string, KeyObject>;
}

/** The tags of one build, as target entries for one role of one GUN. */
export interface TargetsChange {
  readonly gun: string;
  /** `targets`, or a delegation such as `targets/releases`. */
  readonly role: string;
  /** Tag → `{length, hashes.sha256}` of the manifest. */
  readonly targets: ReadonlyMap<string, FileMeta>;
}

/** What to publish, and what the repository will look like afterwards. */
export interface PublishPlan {
  /** The signed documents for one POST; empty when the repository already says all of it. */
  readonly files: readonly PublishFile[];
  /** The root in force after the publish. */
  readonly root: RootMetadata;
  /** The root key id to pin, as root.json lists it (the certificate key's id). */
  readonly rootKeyId: string;
  /** The same key's canonical (bare public key) id, which survives certificate renewal. */
  readonly rootCanonicalKeyId: string;
  /** Versions after the publish of root, the signed role, any role it renews, and the snapshot when we sign it. */
  readonly versions: Readonly<Record<string, number>>;
  /** Whether root gets a new version (near expiry, or its certificate is). */
  readonly rootResigned: boolean;
  /** Roles found expired that this publish brings back into force, in load order. */
  readonly renewals: readonly Renewal[];
}

/** An expired role a publish renews: re-signed by us, or by the notary server after our POST. */
export interface Renewal {
  readonly role: string;
  /** The expiry it had passed. */
  readonly expired: Date;
  /** Its new expiry when we sign it; absent when the notary server re-signs it (timestamp, a server-held snapshot). */
  readonly expires?: Date;
}

/** Notary's client re-signs root when it expires within six months (client.go nearExpiry). */
const RESIGN_MONTHS = 6;

/** Now plus six calendar months, as Go's `AddDate(0, 6, 0)`. */
export function resignHorizon(now: Date): Date {
  const d = new Date(now.getTime());
  d.setUTCMonth(d.getUTCMonth() + RESIGN_MONTHS);
  return d;
}

/** Inputs for creating a repository. */
export interface NewRepositoryInput extends TargetsChange {
  readonly keys: SigningKeys;
  /** Keys the server made for this GUN: one `GET timestamp.key`, and `GET snapshot.key` unless we hold a snapshot key. */
  readonly serverKeys: { readonly timestamp: PublicKey; readonly snapshot?: PublicKey };
  readonly now: Date;
}

/** The keys that can create a new GUN: the root and targets keys. */
export type CreatingKeys = SigningKeys & {
  readonly root: NonNullable<SigningKeys['root']>;
  readonly targets: KeyObject;
};

/**
 * Refuses to create a GUN for signing into a delegation: a new repository has none. Decided from
 * the role alone, so a caller can refuse before a key store generates keys for the repository.
 */
export function checkCreatingRole(gun: string, role: string): void {
  if (role !== 'targets') {
    throw unusable(
      gun,
      role,
      '',
      `the repository does not exist yet, so it has no delegation ${role} to sign into`,
    );
  }
}

/**
 * The keys to create a new GUN with, or the refusal — decided from the role and the keys alone, so
 * a caller can refuse before `GET <role>.key`, which on a GUN without a root makes notary-signer
 * generate a key that no root will ever list.
 */
export function creatingKeys(
  gun: string,
  role: string,
  keys: SigningKeys,
  store = 'the key store',
): CreatingKeys {
  checkCreatingRole(gun, role);
  const { root, targets } = keys;
  if (root === undefined) {
    throw unusable(
      gun,
      'root',
      '',
      'the repository does not exist yet and no root key is available to create it',
    );
  }
  if (targets === undefined) {
    throw unusable(
      gun,
      'targets',
      '',
      'the repository does not exist yet and no targets key is available',
    );
  }
  // One key for both roles would let every build that signs tags also sign a new root (rotate the
  // repository to keys of its choosing); notary's client always generates the two apart.
  const rootId = PublicKey.fromKeyObject(createPublicKey(root.privateKey)).id;
  if (rootId === PublicKey.fromKeyObject(createPublicKey(targets)).id) {
    const problem = `its root key and targets key are the same key (${rootId})`;
    throw new TrustError(
      'KEY_STORE_INVALID',
      { store, problem },
      `${store}: ${problem}; a repository needs two different keys (a header-less key file is ` +
        'read for either role: give each directory its own key, with a "role: root" or "role: targets" header).',
    );
  }
  return { ...keys, root, targets };
}

/**
 * A new GUN, initialized as `docker trust sign` does it: root v1 with the root key in a certificate
 * for the GUN, targets v2 holding the tags, snapshot and timestamp server-managed (or a client
 * snapshot v2 when we hold a snapshot key, as plain `notary init` makes it).
 */
export async function planNewRepository(input: NewRepositoryInput): Promise<PublishPlan> {
  const { gun, now } = input;
  const keys = creatingKeys(gun, input.role, input.keys);
  const rootKey = await rootCertificateKey(gun, keys.root, now);
  const targetsKey = PublicKey.fromKeyObject(keys.targets);
  const snapshotKey =
    keys.snapshot !== undefined
      ? PublicKey.fromKeyObject(keys.snapshot)
      : input.serverKeys.snapshot;
  if (snapshotKey === undefined) {
    throw new RangeError('a new repository needs the server snapshot key or a client snapshot key');
  }
  const root = newRoot(
    {
      root: [rootKey],
      targets: [targetsKey],
      snapshot: [snapshotKey],
      timestamp: [input.serverKeys.timestamp],
    },
    now,
  );
  const targets: TargetsMetadata = { ...newTargets(now), targets: new Map(input.targets) };
  const rootBytes = await signRole(root, [localSigner(keys.root.privateKey, rootKey)]);
  const targetsBytes = await signRole(targets, [localSigner(keys.targets, targetsKey)]);
  const files: PublishFile[] = [
    { role: 'root', bytes: rootBytes },
    { role: 'targets', bytes: targetsBytes },
  ];
  const versions: Record<string, number> = { root: root.version, targets: targets.version };
  if (keys.snapshot !== undefined) {
    const snapshot = nextSnapshot(
      undefined,
      new Map([
        ['root', rootBytes],
        ['targets', targetsBytes],
      ]),
      now,
    );
    files.push({
      role: 'snapshot',
      bytes: await signRole(snapshot, [localSigner(keys.snapshot, snapshotKey)]),
    });
    versions['snapshot'] = snapshot.version;
  }
  return {
    files,
    root,
    rootKeyId: rootKey.id,
    rootCanonicalKeyId: rootKey.canonicalId,
    versions,
    rootResigned: false,
    renewals: [],
  };
}

/**
 * The root key as a certificate for this GUN: the stored certificate when it is one notary accepts
 * for this GUN and key and is not about to expire, otherwise a fresh one (notary's Go client, too,
 * reuses one root key across GUNs with a certificate per GUN).
 */
async function rootCertificateKey(
  gun: string,
  root: NonNullable<SigningKeys['root']>,
  now: Date,
): Promise<PublicKey> {
  const own = PublicKey.fromKeyObject(createPublicKey(root.privateKey));
  if (root.certificatePem !== undefined) {
    try {
      const stored = PublicKey.fromCertificatePem(root.certificatePem);
      checkRootCertificate(stored, gun, now);
      const notAfter = stored.certificate ? new Date(stored.certificate.validTo) : now;
      if (stored.canonicalId === own.id && notAfter > resignHorizon(now)) return stored;
    } catch (err) {
      if (!(err instanceof TrustError)) throw err;
    }
  }
  return PublicKey.fromCertificatePem(
    await createRootCertificate(gun, root.privateKey, { notBefore: now }),
  );
}

/** Inputs for updating a verified repository. */
export interface UpdateInput extends TargetsChange {
  readonly collection: TrustedCollection;
  readonly keys: SigningKeys;
  readonly now: Date;
  /**
   * Several roles signed in one publish, each with its own tags (kpack's completion signs every
   * delegation that lists its key); when given, it replaces `role` and `targets`.
   */
  readonly roleTargets?: ReadonlyMap<string, ReadonlyMap<string, FileMeta>>;
  /**
   * Set when the root was trusted on first use (we hold no root key and none was pinned): then
   * each role we sign — `targets` or a delegation — must already exist and carry our key's
   * signature, so entries a forged chain slipped in are never re-signed by us. Docker's
   * multi-signer delegations cannot meet this; pin the root for them.
   */
  readonly requireOwnSignature?: boolean;
  /**
   * Set when the root was trusted on first use: an expired role is then renewed only when its
   * current version already carries our signature, whichever role we sign (re-signing content
   * unchanged is just what a forged chain would want from us).
   */
  readonly rootTrustedOnFirstUse?: boolean;
}

/**
 * The next versions for an existing repository: every tag added or replaced in each role we sign,
 * root re-signed when it (or our root certificate) expires within six months and we hold its key,
 * the snapshot signed only when root lists a snapshot key we hold. An expired role is renewed —
 * read with `allowExpired`, re-signed unchanged at version + 1 with a fresh expiry — when we hold a
 * key for it; an expired timestamp or server-held snapshot is re-signed by the server on any
 * publish. Nothing at all when each role already maps every tag to this manifest, root needs no
 * renewal and nothing has expired (re-signing is idempotent).
 */
export async function planUpdate(input: UpdateInput): Promise<PublishPlan> {
  const { collection, keys, now, gun } = input;
  const current = collection.root;
  const changes = input.roleTargets ?? new Map([[input.role, input.targets]]);
  // Every signer is found (key listed, threshold, paths) before anything is signed.
  const signed = new Map<
    string,
    { signer: MetadataSigner; model: TargetsMetadata; targets: ReadonlyMap<string, FileMeta> }
  >();
  for (const [role, targets] of changes) {
    const signer = roleSigner(collection, role, keys, targets.keys());
    const existing = collection.targetsRoles.get(role);
    if (input.requireOwnSignature === true) {
      // A root trusted on first use vouches for nothing: only a version our key already signed
      // shows the role's content is ours, not entries a forged chain slipped in for us to re-sign
      // (a file that could then be replayed into the real repository). A delegation never
      // published has no such version, so under TOFU there is nothing to build on.
      if (existing === undefined) {
        throw unusable(
          gun,
          role,
          signer.publicKey.id,
          `${role} has never been published, so no version of it carries our key's signature, and ${TOFU_ROOT}`,
        );
      }
      if (!existing.signedBy.has(signer.publicKey.canonicalId)) {
        throw unusable(
          gun,
          role,
          signer.publicKey.id,
          `the current ${role} is not signed by our key, and ${TOFU_ROOT}`,
        );
      }
    }
    // A delegation declared but never published has no file yet: it starts at version 1.
    const model: TargetsMetadata = existing?.metadata ?? { ...newTargets(now, 0) };
    signed.set(role, { signer, model, targets });
  }
  const resign = await rootResign(collection, keys, now);
  const expired = expiredRoles(collection, now);

  // Every expired targets role needs a key we hold: find them all before signing anything.
  const toSign = new Map<string, { next: TargetsMetadata; signer: MetadataSigner }>();
  for (const { role: name, expires } of expired) {
    if (name === 'timestamp' || name === 'snapshot' || signed.has(name)) continue;
    toSign.set(name, renewal(input, name, expires));
  }
  // An expired timestamp or snapshot is renewed by whatever we publish; publish at least our roles.
  const needsPublish = expired.length > 0 && toSign.size === 0 && resign === undefined;
  const versions: Record<string, number> = { root: current.version };
  for (const [role, { signer, model, targets }] of signed) {
    versions[role] = model.version;
    const change = { set: targets };
    const ownExpired = expired.some((e) => e.role === role);
    if (changesAnything(model, change) || ownExpired || needsPublish) {
      toSign.set(role, { next: nextTargets(model, change, now), signer });
    }
  }

  const files: PublishFile[] = [];
  let root = current;
  let rootKeyOut = ownRootKey(current, keys) ?? firstRootKey(current);
  if (resign !== undefined) {
    root = resign.root;
    rootKeyOut = resign.key;
    files.push({ role: 'root', bytes: await signRole(root, resign.signers) });
    versions['root'] = root.version;
  }
  // Parents before children, as notary-server validates them.
  for (const [name, { next, signer: key }] of [...toSign].sort(([a], [b]) => depth(a) - depth(b))) {
    files.push({ role: name, bytes: await signRole(next, [key]) });
    versions[name] = next.version;
  }
  let snapshotExpires: Date | undefined;
  if (files.length > 0) {
    const snapshotSigner = clientSnapshotSigner(current, keys);
    if (snapshotSigner !== undefined) {
      const snapshot = nextSnapshot(
        collection.snapshot,
        new Map(files.map((f) => [f.role, f.bytes])),
        now,
      );
      files.push({ role: 'snapshot', bytes: await signRole(snapshot, [snapshotSigner]) });
      versions['snapshot'] = snapshot.version;
      snapshotExpires = snapshot.expires;
    }
  }
  const renewals = expired.map(({ role: name, expires }): Renewal => {
    const ours = name === 'snapshot' ? snapshotExpires : toSign.get(name)?.next.expires;
    return { role: name, expired: expires, ...(ours === undefined ? {} : { expires: ours }) };
  });
  return {
    files,
    root,
    rootKeyId: rootKeyOut.id,
    rootCanonicalKeyId: rootKeyOut.canonicalId,
    versions,
    rootResigned: resign !== undefined,
    renewals,
  };
}

/**
 * Roles of the collection whose expiry has passed (root excluded: the trust core never reads an
 * expired root, even for a writer), in load order.
 */
function expiredRoles(collection: TrustedCollection, now: Date): { role: string; expires: Date }[] {
  const roles: [string, Date][] = [
    ['timestamp', collection.timestamp.expires],
    ['snapshot', collection.snapshot.expires],
    ...[...collection.targetsRoles].map(([name, r]): [string, Date] => [name, r.metadata.expires]),
  ];
  return roles
    .filter(([, expires]) => expires.getTime() <= now.getTime())
    .map(([role, expires]) => ({ role, expires }));
}

/**
 * An expired targets role other than the one we sign, re-signed unchanged (notary's `witness`):
 * we must hold a key the repository lists for it, and under TOFU its current version must already
 * carry our signature.
 */
function renewal(
  input: UpdateInput,
  role: string,
  expired: Date,
): { next: TargetsMetadata; signer: MetadataSigner } {
  const { collection, keys, now, gun } = input;
  const current = collection.targetsRoles.get(role);
  if (current === undefined) throw new RangeError(`${role} is not in the collection`);
  const when = expired.toISOString();
  let signer: MetadataSigner;
  try {
    signer = roleSigner(collection, role, keys, []);
  } catch (err) {
    if (!isTrustError(err, 'SIGNING_KEY_UNUSABLE')) throw err;
    throw new TrustError(
      'SIGNING_KEY_UNUSABLE',
      { ...err.facts, problem: `${role} expired at ${when}; ${err.facts.problem}` },
      `Cannot sign ${gun}: its ${role} expired at ${when} and we cannot renew it (${err.facts.problem}); ` +
        `until a holder of a ${role} key re-signs it, clients reject ${role === 'targets' ? 'every tag' : `the tags in ${role}`}.`,
      { cause: err },
    );
  }
  const tofu = input.rootTrustedOnFirstUse === true || input.requireOwnSignature === true;
  if (tofu && !current.signedBy.has(signer.publicKey.canonicalId)) {
    throw unusable(
      gun,
      role,
      signer.publicKey.id,
      `${role} expired at ${when} and is not signed by our key, and the root was trusted on first use; ` +
        'pin the root to renew it',
    );
  }
  return { next: nextTargets(current.metadata, {}, now), signer };
}

function depth(role: string): number {
  return role.split('/').length;
}

/**
 * The signer for `role`: one of the keys we hold that the repository lists for it — root's targets
 * keys for `targets`, the parent's delegation keys for a delegation — with the listed public key, so
 * the signature carries the id verifiers look up. Delegated paths must admit every tag.
 */
export function roleSigner(
  collection: TrustedCollection,
  role: string,
  keys: SigningKeys,
  tags: Iterable<string>,
): MetadataSigner {
  const gun = collection.gun;
  let listed: PublicKey[];
  let threshold: number;
  let preferred: KeyObject | undefined;
  let paths: readonly (readonly string[])[] = [];
  if (role === 'targets') {
    listed = listedKeys(collection.root.roles.targets.keyIds, collection.root.keys);
    threshold = collection.root.roles.targets.threshold;
    preferred = keys.targets;
  } else {
    const parent = collection.targetsRoles.get(parentOf(role));
    const entry = parent?.metadata.delegations.roles.find((d) => d.name === role);
    if (parent === undefined || entry === undefined) {
      throw unusable(
        gun,
        role,
        '',
        `the repository has no delegation ${role}; create it first (notary delegation add, or docker trust signer add)`,
      );
    }
    listed = listedKeys(entry.keyIds, parent.metadata.delegations.keys);
    threshold = entry.threshold;
    preferred = keys.delegations.get(role);
    // Narrowed as the verifiers narrow it: a tag outside would be signed and never resolve.
    paths = childPathRestrictions(parent.pathRestrictions, entry.paths);
  }
  const held = [preferred, keys.targets, ...keys.delegations.values()].filter(
    (k): k is KeyObject => k !== undefined,
  );
  const heldIds = held.map((k) => PublicKey.fromKeyObject(createPublicKey(k)).id);
  let match: { privateKey: KeyObject; publicKey: PublicKey } | undefined;
  for (const [i, privateKey] of held.entries()) {
    const publicKey = listed.find((p) => p.canonicalId === heldIds[i]);
    if (publicKey !== undefined) {
      match = { privateKey, publicKey };
      break;
    }
  }
  const roleName = role === 'targets' ? "the repository's targets key" : `a key of ${role}`;
  if (match === undefined) {
    const ours = heldIds[0];
    throw unusable(
      gun,
      role,
      ours ?? '',
      ours === undefined
        ? `no key to sign ${role} with`
        : `key ${ours} is not ${roleName} (${role} lists ${listed.map((k) => k.canonicalId).join(', ') || 'no keys'})`,
    );
  }
  if (threshold > 1) {
    throw unusable(
      gun,
      role,
      match.publicKey.id,
      `${role} needs ${threshold} signatures, and one signer can give only one`,
    );
  }
  for (const tag of tags) {
    if (!paths.every((allowed) => allowed.some((prefix) => tag.startsWith(prefix)))) {
      throw unusable(
        gun,
        role,
        match.publicKey.id,
        `${role} may not sign the tag "${tag}" (outside its delegated paths)`,
      );
    }
  }
  return localSigner(match.privateKey, match.publicKey);
}

function listedKeys(ids: readonly string[], keys: ReadonlyMap<string, PublicKey>): PublicKey[] {
  return ids.map((id) => keys.get(id)).filter((k): k is PublicKey => k !== undefined);
}

/** The root-role key root.json lists for our root private key, if we hold one that it lists. */
function ownRootKey(root: RootMetadata, keys: SigningKeys): PublicKey | undefined {
  if (keys.root === undefined) return undefined;
  const id = PublicKey.fromKeyObject(createPublicKey(keys.root.privateKey)).id;
  return listedKeys(root.roles.root.keyIds, root.keys).find((k) => k.canonicalId === id);
}

function firstRootKey(root: RootMetadata): PublicKey {
  const [first] = listedKeys(root.roles.root.keyIds, root.keys);
  // parseRoot already refuses a root role naming keys it does not carry; an empty list is all that is left.
  if (first === undefined) throw new RangeError('the root lists no root key');
  return first;
}

/**
 * A re-signed root when we hold a listed root key that alone meets the threshold and either root
 * expires within six months or our certificate does. A renewed certificate replaces the old one in
 * the root role, and both sign, so clients that trust the previous root accept the rotation.
 */
async function rootResign(
  collection: TrustedCollection,
  keys: SigningKeys,
  now: Date,
): Promise<{ root: RootMetadata; key: PublicKey; signers: MetadataSigner[] } | undefined> {
  const current = collection.root;
  const key = ownRootKey(current, keys);
  if (keys.root === undefined || key === undefined || current.roles.root.threshold > 1) {
    return undefined;
  }
  const horizon = resignHorizon(now);
  const certificateEnds = key.certificate ? new Date(key.certificate.validTo) : undefined;
  const renewCertificate = certificateEnds !== undefined && certificateEnds <= horizon;
  if (current.expires > horizon && !renewCertificate) return undefined;

  const privateKey = keys.root.privateKey;
  const next = { ...current, version: current.version + 1, expires: defaultExpiry('root', now) };
  if (!renewCertificate) return { root: next, key, signers: [localSigner(privateKey, key)] };

  const renewed = PublicKey.fromCertificatePem(
    await createRootCertificate(collection.gun, privateKey, { notBefore: now }),
  );
  const rootKeys = new Map(current.keys);
  rootKeys.delete(key.id);
  rootKeys.set(renewed.id, renewed);
  const root: RootMetadata = {
    ...next,
    keys: rootKeys,
    roles: {
      ...current.roles,
      root: {
        ...current.roles.root,
        keyIds: current.roles.root.keyIds.map((id) => (id === key.id ? renewed.id : id)),
      },
    },
  };
  return {
    root,
    key: renewed,
    signers: [localSigner(privateKey, renewed), localSigner(privateKey, key)],
  };
}

/** A signer for the snapshot when root lists a snapshot key we hold; undefined when the server holds it. */
function clientSnapshotSigner(root: RootMetadata, keys: SigningKeys): MetadataSigner | undefined {
  if (keys.snapshot === undefined) return undefined;
  const id = PublicKey.fromKeyObject(createPublicKey(keys.snapshot)).id;
  const listed = listedKeys(root.roles.snapshot.keyIds, root.keys).find(
    (k) => k.canonicalId === id,
  );
  return listed === undefined ? undefined : localSigner(keys.snapshot, listed);
}

/** Why a TOFU refusal happened and how to lift it, ending the problem of the refusals above. */
const TOFU_ROOT =
  'with neither our root key nor a pinned root the root was trusted on first use; pin the root ' +
  "(--root-key-id or a root keys dir; the controller: the Image's kpack-trust.io/root-key-id) to sign it";

function unusable(gun: string, role: string, keyId: string, problem: string): TrustError {
  return new TrustError(
    'SIGNING_KEY_UNUSABLE',
    { gun, role, keyId, problem },
    `Cannot sign ${gun}: ${problem}.`,
  );
}
