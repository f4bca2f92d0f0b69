/**
 * Registry credentials of the Build's own service account, read by the controller through the API
 * — the Secrets kpack itself would mount into that Build's pod — placed before the controller's own
 * (`--docker-config`). Which Secrets count follows kpack v0.17.2 (`pkg/dockercreds/k8sdockercreds`
 * and `build_pod.go`'s `dockerSecrets`): the service account's `secrets`, then its
 * `imagePullSecrets`; `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`),
 * `kubernetes.io/dockercfg` (`.dockercfg`), and `kubernetes.io/basic-auth` carrying the
 * `kpack.io/docker: <registry>` annotation. As in kpack, the first Secret naming a registry wins.
 *
 * The parsing is pure; `ServiceAccountCredentials` does the reads with an injected client, bounded
 * (Secrets per account, bytes per Secret, accounts cached) and never logging a Secret's contents.
 */
import { createHash } from 'node:crypto';
import {
  dockerConfigCredentials,
  isTrustError,
  firstCredentials,
  type CredentialSource,
} from '@kpack-trust/common';
import type { Logger } from './controller.js';

/** kpack's annotation naming the registry of a basic-auth Secret (`DOCKERSecretAnnotationPrefix`). */
export const KPACK_DOCKER_ANNOTATION = 'kpack.io/docker';

/** Most Secrets read for one service account; kpack has no cap, a reader of the API needs one. */
export const MAX_SECRETS_PER_ACCOUNT = 16;
/** Most bytes of one Secret's credential field (decoded); a docker config is a few hundred. */
export const MAX_SECRET_BYTES = 64 * 1024;

/** A set of registry credentials and where it came from (for errors and logs; no contents). */
export interface RegistryCredentials {
  readonly source: CredentialSource;
  /** Identifies the set for reusing clients: equal keys, equal credentials. */
  readonly key: string;
  /** `the controller's own`, `service account team/builder (Secrets a, b) before the controller's own`. */
  readonly description: string;
}

/** The names of the Secrets a service account lists: `secrets`, then `imagePullSecrets`, de-duplicated, capped. */
export function registrySecretNames(
  serviceAccount: unknown,
  max = MAX_SECRETS_PER_ACCOUNT,
): { readonly names: readonly string[]; readonly dropped: number } {
  const root = record(serviceAccount);
  const names: string[] = [];
  let dropped = 0;
  for (const field of ['secrets', 'imagePullSecrets']) {
    const refs = root[field];
    if (!Array.isArray(refs)) continue;
    // Bounded: a ServiceAccount is written by whoever administers the build namespace.
    for (const ref of refs.slice(0, 1_000)) {
      const name = record(ref)['name'];
      if (typeof name !== 'string' || name === '' || names.includes(name)) continue;
      if (names.length >= max) dropped++;
      else names.push(name);
    }
  }
  return { names, dropped };
}

/** What one Secret yields: its docker config as kpack reads it, or why it is skipped. */
export type SecretCredentials =
  | { readonly kind: 'credentials'; readonly source: CredentialSource }
  | { readonly kind: 'skipped'; readonly why: string };

/** Reads one core/v1 Secret as kpack would; pure. Errors name fields, never values. */
export function secretCredentials(secret: unknown, label: string): SecretCredentials {
  const root = record(secret);
  const type = root['type'];
  const data = record(root['data']);
  const annotations = record(record(root['metadata'])['annotations']);
  const field = (key: string): string | Skip => {
    const encoded = data[key];
    if (typeof encoded !== 'string') return new Skip(`it has no ${key}`);
    // Checked before decoding, so that a huge field is never decoded.
    const decoded =
      encoded.length > Math.ceil(MAX_SECRET_BYTES / 3) * 4
        ? undefined
        : Buffer.from(encoded, 'base64');
    if (decoded === undefined || decoded.length > MAX_SECRET_BYTES) {
      return new Skip(`its ${key} exceeds ${MAX_SECRET_BYTES} bytes`);
    }
    return decoded.toString('utf8');
  };
  const parsed = (key: string): unknown => {
    const text = field(key);
    if (text instanceof Skip) return text;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return new Skip(`its ${key} is not JSON`);
    }
  };
  let config: unknown;
  switch (type) {
    case 'kubernetes.io/dockerconfigjson':
      config = parsed('.dockerconfigjson');
      break;
    case 'kubernetes.io/dockercfg': {
      // The legacy format is the `auths` map itself.
      const auths = parsed('.dockercfg');
      config = auths instanceof Skip ? auths : { auths };
      break;
    }
    case 'kubernetes.io/basic-auth': {
      const registry = annotations[KPACK_DOCKER_ANNOTATION];
      if (typeof registry !== 'string' || registry === '') {
        return { kind: 'skipped', why: `it has no ${KPACK_DOCKER_ANNOTATION} annotation` };
      }
      const username = field('username');
      const password = field('password');
      if (username instanceof Skip) return { kind: 'skipped', why: username.why };
      if (password instanceof Skip) return { kind: 'skipped', why: password.why };
      config = { auths: { [registry]: { username, password } } };
      break;
    }
    default:
      return {
        kind: 'skipped',
        why: `its type ${String(type).slice(0, 80)} holds no registry credentials`,
      };
  }
  if (config instanceof Skip) return { kind: 'skipped', why: config.why };
  try {
    return { kind: 'credentials', source: dockerConfigCredentials(config, label) };
  } catch (err) {
    // CREDENTIALS_INVALID names the entry and the problem, not the values.
    const why = isTrustError(err) ? err.message : 'it is not a docker config';
    return { kind: 'skipped', why };
  }
}

