/**
 * The pure Notary v1 verification workflow: bytes and a clock in, a verified collection out, no I/O.
 * Roles must be loaded in TUF order — root (anchored or resumed, then rotated one version at a time),
 * timestamp, snapshot, targets, delegations (parents first) — and each load enforces the checks the
 * TUF client workflow (spec §5) and notary's Go client apply at that step.
 *
 * With `invalidDelegations: 'record'` (readers that resolve through resolve.ts), a delegation that
 * fails only on expiry or on its signature threshold does not fail the collection: as notary's Go
 * client does (client/tufclient.go downloadTargets puts ErrExpired and
 * ErrRoleThreshold of a delegation into the builder's invalidRoles and skips its subtree), it is
 * recorded in `invalidRoles`, with its descendants, and resolution that reaches it throws its error
 * (see resolve.ts). Every other fault — hashes, lengths, malformed bytes, rollback, no
 * signatures at all — still fails the whole collection, and so does any fault of root, timestamp,
 * snapshot or targets.
 *
 * A delegation that lists names outside its paths is no fault: as in notary, those names are
 * simply never read from it (see withinPaths).
 */
import { createHash } from 'node:crypto';
import type { JsonValue } from '../canonical/json.js';
import { TrustError, isTrustError } from '../errors.js';
import { parseEnvelope, verifyThreshold, type SignedEnvelope } from '../metadata/envelope.js';
import { malformed } from '../metadata/fields.js';
import {
  certificatesIn,
  listedDelegationKeys,
  parseRoot,
  parseRootRoleKeys,
  parseSnapshot,
  parseTargets,
  parseTimestamp,
  type CommonMetadata,
  type DelegatedRole,
  type FileMeta,
  type RootMetadata,
  type SnapshotMetadata,
  type TargetsMetadata,
  type TimestampMetadata,
} from '../metadata/models.js';
import type { WorkMeter } from '../work.js';
import {
  anchoredRootKeys,
  newChainBudget,
  rootCertificateProblems,
  type AnchoredKeys,
  type CertificateProblem,
  type CompiledAnchor,
  type RootKeySet,
} from './anchor.js';
import { childPathRestrictions, isPathAllowed } from './paths.js';

/**
 * Highest version seen per role name (`root`, `timestamp`, `targets/releases`, …): the rollback
 * floors. A delegation a trusted snapshot listed has an entry even when no version of it could be
 * trusted (0), so that a later snapshot may not drop it (TUF 5.5.5).
 */
export type VersionFloors = Readonly<Record<string, number>>;

/** A verified targets role (top-level or delegated) with the path restrictions inherited from its parents. */
export interface VerifiedTargetsRole {
  readonly name: string;
  readonly metadata: TargetsMetadata;
  /**
   * Prefix lists from each ancestor delegation, outermost first, each narrowed to what its parent's
   * allow (notary's RestrictDelegationPathPrefixes); a name must match all of them.
   */
  readonly pathRestrictions: readonly (readonly string[])[];
  /** Canonical (bare key) ids of the keys whose valid signatures met the threshold: a policy can demand pinned signers. */
  readonly signedBy: ReadonlySet<string>;
}

/** Everything verified about one GUN at one moment. */
export interface TrustedCollection {
  readonly gun: string;
  readonly verifiedAt: Date;
  readonly root: RootMetadata;
  /** The exact root.json bytes, to resume from next time without re-anchoring. */
  readonly rootBytes: Uint8Array;
  readonly timestamp: TimestampMetadata;
  readonly snapshot: SnapshotMetadata;
  /** `targets` and every valid delegation, keyed by role name, in load order. */
  readonly targetsRoles: ReadonlyMap<string, VerifiedTargetsRole>;
  /**
   * Delegations that cannot be trusted, keyed by role name, with why: an expired one or one short of
   * its signature threshold maps to that error, and every delegation the snapshot lists below it maps
   * to the same error (its keys come from an untrusted parent). Never root, timestamp, snapshot or
   * targets; empty unless the verifier was asked to record them (`invalidDelegations: 'record'`).
   */
  readonly invalidRoles: ReadonlyMap<string, TrustError>;
  /** The earliest expiry among root, timestamp, snapshot, targets and valid delegations: the collection must not be used after it. */
  readonly expires: Date;
  /** Highest versions now trusted, to be kept as floors for the next update. */
  readonly floors: VersionFloors;
}

