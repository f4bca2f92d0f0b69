/**
 * Drives the pure CollectionVerifier with an injected MetadataFetcher, the way notary's Go client
 * reads a repository: latest root (rotating through `<n>.root.json`), the current timestamp, then
 * snapshot, targets and delegations by the checksums their parents state. All sizes are bounded.
 * With `invalidDelegations: 'record'`, a delegation that is merely expired or short of its signature
 * threshold does not fail the update (see CollectionVerifier.loadDelegation); it ends up in the
 * collection's `invalidRoles`.
 *
 * A repository whose root is trusted may still be hostile (a trust-on-first-use rule, or a tenant
 * holding its own GUN's keys under a shared pin): besides each file's cap, one update reads at
 * most `totalMetadataBytes` of timestamp, snapshot, targets and delegations together — reserved
 * by the lengths the parents state before any of a level is fetched — and its delegations list at
 * most `delegationKeys` distinct keys bundling at most `delegationCertificates` certificates. Between roles it checks the caller's signal and yields to
 * the event loop, so a deadline stops the work and other requests are served meanwhile.
 */
import { TrustError, isTrustError } from '../errors.js';
import { parseEnvelope, verifyThreshold, type SignedEnvelope } from '../metadata/envelope.js';
import {
  MAX_ROOT_KEYS,
  parseRootRoleKeys,
  rootVersionOf,
  type FileMeta,
} from '../metadata/models.js';
import type { MetadataFetcher } from '../notary/remote.js';
import { newWorkMeter, type WorkMeter } from '../work.js';
import { rootCertificateProblems, type CompiledAnchor, type RootKeySet } from './anchor.js';
import {
  CollectionVerifier,
  DEFAULT_MAX_DELEGATION_CERTIFICATES,
  DEFAULT_MAX_DELEGATION_KEYS,
  type TrustedCollection,
  type VersionFloors,
} from './collection-verifier.js';

/** Per-role and per-update caps, in one place (tuf-js style). Snapshot, targets and delegations are also capped by the length their parent states. */
export interface DownloadLimits {
  readonly root: number;
  readonly timestamp: number;
  /** Upper bound for snapshot, targets and any delegation, whatever length a parent states. */
  readonly metadata: number;
  /** Most delegated roles walked in one repository. */
  readonly delegations: number;
  /** Most root versions walked in one update. */
  readonly rootRotations: number;
  /**
   * Most bytes of older roots read while searching back for the root a pin anchors (notary's
   * roots are a few KiB each; a hostile server's may each be `root` bytes).
   */
  readonly rootSearchBytes: number;
  /**
   * Most bytes of timestamp, snapshot, targets and delegations together in one update (roots
   * have their own caps above). `metadata` alone bounds one file, not 256 of them fetched at once.
   */
  readonly totalMetadataBytes: number;
  /** Most distinct keys targets and all delegations may delegate to together (CollectionVerifierOptions.maxDelegationKeys). */
  readonly delegationKeys: number;
  /** Most certificates those keys may bundle together (CollectionVerifierOptions.maxDelegationCertificates). */
  readonly delegationCertificates: number;
}

/**
 * Defaults: notary's Go client caps the timestamp at 1 MiB; the rest keeps a webhook's memory
 * bounded. `totalMetadataBytes` is twice `metadata`: a repository whose targets (or one
 * delegation) is at the per-file cap still has as much again for everything else, while 256
 * delegations each stated at that cap (8 GiB) are refused before any is fetched.
 */
export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = Object.freeze({
  root: 1 << 20,
  timestamp: 1 << 20,
  metadata: 32 << 20,
  delegations: 256,
  rootRotations: 64,
  rootSearchBytes: 4 << 20,
  totalMetadataBytes: 64 << 20,
  delegationKeys: DEFAULT_MAX_DELEGATION_KEYS,
  delegationCertificates: DEFAULT_MAX_DELEGATION_CERTIFICATES,
});

/**
 * Most metadata signature checks a search back through older roots spends on proving that each
 * signed its successor; distinct root keys it examines are capped by MAX_ROOT_KEYS.
 */
export const MAX_ROOT_SEARCH_SIGNATURE_CHECKS = 128;

/** What a client keeps between updates of one GUN: its trusted root and rollback floors. */
export interface TrustState {
  readonly rootBytes?: Uint8Array;
  readonly floors?: VersionFloors;
}

