/**
 * Docker image references, parsed the way the Docker CLI does (distribution/reference's grammar plus
 * its "normalized named" rules), because the GUN that Docker Content Trust signs and looks up is the
 * normalized repository name: `alpine` is signed as `docker.io/library/alpine`.
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path-component [ "/" path-component ]*
 *   domain    := host [ ":" port ]      host := domain-name | IPv4 | "[" IPv6 "]"
 */
import { TrustError } from '../errors.js';

/** A parsed, normalized image reference. */
export interface ImageReference {
  /** Registry host with optional port, as written (`docker.io` for familiar names). */
  readonly registry: string;
  /** Repository path below the registry (`library/alpine`). */
  readonly path: string;
  /** `registry/path` — the GUN under which Notary v1 stores the repository's trust data. */
  readonly name: string;
  /** The tag as written, or `latest` when neither a tag nor a digest is given. */
  readonly tag?: string;
  /** `sha256:<64 lowercase hex>`. */
  readonly digest?: string;
  /** The string as given to the parser. */
  readonly original: string;
}

/** Docker Hub's canonical domain; familiar names (`alpine`, `user/app`) live here. */
const DOCKER_HUB = 'docker.io';
/** The legacy Docker Hub name, which Docker normalizes to `docker.io`. */
const LEGACY_DOCKER_HUB = 'index.docker.io';
/** Docker Hub's namespace for official images: `alpine` → `library/alpine`. */
const OFFICIAL_PREFIX = 'library/';
/** The tag Docker assumes when a reference names neither a tag nor a digest. */
const DEFAULT_TAG = 'latest';
/**
 * Longest repository name. Counted over the normalized `registry/path`, as Docker's parser did
 * while Notary v1 was current (distribution ≤ 2.8 measured the whole name) and as the OCI
 * distribution spec advises; newer distribution/reference versions count the path alone.
 */
const NAME_MAX = 255;
/** Longest tag the tag grammar allows. */
const TAG_MAX = 128;

/** `[a-z0-9]+` joined by one of `.`, `_`, `__` or a run of `-`. */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
/** A DNS-like name (letters of either case, digits, inner hyphens) or a bracketed IPv6 address, optional port. */
const DOMAIN =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
/** Go's `\w` is ASCII-only, as is JavaScript's without the `i` and `u` flags combined. */
const TAG = /^\w[\w.-]*$/;
/** `algorithm:hex` with at least 128 bits of hex, as the reference grammar allows. */
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** go-digest accepts only lowercase hex of the algorithm's exact length. */
const SHA256_HEX = /^[a-f0-9]{64}$/;
/** A bare image id, which Docker refuses as a repository name. */
const IDENTIFIER = /^[a-f0-9]{64}$/;