/** Inputs of one verification run. */
export interface CollectionVerifierOptions {
  readonly gun: string;
  /** The injected clock: every expiry is judged against this instant. */
  readonly now: Date;
  /** Versions seen before; anything lower is a rollback. */
  readonly floors?: VersionFloors;
  /**
   * Writers only (never a verifier): accept an expired timestamp, snapshot, targets or delegation,
   * as notary's `RepoBuilder.Load(…, allowExpired)` does, so a publisher can renew what it read.
   * Every other check still applies, and root expiry is never waived (see `loadTimestamp`). A
   * writer never gets invalid roles either: a delegation short of its threshold fails the load, so
   * nothing is published over a role that could not be read.
   */
  readonly allowExpired?: boolean;
  /**
   * 'record': a delegation that is merely expired or short of its signature threshold goes into
   * `invalidRoles` (see the module comment) instead of failing the collection. Default 'fail':
   * every fault is fatal, so a caller that walks `targetsRoles` itself can never miss a role that
   * was left out. Ignored for writers (`allowExpired`).
   */
  readonly invalidDelegations?: 'fail' | 'record';
  /** Counts the costly steps (signature checks, key parses) for tests and benchmarks. */
  readonly work?: WorkMeter;
  /**
   * Most distinct key ids the `delegations.keys` of targets and every delegation may list
   * together (default DEFAULT_MAX_DELEGATION_KEYS); one more fails LIMIT_EXCEEDED
   * (`what: 'delegation keys'`) before any of that role's keys is imported.
   */
  readonly maxDelegationKeys?: number;
  /**
   * Most certificates the x509 keys among those may bundle together (default
   * DEFAULT_MAX_DELEGATION_CERTIFICATES), counted before any is parsed; one more fails
   * LIMIT_EXCEEDED (`what: 'delegation certificates'`).
   */
  readonly maxDelegationCertificates?: number;
}

/**
 * Default for CollectionVerifierOptions.maxDelegationKeys. Notary repositories delegate to a few
 * signers' keys, each imported when the role listing it is loaded; the per-role cap alone
 * (MAX_DELEGATION_KEYS) across 256 delegations would allow 262,144 imports.
 */
export const DEFAULT_MAX_DELEGATION_KEYS = 256;

/**
 * Default for CollectionVerifierOptions.maxDelegationCertificates: room for every one of the
 * DEFAULT_MAX_DELEGATION_KEYS keys as a two-certificate x509 key (docker's signer certificates
 * carry one). Certificates are what imports cost (see certificatesIn). Measured with
 * bench/hostile-repository.ts on the development machine, one role's imports block the event
 * loop: 255 keys of ten certificates 0.97 s of CPU (allowed by the key cap alone); at this cap,
 * 51 keys of ten 0.25 s, 255 keys of two 0.38 s.
 */
export const DEFAULT_MAX_DELEGATION_CERTIFICATES = 512;

type Stage = 'root' | 'timestamp' | 'snapshot' | 'targets' | 'delegations';

/** Verifies one GUN's metadata step by step; see the module comment for the order. */
export class CollectionVerifier {
  readonly gun: string;
  readonly now: Date;
  private readonly floors: Record<string, number>;
  private readonly allowExpired: boolean;
  private readonly recordInvalid: boolean;
  private readonly work: WorkMeter | undefined;
  private readonly maxDelegationKeys: number;
  private readonly maxDelegationCertificates: number;
  // Distinct delegation key ids admitted so far (at most maxDelegationKeys), and their certificates.
  private readonly delegationKeys = new Set<string>();
  private delegationCertificates = 0;
  // One budget of CA chain signature checks for every root this run looks at.
  private readonly chainBudget = newChainBudget();
  private stage: Stage = 'root';
  private root: RootMetadata | undefined;
  private rootBytes: Uint8Array | undefined;
  private timestamp: TimestampMetadata | undefined;
  private snapshot: SnapshotMetadata | undefined;
  private readonly targetsRoles = new Map<string, VerifiedTargetsRole>();
  private readonly invalidRoles = new Map<string, TrustError>();
  private earliestExpiry: Date | undefined;

