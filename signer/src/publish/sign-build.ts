/**
 * Signing one build into its Notary v1 repository, end to end: check the manifest in the registry,
 * read and verify the repository's current trust data, plan, and publish every changed role in one
 * POST. A concurrent writer's `400 VERSION` (or, for a new GUN, a root another first build published
 * first) starts the attempt again on fresh metadata, a bounded number of times with jittered
 * backoff — the gap notary's Go client leaves open.
 */
import { KeyObject } from 'node:crypto';
import {
  PublicKey,
  TrustError,
  compileAnchor,
  imageTarget,
  isTrustError,
  updateCollection,
  type MetadataFetcher,
  type MetadataPublisher,
  type MetadataRequest,
  type PublishFile,
  type TrustAnchor,
  type TrustedCollection,
} from '@kpack-trust/common';
import type { KeyStore, RepositoryKeys } from '../keys/key-store.js';
import type { ManifestLookup } from '../registry/manifest-client.js';
import type { BuildImage } from './build-image.js';
import {
  checkCreatingRole,
  creatingKeys,
  planNewRepository,
  planUpdate,
  type PublishPlan,
  type SigningKeys,
} from './plan.js';

/** What to sign and how to anchor trust in the repository. */
export interface SignBuildOptions {
  readonly image: BuildImage;
  /** `targets` (default) or a delegation we hold a key for, such as `targets/releases`. */
  readonly role?: string;
  /** Root key ids to pin when we hold no root key; without them the root is trusted on first use. */
  readonly rootKeyIds?: readonly string[];
  /**
   * Picks the roles to sign, and the tags each gets, once the repository has been read and
   * verified (kpack's rule: `targets` without delegations, else the delegations listing our key);
   * replaces `role`. Throws a TrustError when no role fits.
   */
  readonly chooseRoles?: (
    collection: TrustedCollection,
    keys: SigningKeys,
    tags: readonly string[],
  ) => ReadonlyMap<string, readonly string[]>;
}

/** The edges the flow talks through; main.ts wires the real ones, tests in-memory ones. */
export interface SignBuildDependencies {
  readonly notary: MetadataFetcher & MetadataPublisher;
  readonly keyStore: KeyStore;
  /** Checks the manifest exists and gives its size; without it the build must state the size. */
  readonly registry?: ManifestLookup;
  readonly now: () => Date;
  readonly sleep?: (ms: number) => Promise<void>;
  /** Uniform in [0, 1), for the backoff jitter. */
  readonly random?: () => number;
  /** One human-readable line of progress (never secret material). */
  readonly progress?: (line: string) => void;
  /** Publish attempts before giving up with PUBLISH_CONFLICT; default 5. */
  readonly maxAttempts?: number;
}

/** The result, printed as the one JSON line on stdout. */
export interface SignSummary {
  readonly gun: string;
  readonly tags: readonly string[];
  readonly digest: string;
  readonly size: number;
  /** The first of `roles`. */
  readonly role: string;
  /** Every role the tags were signed into. */
  readonly roles: readonly string[];
  /** Roles in the one POST, in upload order; empty when nothing had to change. */
  readonly rolesPublished: readonly string[];
  /** The root key id to pin in verifiers, as root.json lists it. */
  readonly rootKeyId: string;
  /** That key's canonical id (its bare public key), stable across certificate renewals. */
  readonly rootCanonicalKeyId: string;
  /** Versions of root, the signed role, any expired role renewed and (when we sign it) the snapshot after this run. */
  readonly versions: Readonly<Record<string, number>>;
  /** True when this run created the repository. */
  readonly created: boolean;
  /** True when the key store generated the keys during this run. */
  readonly keysCreated: boolean;
  readonly attempts: number;
}

/** Per-role download caps while reading the repository before a publish. */
const ROOT_LIMIT = 1 << 20;
const DEFAULT_ATTEMPTS = 5;
const BACKOFF_BASE_MS = 200;
const BACKOFF_MAX_MS = 5_000;

type Attempt =
  | { readonly kind: 'done'; readonly summary: SignSummary }
  | { readonly kind: 'conflict'; readonly error: TrustError };

