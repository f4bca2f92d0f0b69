/**
 * The controller's `sign`: the same `signBuild` flow as `kpack-trust-signer sign`, with keys from
 * the Kubernetes Secret store in the controller's OWN namespace (never the build's: kpack mounts
 * the service account token into every container of a build pod, so any Secret a build namespace's
 * account can read, build code can read). Adds what an Image's annotations ask for: a delegation
 * (signed with the targets Secret's key, as kpack's mounted notary Secret is used) and a root pin.
 *
 * Each attempt runs under one deadline for all its round trips together (`--sign-timeout`): the
 * clients' own deadlines are per request (10 s), and an attempt makes up to ~6 round trips to a
 * registry the Image names — a host its tenant may control and stall — and a few to notary, so
 * without it one attempt could hold a worker for a minute or more each time it is retried.
 */
import {
  TrustError,
  type MetadataFetcher,
  type MetadataPublisher,
  type MetadataRequest,
} from '@kpack-trust/common';
import { exitCodeFor, ExitCode } from '../cli/exit-codes.js';
import type { KeyStore, RepositoryKeys } from '../keys/key-store.js';
import { withPinnedRoot } from '../keys/pinned-root.js';
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
  /** The deadline of one attempt, every round trip together; default {@link DEFAULT_SIGN_TIMEOUT_MS}. */
  readonly signTimeoutMs?: number;
}

/** Default deadline of one sign attempt (`--sign-timeout`): six stalled 10 s round trips. */
export const DEFAULT_SIGN_TIMEOUT_MS = 60_000;

/** Signs one request through signBuild. */
export function controllerSigner(
  deps: ControllerSigningDependencies,
): (request: SignRequest) => Promise<SignSummary> {
  return async (request) => {
    const { settings } = request;
    const deadline = new AttemptDeadline(
      deps.signTimeoutMs ?? DEFAULT_SIGN_TIMEOUT_MS,
      request.image.gun,
    );
    let credentials: RegistryCredentials | undefined;
    try {
      return await deadline.race(
        (async (): Promise<SignSummary> => {
          const base = deps.keyStoreFor(
            settings.rootKeySecret,
            settings.targetsKeySecret,
            request.build.namespace,
          );
          const keyStore = withImageSettings(base, settings.delegation, settings.rootKeyIds);
          credentials = await deps.credentialsFor?.(request.build);
          const registry = deps.registryFor?.(credentials) ?? deps.registry;
          return signBuild(
            {
              image: request.image,
              ...(settings.delegation === undefined ? {} : { role: settings.delegation }),
              rootKeyIds: settings.rootKeyIds,
            },
            {
              notary: deadline.notary(
                deps.notaryFor(settings.notaryUrl, credentials),
                settings.notaryUrl,
              ),
              keyStore,
              ...(registry === undefined ? {} : { registry: deadline.registry(registry) }),
              now: deps.now,
              ...(deps.progress === undefined ? {} : { progress: deps.progress }),
            },
          );
        })(),
      );
    } catch (err) {
      throw credentials === undefined ? err : withCredentialsNamed(err, credentials);
    } finally {
      deadline.clear();
    }
  };
}

/**
 * One attempt's deadline. When it passes, the attempt fails at once with HTTP_UNREACHABLE naming
 * the round trip in progress (reason Unavailable: retried with backoff, like a server that does not
 * answer), a metadata download or manifest lookup in flight is aborted through its signal (its
 * connection closed), and no further round trip starts; a key fetch or publish already sent ends by
 * its client's own 10 s deadline, its answer unused (a publish that lands anyway is found in place
 * by the retry).
 */
export class AttemptDeadline {
  readonly #controller = new AbortController();
  readonly #timer: ReturnType<typeof setTimeout>;
  readonly #ms: number;
  readonly #gun: string;
  /** The round trip in progress, for the error: what stalled is what the Build's owner must fix. */
  #current: { url: string; what: string } | undefined;

