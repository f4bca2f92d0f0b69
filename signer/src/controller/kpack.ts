/**
 * What the controller reads from kpack's objects and from the Image's `kpack-trust.io/` annotations,
 * as pure functions over parsed JSON: a Build's finished state and tags, the Image it belongs to,
 * and the signing settings the Image (or the namespace policy) asks for. Nothing here does I/O.
 *
 * kpack's own Notary support lives in `spec.notary.v1` of the deprecated `kpack.io/v1alpha1` only,
 * and its API has no place for the RFC's key references, so the settings are annotations on the
 * Image — the object the operator owns — never on the Build, which kpack writes.
 */
import { notaryUrlProblem } from '../cli/notary-url.js';
import type { RepositoryAllowlist } from './repository-allowlist.js';

/** Annotation keys the controller reads (Image) and writes (Build). */
export const ANNOTATIONS = {
  /** Image: `"true"` opts in, `"false"` opts out even where the namespace policy opts in. */
  sign: 'kpack-trust.io/sign',
  /** Image: the notary server (https only); absent: the controller's default. */
  notaryUrl: 'kpack-trust.io/notary-url',
  /** Image: the RFC's rootPrivateKeyRef — a Secret name, kept in the controller's namespace. */
  rootKeySecret: 'kpack-trust.io/root-key-secret',
  /** Image: the RFC's targetPrivateKeyRef. */
  targetsKeySecret: 'kpack-trust.io/targets-key-secret',
  /** Image: sign into this delegation (`targets/releases`) instead of `targets`. */
  delegation: 'kpack-trust.io/delegation',
  /** Image: comma-separated root key ids the repository's root must be signed by. */
  rootKeyId: 'kpack-trust.io/root-key-id',
  /** Build: the digest signed, with every tag, and what a verifier pins. */
  signedDigest: 'kpack-trust.io/signed-digest',
  signedTags: 'kpack-trust.io/signed-tags',
  signedRoles: 'kpack-trust.io/signed-roles',
  signedRootKeyId: 'kpack-trust.io/signed-root-key-id',
  signedAt: 'kpack-trust.io/signed-at',
  /**
   * Build: tags a newer succeeded Build of the same Image signs instead (`gun:tag`, comma-separated),
   * and those Builds' names; written beside signed-digest, or beside superseded-digest when every
   * tag was left (succeeded-builds.ts).
   */
  supersededTags: 'kpack-trust.io/superseded-tags',
  supersededBy: 'kpack-trust.io/superseded-by',
  /** Build: the digest of a Build that signed nothing, every tag being a newer Build's to sign. */
  supersededDigest: 'kpack-trust.io/superseded-digest',
  /** Build: the final error, and the digest it is final for. */
  signingError: 'kpack-trust.io/signing-error',
  signingErrorReason: 'kpack-trust.io/signing-error-reason',
  failedDigest: 'kpack-trust.io/signing-failed-digest',
} as const;

/** Event reasons, as `kubectl describe` shows them. */
export const EVENT_REASONS = {
  signed: 'Signed',
  failed: 'SigningFailed',
  /** Every tag of the Build was left to a newer Build of its Image; nothing was published. */
  superseded: 'SigningSuperseded',
} as const;

/** The parts of a kpack Build the controller acts on. */
export interface BuildState {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly apiVersion: string;
  /** `metadata.creationTimestamp`, set by the apiserver: the order of an Image's Builds (succeeded-builds.ts). */
  readonly createdAt?: string;
  /** The owning Image's name (controller owner reference, else kpack's `image.kpack.io/image` label). */
  readonly imageName?: string;
  readonly imageUid?: string;
  readonly tags: readonly string[];
  /** `Succeeded` condition: True, False, or Unknown/absent (still running). */
  readonly succeeded: 'True' | 'False' | 'Unknown';
  /** `status.latestImage`, `registry/path@sha256:…`, once kpack has recorded it. */
  readonly latestImage?: string;
  readonly annotations: Readonly<Record<string, string>>;
  /** The service account the Build runs as (v1alpha2 `serviceAccountName`, v1alpha1 `serviceAccount`; kpack's default `default`). */
  readonly serviceAccountName: string;
}

/** A Build's work-queue key: `namespace/name`. */
export function buildKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Tags a Build may list; readBuild keeps one more, so that reconcile can refuse a Build over it. */
export const MAX_TAGS = 100;

