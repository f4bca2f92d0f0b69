/**
 * Delegation path rules as notary applies them: a delegated role may sign a target name only when
 * the name starts with one of its `paths` (the empty string allows every name). Notary v1 uses plain
 * prefixes, not TUF 1.0 glob patterns.
 */

/** Whether `target` falls inside the delegated `paths`. */
export function isPathAllowed(paths: readonly string[], target: string): boolean {
  return paths.some((prefix) => target.startsWith(prefix));
}