/** Inputs of one update. */
export interface UpdateOptions {
  readonly anchor: CompiledAnchor;
  readonly now: Date;
  readonly state?: TrustState;
  readonly limits?: Partial<DownloadLimits>;
  /** Writers only: tolerate expired non-root roles (CollectionVerifierOptions.allowExpired); verifiers leave it unset. */
  readonly allowExpired?: boolean;
  /** Readers that resolve through resolve.ts: 'record' invalid delegations instead of failing (CollectionVerifierOptions.invalidDelegations). */
  readonly invalidDelegations?: 'fail' | 'record';
  /** Counts the costly steps of this update (tests and benchmarks of bounded work). */
  readonly work?: WorkMeter;
  /**
   * The caller's deadline: checked before each role is verified, so that an aborted update stops
   * between roles, not only in its requests (pass the same signal to the fetcher). The update then
   * rejects with the signal's reason when that is a TrustError, else with HTTP_UNREACHABLE.
   */
  readonly signal?: AbortSignal;
  /**
   * Called once the root is trusted (anchored, resumed or rotated), before the timestamp is
   * fetched, with the exact bytes and version now trusted: TUF 5.3.8 persists each verified root,
   * so a caller can keep a rotation — and stop using data the old root vouched for — even when a
   * later step of this update fails.
   */
  readonly onRootTrusted?: (root: { readonly bytes: Uint8Array; readonly version: number }) => void;
}

/** Fetches and fully verifies one GUN's trust data. */
export async function updateCollection(
  fetcher: MetadataFetcher,
  gun: string,
  options: UpdateOptions,
): Promise<TrustedCollection> {
  const limits = { ...DEFAULT_DOWNLOAD_LIMITS, ...options.limits };
  const verifier = new CollectionVerifier({
    gun,
    now: options.now,
    ...(options.state?.floors ? { floors: options.state.floors } : {}),
    ...(options.allowExpired === true ? { allowExpired: true } : {}),
    ...(options.invalidDelegations === undefined
      ? {}
      : { invalidDelegations: options.invalidDelegations }),
    ...(options.work ? { work: options.work } : {}),
    maxDelegationKeys: limits.delegationKeys,
    maxDelegationCertificates: limits.delegationCertificates,
  });
  const signal = options.signal;
  checkSignal(signal, gun);
  const rootBytes = await establishRoot(fetcher, verifier, options, limits);
  const trustedRoot = verifier.trustedRoot;
  if (options.onRootTrusted && trustedRoot) {
    options.onRootTrusted({ bytes: rootBytes, version: trustedRoot.version });
  }

  const budget = new ByteBudget(gun, limits.totalMetadataBytes);
  const timestampBytes = await fetcher.fetchMetadata(gun, {
    role: 'timestamp',
    maxBytes: limits.timestamp,
  });
  budget.spend('timestamp', timestampBytes.byteLength);
  await betweenRoles(signal, gun);
  verifier.loadTimestamp(timestampBytes);
  const snapshotMeta = verifier.expectedSnapshot();
  budget.spend('snapshot', checkedLength(gun, 'snapshot', snapshotMeta, limits));
  const snapshotBytes = await fetchByMeta(fetcher, gun, 'snapshot', snapshotMeta);
  await betweenRoles(signal, gun);
  verifier.loadSnapshot(snapshotBytes);
  const targetsMeta = verifier.expectedTargets('targets');
  budget.spend('targets', checkedLength(gun, 'targets', targetsMeta, limits));
  const targetsBytes = await fetchByMeta(fetcher, gun, 'targets', targetsMeta);
  await betweenRoles(signal, gun);
  const targets = verifier.loadTargets(targetsBytes);

  // Depth-first in the parent's order, as notary walks them. Children of one role are fetched
  // concurrently — once the lengths the snapshot states for all of them fit the byte budget, so
  // that no more than it is ever buffered — then verified in order (a parent must be trusted
  // before its children are), with a turn of the event loop and a deadline check before each.
  let walked = 0;
  const visit = async (children: readonly { name: string }[]): Promise<void> => {
    // A delegation trusted before may not have vanished from the snapshot (TUF 5.5.5).
    const listed = children.filter((c) => verifier.listedDelegation(c.name) !== undefined);
    walked += listed.length;
    if (walked > limits.delegations) {
      throw new TrustError(
        'DOWNLOAD_TOO_LARGE',
        { role: 'delegations', limit: limits.delegations, url: gun },
        `${gun} has more than ${limits.delegations} delegations`,
      );
    }
    const metas = listed.map((c) => verifier.expectedTargets(c.name));
    for (const [i, child] of listed.entries()) {
      budget.spend(child.name, checkedLength(gun, child.name, metas[i] as FileMeta, limits));
    }
    checkSignal(signal, gun);
    const bytes = await Promise.all(
      listed.map((c, i) => fetchByMeta(fetcher, gun, c.name, metas[i] as FileMeta)),
    );
    for (const [i, child] of listed.entries()) {
      await betweenRoles(signal, gun);
      const metadata = verifier.loadDelegation(child.name, bytes[i] as Uint8Array);
      // An invalid delegation's children cannot be verified (their keys come from it): as Go's
      // downloadTargets does, they are not fetched; the verifier records them as invalid too.
      if (metadata) await visit(metadata.delegations.roles);
    }
  };
  await visit(targets.delegations.roles);
  return verifier.result();
}

