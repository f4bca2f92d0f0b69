/**
 * Where the signer's private keys live. The publishing flow depends only on this interface; the
 * Kubernetes Secret store (the RFC's flow) and kpack's mounted-Secret directory implement it.
 */
import type { KeyObject } from 'node:crypto';

/** The private keys the signer may use for one repository (GUN). */
export interface RepositoryKeys {
  /** The root key, with the PEM of the root certificate when one is stored (needed to create or re-sign root). */
  readonly root?: { readonly privateKey: KeyObject; readonly certificatePem?: string };
  /** The targets key, when held. */
  readonly targets?: KeyObject;
  /** Delegation keys by role name (`targets/releases`, `targets/ci`). */
  readonly delegations: ReadonlyMap<string, KeyObject>;
  /** True when the store created the keys during this call (the first build of an image). */
  readonly created: boolean;
}

/** Loads a repository's keys, creating them on first use when the store supports that. */
export interface KeyStore {
  /** A short description for progress lines and errors (never contains secret material). */
  readonly description: string;
  /**
   * Returns the keys for `gun`. With `createIfMissing`, a store that can generate keys does so when
   * none exist yet, and two concurrent callers must end up with one key pair, not two.
   */
  load(gun: string, options: { createIfMissing: boolean }): Promise<RepositoryKeys>;
}
