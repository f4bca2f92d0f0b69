/**
 * The controller's `sign`: the same `signBuild` flow as `kpack-trust-signer sign`, with keys from
 * the Kubernetes Secret store in the controller's OWN namespace (never the build's: kpack mounts
 * the service account token into every container of a build pod, so any Secret a build namespace's
 * account can read, build code can read). Adds what an Image's annotations ask for: a delegation
 * (signed with the targets Secret's key, as kpack's mounted notary Secret is used) and a root pin.
 */
import {
  PublicKey,
  TrustError,
  type MetadataFetcher,
  type MetadataPublisher,
} from '@kpack-trust/common';
import { exitCodeFor, ExitCode } from '../cli/exit-codes.js';
import type { KeyStore, RepositoryKeys } from '../keys/key-store.js';
import type { ManifestLookup } from '../registry/manifest-client.js';
import { signBuild, type SignSummary } from '../publish/sign-build.js';
import type { RegistryCredentials } from './build-credentials.js';
import type { BuildState } from './kpack.js';
import type { SignRequest } from './reconcile.js';

/** The edges the controller's signing uses. */
export interface ControllerSigningDependencies {
  /**
   * A key store over the two named Secrets in the controller's namespace, for an Image of
   * `sourceNamespace` (whose key Secrets the controller caps, see key-quota.ts).
   */
  readonly keyStoreFor: (
    rootKeySecret: string,
    targetsKeySecret: string,
    sourceNamespace: string,
  ) => KeyStore;
  /** A notary client for a URL presenting these credentials (reused across Builds). */
  readonly notaryFor: (
    url: string,
    credentials: RegistryCredentials | undefined,
  ) => MetadataFetcher & MetadataPublisher;
  readonly registry?: ManifestLookup;
  /** A registry client presenting these credentials; wins over `registry`. */
  readonly registryFor?: (credentials: RegistryCredentials | undefined) => ManifestLookup;
  /** The registry credentials for a Build: its service account's before the controller's own. */
  readonly credentialsFor?: (build: BuildState) => Promise<RegistryCredentials>;
  readonly now: () => Date;
  readonly progress?: (line: string) => void;
}

/** Signs one request through signBuild. */
export function controllerSigner(
  deps: ControllerSigningDependencies,
): (request: SignRequest) => Promise<SignSummary> {
  return async (request) => {
    const { settings } = request;
    const base = deps.keyStoreFor(
      settings.rootKeySecret,
      settings.targetsKeySecret,
      request.build.namespace,
    );
    const keyStore = withImageSettings(base, settings.delegation, settings.rootKeyIds);
    const credentials = await deps.credentialsFor?.(request.build);
    const registry = deps.registryFor?.(credentials) ?? deps.registry;
    try {
      return await signBuild(
        {
          image: request.image,
          ...(settings.delegation === undefined ? {} : { role: settings.delegation }),
          rootKeyIds: settings.rootKeyIds,
        },
        {
          notary: deps.notaryFor(settings.notaryUrl, credentials),
          keyStore,
          ...(registry === undefined ? {} : { registry }),
          now: deps.now,
          ...(deps.progress === undefined ? {} : { progress: deps.progress }),
        },
      );
    } catch (err) {
      throw credentials === undefined ? err : withCredentialsNamed(err, credentials);
    }
  };
}

/**
 * A refused login says which credentials were presented — the Build's service account's Secrets,
 * or only the controller's own — so the Build's annotation tells its owner where to look. Names
 * only; never a credential.
 */
export function withCredentialsNamed(err: unknown, credentials: RegistryCredentials): unknown {
  if (!(err instanceof TrustError) || exitCodeFor(err) !== ExitCode.AUTH_FAILED) return err;
  const named = new TrustError(
    err.code,
    err.facts as never,
    `${err.message.replace(/\.$/, '')}; registry credentials: ${credentials.description}.`,
    { cause: err },
  );
  return named;
}

/**
 * The store as the Image configures it: the targets key doubles as the delegation key when a
 * delegation is named; a root pin refuses a root key that is not pinned before anything is signed.
 */
export function withImageSettings(
  store: KeyStore,
  delegation: string | undefined,
  rootKeyIds: readonly string[],
): KeyStore {
  return {
    description: store.description,
    async load(gun, options): Promise<RepositoryKeys> {
      const keys = await store.load(gun, options);
      if (rootKeyIds.length > 0 && keys.root !== undefined) {
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
      }
      if (delegation === undefined || keys.targets === undefined) return keys;
      return { ...keys, delegations: new Map([[delegation, keys.targets]]) };
    },
  };
}