/** Trusts the latest root the server offers (see updateCollection); returns the bytes now trusted. */
async function establishRoot(
  fetcher: MetadataFetcher,
  verifier: CollectionVerifier,
  options: UpdateOptions,
  limits: DownloadLimits,
): Promise<Uint8Array> {
  const gun = verifier.gun;
  const work = options.work;
  const latestBytes = await fetcher.fetchMetadata(gun, { role: 'root', maxBytes: limits.root });
  if (work) work.rootsRead++;
  // Only the version number of the untrusted latest root is read here, to know how far to walk;
  // every root walked is verified before it is trusted.
  const latestEnvelope = parseEnvelope(latestBytes, 'root');
  const latestVersion = rootVersionOf(latestEnvelope.signed);

  if (options.state?.rootBytes) {
    const trusted = verifier.resumeRoot(options.state.rootBytes);
    if (latestVersion < trusted.version) {
      throw new TrustError(
        'VERSION_ROLLBACK',
        { role: 'root', actual: latestVersion, floor: trusted.version },
        `the server offers root version ${latestVersion}, older than trusted version ${trusted.version}`,
      );
    }
    await walkRoots(
      fetcher,
      verifier,
      trusted.version,
      latestVersion,
      latestBytes,
      limits,
      work,
      options.signal,
    );
    // Same version: the root kept stays trusted, whatever bytes the server sent for it.
    return latestVersion === trusted.version ? options.state.rootBytes : latestBytes;
  }

  try {
    verifier.anchorRoot(latestBytes, options.anchor);
  } catch (err) {
    if (!isTrustError(err, 'ROOT_NOT_TRUSTED') || latestVersion === 1 || options.anchor.tofu) {
      throw err;
    }
    // A pin made before one or more root rotations anchors an older version. Search back from the
    // newest for the most recent root the pin anchors, then walk forward from it: each later root
    // must be signed by its predecessor's threshold, so the chain of trust is proved, not assumed.
    const anchored = await findAnchoredRoot(
      fetcher,
      verifier,
      options.anchor,
      { envelope: latestEnvelope, version: latestVersion },
      limits,
      work,
      options.signal,
    );
    if (anchored === undefined) throw err;
    await walkRoots(
      fetcher,
      verifier,
      anchored,
      latestVersion,
      latestBytes,
      limits,
      work,
      options.signal,
    );
  }
  return latestBytes;
}

/**
 * The newest root version below `latest` that the anchor accepts (now the verifier's root), if any.
 * The walk forward from it will demand that every later root is signed by its predecessor's root
 * threshold (5.3.4) and by its own (5.3.5), so the search goes back only while that can still
 * hold: the latest root must be signed by its own root keys, and each older root must have signed
 * the one after it. The first broken link ends the search, as does a missing version (the walk
 * forward would need it). Key ids are content hashes, so a root key already found unpinned is
 * never parsed or checked again; the search stops when it would examine more than MAX_ROOT_KEYS
 * distinct root keys, spend more than MAX_ROOT_SEARCH_SIGNATURE_CHECKS, or read more than
 * `rootSearchBytes` — whatever the server serves, one lookup does bounded work.
 */
