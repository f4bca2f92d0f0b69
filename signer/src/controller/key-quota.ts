/**
 * A cap on the key Secrets the controller creates per source namespace. Whoever may create Images
 * in a namespace chooses the Secret names (or makes new ones by making new Images), and each opted-in
 * Image's first Build has the controller generate two Secrets in its OWN namespace: without a cap,
 * one tenant could fill the controller's namespace (and etcd) without bound.
 *
 * Counting stays cheap and bounded: the controller labels every Secret it creates with the source
 * namespace, and counts with one label-selector list of at most `max + 1` items, metadata only, on
 * an Image's first Build alone (reused keys are never counted). Creations are serialized within the
 * process so that two workers cannot both pass the check with the last free place; one replica signs
 * at a time (the Lease), so the count is exact. Secrets made by versions before the label are not
 * counted.
 */
import type { KeyStore, RepositoryKeys } from '../keys/key-store.js';

/** The label on every key Secret the controller creates: the namespace of the Image it serves. */
export const SOURCE_NAMESPACE_LABEL = 'kpack-trust.io/source-namespace';

/** Default of `--max-key-secrets-per-namespace`: the root and targets Secrets of 100 Images. */
export const DEFAULT_MAX_KEY_SECRETS_PER_NAMESPACE = 200;

/** The cap would be passed: no Secret was created. A final failure, not retried. */
export class KeyQuotaError extends Error {
  override readonly name = 'KeyQuotaError';
  readonly code = 'KEY_QUOTA_EXCEEDED';
  constructor(
    /** The namespace whose Images the Secrets serve. */
    readonly sourceNamespace: string,
    /** Secrets already held for it (at most max + 1: the count stops there). */
    readonly found: number,
    /** Secrets this first Build would create (1 or 2). */
    readonly needed: number,
    readonly max: number,
  ) {
    super(
      `the controller already holds ${found >= max ? `${max} or more` : String(found)} key ` +
        `Secrets for namespace "${sourceNamespace}", and this Image's first Build needs ${needed} ` +
        `more; its operator allows ${max} (--max-key-secrets-per-namespace). Reuse an existing ` +
        `Image's keys (kpack-trust.io/root-key-secret, kpack-trust.io/targets-key-secret) or ask ` +
        'the operator to remove unused ones or raise the cap',
    );
  }
}

/** Counts the key Secrets held for a source namespace, stopping at `limit`. */
export type KeySecretCounter = (sourceNamespace: string, limit: number) => Promise<number>;

/** Runs one task at a time, in order; a failed task does not stop the next. */
export type Serializer = <T>(task: () => Promise<T>) => Promise<T>;

/** A serializer for the key creations of one process. */
export function serializer(): Serializer {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>): Promise<T> => {
    const run = tail.then(task, task);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** Settings of {@link withKeySecretQuota}. */
export interface KeySecretQuota {
  readonly sourceNamespace: string;
  readonly max: number;
  readonly count: KeySecretCounter;
  readonly serialize: Serializer;
}

/**
 * The store, refusing to create keys when the source namespace's Secrets plus the missing ones
 * would pass the cap. Loading existing keys is never refused.
 */
export function withKeySecretQuota(store: KeyStore, quota: KeySecretQuota): KeyStore {
  const missing = (keys: RepositoryKeys): number =>
    (keys.root === undefined ? 1 : 0) + (keys.targets === undefined ? 1 : 0);
  return {
    description: store.description,
    async load(gun, options): Promise<RepositoryKeys> {
      if (!options.createIfMissing) return store.load(gun, options);
      const existing = await store.load(gun, { createIfMissing: false });
      if (missing(existing) === 0) return existing;
      return quota.serialize(async () => {
        // Again under the lock: another worker may have created them meanwhile.
        const current = await store.load(gun, { createIfMissing: false });
        const needed = missing(current);
        if (needed === 0) return current;
        const found = await quota.count(quota.sourceNamespace, quota.max + 1);
        if (found + needed > quota.max) {
          throw new KeyQuotaError(quota.sourceNamespace, found, needed, quota.max);
        }
        return store.load(gun, options);
      });
    },
  };
}
