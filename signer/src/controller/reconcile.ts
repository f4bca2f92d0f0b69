/**
 * One Build, reconciled: read it fresh, decide whether it is to be signed, sign its tags at the
 * digest of `status.latestImage` through the same flow as `kpack-trust-signer sign`, and record the
 * outcome on the Build (annotations) and as Events on the Build and its Image. Every edge is
 * injected, so this file is the controller's behaviour and its unit tests need no apiserver.
 *
 * Idempotent by construction: a Build whose `signed-digest` (or `signing-failed-digest`, or
 * `superseded-digest`) annotation names its digest is done; and if a replica died between publishing
 * and annotating, signing again publishes nothing (`signBuild` finds every tag already at the
 * digest) and only writes the record.
 *
 * A tag that a newer succeeded Build of the same Image also lists is that Build's to sign, not this
 * one's (succeeded-builds.ts): an Image's Builds share `spec.tag` and `additionalTags`, and signing
 * them at an older digest after the newer one would roll the tag back.
 */
import { isTrustError, parseImageReference } from '@kpack-trust/common';
import { exitCodeFor, ExitCode } from '../cli/exit-codes.js';
import { buildImageOf, type BuildImage } from '../publish/build-image.js';
import { KeyQuotaError } from './key-quota.js';
import { repositoryVerdict } from './repository-allowlist.js';
import {
  tagKey,
  tagsLeftToNewer,
  type SucceededBuild,
  type SucceededBuildIndex,
} from './succeeded-builds.js';
import type { SignSummary } from '../publish/sign-build.js';
import {
  ANNOTATIONS,
  EVENT_REASONS,
  MAX_TAGS,
  clip,
  readBuild,
  readImage,
  signingDecision,
  type BuildState,
  type ImageState,
  type SigningDefaults,
  type SigningSettings,
} from './kpack.js';

