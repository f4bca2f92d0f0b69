/**
 * The key sources the CLI can name, and the one factory that turns parsed flags into a KeyStore.
 * The CLI parses the flags; the stores themselves live beside this file.
 *
 * Passphrases: a store's own `password` entry (kpack's layout) is tried first, then the value
 * from the environment (`KPACK_TRUST_ROOT_PASSPHRASE`, `KPACK_TRUST_TARGETS_PASSPHRASE`, read by
 * {@link passphrasesFromEnv}); neither is ever prompted for or logged.
 */
import type { KeyStore } from './key-store.js';
import { KeysDirStore } from './keys-dir-store.js';
import { loadKubeConfig } from './kubernetes-client.js';
import { KubernetesSecretStore } from './kubernetes-secret-store.js';
import type { KeyPassphrases } from './passphrases.js';
import { TrustError } from '@kpack-trust/common';

export type { KeyStore, RepositoryKeys } from './key-store.js';
export { PASSPHRASE_VARIABLES, passphrasesFromEnv, type KeyPassphrases } from './passphrases.js';
export { KeysDirStore, type KeysDirStoreOptions } from './keys-dir-store.js';
export {
  KubernetesSecretStore,
  SECRET_ENTRIES,
  SECRET_METADATA,
  type KubernetesSecretStoreOptions,
} from './kubernetes-secret-store.js';
export {
  SERVICE_ACCOUNT_DIR,
  loadKubeConfig,
  type KubeConfigOptions,
  type LoadedKubeConfig,
} from './kubernetes-client.js';

/**
 * `--secret-store kubernetes [--namespace NS] --root-key-secret NAME --targets-key-secret NAME
 * [--kubeconfig FILE]`: the RFC's flow, keys generated on the first build and kept in Secrets.
 */
export interface KubernetesKeyStoreOptions {
  readonly kind: 'kubernetes';
  /** Where both Secrets live; absent: the kubeconfig context's namespace (in-cluster: the pod's). */
  readonly namespace?: string;
  readonly rootKeySecret: string;
  readonly targetsKeySecret: string;
  /**
   * `--kubeconfig`. Absent: `$KUBECONFIG`, then the pod's service account (token + CA, when
   * `KUBERNETES_SERVICE_HOST` is set), then `~/.kube/config`.
   */
  readonly kubeconfig?: string;
  /** With a passphrase, new keys are encrypted with it and the Secret gets no `password` entry. */
  readonly passphrases: KeyPassphrases;
}

/**
 * `--keys-dir DIR [--root-keys-dir DIR] [--delegation targets/NAME]`: kpack's mounted-Secret layout
 * (`<id>.key` + `password`); nothing is ever generated.
 */
export interface DirectoryKeyStoreOptions {
  readonly kind: 'directory';
  /** The targets or delegation key directory. */
  readonly dir: string;
  /** The root key directory (same layout, optionally `root.crt`), to create or re-sign root. */
  readonly rootDir?: string;
  /** The delegation signed into; picks the key for it when the directory holds several. */
  readonly delegation?: string;
  readonly passphrases: KeyPassphrases;
}

/** What the CLI hands to {@link createKeyStore}. */
export type KeyStoreOptions = KubernetesKeyStoreOptions | DirectoryKeyStoreOptions;

/**
 * Builds the key store the flags name. Loads the Kubernetes credentials right away (synchronously),
 * so a missing kubeconfig or service account fails before any work; reads no key until `load`.
 * Throws CREDENTIALS_INVALID (no usable Kubernetes credentials) or INPUT_INVALID (a bad name, or no
 * namespace given or configured).
 */
export function createKeyStore(options: KeyStoreOptions): KeyStore {
  switch (options.kind) {
    case 'directory':
      return new KeysDirStore({
        dir: options.dir,
        passphrases: options.passphrases,
        ...(options.rootDir === undefined ? {} : { rootDir: options.rootDir }),
        ...(options.delegation === undefined ? {} : { delegation: options.delegation }),
      });
    case 'kubernetes': {
      const loaded = loadKubeConfig(
        options.kubeconfig === undefined ? {} : { kubeconfig: options.kubeconfig },
      );
      const namespace = options.namespace ?? loaded.namespace;
      if (namespace === undefined) {
        const problem = `no namespace given, and the ${loaded.source} sets none`;
        throw new TrustError(
          'INPUT_INVALID',
          { source: '--namespace', problem },
          `--namespace: ${problem}`,
        );
      }
      return new KubernetesSecretStore({
        kubeConfig: loaded.config,
        namespace,
        rootKeySecret: options.rootKeySecret,
        targetsKeySecret: options.targetsKeySecret,
        passphrases: options.passphrases,
      });
    }
  }
}