async function findAnchoredRoot(
  fetcher: MetadataFetcher,
  verifier: CollectionVerifier,
  anchor: CompiledAnchor,
  latest: { readonly envelope: SignedEnvelope; readonly version: number },
  limits: DownloadLimits,
  work: WorkMeter | undefined,
  signal: AbortSignal | undefined,
): Promise<number | undefined> {
  const { gun, now } = verifier;
  const spent = newWorkMeter();
  try {
    // anchorRoot found none of the latest root's keys pinned.
    const examined = signedByOwnRootKeys(latest.envelope, gun, now, spent);
    if (examined === undefined) return undefined;
    const oldest = Math.max(1, latest.version - limits.rootRotations);
    let bytesLeft = limits.rootSearchBytes;
    let newer = latest.envelope;
    for (let version = latest.version - 1; version >= oldest && bytesLeft > 0; version--) {
      await betweenRoles(signal, gun);
      let bytes: Uint8Array;
      try {
        bytes = await fetcher.fetchMetadata(gun, {
          role: 'root',
          version,
          maxBytes: Math.min(limits.root, bytesLeft),
        });
      } catch (err) {
        // Nothing older can be walked forward through a missing version (a repository set up
        // with a server-managed snapshot simply starts at root version 2), nor past the budget.
        if (isTrustError(err, 'HTTP_STATUS') && err.facts.status === 404) return undefined;
        if (isTrustError(err, 'DOWNLOAD_TOO_LARGE')) return undefined;
        throw err;
      }
      spent.rootsRead++;
      bytesLeft -= bytes.byteLength;
      try {
        const envelope = parseEnvelope(bytes, 'root');
        const ids = parseRootRoleKeys(envelope.signed, 'root', spent, () => false);
        if (ids.version !== version) return undefined;
        const fresh = new Set(ids.root.keyIds.filter((id) => !examined.has(id)));
        if (examined.size + fresh.size > MAX_ROOT_KEYS) return undefined;
        for (const id of fresh) examined.add(id);
        const signers = new Set(newer.signatures.map((sig) => sig.keyId));
        const older = parseRootRoleKeys(
          envelope.signed,
          'root',
          spent,
          (id) => fresh.has(id) || signers.has(id),
        );
        // The walk forward from an anchored root proves each rotation, or names the one that fails.
        if (fresh.size > 0 && anchors(verifier, bytes, onlyKeys(older, fresh), anchor)) {
          return version;
        }
        // 5.3.4 as the walk forward would check it: a root that did not sign its successor ends
        // the search, since no root below it can reach the latest either.
        verifyThreshold('root', newer, older.root, older.keys, spent);
        if (spent.metadataSignatureChecks > MAX_ROOT_SEARCH_SIGNATURE_CHECKS) return undefined;
        newer = envelope;
      } catch (err) {
        // Malformed, or not the signer of its successor.
        if (isTrustError(err)) return undefined;
        throw err;
      }
    }
    return undefined;
  } finally {
    if (work) addWork(work, spent);
  }
}

/** `root` with only the keys in `ids`: the ones not yet checked against the pin. */
function onlyKeys(root: RootKeySet, ids: ReadonlySet<string>): RootKeySet {
  return { root: root.root, keys: new Map([...root.keys].filter(([id]) => ids.has(id))) };
}

/** Anchors the verifier at this older root if a pinned key signed it to its threshold. */
function anchors(
  verifier: CollectionVerifier,
  bytes: Uint8Array,
  rootRole: RootKeySet,
  anchor: CompiledAnchor,
): boolean {
  if (verifier.pinnedRootKeys(rootRole, anchor).keyIds.size === 0) return false;
  try {
    verifier.anchorRoot(bytes, anchor);
    return true;
  } catch (err) {
    // Pinned, but short of its threshold or malformed beyond its root keys: look further back.
    if (isTrustError(err)) return false;
    throw err;
  }
}

function addWork(total: WorkMeter, part: WorkMeter): void {
  total.metadataSignatureChecks += part.metadataSignatureChecks;
  total.certificateSignatureChecks += part.certificateSignatureChecks;
  total.keysParsed += part.keysParsed;
  total.rootsRead += part.rootsRead;
}

/**
 * The latest root's own root-key ids when it meets its own root threshold with keys that pass
 * notary's certificate checks (5.3.5, which the walk forward will demand), else undefined.
 */
