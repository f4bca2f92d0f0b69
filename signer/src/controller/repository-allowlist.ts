/**
 * Which repositories the Images of each namespace may have signed. Keys are per namespace, but a
 * repository's Notary trust data is not: whichever namespace's Image signs a GUN first creates it
 * with its own root key and owns it, and the other fails with KeyUnusable. Without this list the
 * registry's push rights are the only thing that keeps tenant A's Image from naming (and taking)
 * tenant B's repository. Given as `--allow-repository NAMESPACE=PREFIX` (repeatable), beside the
 * controller's other namespace policy flags; pure, no I/O.
 *
 * A prefix matches on path-segment boundaries (`registry.example.com/team-a` allows
 * `registry.example.com/team-a/app`, never `registry.example.com/team-ab/app`); hosts are compared
 * without case, as DNS names are, and `index.docker.io` is `docker.io`, as the reference parser
 * (common/src/reference) normalizes it. A port is part of the host: `registry:5000` and `registry`
 * are different GUNs to a notary server, so they are different hosts here too.
 */

/** Most `--allow-repository` entries read: a bounded policy, however it was written. */
export const MAX_ALLOWLIST_ENTRIES = 1_000;
/** Most namespaces the list names. */
export const MAX_ALLOWLIST_NAMESPACES = 500;
/** Most prefixes one namespace may have. */
export const MAX_PREFIXES_PER_NAMESPACE = 64;
/** Longest prefix: a repository name is at most 255 characters (registry/path). */
export const MAX_PREFIX_LENGTH = 255;

/** A namespace's allowed prefixes, normalized. */
interface RepositoryPrefix {
  /** Lowercase host[:port], `docker.io` for Docker Hub. */
  readonly host: string;
  /** Path below the host; '' allows every repository of the host. */
  readonly path: string;
  /** As normalized, for messages. */
  readonly text: string;
}

/** The parsed `--allow-repository` entries: namespace → prefixes. */
export interface RepositoryAllowlist {
  readonly byNamespace: ReadonlyMap<string, readonly RepositoryPrefix[]>;
  /** `--require-repository-allowlist`: a namespace without an entry may sign nothing. */
  readonly required: boolean;
}

/** Whether a repository may be signed for a namespace. */
export type RepositoryVerdict =
  | { readonly kind: 'allowed' }
  /** The namespace has no entry and entries are not required: the behaviour without a list. */
  | { readonly kind: 'unlisted' }
  | { readonly kind: 'refused'; readonly problem: string };

/** An entry that cannot be read; the controller refuses to start. */
export class RepositoryAllowlistError extends Error {
  override readonly name = 'RepositoryAllowlistError';
  readonly code = 'REPOSITORY_ALLOWLIST_INVALID';
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A DNS name or bracketed IPv6 address with an optional port, as the reference grammar's domain. */
const HOST =
  /^(?:(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])(?:\.(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9]))*|\[[a-f0-9:]+\])(?::[0-9]{1,5})?$/;
/** A repository path component, as the reference grammar's. */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOCKER_HUB = 'docker.io';
const LEGACY_DOCKER_HUB = 'index.docker.io';