  constructor(options: CollectionVerifierOptions) {
    this.gun = options.gun;
    this.now = options.now;
    this.floors = { ...(options.floors ?? {}) };
    this.allowExpired = options.allowExpired === true;
    this.recordInvalid = options.invalidDelegations === 'record' && !this.allowExpired;
    this.work = options.work;
    this.maxDelegationKeys = options.maxDelegationKeys ?? DEFAULT_MAX_DELEGATION_KEYS;
    this.maxDelegationCertificates =
      options.maxDelegationCertificates ?? DEFAULT_MAX_DELEGATION_CERTIFICATES;
  }

  /** The root currently trusted (after anchoring/resuming and any rotations). */
  get trustedRoot(): RootMetadata | undefined {
    return this.root;
  }

  /**
   * Trusts a root this client has not seen, through the anchor: the root must be signed, to its
   * threshold, by root keys the anchor pins (and pass certificate checks). Only the root role's
   * keys are parsed until that holds: the rest of an unanchored root is never imported.
   */
  anchorRoot(bytes: Uint8Array, anchor: CompiledAnchor): RootMetadata {
    this.expectStage('root', 'root', 'an initial root was already loaded');
    if (this.root) this.fail('root', 'an initial root was already loaded');
    const envelope = parseEnvelope(bytes, 'root');
    const rootRole = parseRootRoleKeys(envelope.signed, 'root', this.work);
    const { keyIds, certificateProblems, limitExceeded } = this.pinnedRootKeys(rootRole, anchor);
    if (keyIds.size === 0) {
      const bad = certificateProblems[0];
      if (bad) throw this.certificateInvalid(bad);
      if (limitExceeded) throw limitExceeded;
      throw new TrustError(
        'ROOT_NOT_TRUSTED',
        { gun: this.gun, problem: 'no root key matches the pinned trust anchor' },
        `root of ${this.gun} (version ${rootRole.version}) is not signed by a pinned root key`,
      );
    }
    this.verifyRootSignatures(envelope, rootRole, {
      keyIds: [...keyIds],
      threshold: rootRole.root.threshold,
    });
    const root = parseRoot(envelope.signed, 'root', this.work);
    this.root = root;
    this.rootBytes = bytes;
    return root;
  }

  /**
   * The root-role keys of `root` (as far as parsed) that the anchor vouches for, spending this
   * run's CA chain budget: anchorRoot's test, also used to search older roots for the pinned one.
   */
  pinnedRootKeys(root: RootKeySet, anchor: CompiledAnchor): AnchoredKeys {
    return anchoredRootKeys(root, anchor, this.gun, this.now, {
      budget: this.chainBudget,
      ...(this.work ? { work: this.work } : {}),
    });
  }

  /** Resumes from a root verified in an earlier run (kept by the caller); it must still be self-consistent. */
  resumeRoot(bytes: Uint8Array): RootMetadata {
    this.expectStage('root', 'root', 'an initial root was already loaded');
    if (this.root) this.fail('root', 'an initial root was already loaded');
    const envelope = parseEnvelope(bytes, 'root');
    const root = parseRoot(envelope.signed, 'root', this.work);
    this.verifyRootSignatures(envelope, rootKeySet(root), this.validRootKeys(root));
    this.root = root;
    this.rootBytes = bytes;
    return root;
  }

