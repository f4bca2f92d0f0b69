/**
 * Image patterns that are valid globs but can never match. Rules match the normalized name Docker
 * resolves a reference to (common/src/reference/image-reference.ts), never the text in the pod:
 * `nginx` is `docker.io/library/nginx`, so a pattern such as `library/*` matches nothing, and the
 * only wildcards are `*` and `**`, so `team/[abc` is literal text no repository name contains.
 * Such a rule fails closed (its images fall to another rule or are denied), but silently, so the
 * config loader reports each one as a warning. Only patterns that provably match no name are
 * reported: wildcards are given the benefit of the doubt.
 */

/** Docker Hub's normalized registry. */
const DOCKER_HUB = 'docker.io';
/** Normalized to docker.io by the reference parser, so never the registry of a normalized name. */
const LEGACY_DOCKER_HUB = 'index.docker.io';
/** A repository path component, as the reference grammar (and common's parser) defines it. */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
/** Characters a path component may hold: what may surround a `*` in a path segment. */
const PATH_CHARS = /^[a-z0-9._-]*$/;
/** A registry host[:port] as the reference grammar accepts it (DNS-like name or bracketed IPv6). */
const DOMAIN =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
/** Characters a registry host[:port] may hold: what may surround a `*` in the first segment. */
const HOST_CHARS = /^[A-Za-z0-9.:[\]-]*$/;

/**
 * Why `pattern` (one that passed imagePatternProblem) can match no normalized image name, with
 * the fix when there is an obvious one; undefined when it can match.
 */
export function imagePatternNeverMatches(pattern: string): string | undefined {
  const segments = pattern.split('/');
  const [first = '', ...rest] = segments;
  if (first === '**') {
    // `**` may absorb the registry and any number of components; only the last segment is
    // certainly a path component.
    const last = segments.at(-1) ?? '**';
    return segments.length > 1 && last !== '**' ? pathSegmentProblem(last) : undefined;
  }
  const hostProblem = registrySegmentProblem(first, pattern);
  if (hostProblem !== undefined) return hostProblem;
  for (const segment of rest) {
    if (segment === '**') continue;
    const problem = pathSegmentProblem(segment);
    if (problem !== undefined) return problem;
  }
  if (first === DOCKER_HUB && rest.length === 1 && rest[0] !== '**') {
    // Docker Hub names always have a namespace: `alpine` is docker.io/library/alpine.
    return (
      'never matches: a Docker Hub name always has two or more path components ("alpine" is ' +
      `docker.io/library/alpine); write "${DOCKER_HUB}/library/${rest[0] ?? ''}"`
    );
  }
  return undefined;
}

/** Why the first segment can be no normalized registry, or undefined. */
function registrySegmentProblem(first: string, pattern: string): string | undefined {
  if (first.includes('*')) {
    if (!HOST_CHARS.test(first.replaceAll('*', ''))) {
      return `never matches: "${first}" holds characters no registry host[:port] has`;
    }
    return undefined;
  }
  if (first === LEGACY_DOCKER_HUB) {
    return `never matches: image names are normalized to "${DOCKER_HUB}" (write "${DOCKER_HUB}/${pattern.slice(first.length + 1)}")`;
  }
  if (!DOMAIN.test(first)) {
    return (
      `never matches: "${first}" is not a registry host[:port], and images are matched by their ` +
      'normalized name, which starts with one ("*" and "**" are the only wildcards)'
    );
  }
  // Docker's rule: a first component is a registry only if it is localhost, holds "." or ":",
  // or has an uppercase letter; otherwise it is a Docker Hub namespace.
  const isRegistry =
    first === 'localhost' ||
    first.includes('.') ||
    first.includes(':') ||
    first.toLowerCase() !== first;
  if (!isRegistry) {
    return (
      `never matches: it has no registry host, and images are matched by their normalized name, ` +
      `which starts with one ("nginx" is docker.io/library/nginx); write "${DOCKER_HUB}/${pattern}" ` +
      `for Docker Hub, or name the registry`
    );
  }
  return undefined;
}

/** Why a segment after the registry can be no repository path component, or undefined. */
function pathSegmentProblem(segment: string): string | undefined {
  const possible = segment.includes('*')
    ? PATH_CHARS.test(segment.replaceAll('*', ''))
    : PATH_COMPONENT.test(segment);
  if (possible) return undefined;
  return (
    `never matches: "${segment}" can be no repository path component (lowercase letters and ` +
    'digits joined by ".", "_", "__" or "-"; "*" and "**" are the only wildcards, brackets are ' +
    'literal)'
  );
}