/** Parses `NAMESPACE=PREFIX` entries; throws RepositoryAllowlistError on the first bad one. */
export function parseRepositoryAllowlist(
  entries: readonly string[],
  required = false,
): RepositoryAllowlist {
  if (entries.length > MAX_ALLOWLIST_ENTRIES) {
    throw new RepositoryAllowlistError(
      `--allow-repository is given ${entries.length} times; at most ${MAX_ALLOWLIST_ENTRIES} are read`,
    );
  }
  const byNamespace = new Map<string, RepositoryPrefix[]>();
  for (const entry of entries) {
    const equals = entry.indexOf('=');
    const namespace = equals === -1 ? '' : entry.slice(0, equals);
    if (namespace.length > 63 || !NAMESPACE.test(namespace)) {
      throw new RepositoryAllowlistError(
        `--allow-repository "${shown(entry)}" is not NAMESPACE=PREFIX with a namespace name`,
      );
    }
    const prefix = parsePrefix(entry.slice(equals + 1), entry);
    let prefixes = byNamespace.get(namespace);
    if (prefixes === undefined) {
      if (byNamespace.size >= MAX_ALLOWLIST_NAMESPACES) {
        throw new RepositoryAllowlistError(
          `--allow-repository names more than ${MAX_ALLOWLIST_NAMESPACES} namespaces`,
        );
      }
      prefixes = [];
      byNamespace.set(namespace, prefixes);
    }
    if (prefixes.some((p) => p.text === prefix.text)) continue;
    if (prefixes.length >= MAX_PREFIXES_PER_NAMESPACE) {
      throw new RepositoryAllowlistError(
        `--allow-repository gives namespace "${namespace}" more than ${MAX_PREFIXES_PER_NAMESPACE} prefixes`,
      );
    }
    prefixes.push(prefix);
  }
  return { byNamespace, required };
}

/**
 * Decides for a repository (`registry/path` as parseImageReference names it) signed for an Image
 * of `namespace`.
 */
export function repositoryVerdict(
  allowlist: RepositoryAllowlist,
  namespace: string,
  repository: string,
): RepositoryVerdict {
  const prefixes = allowlist.byNamespace.get(namespace);
  if (prefixes === undefined) {
    if (!allowlist.required) return { kind: 'unlisted' };
    return {
      kind: 'refused',
      problem:
        `namespace "${namespace}" has no repository allowlist entry, and the controller signs ` +
        'only for listed namespaces (--require-repository-allowlist); nothing was published',
    };
  }
  const slash = repository.indexOf('/');
  const host = slash === -1 ? '' : normalizeHost(repository.slice(0, slash));
  const path = slash === -1 ? '' : repository.slice(slash + 1);
  const allowed = prefixes.some(
    (p) =>
      p.host === host &&
      (p.path === '' ||
        path === p.path ||
        (path.startsWith(p.path) && path[p.path.length] === '/')),
  );
  if (allowed) return { kind: 'allowed' };
  return {
    kind: 'refused',
    problem:
      `repository ${shown(repository)} is not under one the operator allows namespace ` +
      `"${namespace}" (${prefixes.map((p) => p.text).join(', ')}; --allow-repository); nothing was published`,
  };
}

function parsePrefix(text: string, entry: string): RepositoryPrefix {
  const bad = (why: string): never => {
    throw new RepositoryAllowlistError(`--allow-repository "${shown(entry)}": ${why}`);
  };
  if (text === '') return bad('the prefix is empty');
  if (text.length > MAX_PREFIX_LENGTH) {
    return bad(`the prefix is longer than ${MAX_PREFIX_LENGTH} characters`);
  }
  const slash = text.indexOf('/');
  const rawHost = slash === -1 ? text : text.slice(0, slash);
  const path = slash === -1 ? '' : text.slice(slash + 1);
  const host = normalizeHost(rawHost);
  // Docker's rule for a name's first element (a registry only with a dot, a colon or `localhost`):
  // a prefix without one would be read as a Docker Hub path, so it must name its registry.
  if (
    !HOST.test(host) ||
    !(host === 'localhost' || host.includes('.') || host.includes(':') || host.startsWith('['))
  ) {
    return bad(
      'the prefix must start with a registry host such as registry.example.com or docker.io',
    );
  }
  if (slash !== -1) {
    for (const component of path.split('/')) {
      if (!PATH_COMPONENT.test(component)) {
        return bad(
          'the path must be lowercase repository path components joined by "/", without a trailing "/"',
        );
      }
    }
  }
  return { host, path, text: path === '' ? host : `${host}/${path}` };
}

/** Hosts without case; Docker's legacy Hub name is Docker Hub. */
function normalizeHost(host: string): string {
  const lower = host.toLowerCase();
  return lower === LEGACY_DOCKER_HUB ? DOCKER_HUB : lower;
}

function shown(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}
