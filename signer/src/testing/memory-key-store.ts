/**
 * A KeyStore held in memory, for tests and embedding: fixed keys, or keys generated on the first
 * `load` that allows creation (as the Kubernetes store does on an image's first build).
 */
import type { KeyObject } from 'node:crypto';
import { generateSigningKey } from '@kpack-trust/common';
import type { KeyStore, RepositoryKeys } from '../keys/key-store.js';

/** The keys a MemoryKeyStore hands out; `snapshot` is passed through for client-held snapshot keys. */
export interface MemoryKeys {
  readonly root?: { readonly privateKey: KeyObject; readonly certificatePem?: string };
  readonly targets?: KeyObject;
  readonly snapshot?: KeyObject;
  readonly delegations?: ReadonlyMap<string, KeyObject>;
}

/** An in-memory key store; `generate` makes a root and a targets key on the first creating load. */
export class MemoryKeyStore implements KeyStore {
  readonly description = 'memory';
  /** Every load, in order, for tests that count them. */
  readonly loads: { gun: string; createIfMissing: boolean }[] = [];
  private keys: MemoryKeys | undefined;
  private readonly generate: boolean;

  constructor(options: { keys?: MemoryKeys; generate?: boolean } = {}) {
    this.keys = options.keys;
    this.generate = options.generate ?? false;
  }

  /** The keys currently held (after generation, the generated ones). */
  get current(): MemoryKeys | undefined {
    return this.keys;
  }

  load(gun: string, options: { createIfMissing: boolean }): Promise<RepositoryKeys> {
    this.loads.push({ gun, createIfMissing: options.createIfMissing });
    let created = false;
    if (this.keys === undefined && this.generate && options.createIfMissing) {
      this.keys = {
        root: { privateKey: generateSigningKey() },
        targets: generateSigningKey(),
      };
      created = true;
    }
    const keys = this.keys ?? {};
    const result: RepositoryKeys & { snapshot?: KeyObject } = {
      ...(keys.root === undefined ? {} : { root: keys.root }),
      ...(keys.targets === undefined ? {} : { targets: keys.targets }),
      ...(keys.snapshot === undefined ? {} : { snapshot: keys.snapshot }),
      delegations: keys.delegations ?? new Map(),
      created,
    };
    return Promise.resolve(result);
  }
}