/** The reads the gathering needs; undefined is 404. A 403 throws a `status: 403` error. */
export interface CoreReader {
  readonly getServiceAccount: (namespace: string, name: string) => Promise<unknown>;
  readonly getSecret: (namespace: string, name: string) => Promise<unknown>;
}

/** How ServiceAccountCredentials is set up. */
export interface ServiceAccountCredentialsOptions {
  readonly reader: CoreReader;
  /** The controller's own (`--docker-config`), after the Build's. */
  readonly own?: CredentialSource;
  readonly log: Logger;
  readonly now: () => number;
  /** How long a service account's credentials are reused (default 30 s). */
  readonly ttlMs?: number;
  /** Most service accounts cached (default 256). */
  readonly maxEntries?: number;
}

const OWN_KEY = 'controller';

/**
 * The credentials for a Build's service account, cached per (namespace, account) briefly so that
 * a burst of Builds reads each account once; a Secret changed later is seen after the TTL.
 */
export class ServiceAccountCredentials {
  readonly #options: ServiceAccountCredentialsOptions;
  readonly #cache = new Map<string, { at: number; value: Promise<RegistryCredentials> }>();
  #forbiddenLogged = false;

  constructor(options: ServiceAccountCredentialsOptions) {
    this.#options = options;
  }

  /** The controller's own credentials alone. */
  get own(): RegistryCredentials {
    return ownCredentials(this.#options.own);
  }

  /** The Build's account's credentials before the controller's own. */
  credentialsFor(namespace: string, serviceAccount: string): Promise<RegistryCredentials> {
    const key = `${namespace}/${serviceAccount}`;
    const now = this.#options.now();
    const cached = this.#cache.get(key);
    if (cached !== undefined && now - cached.at < (this.#options.ttlMs ?? 30_000)) {
      return cached.value;
    }
    this.#cache.delete(key);
    const value = this.#gather(namespace, serviceAccount);
    // A failed read (apiserver unavailable) is not cached: the retry reads again.
    value.catch(() => {
      if (this.#cache.get(key)?.value === value) this.#cache.delete(key);
    });
    const max = this.#options.maxEntries ?? 256;
    while (this.#cache.size >= max) {
      const oldest = this.#cache.keys().next().value;
      if (oldest === undefined) break;
      this.#cache.delete(oldest);
    }
    this.#cache.set(key, { at: now, value });
    return value;
  }

  async #gather(namespace: string, serviceAccount: string): Promise<RegistryCredentials> {
    const { reader, log } = this.#options;
    const account = `${namespace}/${serviceAccount}`;
    let object: unknown;
    try {
      object = await reader.getServiceAccount(namespace, serviceAccount);
    } catch (err) {
      if (!isForbidden(err)) throw err;
      if (!this.#forbiddenLogged) {
        this.#forbiddenLogged = true;
        log(
          'warn',
          "no RBAC to read build service accounts; using the controller's own registry credentials",
          { serviceAccount: account },
        );
      }
      return this.own;
    }
    if (object === undefined) {
      log(
        'warn',
        "the Build's service account does not exist; using the controller's own registry credentials",
        { serviceAccount: account },
      );
      return this.own;
    }
    const { names, dropped } = registrySecretNames(object);
    if (dropped > 0) {
      log(
        'warn',
        `the service account lists more than ${MAX_SECRETS_PER_ACCOUNT} Secrets; the rest are not read`,
        { serviceAccount: account, dropped },
      );
    }
    const sources: CredentialSource[] = [];
    const used: string[] = [];
    const versions: string[] = [];
    for (const name of names) {
      let secret: unknown;
      try {
        secret = await reader.getSecret(namespace, name);
      } catch (err) {
        if (!isForbidden(err)) throw err;
        log('warn', 'a Secret of the service account may not be read; skipped', {
          serviceAccount: account,
          secret: name,
        });
        continue;
      }
      if (secret === undefined) {
        log('warn', 'a Secret the service account lists does not exist; skipped', {
          serviceAccount: account,
          secret: name,
        });
        continue;
      }
      const read = secretCredentials(secret, `Secret ${namespace}/${name}`);
      if (read.kind === 'skipped') {
        // Opaque and service-account-token Secrets are listed too, and are not registry Secrets.
        const type = record(secret)['type'];
        if (type !== 'Opaque' && type !== 'kubernetes.io/service-account-token') {
          log(
            'warn',
            'a Secret of the service account holds no usable registry credentials; skipped',
            { serviceAccount: account, secret: name, why: read.why },
          );
        }
        continue;
      }
      sources.push(read.source);
      used.push(name);
      const meta = record(record(secret)['metadata']);
      versions.push(`${name}@${String(meta['uid'])}/${String(meta['resourceVersion'])}`);
    }
    if (sources.length === 0) return this.own;
    const own = this.#options.own;
    return {
      source: firstCredentials(own === undefined ? sources : [...sources, own]),
      // Names and versions only: the key identifies a set, it carries no credential.
      key: createHash('sha256')
        .update(`${account}\n${versions.join('\n')}`)
        .digest('hex'),
      description: `the Secrets ${used.join(', ')} of service account ${account}${own === undefined ? '' : " before the controller's own"}`,
    };
  }
}

/** The controller's own credentials as a set. */
export function ownCredentials(own: CredentialSource | undefined): RegistryCredentials {
  return {
    source: own ?? { credentialsFor: () => Promise.resolve(undefined) },
    key: OWN_KEY,
    description: own === undefined ? 'none (anonymous)' : "the controller's own",
  };
}

function isForbidden(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { status?: unknown }).status === 403;
}

/** Why a Secret yields nothing (a class, so that no parsed JSON can pass for one). */
class Skip {
  constructor(readonly why: string) {}
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}
