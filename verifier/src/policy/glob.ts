/**
 * Globs over normalized image names (`registry/path`) and namespaces. In an image pattern `*`
 * matches within one path segment and `**` (a whole segment) matches any number of segments, so
 * `127.0.0.1:5000/demo/*` covers `127.0.0.1:5000/demo/app` but not `…/demo/team/app`, while
 * `127.0.0.1:5000/**` covers the whole registry. Namespace names have no `/`; there `*` matches
 * any run of characters.
 */

/** A compiled image pattern with its specificity. */
export interface ImageGlob {
  readonly pattern: string;
  readonly regex: RegExp;
  /** Characters that are not wildcards: the first measure of specificity. */
  readonly literals: number;
  /** Wildcard weight (`*` = 1, `**` = 2): fewer is more specific at equal literals. */
  readonly wildcards: number;
}

const IMAGE_PATTERN_CHARS = /^[A-Za-z0-9._:\-[\]/*]+$/;
const NAMESPACE_PATTERN = /^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$/;

/** Why `pattern` is not a valid image glob, or undefined when it is. */
export function imagePatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'is empty';
  if (!IMAGE_PATTERN_CHARS.test(pattern)) {
    return 'may only contain registry and repository characters, "/" and the wildcards * and **';
  }
  if (pattern !== '**' && !pattern.includes('/')) {
    return 'must be registry/path, as in "127.0.0.1:5000/demo/*" ("**" alone matches every image)';
  }
  if (pattern.lastIndexOf(':') > pattern.lastIndexOf('/')) {
    return 'matches repository names only: leave out the tag';
  }
  for (const segment of pattern.split('/')) {
    if (segment === '') return 'has an empty path segment';
    if (segment.includes('**') && segment !== '**') {
      return '"**" must be a whole path segment (use "*" within a segment)';
    }
  }
  return undefined;
}

/** Compiles a pattern that passed imagePatternProblem. */
export function compileImageGlob(pattern: string): ImageGlob {
  const problem = imagePatternProblem(pattern);
  if (problem !== undefined) throw new RangeError(`image pattern "${pattern}" ${problem}`);
  const segments = pattern.split('/');
  let source = '';
  let wildcards = 0;
  let skipSeparator = false;
  segments.forEach((segment, i) => {
    if (segment === '**') {
      wildcards += 2;
      if (segments.length === 1) source += '.*';
      else if (i === 0) {
        source += '(?:[^/]+/)*';
        skipSeparator = true;
      } else {
        source += '(?:/[^/]+)*';
      }
      return;
    }
    if (i > 0 && !skipSeparator) source += '/';
    skipSeparator = false;
    source += segment
      .split('*')
      .map((literal) => escapeRegex(literal))
      .join('[^/]*');
    wildcards += segment.split('*').length - 1;
  });
  return {
    pattern,
    regex: new RegExp(`^${source}$`),
    // The characters a name must contain: a `**` segment may match no segment at all, so the `/`
    // beside it is not one of them (else `x/**` would outrank the exact `x` for the name `x`).
    literals: segments
      .filter((segment) => segment !== '**')
      .map((segment) => segment.replaceAll('*', ''))
      .join('/').length,
    wildcards,
  };
}

/** Why `pattern` is not a valid namespace glob, or undefined when it is. */
export function namespacePatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'is empty';
  if (pattern.length > 63 || !NAMESPACE_PATTERN.test(pattern)) {
    return 'must be a namespace name (lowercase letters, digits, "-"), optionally with * wildcards';
  }
  return undefined;
}

/** Compiles a namespace glob: `*` matches any run of characters. */
export function compileNamespaceGlob(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map(escapeRegex).join('.*')}$`);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
