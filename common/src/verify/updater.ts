/**
 * Drives the pure CollectionVerifier with an injected MetadataFetcher, the way notary's Go client
 * reads a repository: latest root (rotating through `<n>.root.json`), the current timestamp, then
 * snapshot, targets and delegations by the checksums their parents state. All sizes are bounded.
 * With `invalidDelegations: 'record'`, a delegation that is merely expired or short of its signature
 * threshold does not fail the update (see CollectionVerifier.loadDelegation); it ends up in the
 * collection's `invalidRoles`.
 */
import { TrustError, isTrustError } from '../errors.js';
import { parseEnvelope } from '../metadata/envelope.js';
import { parseRoot, type FileMeta } from '../metadata/models.js';
import type { MetadataFetcher } from '../notary/remote.js';
import type { CompiledAnchor } from './anchor.js';
import {
  CollectionVerifier,
  type TrustedCollection,
  type VersionFloors,
} from './collection-verifier.js';

/** Per-role download caps, in one place (tuf-js style). Snapshot, targets and delegations are also capped by the length their parent states. */
export interface DownloadLimits {
  readonly root: number;
  readonly timestamp: number;
  /** Upper bound for snapshot, targets and any delegation, whatever length a parent states. */
  readonly metadata: number;
  /** Most delegated roles walked in one repository. */
  readonly delegations: number;
  /** Most root versions walked in one update. */
  readonly rootRotations: number;
}

/** Defaults: notary's Go client caps the timestamp at 1 MiB; the rest keeps a webhook's memory bounded. */
export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = Object.freeze({
  root: 1 << 20,
  timestamp: 1 << 20,
  metadata: 32 << 20,
  delegations: 256,
  rootRotations: 64,
});

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
  });
  await establishRoot(fetcher, verifier, options, limits);

  verifier.loadTimestamp(
    await fetcher.fetchMetadata(gun, { role: 'timestamp', maxBytes: limits.timestamp }),
  );
  verifier.loadSnapshot(
    await fetchByMeta(fetcher, gun, 'snapshot', verifier.expectedSnapshot(), limits),
  );
  const targets = verifier.loadTargets(
    await fetchByMeta(fetcher, gun, 'targets', verifier.expectedTargets('targets'), limits),
  );

  // Depth-first in the parent's order, as notary walks them. Children of one role are fetched
  // concurrently, then verified in order (a parent must be trusted before its children are).
  let walked = 0;
  const visit = async (children: readonly { name: string }[]): Promise<void> => {
    const listed = children.filter((c) => snapshotLists(verifier, c.name));
    walked += listed.length;
    if (walked > limits.delegations) {
      throw new TrustError(
        'DOWNLOAD_TOO_LARGE',
        { role: 'delegations', limit: limits.delegations, url: gun },
        `${gun} has more than ${limits.delegations} delegations`,
      );
    }
    const bytes = await Promise.all(
      listed.map((c) =>
        fetchByMeta(fetcher, gun, c.name, verifier.expectedTargets(c.name), limits),
      ),
    );
    for (const [i, child] of listed.entries()) {
      const metadata = verifier.loadDelegation(child.name, bytes[i] as Uint8Array);
      // An invalid delegation's children cannot be verified (their keys come from it): as Go's
      // downloadTargets does, they are not fetched; the verifier records them as invalid too.
      if (metadata) await visit(metadata.delegations.roles);
    }
  };
  await visit(targets.delegations.roles);
  return verifier.result();
}

/** A delegation declared but never published has no file in the snapshot: notary treats it as empty. */
function snapshotLists(verifier: CollectionVerifier, role: string): boolean {
  try {
    verifier.expectedTargets(role);
    return true;
  } catch (err) {
    if (isTrustError(err, 'META_MISSING')) return false;
    throw err;
  }
}

