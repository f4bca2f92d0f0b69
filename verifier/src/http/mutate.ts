/**
 * The pinning patch of `/mutate`: every image a verify rule admitted is rewritten to
 * `<image as written>@sha256:<verified digest>`, so the kubelet pulls the very manifest notary
 * vouched for instead of whatever the registry serves for the tag at pull time. The tag stays for
 * the people reading the pod; the runtime resolves a reference carrying a digest by the digest.
 *
 * An image that already names a digest is left alone: the engine admitted it only because that
 * digest is the signed one (`repo:tag@sha256:…` must match the tag's signed digest), so a patched
 * pod sent again (reinvocationPolicy IfNeeded) gets an empty patch. `allow` rules, exempt
 * namespaces and break-glass carry no digest and rewrite nothing; neither do would-deny images of
 * detection mode, which were not verified.
 */
import type { DecidedImage } from '../review.js';
import type { PodContainer } from './validate.js';

/** A JSON Patch (RFC 6902) replace operation. */
export interface ImageReplacement {
  readonly op: 'replace';
  /** `/spec/<list>/<index>/image`: list names and indices need no JSON Pointer escaping. */
  readonly path: string;
  readonly value: string;
}

/** Patches larger than this are refused: a bound on what one review may ask the apiserver to apply. */
export const DEFAULT_MAX_PATCH_BYTES = 256 * 1024;

/** The replacements pinning each verified image of `containers` (decisions by image string). */
export function pinningPatch(
  containers: readonly PodContainer[],
  decisions: readonly DecidedImage[],
): ImageReplacement[] {
  let digests: Map<string, string> | undefined;
  for (const decision of decisions) {
    if (decision.result !== 'allowed' || decision.digest === undefined) continue;
    // A reference with '@' parsed, so it carries a digest the engine found equal to the signed one.
    if (decision.image.includes('@')) continue;
    (digests ??= new Map()).set(decision.image, decision.digest);
  }
  if (digests === undefined) return [];
  const operations: ImageReplacement[] = [];
  for (const container of containers) {
    const digest = digests.get(container.image);
    if (digest === undefined) continue;
    operations.push({
      op: 'replace',
      path: `/spec/${container.list}/${container.index}/image`,
      value: `${container.image}@${digest}`,
    });
  }
  return operations;
}

/** The patch as the apiserver wants it (base64 of its JSON), or undefined when over `maxBytes`. */
export function encodePatch(
  operations: readonly ImageReplacement[],
  maxBytes: number,
): string | undefined {
  const json = Buffer.from(JSON.stringify(operations));
  return json.length > maxBytes ? undefined : json.toString('base64');
}