  /**
   * Rotates to root version N+1 (TUF 5.3.4–5.3.5): it must be signed by the threshold of the trusted
   * root's root keys and by the threshold of its own, and carry exactly the next version.
   */
  rotateRoot(bytes: Uint8Array): RootMetadata {
    this.expectStage('root', 'root', 'roots can only be rotated before the timestamp is loaded');
    const trusted = this.root;
    if (!trusted) return this.fail('root', 'rotation needs a trusted root first');
    const envelope = parseEnvelope(bytes, 'root');
    // 5.3.4: signed by the threshold of the previously trusted root — checked before the new
    // root's own keys are parsed, so a root the trusted keys never signed costs no key imports.
    verifyThreshold('root', envelope, trusted.roles.root, trusted.keys, this.work);
    const next = parseRoot(envelope.signed, 'root', this.work);
    // 5.3.5 (and notary's certificate checks): and by its own threshold.
    this.verifyRootSignatures(envelope, rootKeySet(next), this.validRootKeys(next));
    // 5.3.6: exactly the next version, so no intermediate root can be skipped.
    if (next.version !== trusted.version + 1) {
      throw new TrustError(
        'VERSION_ROLLBACK',
        { role: 'root', actual: next.version, floor: trusted.version + 1 },
        `root rotation expected version ${trusted.version + 1}, got ${next.version}`,
      );
    }
    this.root = next;
    this.rootBytes = bytes;
    return next;
  }

  /**
   * Loads timestamp.json: signatures, notary's structure (a sha256 of the snapshot), rollback
   * (5.4.3) and expiry (5.4.4); the root must not be expired.
   */
  loadTimestamp(bytes: Uint8Array): TimestampMetadata {
    this.expectStage('root', 'timestamp', 'the timestamp must follow the root');
    const root = this.root;
    if (!root) return this.fail('timestamp', 'needs a trusted root first');
    // 5.3.10: the final root must be current before anything it vouches for is used, and not
    // older than a root trusted before (checked here, on the final root, so that a walk may start
    // from an older anchored version). Never waived, not even for writers: notary's Go client
    // loads the newest root with allowExpired=false to publish too, and re-signs root only
    // before it expires (signRootIfNecessary).
    this.checkExpiry('root', root);
    this.checkFloor('root', root.version);
    const envelope = parseEnvelope(bytes, 'timestamp');
    verifyThreshold('timestamp', envelope, root.roles.timestamp, root.keys, this.work);
    const timestamp = parseTimestamp(envelope.signed);
    requireEntry('timestamp', timestamp.meta, 'snapshot');
    this.checkFloor('timestamp', timestamp.version);
    this.checkExpiry('timestamp', timestamp);
    this.timestamp = timestamp;
    this.stage = 'timestamp';
    return timestamp;
  }

  /** The length and hashes the timestamp states for the snapshot (for a bounded download). */
  expectedSnapshot(): FileMeta {
    const meta = this.timestamp?.meta.get('snapshot');
    if (!meta) return this.fail('snapshot', 'the timestamp must be loaded first');
    return meta;
  }

  /**
   * Loads snapshot.json: hash and length from the timestamp (5.5.2), signatures, notary's structure
   * (root and targets listed with a sha256), rollback, expiry, and the trusted root's hash.
   */
  loadSnapshot(bytes: Uint8Array): SnapshotMetadata {
    this.expectStage('timestamp', 'snapshot', 'the snapshot must follow the timestamp');
    const root = this.requireRoot('snapshot');
    checkFileMeta('snapshot', bytes, this.expectedSnapshot());
    const envelope = parseEnvelope(bytes, 'snapshot');
    verifyThreshold('snapshot', envelope, root.roles.snapshot, root.keys, this.work);
    const snapshot = parseSnapshot(envelope.signed);
    const rootMeta = requireEntry('snapshot', snapshot.meta, 'root');
    requireEntry('snapshot', snapshot.meta, 'targets');
    this.checkFloor('snapshot', snapshot.version);
    this.checkExpiry('snapshot', snapshot);
    // The snapshot also vouches for root.json, always (Go: validateChecksumsFromSnapshot checks
    // every role loaded before it): a server mixing an old root with new metadata is caught.
    const rootBytes = this.rootBytes ?? this.fail('snapshot', 'needs a trusted root first');
    checkFileMeta('root', rootBytes, rootMeta);
    this.snapshot = snapshot;
    this.stage = 'snapshot';
    return snapshot;
  }

  /** The length and hashes the snapshot states for a targets role (for a bounded download). */
  expectedTargets(role: string): FileMeta {
    const snapshot = this.snapshot;
    if (!snapshot) return this.fail(role, 'the snapshot must be loaded first');
    const meta = snapshot.meta.get(role);
    if (!meta) throw metaMissing(role, 'snapshot');
    return meta;
  }