/** Parses `input` like `docker pull` does; throws REFERENCE_INVALID naming the first problem found. */
export function parseImageReference(input: string): ImageReference {
  const fail = (problem: string): never => {
    throw new TrustError(
      'REFERENCE_INVALID',
      { reference: input, problem },
      `Invalid image reference "${input}": ${problem}.`,
    );
  };

  if (input === '') return fail('reference is empty');
  if (IDENTIFIER.test(input)) {
    return fail('a 64-character hex string is an image ID, not a repository name');
  }

  // Neither the name nor the tag may contain '@', so the first '@' starts the digest.
  const at = input.indexOf('@');
  const beforeDigest = at === -1 ? input : input.slice(0, at);
  const digest = at === -1 ? undefined : input.slice(at + 1);

  // A tag cannot contain '/' or ':' (nor ']'), so a ':' after the last '/' (and after an IPv6
  // literal's ']') separates the tag; any earlier ':' belongs to the registry's port.
  const colon = beforeDigest.lastIndexOf(':');
  const hasTag =
    colon !== -1 && colon > beforeDigest.lastIndexOf('/') && colon > beforeDigest.lastIndexOf(']');
  const name = hasTag ? beforeDigest.slice(0, colon) : beforeDigest;
  const tag = hasTag ? beforeDigest.slice(colon + 1) : undefined;

  if (name === '') return fail('repository name is missing');

  const [registry, path] = splitRegistry(name);
  if (!DOMAIN.test(registry)) return fail(`registry "${registry}" is not a valid host[:port]`);
  if (path.toLowerCase() !== path) return fail(`repository path "${path}" must be lowercase`);
  for (const component of path.split('/')) {
    if (component === '') return fail(`repository path "${path}" has an empty component`);
    if (!PATH_COMPONENT.test(component)) {
      return fail(
        `path component "${component}" must be lowercase letters and digits joined by ".", "_", "__" or "-"`,
      );
    }
  }
  const fullName = `${registry}/${path}`;
  if (fullName.length > NAME_MAX) {
    return fail(
      `repository name is ${fullName.length} characters; at most ${NAME_MAX} are allowed`,
    );
  }

  if (tag !== undefined) {
    if (tag === '') return fail('tag is empty');
    if (tag.length > TAG_MAX) {
      return fail(`tag is ${tag.length} characters; at most ${TAG_MAX} are allowed`);
    }
    if (!TAG.test(tag)) {
      return fail(`tag "${tag}" must be letters, digits and "_", then also "." or "-"`);
    }
  }

  if (digest !== undefined) {
    if (!DIGEST.test(digest)) {
      return fail(`digest "${digest}" is not algorithm:hex with at least 32 hex digits`);
    }
    const separator = digest.indexOf(':');
    const algorithm = digest.slice(0, separator);
    if (algorithm !== 'sha256') {
      // Syntactically fine, but Notary v1 targets carry sha256 hashes, so nothing could match it.
      return fail(
        `digest algorithm "${algorithm}" is not supported; Notary v1 verifies sha256 only`,
      );
    }
    if (!SHA256_HEX.test(digest.slice(separator + 1))) {
      return fail('a sha256 digest must be 64 lowercase hex digits');
    }
  }

  return {
    registry,
    path,
    name: fullName,
    ...(tag !== undefined ? { tag } : digest === undefined ? { tag: DEFAULT_TAG } : {}),
    ...(digest !== undefined ? { digest } : {}),
    original: input,
  };
}

/**
 * Docker's rule for the first path element: it names a registry only if it is `localhost`, holds a
 * `.` or `:`, or has an uppercase letter (which no repository path may); otherwise the name is on
 * Docker Hub, where a single-element path is an official image under `library/`.
 */
function splitRegistry(name: string): [registry: string, path: string] {
  const slash = name.indexOf('/');
  if (slash === -1) return [DOCKER_HUB, OFFICIAL_PREFIX + name];
  const first = name.slice(0, slash);
  const rest = name.slice(slash + 1);
  let registry: string;
  let path: string;
  if (first === LEGACY_DOCKER_HUB) {
    [registry, path] = [DOCKER_HUB, rest];
  } else if (
    first === 'localhost' ||
    first.includes('.') ||
    first.includes(':') ||
    first.toLowerCase() !== first
  ) {
    [registry, path] = [first, rest];
  } else {
    [registry, path] = [DOCKER_HUB, name];
  }
  if (registry === DOCKER_HUB && !path.includes('/')) path = OFFICIAL_PREFIX + path;
  return [registry, path];
}

/** The canonical string `registry/path[:tag][@digest]`. */
export function formatImageReference(ref: ImageReference): string {
  const tag = ref.tag === undefined ? '' : `:${ref.tag}`;
  const digest = ref.digest === undefined ? '' : `@${ref.digest}`;
  return `${ref.name}${tag}${digest}`;
}

/** The Globally Unique Name under which the notary server keeps this repository's trust data. */
export function gunOf(ref: ImageReference): string {
  return ref.name;
}