/** Reads a Build object (any served version); undefined when it lacks a name or namespace. */
export function readBuild(object: unknown): BuildState | undefined {
  const root = record(object);
  const metadata = record(root['metadata']);
  const namespace = str(metadata['namespace']);
  const name = str(metadata['name']);
  if (namespace === undefined || name === undefined) return undefined;
  const spec = record(root['spec']);
  const status = record(root['status']);
  const owner = list(metadata['ownerReferences'])
    .map(record)
    .find((ref) => ref['kind'] === 'Image' && ref['controller'] === true);
  // Only the controlling owner reference names the Image, and reconcile checks its uid: the
  // `image.kpack.io/image` label is as much the Build creator's word as the rest of the Build.
  const imageName = str(owner?.['name']);
  const imageUid = str(owner?.['uid']);
  const condition = list(status['conditions'])
    .map(record)
    .find((c) => c['type'] === 'Succeeded');
  const conditionStatus = condition?.['status'];
  const succeeded =
    conditionStatus === 'True' || conditionStatus === 'False' ? conditionStatus : 'Unknown';
  // Bounded: a Build is attacker-influenced data (anyone who may create Builds writes its tags).
  const tags = list(spec['tags'])
    .slice(0, MAX_TAGS + 1)
    .filter((t): t is string => typeof t === 'string');
  const latestImage = str(status['latestImage']);
  const createdAt = str(metadata['creationTimestamp']);
  const serviceAccountName =
    str(spec['serviceAccountName']) ?? str(spec['serviceAccount']) ?? 'default';
  return {
    namespace,
    name,
    uid: str(metadata['uid']) ?? '',
    apiVersion: str(root['apiVersion']) ?? 'kpack.io/v1alpha2',
    ...(createdAt === undefined ? {} : { createdAt }),
    ...(imageName === undefined ? {} : { imageName }),
    ...(imageUid === undefined ? {} : { imageUid }),
    tags,
    succeeded,
    ...(latestImage === undefined ? {} : { latestImage }),
    annotations: strings(metadata['annotations']),
    serviceAccountName,
  };
}

/** The parts of an Image the controller reads. */
export interface ImageState {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly apiVersion: string;
  readonly annotations: Readonly<Record<string, string>>;
  /**
   * `spec.tag`: the repository the Image pushes to, and every Build's first tag (kpack v0.17.2
   * `Image.generateTags`). kpack's webhook keeps it immutable once the Image exists.
   */
  readonly tag?: string;
}

/** Reads an Image object. */
export function readImage(object: unknown): ImageState | undefined {
  const root = record(object);
  const metadata = record(root['metadata']);
  const namespace = str(metadata['namespace']);
  const name = str(metadata['name']);
  if (namespace === undefined || name === undefined) return undefined;
  const tag = str(record(root['spec'])['tag']);
  return {
    namespace,
    name,
    uid: str(metadata['uid']) ?? '',
    apiVersion: str(root['apiVersion']) ?? 'kpack.io/v1alpha2',
    annotations: strings(metadata['annotations']),
    ...(tag === undefined ? {} : { tag }),
  };
}

/** The controller-wide defaults an Image's annotations override. */
export interface SigningDefaults {
  /** Used when the Image names none; undefined: an Image must name one. */
  readonly notaryUrl?: string;
  /** Namespaces whose Images are signed without `kpack-trust.io/sign: "true"`; `*` is every namespace. */
  readonly optInNamespaces: readonly string[];
  /**
   * The notary servers an Image's annotation may name, besides the default. The controller
   * presents registry credentials (its own among them) to the server it signs on, so a namespace
   * user may not choose that server freely.
   */
  readonly allowedNotaryUrls: readonly string[];
  /**
   * The repositories each namespace's Images may have signed (`--allow-repository`); absent:
   * any, as before the list existed. See repository-allowlist.ts.
   */
  readonly repositoryAllowlist?: RepositoryAllowlist;
}

/** How one Image's builds are signed. */
export interface SigningSettings {
  readonly notaryUrl: string;
  /** Names of the Secrets in the controller's namespace (already namespaced, see secretNameFor). */
  readonly rootKeySecret: string;
  readonly targetsKeySecret: string;
  readonly delegation?: string;
  readonly rootKeyIds: readonly string[];
}

/** Whether and how an Image is signed, or why its configuration can never work. */
export type SigningDecision =
  | { readonly kind: 'not-opted-in' }
  | { readonly kind: 'sign'; readonly settings: SigningSettings }
  | { readonly kind: 'invalid'; readonly problem: string };