  /**
   * The snapshot's entry for a delegation its loaded parent declares, or undefined when the snapshot
   * does not list it: a delegation declared but never published, which notary reads as empty.
   * TUF 5.5.5: a role trusted before (it has a version floor) may not disappear from a newer
   * snapshot while its parent still delegates to it — that would let whoever holds the snapshot
   * key (notary-server, by default) hide a delegation and resolve its tags from an older role.
   * VERSION_ROLLBACK, with `actual` 0 for "not listed". A parent that no longer delegates to the
   * role (signed by the parent's own key) removed it; that is no rollback.
   */
  listedDelegation(role: string): FileMeta | undefined {
    const snapshot = this.snapshot;
    if (!snapshot) return this.fail(role, 'the snapshot must be loaded first');
    const meta = snapshot.meta.get(role);
    if (meta) return meta;
    const floor = this.floors[role];
    if (floor !== undefined && this.delegationOf(role)) {
      throw new TrustError(
        'VERSION_ROLLBACK',
        { role, actual: 0, floor },
        `snapshot version ${snapshot.version} no longer lists ${role}, which ${parentOf(role)} still delegates to and whose version ${floor} was trusted before (rollback)`,
      );
    }
    return undefined;
  }

  /** Loads targets.json: hash and length from the snapshot, signatures, rollback, expiry. */
  loadTargets(bytes: Uint8Array): TargetsMetadata {
    this.expectStage('snapshot', 'targets', 'targets must follow the snapshot');
    const root = this.requireRoot('targets');
    checkFileMeta('targets', bytes, this.expectedTargets('targets'));
    const envelope = parseEnvelope(bytes, 'targets');
    const signedBy = verifyThreshold('targets', envelope, root.roles.targets, root.keys, this.work);
    // Verified first, then what it delegates is imported.
    this.admitDelegationKeys('targets', envelope.signed);
    const targets = parseTargets(envelope.signed, 'targets', this.work ? { work: this.work } : {});
    this.checkFloor('targets', targets.version);
    this.checkExpiry('targets', targets);
    this.targetsRoles.set('targets', {
      name: 'targets',
      metadata: targets,
      pathRestrictions: [],
      signedBy,
    });
    this.stage = 'targets';
    return targets;
  }

  /** The delegation entry a loaded parent declares for `role`, if any. */
  delegationOf(role: string): DelegatedRole | undefined {
    const parent = this.targetsRoles.get(parentOf(role));
    return parent?.metadata.delegations.roles.find((d) => d.name === role);
  }

  /**
   * Loads a delegated targets role. Its parent must already be loaded and must delegate to it; it is
   * checked against the snapshot and signed by the parent's threshold of its keys; only the target
   * names inside its own paths and every ancestor's are kept from it. Returns undefined when the role is
   * recorded as invalid instead (see the module comment): its children must then not be loaded.
   */
  loadDelegation(role: string, bytes: Uint8Array): TargetsMetadata | undefined {
    if (this.stage !== 'targets' && this.stage !== 'delegations') {
      return this.fail(role, 'delegations must follow targets');
    }
    if (this.targetsRoles.has(role) || this.invalidRoles.has(role)) {
      return this.fail(role, 'this delegation was already loaded');
    }
    const parentName = parentOf(role);
    const parent = this.targetsRoles.get(parentName);
    if (!parent) return this.fail(role, `its parent ${parentName} is not loaded`);
    const delegation = parent.metadata.delegations.roles.find((d) => d.name === role);
    if (!delegation) return this.fail(role, `${parentName} does not delegate to it`);
    // Hash and length first: bytes the snapshot does not vouch for are tampering, never "invalid".
    checkFileMeta(role, bytes, this.expectedTargets(role));
    const envelope = parseEnvelope(bytes, role);
    const signedBy = this.delegationSigners(role, envelope, delegation, parent);
    // Go checks the version before the signatures: a rollback is fatal even when unsigned, and
    // only a validly signed version may raise the floor. A role short of its threshold is still
    // checked for shape (Go's TargetsFromSigned) but imports none of the keys it delegates to:
    // nothing below it will be verified, and the imports would be work for an attacker's bytes.
    const invalid = signedBy instanceof TrustError;
    if (!invalid) this.admitDelegationKeys(role, envelope.signed);
    const metadata = parseTargets(envelope.signed, role, {
      ...(this.work ? { work: this.work } : {}),
      importKeys: !invalid,
    });
    this.checkFloor(role, metadata.version, !invalid);
    // Listed by a trusted snapshot: a later snapshot may not drop it (listedDelegation), even if
    // this version cannot raise the floor.
    this.floors[role] ??= 0;
    if (invalid) {
      this.markInvalid(role, signedBy);
      return undefined;
    }
    const pathRestrictions = childPathRestrictions(parent.pathRestrictions, delegation.paths);
    const inPaths = withinPaths(metadata, pathRestrictions);
    // Expiry last, as in Go ("all other validation should pass"): only an otherwise sound role
    // is merely expired.
    const expired = this.expiryError(role, metadata);
    if (expired) {
      if (!this.recordInvalid) throw expired;
      this.markInvalid(role, expired);
      return undefined;
    }
    this.noteExpiry(inPaths);
    this.targetsRoles.set(role, { name: role, metadata: inPaths, pathRestrictions, signedBy });
    this.stage = 'delegations';
    return inPaths;
  }