/** Signs every tag of the build; resolves with the summary or throws a TrustError. */
export async function signBuild(
  options: SignBuildOptions,
  deps: SignBuildDependencies,
): Promise<SignSummary> {
  const image = options.image;
  const role = options.role ?? 'targets';
  const progress = deps.progress ?? ((): void => undefined);
  const size = await manifestSize(image, deps, progress);
  const targets = new Map(image.tags.map((tag) => [tag, imageTarget(image.digest.slice(7), size)]));
  const into =
    options.chooseRoles === undefined
      ? role
      : "the roles the repository's delegations give our key";
  progress(
    `signing ${image.tags.map((t) => `${image.gun}:${t}`).join(', ')} → ${image.digest} (${size} bytes) into ${into}`,
  );
  if (options.chooseRoles === undefined && role !== 'targets' && role !== 'targets/releases') {
    // docker/cli's trusted pull, and kpack-trust-verifier with it, take a tag only from these two.
    progress(
      `note: Docker and kpack-trust-verifier trust tags from targets/releases or targets only; a tag signed only in ${role} is refused unless a verifier rule requires ${role} as a signer`,
    );
  }

  const maxAttempts = deps.maxAttempts ?? DEFAULT_ATTEMPTS;
  const session = new KeySession(deps.keyStore, image.gun);
  for (let attempt = 1; ; attempt++) {
    const outcome = await attemptOnce({
      image,
      role,
      size,
      targets,
      options,
      deps,
      session,
      attempt,
    });
    if (outcome.kind === 'done') return outcome.summary;
    if (attempt >= maxAttempts) {
      throw new TrustError(
        'PUBLISH_CONFLICT',
        { gun: image.gun, attempts: attempt },
        `Cannot sign ${image.gun}: concurrent writers changed it during each of ${attempt} attempts; nothing of ours was published.`,
        { cause: outcome.error },
      );
    }
    const delay = backoff(attempt, deps.random ?? Math.random);
    progress(
      `${image.gun} changed while we published (${outcome.error.message}); retrying on fresh metadata in ${delay} ms (attempt ${attempt + 1} of ${maxAttempts})`,
    );
    await (deps.sleep ?? sleep)(delay);
  }
}

/** Exponential backoff with ±50 % jitter, so racing signers drift apart instead of colliding again. */
export function backoff(attempt: number, random: () => number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
  return Math.round(base * (0.5 + random()));
}

async function manifestSize(
  image: BuildImage,
  deps: SignBuildDependencies,
  progress: (line: string) => void,
): Promise<number> {
  if (deps.registry === undefined) {
    if (image.size === undefined) {
      throw new TrustError(
        'INPUT_INVALID',
        { source: 'manifest size', problem: 'unknown, and the registry check is off' },
        `Cannot sign ${image.gun}: the manifest size is unknown; give --size or let the signer ask the registry.`,
      );
    }
    return image.size;
  }
  const served = await deps.registry.manifestSize(image, image.digest);
  if (image.size !== undefined && image.size !== served) {
    throw new TrustError(
      'INPUT_INVALID',
      { source: 'manifest size', problem: `stated ${image.size}, registry serves ${served}` },
      `Cannot sign ${image.gun}: the build states a manifest of ${image.size} bytes, but the registry serves ${served} bytes for ${image.digest}.`,
    );
  }
  progress(`registry has ${image.registry}/${image.path}@${image.digest} (${served} bytes)`);
  return served;
}

/** Loads keys once per run; again with creation allowed if the GUN turns out to be new. */
class KeySession {
  private loaded: { keys: RepositoryKeys; createIfMissing: boolean } | undefined;
  private created = false;

  constructor(
    private readonly store: KeyStore,
    private readonly gun: string,
  ) {}

  get keysCreated(): boolean {
    return this.created;
  }

  async load(createIfMissing: boolean): Promise<SigningKeys> {
    if (this.loaded === undefined || (createIfMissing && !this.loaded.createIfMissing)) {
      const keys = await this.store.load(this.gun, { createIfMissing });
      this.created ||= keys.created;
      this.loaded = { keys, createIfMissing };
    }
    return signingKeysOf(this.loaded.keys);
  }
}