function signedByOwnRootKeys(
  envelope: SignedEnvelope,
  gun: string,
  now: Date,
  work: WorkMeter,
): Set<string> | undefined {
  try {
    const own = parseRootRoleKeys(envelope.signed, 'root', work);
    const invalid = new Set(rootCertificateProblems(own, gun, now).map((p) => p.keyId));
    const keyIds = own.root.keyIds.filter((id) => !invalid.has(id));
    verifyThreshold('root', envelope, { keyIds, threshold: own.root.threshold }, own.keys, work);
    return new Set(own.root.keyIds);
  } catch (err) {
    if (isTrustError(err)) return undefined;
    throw err;
  }
}

async function walkRoots(
  fetcher: MetadataFetcher,
  verifier: CollectionVerifier,
  from: number,
  to: number,
  latestBytes: Uint8Array,
  limits: DownloadLimits,
  work: WorkMeter | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (to - from > limits.rootRotations) {
    throw new TrustError(
      'DOWNLOAD_TOO_LARGE',
      { role: 'root', limit: limits.rootRotations, url: verifier.gun },
      `${verifier.gun} asks for ${to - from} root rotations, more than ${limits.rootRotations}`,
    );
  }
  for (let v = from + 1; v <= to; v++) {
    await betweenRoles(signal, verifier.gun);
    let bytes = latestBytes;
    if (v !== to) {
      bytes = await fetcher.fetchMetadata(verifier.gun, {
        role: 'root',
        version: v,
        maxBytes: limits.root,
      });
      if (work) work.rootsRead++;
    }
    verifier.rotateRoot(bytes);
  }
}

/** The length a parent states for `role`, refused above the per-file cap before anything is fetched. */
function checkedLength(gun: string, role: string, meta: FileMeta, limits: DownloadLimits): number {
  if (meta.length > limits.metadata) {
    throw new TrustError(
      'DOWNLOAD_TOO_LARGE',
      { role, limit: limits.metadata, url: `${gun}/${role}` },
      `${role} of ${gun} is stated as ${meta.length} bytes, above the ${limits.metadata}-byte limit`,
    );
  }
  return meta.length;
}

/** Fetches `role` by the checksum its parent states, capped at the stated length. */
function fetchByMeta(
  fetcher: MetadataFetcher,
  gun: string,
  role: string,
  meta: FileMeta,
): Promise<Uint8Array> {
  const sha256 = meta.hashes['sha256'];
  // Notary serves `<role>.<sha256 hex>.json`; only sha256 checksums resolve on the server.
  return fetcher.fetchMetadata(gun, {
    role,
    ...(sha256 ? { sha256Hex: sha256.toString('hex') } : {}),
    maxBytes: meta.length,
  });
}

/** The bytes one update may still read (DownloadLimits.totalMetadataBytes). */
class ByteBudget {
  private spent = 0;

  constructor(
    private readonly gun: string,
    private readonly limit: number,
  ) {}

  /** Takes `bytes` for `role` (before fetching it when its length is stated), or fails LIMIT_EXCEEDED. */
  spend(role: string, bytes: number): void {
    const actual = this.spent + bytes;
    if (actual > this.limit) {
      throw new TrustError(
        'LIMIT_EXCEEDED',
        { role, what: 'metadata bytes', limit: this.limit, actual },
        `${role} brings the trust data of ${this.gun} read in one update to ${actual} bytes, more than the ${this.limit} accepted`,
      );
    }
    this.spent = actual;
  }
}

/**
 * Before a role is verified: the deadline may have passed, and the event loop gets a turn. Each
 * load is synchronous (signature checks, key imports); without the turn, fetches that resolve at
 * once would run a whole collection's verification as one task, past any timer the caller set.
 */
async function betweenRoles(signal: AbortSignal | undefined, gun: string): Promise<void> {
  checkSignal(signal, gun);
  await new Promise<void>((resolve) => setImmediate(resolve));
  checkSignal(signal, gun);
}

/** Fails once the caller has given up, as an aborted fetch does (MetadataRequest.signal). */
function checkSignal(signal: AbortSignal | undefined, gun: string): void {
  if (signal?.aborted !== true) return;
  const reason: unknown = signal.reason;
  if (isTrustError(reason)) throw reason;
  throw new TrustError(
    'HTTP_UNREACHABLE',
    { url: gun, problem: 'the update was aborted' },
    `the update of ${gun} was aborted`,
  );
}