  /**
   * The keys whose signatures meet the delegation's threshold, or the SIGNATURE_THRESHOLD error to
   * record the role as invalid with. Go's loadDelegation: ErrRoleThreshold makes the role invalid,
   * but ErrNoSignatures (no signature at all) is fatal in downloadTargets; and any shortfall is
   * fatal unless invalid roles are recorded.
   */
  private delegationSigners(
    role: string,
    envelope: SignedEnvelope,
    delegation: DelegatedRole,
    parent: VerifiedTargetsRole,
  ): ReadonlySet<string> | TrustError<'SIGNATURE_THRESHOLD'> {
    try {
      return verifyThreshold(
        role,
        envelope,
        delegation,
        parent.metadata.delegations.keys,
        this.work,
      );
    } catch (err) {
      const tolerated =
        isTrustError(err, 'SIGNATURE_THRESHOLD') &&
        envelope.signatures.length > 0 &&
        this.recordInvalid;
      if (!tolerated) throw err;
      return err;
    }
  }

  /**
   * Counts the distinct keys `role` delegates to, and their certificates, against the collection's
   * caps before any is imported (a key listed again, under another parent, costs nothing more:
   * the parse is shared).
   */
  private admitDelegationKeys(role: string, signed: JsonValue): void {
    const fresh = [...listedDelegationKeys(signed, role)].filter(
      ([id]) => !this.delegationKeys.has(id),
    );
    const keys = this.delegationKeys.size + fresh.length;
    if (keys > this.maxDelegationKeys) {
      throw new TrustError(
        'LIMIT_EXCEEDED',
        { role, what: 'delegation keys', limit: this.maxDelegationKeys, actual: keys },
        `${role} brings the keys delegated to in ${this.gun} to ${keys}, more than the ${this.maxDelegationKeys} accepted in one collection`,
      );
    }
    let certificates = this.delegationCertificates;
    for (const [, key] of fresh) certificates += certificatesIn(key);
    if (certificates > this.maxDelegationCertificates) {
      const limit = this.maxDelegationCertificates;
      throw new TrustError(
        'LIMIT_EXCEEDED',
        { role, what: 'delegation certificates', limit, actual: certificates },
        `${role} brings the certificates of keys delegated to in ${this.gun} to ${certificates}, more than the ${limit} accepted in one collection`,
      );
    }
    for (const [id] of fresh) this.delegationKeys.add(id);
    this.delegationCertificates = certificates;
  }

  /** Marks `role` and every delegation the snapshot lists below it invalid with `error`. */
  private markInvalid(role: string, error: TrustError): void {
    this.invalidRoles.set(role, error);
    const prefix = `${role}/`;
    for (const name of this.snapshot?.meta.keys() ?? []) {
      if (name.startsWith(prefix)) this.invalidRoles.set(name, error);
    }
    this.stage = 'delegations';
  }