/** A store's keys as the planner takes them; a store that also returns a `snapshot` key passes it on. */
export function signingKeysOf(keys: RepositoryKeys): SigningKeys {
  const snapshot = 'snapshot' in keys ? keys.snapshot : undefined;
  return {
    ...(keys.root === undefined ? {} : { root: keys.root }),
    ...(keys.targets === undefined ? {} : { targets: keys.targets }),
    ...(snapshot instanceof KeyObject ? { snapshot } : {}),
    delegations: keys.delegations,
  };
}

interface AttemptContext {
  readonly image: BuildImage;
  readonly role: string;
  readonly size: number;
  readonly targets: ReadonlyMap<string, ReturnType<typeof imageTarget>>;
  readonly options: SignBuildOptions;
  readonly deps: SignBuildDependencies;
  readonly session: KeySession;
  readonly attempt: number;
}

async function attemptOnce(ctx: AttemptContext): Promise<Attempt> {
  const { image, deps } = ctx;
  const gun = image.gun;
  const progress = deps.progress ?? ((): void => undefined);
  const rootBytes = await currentRoot(deps.notary, gun);
  const now = deps.now();

  if (rootBytes === undefined) {
    // Refuse before any GET <role>.key: until a published root lists them, each one makes notary
    // generate a new key, so a refused creation (kpack mounts no root key) must ask for none. A
    // delegation is refused before the key store may generate keys too: a root key no repository
    // lists would be left behind, and a stored one anchors every later build to it.
    checkCreatingRole(gun, ctx.role);
    const keys = creatingKeys(
      gun,
      ctx.role,
      await ctx.session.load(true),
      deps.keyStore.description,
    );
    // Ask for each server key exactly once, for the same reason.
    const timestamp = await serverKey(deps.notary, gun, 'timestamp');
    const snapshot =
      keys.snapshot === undefined ? await serverKey(deps.notary, gun, 'snapshot') : undefined;
    const plan = await planNewRepository({
      gun,
      role: ctx.role,
      targets: ctx.targets,
      keys,
      serverKeys: { timestamp, ...(snapshot === undefined ? {} : { snapshot }) },
      now,
    });
    progress(`${gun} is a new repository: creating it with root key ${plan.rootKeyId}`);
    try {
      await deps.notary.publish(gun, plan.files);
    } catch (err) {
      // Another first build won the race: the server refuses a second root v1 (400 INVALID_UPDATE).
      if (isTrustError(err, 'HTTP_STATUS') && err.facts.status === 400) {
        if ((await currentRoot(deps.notary, gun)) !== undefined)
          return { kind: 'conflict', error: err };
      }
      throw err;
    }
    return done(ctx, plan, true, [ctx.role]);
  }

  const keys = await ctx.session.load(false);
  const anchor = anchorFor(keys, ctx.options.rootKeyIds);
  let collection;
  try {
    // allowExpired: we are about to publish fresh versions, so an expired role (a build idle for
    // three years) is read — every other check still applies — and renewed by the plan. Root
    // expiry is never waived: see the EXPIRED case below.
    collection = await updateCollection(preloaded(deps.notary, gun, rootBytes), gun, {
      anchor: compileAnchor(anchor.anchor, gun),
      now,
      allowExpired: true,
    });
  } catch (err) {
    if (isTrustError(err, 'EXPIRED') && err.facts.role === 'root') {
      throw new TrustError(
        'EXPIRED',
        err.facts,
        `Cannot sign ${gun}: its root expired at ${err.facts.expires}. Root is renewed only before it expires ` +
          '(within six months, by this signer or the notary CLI); an expired root cannot be renewed, so the ' +
          `repository's trust data must be created anew (notary delete ${gun} --remote) and verifiers re-pinned.`,
        { cause: err },
      );
    }
    if (isTrustError(err, 'ROOT_NOT_TRUSTED') && anchor.pinnedBy !== 'tofu') {
      throw new TrustError(
        'SIGNING_KEY_UNUSABLE',
        { gun, role: 'root', keyId: anchor.ids.join(','), problem: err.facts.problem },
        anchor.pinnedBy === 'root-key'
          ? `Cannot sign ${gun}: its root is not signed by our root key ${anchor.ids.join(', ')}; this key store belongs to another repository or the root was rotated away from it.`
          : `Cannot sign ${gun}: its root is not signed by the pinned root key ${anchor.ids.join(', ')}.`,
        { cause: err },
      );
    }
    throw err;
  }
  const roleTargets = chosenRoles(ctx, collection, keys);
  const roles = roleTargets === undefined ? [ctx.role] : [...roleTargets.keys()];
  if (roleTargets !== undefined) progress(`${gun}: signing into ${roles.join(', ')}`);
  const plan = await planUpdate({
    gun,
    role: roles[0] ?? ctx.role,
    targets: ctx.targets,
    ...(roleTargets === undefined ? {} : { roleTargets }),
    collection,
    keys,
    now,
    // Under TOFU the role the caller names (targets, --delegation, an Image's delegation) must
    // already carry our signature (plan.ts). The delegations kpack's rule picks are exempt, as the
    // README documents: docker trust's several signers of one delegation could never meet it.
    requireOwnSignature:
      anchor.pinnedBy === 'tofu' &&
      (roleTargets === undefined || (roles.length === 1 && roles[0] === 'targets')),
    rootTrustedOnFirstUse: anchor.pinnedBy === 'tofu',
  });
  if (plan.files.length === 0) {
    progress(`${gun}: every tag already points to ${image.digest}; nothing to publish`);
    return done(ctx, plan, false, roles);
  }
  try {
    await deps.notary.publish(gun, plan.files);
  } catch (err) {
    if (isTrustError(err, 'HTTP_STATUS') && err.facts.status === 400) {
      if (err.facts.serverCode === 'VERSION') return { kind: 'conflict', error: err };
      if (
        err.facts.serverCode === 'INVALID_UPDATE' &&
        !plan.files.some((f) => f.role === 'snapshot')
      ) {
        await explainClientSnapshot(deps.notary, gun, collection.root, err);
      }
    }
    throw err;
  }
  if (plan.rootResigned) progress(`${gun}: root re-signed as version ${plan.root.version}`);
  if (plan.renewals.length > 0) progress(`${gun}: renewed expired ${describeRenewals(plan)}`);
  return done(ctx, plan, false, roles);
}

