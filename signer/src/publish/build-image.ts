/**
 * One build's image as the signer signs it: one repository (GUN), its tags, one manifest digest.
 * A build may push several tags, but Notary v1 keeps trust data per repository, so tags in two
 * repositories would need two publishes that could half-succeed; kpack refuses them too
 * ("signing to multiple registries is not supported"), and so do we, before anything is published.
 */
import { TrustError, parseImageReference, type ImageReference } from '@kpack-trust/common';

/** The build to sign. */
export interface BuildImage {
  /** The repository's GUN: `registry/path`, as Docker Content Trust names it. */
  readonly gun: string;
  /** Registry host (with port) and repository path, for the manifest lookup. */
  readonly registry: string;
  readonly path: string;
  /** Tag names (without the repository), deduplicated, in the order first given. */
  readonly tags: readonly string[];
  /** `sha256:<64 lowercase hex>` of the manifest every tag points to. */
  readonly digest: string;
  /** Manifest length in bytes, when the caller knows it. */
  readonly size?: number;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Validates the references, digest and size of a build; `source` names where they came from. Throws INPUT_INVALID or REFERENCE_INVALID. */
export function buildImageOf(
  references: readonly string[],
  digest: string,
  size: number | undefined,
  source: string,
): BuildImage {
  const fail = (problem: string): never => {
    throw new TrustError('INPUT_INVALID', { source, problem }, `${source}: ${problem}.`);
  };
  if (references.length === 0) return fail('no image tags to sign');
  if (!DIGEST.test(digest)) return fail(`the digest "${digest}" is not sha256:<64 lowercase hex>`);
  if (size !== undefined && (!Number.isSafeInteger(size) || size <= 0)) {
    return fail(`the manifest size ${size} is not a positive integer`);
  }

  const parsed: ImageReference[] = references.map((r) => parseImageReference(r));
  for (const ref of parsed) {
    if (ref.digest !== undefined) {
      return fail(`"${ref.original}" names a digest; give tags, and the digest once, separately`);
    }
  }
  const guns = [...new Set(parsed.map((r) => r.name))];
  const [first] = parsed;
  if (first === undefined || guns.length !== 1) {
    return fail(
      `the tags belong to ${guns.length} repositories (${guns.join(', ')}); a build is signed into ` +
        'one repository, so nothing was published',
    );
  }
  const tags = [...new Set(parsed.map((r) => r.tag ?? 'latest'))];
  return {
    gun: first.name,
    registry: first.registry,
    path: first.path,
    tags,
    digest,
    ...(size === undefined ? {} : { size }),
  };
}
