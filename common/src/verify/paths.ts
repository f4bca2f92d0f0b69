/**
 * Delegation path rules as notary applies them: a delegated role may sign a target name only when
 * the name starts with one of its `paths` (the empty string allows every name). Notary v1 uses plain
 * prefixes, not TUF 1.0 glob patterns.
 */

/** Whether `target` falls inside the delegated `paths`. */
export function isPathAllowed(paths: readonly string[], target: string): boolean {
  return paths.some((prefix) => target.startsWith(prefix));
}

/**
 * The path restrictions of a delegation, outermost first: its parent's, then its own paths
 * narrowed to those that extend one of its parent's innermost (Go's DelegationRole.Restrict,
 * RestrictDelegationPathPrefixes; `targets` has none, so every path). A child can never sign more
 * than its parent, whatever paths it lists.
 */
export function childPathRestrictions(
  parent: readonly (readonly string[])[],
  paths: readonly string[],
): readonly (readonly string[])[] {
  const parentPaths = parent.at(-1) ?? [''];
  return [...parent, paths.filter((p) => parentPaths.some((q) => p.startsWith(q)))];
}
