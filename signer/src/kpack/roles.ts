/**
 * Which roles kpack's completion signs a tag into (kpack v0.17.2, `pkg/notary/repository.go`
 * `getRoles`): `targets` when the repository has no delegations at all; otherwise every direct
 * `targets/<name>` delegation that lists the signing key and whose paths admit the tag — so a
 * `docker trust signer add` setup (`targets/releases` plus `targets/<signer>`) is signed in both —
 * and an error when none does. Pure: a verified collection in, role → tags out.
 *
 * One difference, on purpose: kpack compares the delegation's key ids with the key file's name;
 * we compare canonical key ids, so a delegation that lists the key as an x509 certificate (as
 * `notary delegation add` with a certificate makes it) counts too.
 */
import { PublicKey, TrustError, type TrustedCollection } from '@kpack-trust/common';
import { createPublicKey, type KeyObject } from 'node:crypto';

/** Role → the build's tags it signs, in the order roles are listed by `targets`. */
export type RoleChoice = ReadonlyMap<string, readonly string[]>;

/**
 * kpack's choice for `tags`, signing with `key`. With `delegation`, the operator's choice instead:
 * that role for every tag (the planner still checks that it lists the key and admits the tags).
 */
export function chooseKpackRoles(
  collection: TrustedCollection,
  key: KeyObject,
  tags: readonly string[],
  delegation?: string,
): RoleChoice {
  if (delegation !== undefined) return new Map([[delegation, [...tags]]]);
  const targets = collection.targetsRoles.get('targets');
  if (targets === undefined) throw new RangeError('a verified collection always holds targets');
  const delegations = targets.metadata.delegations;
  if (delegations.roles.length === 0) return new Map([['targets', [...tags]]]);

  const ours = PublicKey.fromKeyObject(createPublicKey(key)).id;
  const choice = new Map<string, string[]>();
  for (const tag of tags) {
    let found = false;
    for (const role of delegations.roles) {
      // Direct children of targets only (kpack: path.Dir(name) == "targets").
      if (role.name.split('/').length !== 2) continue;
      if (!role.paths.some((prefix) => tag.startsWith(prefix))) continue;
      const listsOurs = role.keyIds.some((id) => delegations.keys.get(id)?.canonicalId === ours);
      if (!listsOurs) continue;
      choice.set(role.name, [...(choice.get(role.name) ?? []), tag]);
      found = true;
    }
    if (!found) {
      const names = delegations.roles.map((r) => r.name).join(', ');
      throw new TrustError(
        'SIGNING_KEY_UNUSABLE',
        {
          gun: collection.gun,
          role: 'targets/*',
          keyId: ours,
          problem: `no delegation lists key ${ours} for tag "${tag}"`,
        },
        `Cannot sign ${collection.gun}:${tag}: no delegation roles found — none of its delegations (${names}) ` +
          `lists our key ${ours} with paths that admit "${tag}"; add it with \`docker trust signer add\`.`,
      );
    }
  }
  return choice;
}