/** The caller's choice of roles for this collection, each with its tags' target entries. */
function chosenRoles(
  ctx: AttemptContext,
  collection: TrustedCollection,
  keys: SigningKeys,
): Map<string, ReadonlyMap<string, ReturnType<typeof imageTarget>>> | undefined {
  const choose = ctx.options.chooseRoles;
  if (choose === undefined) return undefined;
  const out = new Map<string, ReadonlyMap<string, ReturnType<typeof imageTarget>>>();
  for (const [role, tags] of choose(collection, keys, ctx.image.tags)) {
    const entries = new Map<string, ReturnType<typeof imageTarget>>();
    for (const tag of tags) {
      const target = ctx.targets.get(tag);
      if (target === undefined) throw new RangeError(`${role} was given "${tag}", not a build tag`);
      entries.set(tag, target);
    }
    out.set(role, entries);
  }
  return out;
}

function done(
  ctx: AttemptContext,
  plan: PublishPlan,
  created: boolean,
  roles: readonly string[],
): Attempt {
  const published = plan.files.map((f: PublishFile) => f.role);
  if (published.length > 0) {
    const versions = published.map((r) => `${r} v${plan.versions[r] ?? '?'}`).join(', ');
    (ctx.deps.progress ?? ((): void => undefined))(`${ctx.image.gun}: published ${versions}`);
  }
  return {
    kind: 'done',
    summary: {
      gun: ctx.image.gun,
      tags: ctx.image.tags,
      digest: ctx.image.digest,
      size: ctx.size,
      role: roles[0] ?? ctx.role,
      roles,
      rolesPublished: published,
      rootKeyId: plan.rootKeyId,
      rootCanonicalKeyId: plan.rootCanonicalKeyId,
      versions: plan.versions,
      created,
      keysCreated: ctx.session.keysCreated,
      attempts: ctx.attempt,
    },
  };
}

