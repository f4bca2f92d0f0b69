/**
 * A key store under a root pin (`sign --root-key-id`, an Image's `kpack-trust.io/root-key-id`): a
 * root key that is not pinned is refused before anything is signed, and before anything is
 * created — a root key generated for a new repository could never be the pinned one, and its Secret,
 * left behind, would refuse every later signing. Without the pin check a new repository would be
 * created under whatever root the store held or generated, the pin silently ignored, and every
 * later run would then fail verification against it.
 */
import { PublicKey, TrustError } from '@kpack-trust/common';
import type { KeyStore, RepositoryKeys } from './key-store.js';

/** `store` with the pin applied; `store` itself when nothing is pinned. */
export function withPinnedRoot(store: KeyStore, rootKeyIds: readonly string[]): KeyStore {
  if (rootKeyIds.length === 0) return store;
  const checkPin = (gun: string, keys: RepositoryKeys): void => {
    if (keys.root === undefined) return;
    // Both ids a pin may name: the root certificate's key id, and the canonical one of its key.
    const ids = [PublicKey.fromKeyObject(keys.root.privateKey).canonicalId];
    if (keys.root.certificatePem !== undefined) {
      ids.push(PublicKey.fromCertificatePem(keys.root.certificatePem).id);
    }
    if (!ids.some((id) => rootKeyIds.includes(id))) {
      throw new TrustError(
        'SIGNING_KEY_UNUSABLE',
        { gun, role: 'root', keyId: ids.join(','), problem: 'not the pinned root key' },
        `Cannot sign ${gun}: the root key in ${store.description} (${ids.join(', ')}) is not the pinned root key ${rootKeyIds.join(', ')}.`,
      );
    }
  };
  return {
    description: store.description,
    async load(gun, options): Promise<RepositoryKeys> {
      // Never let the store generate keys before the pin has seen what it holds.
      const held = await store.load(gun, { createIfMissing: false });
      checkPin(gun, held);
      if (!options.createIfMissing) return held;
      if (held.root === undefined) {
        throw new TrustError(
          'SIGNING_KEY_UNUSABLE',
          { gun, role: 'root', keyId: '', problem: 'no pinned root key to create the repository' },
          `Cannot sign ${gun}: the repository does not exist yet and ${store.description} holds no root key; ` +
            `a key generated now could not be the pinned root key ${rootKeyIds.join(', ')}.`,
        );
      }
      // The pinned root key is held: the targets key may still have to be made beside it.
      const keys = await store.load(gun, options);
      checkPin(gun, keys);
      return keys;
    },
  };
}