const DELEGATION = /^targets(?:\/[-a-z0-9_]+)+$/;
const KEY_ID = /^[0-9a-f]{64}$/;
const SECRET_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Decides from the Image's annotations and the defaults; pure. */
export function signingDecision(image: ImageState, defaults: SigningDefaults): SigningDecision {
  const a = image.annotations;
  const sign = a[ANNOTATIONS.sign];
  const namespaceOptedIn =
    defaults.optInNamespaces.includes('*') || defaults.optInNamespaces.includes(image.namespace);
  if (sign === 'false') return { kind: 'not-opted-in' };
  if (sign !== undefined && sign !== 'true') {
    return invalid(`${ANNOTATIONS.sign} is "${clip(sign)}"; it must be "true" or "false"`);
  }
  if (sign === undefined && !namespaceOptedIn) return { kind: 'not-opted-in' };

  const notaryUrl = a[ANNOTATIONS.notaryUrl] ?? defaults.notaryUrl;
  if (notaryUrl === undefined) {
    return invalid(
      `no notary server: set ${ANNOTATIONS.notaryUrl} on the Image or give the controller a default`,
    );
  }
  const urlProblem = httpsProblem(notaryUrl);
  if (urlProblem !== undefined) return invalid(`${ANNOTATIONS.notaryUrl}: ${urlProblem}`);
  if (!isAllowedNotary(notaryUrl, defaults)) {
    return invalid(
      `${ANNOTATIONS.notaryUrl} names a notary server the controller is not allowed to sign on ` +
        '(its operator lists them with --allow-notary-url)',
    );
  }

  const root = secretName(image, a[ANNOTATIONS.rootKeySecret], 'root');
  if (root.problem !== undefined) return invalid(`${ANNOTATIONS.rootKeySecret}: ${root.problem}`);
  const targets = secretName(image, a[ANNOTATIONS.targetsKeySecret], 'targets');
  if (targets.problem !== undefined) {
    return invalid(`${ANNOTATIONS.targetsKeySecret}: ${targets.problem}`);
  }
  if (root.name === targets.name) {
    return invalid('the root and targets keys need two different Secrets');
  }
  const delegation = a[ANNOTATIONS.delegation];
  if (delegation !== undefined && !DELEGATION.test(delegation)) {
    return invalid(
      `${ANNOTATIONS.delegation} "${clip(delegation)}" is not a delegation role such as targets/releases`,
    );
  }
  const pins = (a[ANNOTATIONS.rootKeyId] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (pins.length > 16) return invalid(`${ANNOTATIONS.rootKeyId} lists more than 16 key ids`);
  const badPin = pins.find((p) => !KEY_ID.test(p));
  if (badPin !== undefined) {
    return invalid(`${ANNOTATIONS.rootKeyId} "${clip(badPin)}" is not a 64-hex-digit key id`);
  }
  return {
    kind: 'sign',
    settings: {
      notaryUrl,
      rootKeySecret: root.name,
      targetsKeySecret: targets.name,
      ...(delegation === undefined ? {} : { delegation }),
      rootKeyIds: pins,
    },
  };
}

/**
 * The Secret name in the controller's namespace for a name an Image gives (or derives). Prefixed
 * with the Image's namespace and a dot — namespaces cannot contain dots — so an Image in one
 * namespace can never name, and sign with, the keys of another namespace's Images. Two Images of
 * one namespace share a root only when they name the same Secret (the RFC's "unless configured").
 */
export function secretNameFor(namespace: string, name: string): string {
  return `${namespace}.${name}`;
}

function secretName(
  image: ImageState,
  given: string | undefined,
  role: 'root' | 'targets',
): { name: string; problem?: undefined } | { name?: undefined; problem: string } {
  const local = given ?? `${image.name}-${role}-key`;
  if (!SECRET_NAME.test(local) || local.length > 200) {
    return {
      problem: `"${clip(local)}" is not a valid Secret name (a lowercase RFC 1123 subdomain)`,
    };
  }
  const full = secretNameFor(image.namespace, local);
  if (full.length > 253) return { problem: `"${clip(local)}" is too long` };
  return { name: full };
}

/** The shared notary URL rule (cli/notary-url.ts), worded for the annotation; the URL is not echoed. */
function httpsProblem(text: string): string | undefined {
  switch (notaryUrlProblem(text)) {
    case undefined:
      return undefined;
    case 'not-a-url':
      return 'the value is not a URL such as https://notary.example.com';
    case 'not-https':
      return 'the URL is not https; the notary server must be reached over TLS';
    case 'credentials':
      return 'the URL must not carry credentials';
    case 'query-or-fragment':
      return 'the URL must not have a query or fragment';
  }
}

function invalid(problem: string): SigningDecision {
  return { kind: 'invalid', problem };
}

/** Bounds what an error repeats of attacker-written annotation text. */
export function clip(text: string, max = 120): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function strings(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(record(value))) if (typeof v === 'string') out[k] = v;
  return out;
}

/** The default notary and the listed ones, compared without trailing slashes. */
function isAllowedNotary(url: string, defaults: SigningDefaults): boolean {
  const bare = (u: string): string => u.replace(/\/+$/, '');
  const wanted = bare(url);
  if (defaults.notaryUrl !== undefined && bare(defaults.notaryUrl) === wanted) return true;
  return defaults.allowedNotaryUrls.some((allowed) => bare(allowed) === wanted);
}