  /** The verified collection; requires at least root, timestamp, snapshot and targets. */
  result(): TrustedCollection {
    const { root, rootBytes, timestamp, snapshot, earliestExpiry } = this;
    if (
      !root ||
      !rootBytes ||
      !timestamp ||
      !snapshot ||
      !this.targetsRoles.has('targets') ||
      !earliestExpiry
    ) {
      return this.fail(
        'targets',
        'the collection is incomplete: root, timestamp, snapshot and targets are required',
      );
    }
    return {
      gun: this.gun,
      verifiedAt: this.now,
      root,
      rootBytes,
      timestamp,
      snapshot,
      targetsRoles: new Map(this.targetsRoles),
      invalidRoles: new Map(this.invalidRoles),
      expires: earliestExpiry,
      floors: { ...this.floors },
    };
  }

  private verifyRootSignatures(
    envelope: SignedEnvelope,
    root: RootKeySet,
    roleKeys: { keyIds: readonly string[]; threshold: number },
  ): void {
    if (roleKeys.keyIds.length < roleKeys.threshold) {
      const bad = rootCertificateProblems(root, this.gun, this.now)[0];
      if (bad) throw this.certificateInvalid(bad);
    }
    verifyThreshold('root', envelope, roleKeys, root.keys, this.work);
  }

  private certificateInvalid(bad: CertificateProblem): TrustError<'CERTIFICATE_INVALID'> {
    return new TrustError(
      'CERTIFICATE_INVALID',
      { gun: this.gun, keyId: bad.keyId, problem: bad.problem },
      `root certificate ${bad.keyId.slice(0, 12)} of ${this.gun} is invalid: ${bad.problem}`,
    );
  }

  /** Root-role keys that pass notary's certificate checks (bare keys always pass). */
  private validRootKeys(root: RootMetadata): { keyIds: string[]; threshold: number } {
    const invalid = new Set(
      rootCertificateProblems(rootKeySet(root), this.gun, this.now).map((p) => p.keyId),
    );
    return {
      keyIds: root.roles.root.keyIds.filter((id) => !invalid.has(id)),
      threshold: root.roles.root.threshold,
    };
  }

  private requireRoot(role: string): RootMetadata {
    return this.root ?? this.fail(role, 'needs a trusted root first');
  }

  private checkFloor(role: string, version: number, advance = true): void {
    const floor = this.floors[role] ?? 0;
    if (version < floor) {
      throw new TrustError(
        'VERSION_ROLLBACK',
        { role, actual: version, floor },
        `${role} version ${version} is lower than version ${floor} already trusted (rollback or freeze)`,
      );
    }
    if (advance) this.floors[role] = version;
  }

  private checkExpiry(role: string, metadata: CommonMetadata): void {
    const expired = this.expiryError(role, metadata);
    if (expired) throw expired;
    this.noteExpiry(metadata);
  }

  /** EXPIRED when `metadata` has expired and the expiry is not waived. */
  private expiryError(role: string, metadata: CommonMetadata): TrustError<'EXPIRED'> | undefined {
    // A waived expiry only skips the error: every other check of the load still runs (notary's
    // builder, too, checks expiry after signatures and versions).
    const waived = this.allowExpired && role !== 'root';
    if (metadata.expires.getTime() > this.now.getTime() || waived) return undefined;
    return new TrustError(
      'EXPIRED',
      { role, expires: metadata.expires.toISOString(), now: this.now.toISOString() },
      `${role} expired at ${metadata.expires.toISOString()}`,
    );
  }

  /** Counts a role's expiry towards the collection's; invalid roles never do (they are not used). */
  private noteExpiry(metadata: CommonMetadata): void {
    if (!this.earliestExpiry || metadata.expires < this.earliestExpiry)
      this.earliestExpiry = metadata.expires;
  }

  private expectStage(stage: Stage, role: string, problem: string): void {
    if (this.stage !== stage) this.fail(role, problem);
  }

  private fail(role: string, problem: string): never {
    throw new TrustError('WORKFLOW_ORDER', { role, problem }, `cannot load ${role}: ${problem}`);
  }
}