  constructor(ms: number, gun: string) {
    if (!Number.isFinite(ms) || ms <= 0) {
      throw new RangeError(`signTimeoutMs must be a positive number, got ${ms}`);
    }
    this.#ms = ms;
    this.#gun = gun;
    this.#timer = setTimeout(() => {
      this.#controller.abort(this.#error());
    }, ms);
  }

  /** Aborts when the deadline passes. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** `work`, or the deadline's error if it passes first. */
  race<T>(work: Promise<T>): Promise<T> {
    const signal = this.#controller.signal;
    let onAbort = (): void => undefined;
    const passed = new Promise<never>((_resolve, reject) => {
      onAbort = (): void => {
        reject(signal.reason as Error);
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    return Promise.race([work, passed]).finally(() => {
      signal.removeEventListener('abort', onAbort);
    });
  }

  /** Stops the timer once the attempt is over. */
  clear(): void {
    clearTimeout(this.#timer);
  }

  /** The notary client under this deadline. */
  notary(
    client: MetadataFetcher & MetadataPublisher,
    url: string,
  ): MetadataFetcher & MetadataPublisher {
    return {
      fetchMetadata: (gun, request) =>
        this.#call(url, `GET ${request.role} of ${gun} from notary`, (signal) =>
          client.fetchMetadata(gun, withSignal(request, signal)),
        ),
      fetchServerKey: (gun, role) =>
        this.#call(url, `GET ${role}.key of ${gun} from notary`, () =>
          client.fetchServerKey(gun, role),
        ),
      publish: (gun, files) =>
        this.#call(url, `publish of ${gun} to notary`, () => client.publish(gun, files)),
    };
  }

  /** The registry client under this deadline. */
  registry(lookup: ManifestLookup): ManifestLookup {
    return {
      manifestSize: (image, digest) =>
        this.#call(image.registry, `manifest lookup of ${image.registry}/${image.path}`, (signal) =>
          lookup.manifestSize(image, digest, { signal }),
        ),
    };
  }

  #call<T>(url: string, what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const signal = this.#controller.signal;
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    this.#current = { url, what };
    return this.race(work(signal));
  }

  #error(): TrustError {
    const during = this.#current === undefined ? '' : ` during the ${this.#current.what}`;
    const problem = `the sign attempt's deadline of ${this.#ms} ms passed${during}`;
    return new TrustError(
      'HTTP_UNREACHABLE',
      { url: this.#current?.url ?? this.#gun, problem },
      `Cannot sign ${this.#gun}: ${problem}.`,
    );
  }
}

/** The request with `signal` added to any it already carries: either aborts the download. */
function withSignal(request: MetadataRequest, signal: AbortSignal): MetadataRequest {
  const own = request.signal;
  if (own === undefined) return { ...request, signal };
  const both = new AbortController();
  const abort = (from: AbortSignal) => (): void => {
    both.abort(from.reason);
  };
  if (own.aborted) both.abort(own.reason);
  else if (signal.aborted) both.abort(signal.reason);
  else {
    own.addEventListener('abort', abort(own), { once: true });
    signal.addEventListener('abort', abort(signal), { once: true });
  }
  return { ...request, signal: both.signal };
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
 * The store as the Image configures it: a root pin applies (withPinnedRoot), and the targets key
 * doubles as the delegation key when a delegation is named.
 */
export function withImageSettings(
  store: KeyStore,
  delegation: string | undefined,
  rootKeyIds: readonly string[],
): KeyStore {
  const pinned = withPinnedRoot(store, rootKeyIds);
  if (delegation === undefined) return pinned;
  return {
    description: pinned.description,
    async load(gun, options): Promise<RepositoryKeys> {
      const keys = await pinned.load(gun, options);
      if (keys.targets === undefined) return keys;
      return { ...keys, delegations: new Map([[delegation, keys.targets]]) };
    },
  };
}