async function establishRoot(
  fetcher: MetadataFetcher,
  verifier: CollectionVerifier,
  options: UpdateOptions,
  limits: DownloadLimits,
): Promise<void> {
  const gun = verifier.gun;
  const latestBytes = await fetcher.fetchMetadata(gun, { role: 'root', maxBytes: limits.root });
  // Only the version number of the untrusted latest root is read here, to know how far to walk;
  // every root walked is verified before it is trusted.
  const latestVersion = parseRoot(parseEnvelope(latestBytes, 'root').signed).version;

  if (options.state?.rootBytes) {
    const trusted = verifier.resumeRoot(options.state.rootBytes);
    if (latestVersion < trusted.version) {
      throw new TrustError(
        'VERSION_ROLLBACK',
        { role: 'root', actual: latestVersion, floor: trusted.version },
        `the server offers root version ${latestVersion}, older than trusted version ${trusted.version}`,
      );
    }
    await walkRoots(fetcher, verifier, trusted.version, latestVersion, latestBytes, limits);
    return;
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
      latestVersion,
      limits,
    );
    if (anchored === undefined) throw err;
    await walkRoots(fetcher, verifier, anchored, latestVersion, latestBytes, limits);
  }
}

/** The newest root version below `latest` that the anchor accepts (now the verifier's root), if any. */
async function findAnchoredRoot(
  fetcher: MetadataFetcher,
  verifier: CollectionVerifier,
  anchor: CompiledAnchor,
  latest: number,
  limits: DownloadLimits,
): Promise<number | undefined> {
  const oldest = Math.max(1, latest - limits.rootRotations);
  for (let version = latest - 1; version >= oldest; version--) {
    let bytes: Uint8Array;
    try {
      bytes = await fetcher.fetchMetadata(verifier.gun, {
        role: 'root',
        version,
        maxBytes: limits.root,
      });
    } catch (err) {
      // A repository set up with a server-managed snapshot starts at root version 2.
      if (isTrustError(err, 'HTTP_STATUS') && err.facts.status === 404) continue;
      throw err;
    }
    try {
      verifier.anchorRoot(bytes, anchor);
      return version;
    } catch (err) {
      // Not this one (other keys, an expired certificate, a malformed old file): keep looking.
      if (!isTrustError(err)) throw err;
    }
  }
  return undefined;
}

async function walkRoots(
  fetcher: MetadataFetcher,
  verifier: CollectionVerifier,
  from: number,
  to: number,
  latestBytes: Uint8Array,
  limits: DownloadLimits,
): Promise<void> {
  if (to - from > limits.rootRotations) {
    throw new TrustError(
      'DOWNLOAD_TOO_LARGE',
      { role: 'root', limit: limits.rootRotations, url: verifier.gun },
      `${verifier.gun} asks for ${to - from} root rotations, more than ${limits.rootRotations}`,
    );
  }
  for (let v = from + 1; v <= to; v++) {
    const bytes =
      v === to
        ? latestBytes
        : await fetcher.fetchMetadata(verifier.gun, {
            role: 'root',
            version: v,
            maxBytes: limits.root,
          });
    verifier.rotateRoot(bytes);
  }
}

async function fetchByMeta(
  fetcher: MetadataFetcher,
  gun: string,
  role: string,
  meta: FileMeta,
  limits: DownloadLimits,
): Promise<Uint8Array> {
  if (meta.length > limits.metadata) {
    throw new TrustError(
      'DOWNLOAD_TOO_LARGE',
      { role, limit: limits.metadata, url: `${gun}/${role}` },
      `${role} of ${gun} is stated as ${meta.length} bytes, above the ${limits.metadata}-byte limit`,
    );
  }
  const sha256 = meta.hashes['sha256'];
  // Notary serves `<role>.<sha256 hex>.json`; only sha256 checksums resolve on the server.
  return fetcher.fetchMetadata(gun, {
    role,
    ...(sha256 ? { sha256Hex: sha256.toString('hex') } : {}),
    maxBytes: meta.length,
  });
}
