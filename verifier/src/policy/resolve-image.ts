/**
 * What an image reference means against a verified collection:
 * - `repo:tag` is admitted when the tag resolves in Docker Content Trust order (targets/releases,
 *   then targets, each walking its delegations breadth-first) to targets/releases or targets
 *   itself — docker/cli refuses a tag first found in any other delegation;
 * - `repo@sha256:…` when some tag of the repository resolves, in that order, to exactly that digest
 *   (a digest signed only by a role Docker would never consult for that tag does not count);
 * - `repo:tag@sha256:…` only when the tag's signed digest equals the one in the reference.
 * With required signers the tag is instead resolved through them: each named role must be signed
 * by its pinned keys and sign the tag, enough of them (the threshold) must, and they must agree on
 * one digest.
 *
 * Invalid delegations (expired, short of their signature threshold, or below such a role; see
 * TrustedCollection.invalidRoles): a Docker-order resolution that reaches one throws its TrustError,
 * which the engine reports as failed verification (`expired`, …) naming the role; a required signer
 * that is invalid has not signed, and the reason says why; a digest no valid role signs is denied
 * with the invalid roles named, since their tags could not be checked.
 */
import {
  DOCKER_ROLE_ORDER,
  isTrustError,
  resolveTarget,
  targetsWithDigest,
  type ImageReference,
  type PublicKey,
  type ResolvedTarget,
  type TrustError,
  type TrustedCollection,
} from '@kpack-trust/common';
import type { RuleTrust, SignerRequirement } from '../config/types.js';

/** The outcome: the signed digest and the role(s) vouching for it, or why not, in words. */
export type ImageResolution =
  | {
      readonly ok: true;
      readonly digestHex: string;
      /** The signing role, or the required signer roles joined with ",". */
      readonly role: string;
      /** The tag the digest was resolved through. */
      readonly tag: string;
    }
  | { readonly ok: false; readonly code: ResolutionFailure; readonly why: string };

/** Why a reference did not resolve: unsigned, signed for another digest, or signers not satisfied. */
export type ResolutionFailure = 'NOT_SIGNED' | 'DIGEST_MISMATCH' | 'SIGNERS_NOT_MET';

/** Resolves `ref` in `collection` under the rule's trust settings; `server` is named in reasons. */
export function resolveImage(
  collection: TrustedCollection,
  ref: ImageReference,
  trust: RuleTrust,
  server: string,
): ImageResolution {
  const bySigners = trust.signers.length > 0;
  const resolveTag = (tag: string): ImageResolution =>
    bySigners ? resolveBySigners(collection, tag, trust) : resolveByDocker(collection, tag, server);

  if (ref.tag !== undefined) {
    const resolved = resolveTag(ref.tag);
    if (!resolved.ok || ref.digest === undefined) return resolved;
    const want = hexOf(ref.digest);
    if (resolved.digestHex === want) return resolved;
    return {
      ok: false,
      code: 'DIGEST_MISMATCH',
      why: `tag "${ref.tag}" is signed for sha256:${resolved.digestHex}, not for the referenced ${ref.digest}`,
    };
  }

  const want = hexOf(ref.digest ?? '');
  // Candidate tags: every name some role signs with this digest; each must then resolve to it.
  const names = new Set(
    targetsWithDigest(collection, want)
      .filter((t) => !bySigners || trust.signers.some((s) => s.role === t.role))
      .map((t) => t.name),
  );
  const refusals: string[] = [];
  // A tag whose resolution hits an invalid role does not stop the search: another tag may resolve
  // to the digest cleanly. If none does, that role's error is the reason.
  let unresolvable: TrustError | undefined;
  for (const name of [...names].sort()) {
    let resolved: ImageResolution;
    try {
      resolved = resolveTag(name);
    } catch (error) {
      if (!isTrustError(error)) throw error;
      unresolvable ??= error;
      continue;
    }
    if (resolved.ok && resolved.digestHex === want) return resolved;
    if (!resolved.ok) refusals.push(resolved.why);
  }
  if (unresolvable !== undefined) throw unresolvable;
  if (bySigners && refusals.length > 0) {
    return {
      ok: false,
      code: 'SIGNERS_NOT_MET',
      why: `no tag signed for ${ref.digest ?? ''} meets the required signers: ${refusals[0] ?? ''}`,
    };
  }
  const unchecked = bySigners
    ? trust.signers.map((s) => s.role).filter((role) => collection.invalidRoles.has(role))
    : [...collection.invalidRoles.keys()];
  return {
    ok: false,
    code: 'NOT_SIGNED',
    why: `not signed in notary ${server} (no signed tag of ${collection.gun} points to ${ref.digest ?? ''}${uncheckedRoles(collection, unchecked)})`,
  };
}