/** `targets (expired …, now valid until …), timestamp (expired …, re-signed by the notary server)`. */
function describeRenewals(plan: PublishPlan): string {
  return plan.renewals
    .map((r) => {
      const until =
        r.expires === undefined
          ? 're-signed by the notary server'
          : `now valid until ${r.expires.toISOString()}`;
      return `${r.role} (expired ${r.expired.toISOString()}, ${until})`;
    })
    .join(', ');
}

/** The anchor for reading before a publish: our root key, else pinned ids, else TOFU. */
function anchorFor(
  keys: SigningKeys,
  rootKeyIds: readonly string[] | undefined,
): { anchor: TrustAnchor; pinnedBy: 'root-key' | 'pinned' | 'tofu'; ids: string[] } {
  if (keys.root !== undefined) {
    // Our bare key's id is the canonical id of its certificate key in root.json; the anchor matches either.
    const id = PublicKey.fromKeyObject(keys.root.privateKey).id;
    return { anchor: { rootKeyIds: [id] }, pinnedBy: 'root-key', ids: [id] };
  }
  if (rootKeyIds !== undefined && rootKeyIds.length > 0) {
    return { anchor: { rootKeyIds }, pinnedBy: 'pinned', ids: [...rootKeyIds] };
  }
  return { anchor: { tofu: true }, pinnedBy: 'tofu', ids: [] };
}

/** root.json, or undefined when the server has never heard of the GUN (404). */
async function currentRoot(fetcher: MetadataFetcher, gun: string): Promise<Uint8Array | undefined> {
  try {
    return await fetcher.fetchMetadata(gun, { role: 'root', maxBytes: ROOT_LIMIT });
  } catch (err) {
    if (isTrustError(err, 'HTTP_STATUS') && err.facts.status === 404) return undefined;
    throw err;
  }
}

async function serverKey(
  publisher: MetadataPublisher,
  gun: string,
  role: 'timestamp' | 'snapshot',
): Promise<PublicKey> {
  return PublicKey.fromJson(await publisher.fetchServerKey(gun, role), {
    role: `${role}.key`,
    field: '$',
  });
}

/** A fetcher that answers the first plain `root.json` request with bytes already fetched. */
function preloaded(fetcher: MetadataFetcher, gun: string, rootBytes: Uint8Array): MetadataFetcher {
  let pending: Uint8Array | undefined = rootBytes;
  return {
    fetchMetadata(forGun: string, request: MetadataRequest): Promise<Uint8Array> {
      const plainRoot =
        forGun === gun &&
        request.role === 'root' &&
        request.version === undefined &&
        request.sha256Hex === undefined;
      if (plainRoot && pending !== undefined && pending.byteLength <= request.maxBytes) {
        const bytes = pending;
        pending = undefined;
        return Promise.resolve(bytes);
      }
      return fetcher.fetchMetadata(forGun, request);
    },
  };
}

/**
 * Notary refuses a targets update without a snapshot when the snapshot key is client-held (plain
 * `notary init`). Ask the server for its snapshot key: if root does not list it, say so plainly.
 */
async function explainClientSnapshot(
  publisher: MetadataPublisher,
  gun: string,
  root: {
    roles: { snapshot: { keyIds: readonly string[] } };
    keys: ReadonlyMap<string, PublicKey>;
  },
  original: TrustError,
): Promise<void> {
  let server: PublicKey;
  try {
    server = await serverKey(publisher, gun, 'snapshot');
  } catch {
    return;
  }
  if (root.roles.snapshot.keyIds.includes(server.id)) return;
  throw new TrustError(
    'SIGNING_KEY_UNUSABLE',
    {
      gun,
      role: 'snapshot',
      keyId: root.roles.snapshot.keyIds.join(','),
      problem: 'client-held snapshot key',
    },
    `Cannot sign ${gun}: its snapshot key is held by a client, not by the notary server, and we do not hold it; ` +
      `hand it to the server once with \`notary key rotate ${gun} snapshot -r\`.`,
    { cause: original },
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
