/**
 * Rule selection: "first the most specific match; no match = denied". Specific means, in order:
 *   1. more literal (non-wildcard) characters in the matching image pattern;
 *   2. fewer wildcards (`*` counts 1, `**` counts 2);
 *   3. a rule limited by `namespaces` before one that is not;
 *   4. earlier in the file.
 * A rule applies only when one of its image patterns matches the normalized `registry/path`, its
 * `namespaces` (if any) match the pod's namespace and none of its `excludeNamespaces` do; a rule
 * that does not apply leaves the image to the next most specific one.
 */
import type { PolicyRule } from '../config/types.js';
import { compileImageGlob, compileNamespaceGlob, type ImageGlob } from './glob.js';

interface Candidate {
  readonly rule: PolicyRule;
  readonly glob: ImageGlob;
  readonly namespaces: readonly RegExp[] | undefined;
  readonly excluded: readonly RegExp[];
}

/** The rules of one configuration, pre-sorted by specificity. */
export class RuleSet {
  private readonly candidates: readonly Candidate[];

  constructor(rules: readonly PolicyRule[]) {
    const candidates: Candidate[] = [];
    for (const rule of rules) {
      const namespaces = rule.namespaces?.map(compileNamespaceGlob);
      const excluded = rule.excludeNamespaces.map(compileNamespaceGlob);
      for (const pattern of rule.images) {
        candidates.push({ rule, glob: compileImageGlob(pattern), namespaces, excluded });
      }
    }
    candidates.sort(
      (a, b) =>
        b.glob.literals - a.glob.literals ||
        a.glob.wildcards - b.glob.wildcards ||
        Number(b.namespaces !== undefined) - Number(a.namespaces !== undefined) ||
        a.rule.index - b.rule.index,
    );
    this.candidates = candidates;
  }

  /** The rule for a normalized image name in a namespace, or undefined (which means denied). */
  match(name: string, namespace: string): PolicyRule | undefined {
    for (const c of this.candidates) {
      if (!c.glob.regex.test(name)) continue;
      if (c.namespaces !== undefined && !c.namespaces.some((ns) => ns.test(namespace))) continue;
      if (c.excluded.some((ns) => ns.test(namespace))) continue;
      return c.rule;
    }
    return undefined;
  }
}