/** `; could not check A, B: <why A is invalid>` for invalid roles whose tags are unknown, else ''. */
function uncheckedRoles(collection: TrustedCollection, roles: readonly string[]): string {
  const first = roles[0];
  const error = first === undefined ? undefined : collection.invalidRoles.get(first);
  if (error === undefined) return '';
  return `; could not check ${roles.join(', ')}: ${clause(error.message)}`;
}

function resolveByDocker(
  collection: TrustedCollection,
  tag: string,
  server: string,
): ImageResolution {
  let target: ResolvedTarget;
  try {
    target = resolveTarget(collection, tag, DOCKER_ROLE_ORDER);
  } catch (error) {
    if (!isTrustError(error, 'TARGET_NOT_FOUND')) throw error;
    return {
      ok: false,
      code: 'NOT_SIGNED',
      why: `not signed in notary ${server} (no target "${tag}" in ${DOCKER_ROLE_ORDER.join(' or ')})`,
    };
  }
  // docker/cli's trusted pull takes a tag only from targets/releases or targets themselves: found
  // first in any other delegation (targets/<signer>, targets/releases/<sub>), it is "No trust data".
  if (!DOCKER_ROLE_ORDER.includes(target.role)) {
    return {
      ok: false,
      code: 'NOT_SIGNED',
      why: `not signed in notary ${server} ("${tag}" is signed only by ${target.role}, and Docker trusts tags from ${DOCKER_ROLE_ORDER.join(' or ')} alone)`,
    };
  }
  return { ok: true, digestHex: target.sha256Hex, role: target.role, tag };
}

function resolveBySigners(
  collection: TrustedCollection,
  tag: string,
  trust: RuleTrust,
): ImageResolution {
  const keys = keysOf(collection);
  const signed: { role: string; digestHex: string }[] = [];
  const problems: string[] = [];
  for (const signer of trust.signers) {
    const invalid = collection.invalidRoles.get(signer.role);
    if (invalid !== undefined) {
      problems.push(`${signer.role} cannot be trusted: ${clause(invalid.message)}`);
      continue;
    }
    const role = collection.targetsRoles.get(signer.role);
    if (role === undefined) {
      problems.push(`${signer.role} is not in the trust data`);
      continue;
    }
    const pinned = pinnedCanonicalIds(signer, keys);
    const pinnedSigners = [...role.signedBy].filter((id) => pinned.has(id)).length;
    if (pinnedSigners < signer.threshold) {
      problems.push(
        signer.threshold === 1
          ? `${signer.role} is not signed by its pinned key`
          : `${signer.role} is signed by ${pinnedSigners} of its pinned keys, ${signer.threshold} needed`,
      );
      continue;
    }
    const sha = role.metadata.targets.get(tag)?.hashes['sha256'];
    if (sha === undefined) {
      problems.push(`${signer.role} did not sign "${tag}"`);
      continue;
    }
    signed.push({ role: signer.role, digestHex: sha.toString('hex') });
  }
  const digests = new Set(signed.map((s) => s.digestHex));
  if (digests.size > 1) {
    return {
      ok: false,
      code: 'SIGNERS_NOT_MET',
      why: `the required signers disagree on "${tag}" (${signed.map((s) => `${s.role}: sha256:${s.digestHex}`).join(', ')})`,
    };
  }
  const first = signed[0];
  if (first === undefined || signed.length < trust.signersThreshold) {
    return {
      ok: false,
      code: 'SIGNERS_NOT_MET',
      why: `${signed.length} of the required signers signed "${tag}", ${trust.signersThreshold} needed (${problems.join('; ')})`,
    };
  }
  return { ok: true, digestHex: first.digestHex, role: signed.map((s) => s.role).join(','), tag };
}

/** Every key the collection declares (root keys and each delegating role's keys), by id. */
function keysOf(collection: TrustedCollection): ReadonlyMap<string, PublicKey> {
  const keys = new Map(collection.root.keys);
  for (const role of collection.targetsRoles.values()) {
    for (const [id, key] of role.metadata.delegations.keys) keys.set(id, key);
  }
  return keys;
}

/** The canonical ids of a signer's pins: PEM pins directly, id pins through the key they name. */
function pinnedCanonicalIds(
  signer: SignerRequirement,
  keys: ReadonlyMap<string, PublicKey>,
): ReadonlySet<string> {
  const ids = new Set(signer.canonicalIds);
  for (const id of signer.keyIds) {
    // An id pin may be the delegation's listed id (x509) or notary's canonical id.
    ids.add(keys.get(id)?.canonicalId ?? id);
  }
  return ids;
}

/** A message as a clause: no trailing period, one line. */
function clause(message: string): string {
  return message.replace(/\s+/g, ' ').trim().replace(/\.$/, '');
}

function hexOf(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1);
}
