/**
 * The CA bundle rule (common's caBundleProblem) worded for the signer's entry points:
 * `sign --notary-ca/--registry-ca`, kpack-completion's `KPACK_TRUST_NOTARY_CA`/`KPACK_TRUST_REGISTRY_CA`
 * and the controller's flags each name the file, then say what is wrong with it.
 */
import { caBundleProblem as bundleProblem } from '@kpack-trust/common';

/** Why a CA bundle's text is unusable ("the file holds …"), or undefined when it is usable. */
export function caBundleProblem(text: string): string | undefined {
  const problem = bundleProblem(text);
  return problem === undefined ? undefined : `the file ${problem}`;
}
