/**
 * Target resolution over a verified collection. Docker Content Trust resolves a tag from
 * `targets/releases` first, then from `targets` (docker/cli trust: GetTargetByName with releases,
 * targets); `notary lookup` starts at `targets`. From each starting role the delegation tree is walked
 * breadth-first, each parent's delegations in the order it lists them, skipping roles whose paths
 * exclude the name — notary's WalkTargets.
 *
 * An invalid delegation (TrustedCollection.invalidRoles: expired, short of its threshold, or below
 * such a role) that the walk reaches before finding the name stops the resolution with that role's
 * error. Notary's Go client silently walks past it and may resolve the name from a later role —
 * from `targets` while `targets/releases` has expired — so a tag would quietly switch to a digest
 * the release signer may have superseded; we refuse and name the role to renew instead. A role
 * the walk never reaches does not matter.
 */
import { TrustError } from '../errors.js';
import type { FileMeta } from '../metadata/models.js';
import {
  parentOf,
  type TrustedCollection,
  type VerifiedTargetsRole,
} from './collection-verifier.js';
import { isPathAllowed } from './paths.js';

/** A signed target found in a role. */
export interface ResolvedTarget {
  /** The target name (for images: the tag). */
  readonly name: string;
  /** The role whose metadata signs it. */
  readonly role: string;
  /** Hex sha256 of the manifest the tag points to. */
  readonly sha256Hex: string;
  readonly length: number;
  readonly meta: FileMeta;
}

/** Docker Content Trust's role order for resolving a tag. */
export const DOCKER_ROLE_ORDER: readonly string[] = ['targets/releases', 'targets'];

/** `notary lookup`'s role order. */
export const NOTARY_ROLE_ORDER: readonly string[] = ['targets'];

/**
 * Resolves `name` by trying each starting role in order; throws TARGET_NOT_FOUND if none signs it,
 * the stored error (EXPIRED, SIGNATURE_THRESHOLD) of an invalid role reached before it is found,
 * or TARGET_INVALID when the first role that signs it gives no 32-byte sha256.
 */
export function resolveTarget(
  collection: TrustedCollection,
  name: string,
  order: readonly string[] = DOCKER_ROLE_ORDER,
): ResolvedTarget {
  for (const start of order) {
    const found = walk(collection, name, start);
    if (found) return found;
  }
  throw new TrustError(
    'TARGET_NOT_FOUND',
    { gun: collection.gun, target: name },
    `${collection.gun}:${name} is not signed`,
  );
}

/**
 * Every valid role that signs `name` (each with the digest it signs), for policies requiring named
 * signers. An invalid role never counts as a signer; `collection.invalidRoles` says why.
 */
export function signersOf(collection: TrustedCollection, name: string): ResolvedTarget[] {
  const out: ResolvedTarget[] = [];
  for (const role of collection.targetsRoles.values()) {
    const t = targetIn(collection.gun, role, name);
    // A role whose entry has no usable sha256 vouches for no digest: it is no signer.
    if (t && !(t instanceof TrustError)) out.push(t);
  }
  return out;
}

/**
 * Every (tag, role) of a valid role whose signed digest is `sha256Hex`: a digest reference is trusted
 * through these. Invalid roles are not searched; their tags are unknown, not absent.
 */
export function targetsWithDigest(
  collection: TrustedCollection,
  sha256Hex: string,
): ResolvedTarget[] {
  const want = sha256Hex.toLowerCase();
  const out: ResolvedTarget[] = [];
  for (const role of collection.targetsRoles.values()) {
    for (const name of role.metadata.targets.keys()) {
      const t = targetIn(collection.gun, role, name);
      if (!(t instanceof TrustError) && t?.sha256Hex === want) out.push(t);
    }
  }
  return out;
}

/**
 * Breadth-first from `start`, as notary's WalkTargets queues each role's delegations behind the
 * roles already waiting: a name signed both by a child and by a deeper grandchild of another child
 * resolves to the child, as in Go.
 */
function walk(
  collection: TrustedCollection,
  name: string,
  start: string,
): ResolvedTarget | undefined {
  const queue: { roleName: string; isStart: boolean }[] = [{ roleName: start, isStart: true }];
  // Delegation trees are acyclic by naming (children extend the parent's name); the bound is belt
  // and braces against a hostile collection built by hand.
  for (let visited = 0; visited < queue.length && visited < MAX_ROLES_WALKED; visited++) {
    const entry = queue[visited];
    if (!entry) break;
    const { roleName, isStart } = entry;
    const invalid = collection.invalidRoles.get(roleName);
    if (invalid) {
      // A child's paths were checked by its parent before it was queued; a starting role's here.
      if (isStart && !mayDelegate(collection, roleName, name)) continue;
      throw invalid;
    }
    const role = collection.targetsRoles.get(roleName);
    if (!role) continue;
    if (!role.pathRestrictions.every((paths) => isPathAllowed(paths, name))) continue;
    const here = targetIn(collection.gun, role, name);
    // docker/cli's trusted pull takes the first role that has the name and then demands its sha256
    // (convertTarget: "no valid hash, expecting sha256"); walking on would let a later role answer
    // for a tag this role signed.
    if (here instanceof TrustError) throw here;
    if (here) return here;
    for (const child of role.metadata.delegations.roles) {
      if (isPathAllowed(child.paths, name)) queue.push({ roleName: child.name, isStart: false });
    }
  }
  return undefined;
}

const MAX_ROLES_WALKED = 10_000;

/**
 * Whether the valid parent of an invalid `roleName` lets it sign `name`. A role below an invalid
 * one has no verified parent to ask, so it may sign anything.
 */
function mayDelegate(collection: TrustedCollection, roleName: string, name: string): boolean {
  const parent = collection.targetsRoles.get(parentOf(roleName));
  const delegation = parent?.metadata.delegations.roles.find((d) => d.name === roleName);
  if (!parent || !delegation) return true;
  return (
    parent.pathRestrictions.every((paths) => isPathAllowed(paths, name)) &&
    isPathAllowed(delegation.paths, name)
  );
}

const SHA256_BYTES = 32;

/**
 * The target `name` as `role` signs it: undefined when the role does not list the name, and
 * TARGET_INVALID (returned, for the caller to throw) when it lists it without a 32-byte sha256.
 */
function targetIn(
  gun: string,
  role: VerifiedTargetsRole,
  name: string,
): ResolvedTarget | TrustError<'TARGET_INVALID'> | undefined {
  const meta = role.metadata.targets.get(name);
  if (!meta) return undefined;
  const sha = meta.hashes['sha256'];
  if (sha?.length !== SHA256_BYTES) {
    const problem = sha
      ? `its sha256 is ${sha.length} bytes, not ${SHA256_BYTES}`
      : 'it has no sha256 hash';
    return new TrustError(
      'TARGET_INVALID',
      { gun, role: role.name, target: name, problem },
      `${role.name} signs "${name}" of ${gun}, but ${problem}`,
    );
  }
  return { name, role: role.name, sha256Hex: sha.toString('hex'), length: meta.length, meta };
}