function rootKeySet(root: RootMetadata): RootKeySet {
  return { root: root.roles.root, keys: root.keys };
}

/** The parent role of a delegation: `targets/a/b` → `targets/a`. */
export function parentOf(role: string): string {
  const i = role.lastIndexOf('/');
  return i < 0 ? role : role.slice(0, i);
}

/**
 * `metadata` without the target names that `pathRestrictions` exclude. Notary's builder loads a
 * delegation whatever names it lists (tuf/builder.go loadDelegation checks no path): paths apply
 * only when targets are read (tuf.go WalkTargets → isValidPath, ListTargets → CheckPaths). A role
 * keeps what it signed when its paths are narrowed later (`notary delegation remove --all-paths`),
 * and such a name must then never be taken from it. Dropping it here, once, keeps it out of
 * everything that reads the role: resolution, digest lookup, required signers, and the next
 * version a publisher signs of it.
 */
function withinPaths(
  metadata: TargetsMetadata,
  pathRestrictions: readonly (readonly string[])[],
): TargetsMetadata {
  const targets = new Map(
    [...metadata.targets].filter(([name]) =>
      pathRestrictions.every((paths) => isPathAllowed(paths, name)),
    ),
  );
  return targets.size === metadata.targets.size ? metadata : { ...metadata, targets };
}

/** Each hash algorithm notary knows, with its digest's length in bytes (Go: CheckValidHashStructures). */
const HASH_SIZES = [
  ['sha256', 32],
  ['sha512', 64],
] as const;

/**
 * The structure notary demands of a timestamp or snapshot before anything else is read from it
 * (tuf/data IsValidTimestampStructure: `snapshot`; IsValidSnapshotStructure: `root` and `targets`):
 * the entry `name` listed (else META_MISSING), with a sha256 (sha512 alone is not enough), and
 * every sha256 or sha512 it gives of its digest's length (else METADATA_MALFORMED).
 */
function requireEntry(
  parent: 'timestamp' | 'snapshot',
  meta: ReadonlyMap<string, FileMeta>,
  name: string,
): FileMeta {
  const entry = meta.get(name);
  if (!entry) throw metaMissing(name, parent);
  const field = `signed.meta.${name}.hashes`;
  if (entry.hashes['sha256'] === undefined)
    throw malformed(parent, `${field}.sha256`, 'is missing');
  for (const [algorithm, size] of HASH_SIZES) {
    const hash = entry.hashes[algorithm];
    if (hash !== undefined && hash.length !== size) {
      throw malformed(parent, `${field}.${algorithm}`, `is ${hash.length} bytes, not ${size}`);
    }
  }
  return entry;
}

function metaMissing(role: string, parent: string): TrustError<'META_MISSING'> {
  return new TrustError('META_MISSING', { role, parent }, `${parent} does not list ${role}`);
}

/**
 * Checks bytes against the length and every hash a parent states for them. Only sha256 and sha512
 * are known; at least one known hash is required so a parent cannot vouch for nothing.
 */
export function checkFileMeta(role: string, bytes: Uint8Array, expected: FileMeta): void {
  if (bytes.byteLength !== expected.length) {
    throw new TrustError(
      'LENGTH_MISMATCH',
      { role, expected: expected.length, actual: bytes.byteLength },
      `${role} is ${bytes.byteLength} bytes, but its parent says ${expected.length}`,
    );
  }
  let checked = 0;
  for (const algorithm of ['sha256', 'sha512'] as const) {
    const want = expected.hashes[algorithm];
    if (!want) continue;
    const got = createHash(algorithm).update(bytes).digest();
    if (!got.equals(want)) {
      throw new TrustError(
        'HASH_MISMATCH',
        { role, algorithm, expected: want.toString('hex'), actual: got.toString('hex') },
        `${role} ${algorithm} is ${got.toString('hex')}, but its parent says ${want.toString('hex')}`,
      );
    }
    checked++;
  }
  if (checked === 0) {
    throw new TrustError(
      'METADATA_MALFORMED',
      { role, field: 'hashes', problem: 'has no sha256 or sha512 hash' },
      `the parent of ${role} states no sha256 or sha512 hash for it`,
    );
  }
}