/** An object an Event is about. */
export interface ObjectReference {
  readonly apiVersion: string;
  readonly kind: 'Build' | 'Image';
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

/** A Kubernetes Event to record. */
export interface ControllerEvent {
  readonly object: ObjectReference;
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly message: string;
}

/** What a sign call needs beyond the image: the Image's settings and whose Build it is. */
export interface SignRequest {
  readonly image: BuildImage;
  readonly settings: SigningSettings;
  readonly build: BuildState;
}

/** The edges of one reconcile; the controller wires them to the apiserver and the notary flow. */
export interface ReconcileDependencies {
  /** The Build as the apiserver has it now, or undefined when it was deleted. */
  readonly getBuild: (namespace: string, name: string) => Promise<unknown>;
  readonly getImage: (namespace: string, name: string) => Promise<unknown>;
  /** Merge-patches the Build's annotations; null removes one. */
  readonly annotateBuild: (
    build: BuildState,
    annotations: Readonly<Record<string, string | null>>,
  ) => Promise<void>;
  readonly recordEvent: (event: ControllerEvent) => Promise<void>;
  readonly sign: (request: SignRequest) => Promise<SignSummary>;
  /** The succeeded Builds the controller has seen, to leave shared tags to the newest. */
  readonly succeededBuilds: SucceededBuildIndex;
  readonly defaults: SigningDefaults;
  readonly now: () => Date;
}

/** What happened to the Build. */
export type ReconcileOutcome =
  | { readonly kind: 'gone' }
  | { readonly kind: 'waiting'; readonly why: string }
  | { readonly kind: 'not-opted-in' }
  | { readonly kind: 'already-done'; readonly digest: string }
  | { readonly kind: 'signed'; readonly summary: SignSummary; readonly latencyMs: number }
  /** Every tag was a newer Build's to sign; nothing was published. */
  | { readonly kind: 'superseded'; readonly digest: string; readonly by: readonly string[] }
  | { readonly kind: 'failed'; readonly reason: FailureReason; readonly message: string }
  | { readonly kind: 'retry'; readonly reason: FailureReason; readonly message: string };

/** Why a Build was not signed; the `reason` label of the failures metric. */
export type FailureReason =
  | 'ConfigInvalid'
  | 'ImageNotFound'
  | 'BuildInvalid'
  | 'InputInvalid'
  | 'KeyUnusable'
  /** The Image's first Build would pass --max-key-secrets-per-namespace (key-quota.ts). */
  | 'KeyQuotaExceeded'
  /** The tags' repository is not on the namespace's --allow-repository list (repository-allowlist.ts). */
  | 'RepositoryNotAllowed'
  | 'AuthFailed'
  | 'Unavailable'
  | 'Conflict'
  | 'VerificationFailed';

/** Where this attempt stands among the queue's retries. */
export interface AttemptInfo {
  readonly attempt: number;
  /** On the last attempt a transient failure is recorded as final instead of retried. */
  readonly last: boolean;
}

const MAX_ERROR_ANNOTATION = 1_000;
/** Fresh reads of the Builds named as newer, per reconcile; past it the index's word stands (withholding). */
const MAX_NEWER_READS = 8;

/** Reconciles the Build `namespace/name`. Throws only when the apiserver cannot be talked to. */
export async function reconcileBuild(
  namespace: string,
  name: string,
  attempt: AttemptInfo,
  deps: ReconcileDependencies,
): Promise<ReconcileOutcome> {
  const build = readBuild(await deps.getBuild(namespace, name));
  if (build === undefined) return { kind: 'gone' };
  if (build.succeeded !== 'True') {
    return { kind: 'waiting', why: `Succeeded is ${build.succeeded}` };
  }
  const latest = build.latestImage;
  if (latest === undefined) return { kind: 'waiting', why: 'no status.latestImage yet' };

  const digest = digestOf(latest);
  const done = [
    build.annotations[ANNOTATIONS.signedDigest],
    build.annotations[ANNOTATIONS.failedDigest],
    build.annotations[ANNOTATIONS.supersededDigest],
  ];
  if (digest !== undefined && done.includes(digest)) return { kind: 'already-done', digest };

  if (build.imageName === undefined) {
    // A Build without an Image (created by hand) has no place for settings: not ours to sign.
    return { kind: 'not-opted-in' };
  }
  const imageObject = await deps.getImage(namespace, build.imageName);
  const image = imageObject === undefined ? undefined : readImage(imageObject);
  if (image === undefined) {
    return fail(
      build,
      undefined,
      'ImageNotFound',
      `its Image "${build.imageName}" does not exist`,
      deps,
    );
  }
  if (build.imageUid !== image.uid) {
    // Anyone who may create Builds can write an owner reference naming an opted-in Image; only
    // kpack's, which carries that Image's uid, may spend its keys. Recorded on the Build alone.
    return fail(
      build,
      undefined,
      'BuildInvalid',
      `its owner reference names Image "${image.name}" but not that Image's uid`,
      deps,
      digest,
    );
  }
  const decision = signingDecision(image, deps.defaults);
  if (decision.kind === 'not-opted-in') return { kind: 'not-opted-in' };
  if (decision.kind === 'invalid') {
    return fail(
      build,
      image,
      'ConfigInvalid',
      `the Image's settings are invalid: ${decision.problem}`,
      deps,
      digest,
    );
  }

  let buildImage: BuildImage;
  try {
    buildImage = imageOf(build, latest, image);
  } catch (err) {
    return fail(build, image, 'BuildInvalid', messageOf(err), deps, digest);
  }
  const allowlist = deps.defaults.repositoryAllowlist;
  if (allowlist !== undefined) {
    // imageOf has held every tag to one repository, the GUN; checked before any key is loaded or
    // created, so a namespace cannot take another's repository by signing it first.
    const verdict = repositoryVerdict(allowlist, build.namespace, buildImage.gun);
    if (verdict.kind === 'refused') {
      return fail(build, image, 'RepositoryNotAllowed', verdict.problem, deps, buildImage.digest);
    }
  }

  const left = await leftToNewerBuilds(build, deps);
  if (left === undefined) {
    return { kind: 'waiting', why: 'the controller stopped before it had listed every Build' };
  }
  const own = build.tags.filter((tag) => !left.tags.has(tag));
  if (own.length === 0) return superseded(build, image, buildImage, left, deps);
  if (left.tags.size > 0) {
    buildImage = buildImageOf(
      own,
      buildImage.digest,
      undefined,
      `Build ${build.namespace}/${build.name}`,
    );
  }

  const started = deps.now().getTime();
  let summary: SignSummary;
  try {
    summary = await deps.sign({ image: buildImage, settings: decision.settings, build });
  } catch (err) {
    const reason = reasonFor(err);
    const transient = reason === 'Unavailable' || reason === 'Conflict' || reason === 'AuthFailed';
    if (transient && !attempt.last) return { kind: 'retry', reason, message: messageOf(err) };
    const suffix = transient ? ` (gave up after ${attempt.attempt} attempts)` : '';
    return fail(build, image, reason, `${messageOf(err)}${suffix}`, deps, buildImage.digest);
  }
  const latencyMs = deps.now().getTime() - started;

  await deps.annotateBuild(build, {
    [ANNOTATIONS.signedDigest]: summary.digest,
    [ANNOTATIONS.signedTags]: summary.tags.map((t) => `${summary.gun}:${t}`).join(','),
    [ANNOTATIONS.signedRoles]: (summary.rolesPublished.length > 0
      ? summary.rolesPublished
      : [summary.role]
    ).join(','),
    // The canonical id (the bare public key) is the pin that survives root-certificate renewals.
    [ANNOTATIONS.signedRootKeyId]: summary.rootCanonicalKeyId,
    [ANNOTATIONS.signedAt]: deps.now().toISOString(),
    [ANNOTATIONS.signingError]: null,
    [ANNOTATIONS.signingErrorReason]: null,
    [ANNOTATIONS.failedDigest]: null,
    ...supersededRecord(left),
    [ANNOTATIONS.supersededDigest]: null,
  });
  const message =
    `Signed ${summary.tags.map((t) => `${summary.gun}:${t}`).join(', ')} at ${summary.digest} into ` +
    `${summary.role} (root key ${summary.rootCanonicalKeyId}${summary.keysCreated ? ', keys generated' : ''})` +
    (left.tags.size === 0 ? '' : `; ${leftPhrase(left)}`);
  await recordBoth(build, image, 'Normal', EVENT_REASONS.signed, message, deps);
  return { kind: 'signed', summary, latencyMs };
}

/**
 * The image to sign: the Build's tags, at the digest of latestImage, all in the Image's own
 * repository. Whoever may create Builds writes their tags, and the uid check only proves that the
 * Build names this Image; so the tags are held to what kpack itself writes (v0.17.2
 * `Image.generateTags`): the first is the Image's `spec.tag`, and the others (the build-number tag,
 * `spec.additionalTags`) are checked to be in that same repository. kpack only requires
 * additionalTags to share the registry; one in another repository is refused here, as Notary v1
 * signs one repository per publish. Without this a Build of an opted-in Image could spend the
 * Image's keys and the controller's registry credentials on a GUN another Image pushes to.
 */
export function imageOf(
  build: BuildState,
  latestImage: string,
  image: Pick<ImageState, 'name' | 'tag'>,
): BuildImage {
  const latest = parseImageReference(latestImage);
  if (latest.digest === undefined) {
    throw new Error(`status.latestImage "${clip(latestImage)}" names no digest`);
  }
  if (build.tags.length > MAX_TAGS) throw new Error(`the Build lists more than ${MAX_TAGS} tags`);
  if (image.tag === undefined) throw new Error(`its Image "${image.name}" has no spec.tag`);
  const first = build.tags[0];
  if (first !== image.tag) {
    throw new Error(
      `its first tag ${first === undefined ? '(none)' : `"${clip(first)}"`} is not its Image's ` +
        `spec.tag "${clip(image.tag)}", as kpack writes every Build of that Image; nothing was published`,
    );
  }
  const own = parseImageReference(image.tag).name;
  const stray = build.tags.find((tag) => parseImageReference(tag).name !== own);
  if (stray !== undefined) {
    throw new Error(
      `its tag "${clip(stray)}" is not in its Image's repository ${own} (spec.tag); nothing was published`,
    );
  }
  const signed = buildImageOf(
    build.tags,
    latest.digest,
    undefined,
    `Build ${build.namespace}/${build.name}`,
  );
  if (signed.gun !== latest.name) {
    throw new Error(
      `status.latestImage is in ${latest.name}, but the tags are in ${signed.gun}; nothing was published`,
    );
  }
  return signed;
}

/** Tags of this Build that newer Builds sign, each with the newest such Build; `unknown` when the index could not tell. */
interface LeftToNewer {
  readonly tags: ReadonlyMap<string, string>;
  readonly unknown?: string;
}

/**
 * Asks the index which tags newer Builds hold, and re-reads each Build it names before believing
 * it: the informer passes no deletions, and a Build deleted since the last list must not keep a
 * tag from the Build that is now the newest. Undefined when the controller stopped first.
 */
async function leftToNewerBuilds(
  build: BuildState,
  deps: ReconcileDependencies,
): Promise<LeftToNewer | undefined> {
  const answer = await deps.succeededBuilds.newerThan(build);
  if (answer.kind === 'stopped') return undefined;
  if (answer.kind === 'unknown') {
    // Fail closed: without the full picture no tag is known to be this Build's alone.
    return { tags: new Map(build.tags.map((tag) => [tag, ''])), unknown: answer.why };
  }
  let newer: SucceededBuild[] = [...answer.builds];
  const confirmed = new Set<string>();
  for (let reads = 0; ;) {
    const left = tagsLeftToNewer(build, newer);
    const unconfirmed = [...new Set(left.values())].filter((name) => !confirmed.has(name));
    if (unconfirmed.length === 0 || reads >= MAX_NEWER_READS) return { tags: left };
    for (const name of unconfirmed.slice(0, MAX_NEWER_READS - reads)) {
      reads++;
      const fresh = readBuild(await deps.getBuild(build.namespace, name));
      const known = newer.find((other) => other.name === name);
      if (
        fresh === undefined ||
        known === undefined ||
        fresh.uid !== known.uid ||
        fresh.succeeded !== 'True' ||
        fresh.latestImage === undefined ||
        fresh.imageUid !== build.imageUid
      ) {
        deps.succeededBuilds.forget(build.namespace, name);
        newer = newer.filter((other) => other.name !== name);
        continue;
      }
      confirmed.add(name);
      // Its tags as they are now, not as the informer last saw them.
      const tags = fresh.tags.map(tagKey).filter((t): t is string => t !== undefined);
      newer = newer.map((other) => (other.name === name ? { ...other, tags } : other));
    }
  }
}

/** The superseded-tags/-by annotations for what was left; null (removed) when nothing was. */
function supersededRecord(left: LeftToNewer): Record<string, string | null> {
  if (left.tags.size === 0) {
    return { [ANNOTATIONS.supersededTags]: null, [ANNOTATIONS.supersededBy]: null };
  }
  return {
    [ANNOTATIONS.supersededTags]: clip([...left.tags.keys()].join(','), MAX_ERROR_ANNOTATION),
    [ANNOTATIONS.supersededBy]: clip(holdersOf(left), MAX_ERROR_ANNOTATION),
  };
}

function holdersOf(left: LeftToNewer): string {
  if (left.unknown !== undefined) return `unknown: ${left.unknown}`;
  return [...new Set(left.tags.values())].join(',');
}

function leftPhrase(left: LeftToNewer): string {
  const tags = [...left.tags.keys()].join(', ');
  return left.unknown !== undefined
    ? `left ${tags} unsigned: ${left.unknown}, so a newer Build may hold them`
    : `left ${tags} to the newer Build ${[...new Set(left.tags.values())].join(', ')}`;
}

/** Every tag was a newer Build's: record that on the Build (a final record, like a failure's) and publish nothing. */
async function superseded(
  build: BuildState,
  image: ImageState,
  buildImage: BuildImage,
  left: LeftToNewer,
  deps: ReconcileDependencies,
): Promise<ReconcileOutcome> {
  await deps.annotateBuild(build, {
    [ANNOTATIONS.supersededDigest]: buildImage.digest,
    ...supersededRecord(left),
    [ANNOTATIONS.signingError]: null,
    [ANNOTATIONS.signingErrorReason]: null,
    [ANNOTATIONS.failedDigest]: null,
  });
  const message = clip(
    `Nothing signed at ${buildImage.digest}: ${leftPhrase(left)}`,
    MAX_ERROR_ANNOTATION,
  );
  await recordBoth(build, image, 'Normal', EVENT_REASONS.superseded, message, deps);
  const by = left.unknown === undefined ? [...new Set(left.tags.values())] : [];
  return { kind: 'superseded', digest: buildImage.digest, by };
}

async function fail(
  build: BuildState,
  image: ImageState | undefined,
  reason: FailureReason,
  problem: string,
  deps: ReconcileDependencies,
  digest?: string,
): Promise<ReconcileOutcome> {
  const message = `Not signed: ${problem}`;
  await deps.annotateBuild(build, {
    [ANNOTATIONS.signingError]: clip(message, MAX_ERROR_ANNOTATION),
    [ANNOTATIONS.signingErrorReason]: reason,
    // Without a digest the failure cannot be pinned to one; the record still stops retries until the Build changes.
    [ANNOTATIONS.failedDigest]: digest ?? digestOf(build.latestImage ?? '') ?? 'unknown',
  });
  await recordBoth(
    build,
    image,
    'Warning',
    EVENT_REASONS.failed,
    clip(message, MAX_ERROR_ANNOTATION),
    deps,
  );
  return { kind: 'failed', reason, message };
}

async function recordBoth(
  build: BuildState,
  image: ImageState | undefined,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  deps: ReconcileDependencies,
): Promise<void> {
  const targets: ObjectReference[] = [
    {
      apiVersion: build.apiVersion,
      kind: 'Build',
      namespace: build.namespace,
      name: build.name,
      uid: build.uid,
    },
  ];
  if (image !== undefined) {
    targets.push({
      apiVersion: image.apiVersion,
      kind: 'Image',
      namespace: image.namespace,
      name: image.name,
      uid: image.uid,
    });
  }
  for (const object of targets) {
    await deps.recordEvent({
      object,
      type,
      reason,
      message: object.kind === 'Image' ? `Build ${build.name}: ${message}` : message,
    });
  }
}

/** The failure reason for an error of the signing flow, by the same classes as the CLI's exit codes. */
export function reasonFor(err: unknown): FailureReason {
  // Final: more attempts would find the same count until the operator acts.
  if (err instanceof KeyQuotaError) return 'KeyQuotaExceeded';
  if (isTrustError(err)) {
    if (
      err.code === 'SIGNING_KEY_UNUSABLE' ||
      err.code === 'KEY_STORE_INVALID' ||
      err.code === 'PRIVATE_KEY_INVALID'
    ) {
      return 'KeyUnusable';
    }
  }
  switch (exitCodeFor(err)) {
    case ExitCode.BAD_INPUT:
      return 'InputInvalid';
    case ExitCode.AUTH_FAILED:
      return 'AuthFailed';
    case ExitCode.UNAVAILABLE:
      return 'Unavailable';
    case ExitCode.CONFLICT:
      return 'Conflict';
    default:
      return isTrustError(err) ? 'VerificationFailed' : 'Unavailable';
  }
}

function digestOf(reference: string): string | undefined {
  const at = reference.lastIndexOf('@');
  if (at === -1) return undefined;
  const digest = reference.slice(at + 1);
  return /^sha256:[0-9a-f]{64}$/.test(digest) ? digest : undefined;
}

function messageOf(err: unknown): string {
  if (isTrustError(err)) return `${err.message} [${err.code}]`;
  return err instanceof Error ? err.message : String(err);
}
