/**
 * The two Kubernetes API calls the Secret store makes (get and create a Secret), through the
 * official client, with the apiserver's answers turned into TrustErrors that name the Secret, the
 * HTTP status and — for 403 — the RBAC rule that is missing. Nothing here ever quotes Secret data.
 */
import { TrustError } from '@kpack-trust/common';
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  V1ObjectMeta,
  V1Secret,
} from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Where the kubelet mounts a pod's service account token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

// A hung apiserver must fail the build, not stall it until the pod's deadline.
const REQUEST_TIMEOUT_MS = 30_000;
// Status messages are the apiserver's prose; bound what we repeat of them.
const MAX_MESSAGE = 400;
// A Status lists a cause per invalid field; the few we look at come first.
const MAX_CAUSES = 16;
// The StatusCause NamespaceLifecycle admission attaches to a create in a namespace being deleted.
const NAMESPACE_TERMINATING = 'NamespaceTerminating';

/** A loaded client configuration and where it came from. */
export interface LoadedKubeConfig {
  readonly config: KubeConfig;
  /** `in-cluster service account`, `kubeconfig /path`, … — for messages. */
  readonly source: string;
  /** The current context's namespace (in-cluster: the pod's own namespace), when set. */
  readonly namespace?: string;
}

/** Where to look for credentials; `serviceAccountPrefix` relocates the in-cluster files (tests). */
export interface KubeConfigOptions {
  readonly kubeconfig?: string;
  readonly serviceAccountPrefix?: string;
}

/**
 * Credentials in the order an operator expects: `--kubeconfig`, then `$KUBECONFIG` (several files
 * joined by the path delimiter are merged), then the pod's service account when
 * `KUBERNETES_SERVICE_HOST` says we run in a cluster, then `~/.kube/config`. Unlike the client's
 * own loadFromDefault, finding nothing is an error rather than a silent `http://localhost:8080`.
 */
export function loadKubeConfig(options: KubeConfigOptions = {}): LoadedKubeConfig {
  const explicit = options.kubeconfig;
  if (explicit !== undefined && explicit !== '') return fromFiles([explicit]);
  const fromEnv = (process.env['KUBECONFIG'] ?? '').split(delimiter).filter((f) => f !== '');
  if (fromEnv.length > 0) return fromFiles(fromEnv);
  const host = process.env['KUBERNETES_SERVICE_HOST'];
  if (host !== undefined && host !== '') {
    const prefix = options.serviceAccountPrefix ?? '';
    const tokenFile = `${prefix}${SERVICE_ACCOUNT_DIR}/token`;
    if (!existsSync(tokenFile)) {
      const problem = `KUBERNETES_SERVICE_HOST is set but ${tokenFile} does not exist; mount the service account token or pass --kubeconfig`;
      throw new TrustError(
        'CREDENTIALS_INVALID',
        { source: 'in-cluster service account', problem },
        `Kubernetes credentials: ${problem}`,
      );
    }
    const config = new KubeConfig();
    // Reads KUBERNETES_SERVICE_HOST/PORT, the token file (re-read each minute) and ca.crt.
    config.loadFromCluster(prefix);
    return withNamespace(config, 'in-cluster service account');
  }
  const home = join(homedir(), '.kube', 'config');
  if (existsSync(home)) return fromFiles([home]);
  const problem =
    'none found: not running in a cluster (KUBERNETES_SERVICE_HOST is unset) and no --kubeconfig, KUBECONFIG or ~/.kube/config';
  throw new TrustError(
    'CREDENTIALS_INVALID',
    { source: 'Kubernetes credentials', problem },
    `Kubernetes credentials: ${problem}`,
  );
}

function fromFiles(files: readonly string[]): LoadedKubeConfig {
  const source = `kubeconfig ${files.join(delimiter)}`;
  const config = new KubeConfig();
  files.forEach((file, index) => {
    const target = index === 0 ? config : new KubeConfig();
    try {
      target.loadFromFile(file);
    } catch (err) {
      // A YAML error quotes the offending lines, and a kubeconfig holds tokens: say only what failed.
      const code = (err as NodeJS.ErrnoException).code;
      const problem =
        code === undefined
          ? `${file} is not a valid kubeconfig`
          : `${file} cannot be read (${code})`;
      throw new TrustError('CREDENTIALS_INVALID', { source, problem }, `${source}: ${problem}`);
    }
    // kubectl's rule: the first file that sets current-context wins.
    if (target !== config) config.mergeConfig(target, config.getCurrentContext() !== undefined);
  });
  const fail = (problem: string): TrustError =>
    new TrustError('CREDENTIALS_INVALID', { source, problem }, `${source}: ${problem}`);
  const cluster = config.getCurrentCluster();
  if (!cluster) throw fail('the current context names no cluster');
  if (cluster.caFile !== undefined && !existsSync(cluster.caFile)) {
    throw fail(`certificate-authority ${cluster.caFile} does not exist`);
  }
  return withNamespace(config, source);
}

function withNamespace(config: KubeConfig, source: string): LoadedKubeConfig {
  const namespace = config.getContextObject(config.getCurrentContext())?.namespace?.trim();
  return namespace === undefined || namespace === ''
    ? { config, source }
    : { config, source, namespace };
}

/** A Secret to create in the store's namespace. */
export interface SecretManifest {
  readonly name: string;
  readonly type: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** Entry name → base64 of its bytes, as the API carries `data`. */
  readonly data: Readonly<Record<string, string>>;
}

/** What `create` did: made the Secret, or found one of that name already there (409). */
export type CreateOutcome = 'created' | 'already-exists';

/** Get and create Secrets in one namespace, with failures as TrustErrors. */
export class NamespacedSecrets {
  /** The apiserver URL (from the kubeconfig or the in-cluster environment). */
  readonly server: string;
  /** The namespace every call addresses. */
  readonly namespace: string;
  readonly #api: CoreV1Api;
  readonly #rbacHint: string;

  /** `rbacHint` completes 403 messages: the rules the caller needs. */
  constructor(config: KubeConfig, namespace: string, rbacHint: string) {
    this.server = config.getCurrentCluster()?.server ?? '';
    this.namespace = namespace;
    this.#api = config.makeApiClient(CoreV1Api);
    this.#rbacHint = rbacHint;
  }

  /** The Secret, or undefined when the apiserver answers 404. */
  async read(name: string): Promise<V1Secret | undefined> {
    try {
      return await withTimeout(this.#api.readNamespacedSecret({ name, namespace: this.namespace }));
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw this.#failure(err, 'get', name);
    }
  }

  /** Creates the Secret; a 409 AlreadyExists is an outcome, not an error (create-if-absent). */
  async create(manifest: SecretManifest): Promise<CreateOutcome> {
    const { name } = manifest;
    const metadata = new V1ObjectMeta();
    metadata.name = name;
    metadata.namespace = this.namespace;
    metadata.labels = { ...manifest.labels };
    metadata.annotations = { ...manifest.annotations };
    const secret = new V1Secret();
    secret.apiVersion = 'v1';
    secret.kind = 'Secret';
    secret.metadata = metadata;
    secret.type = manifest.type;
    secret.data = { ...manifest.data };
    try {
      await withTimeout(
        this.#api.createNamespacedSecret({ namespace: this.namespace, body: secret }),
      );
      return 'created';
    } catch (err) {
      if (err instanceof ApiException && err.code === 409) {
        const status = parseStatus(err.body);
        // 409 Conflict (not AlreadyExists) would be an optimistic-concurrency failure; for a
        // create the apiserver only ever says AlreadyExists, but do not guess at anything else.
        if (status.reason === undefined || status.reason === 'AlreadyExists') {
          return 'already-exists';
        }
      }
      throw this.#failure(err, 'create', name);
    }
  }

  /** The URL of a Secret, for error facts. */
  urlOf(name: string): string {
    return `${this.server}/api/v1/namespaces/${this.namespace}/secrets/${name}`;
  }

  #failure(err: unknown, verb: 'get' | 'create', name: string): Error {
    const url = this.urlOf(name);
    const what = `${verb} Secret "${this.namespace}/${name}"`;
    if (err instanceof ApiException) {
      const status = err.code;
      const { reason, message, causes } = parseStatus(err.body);
      const said = message === undefined ? '' : `: ${message}`;
      if (status === 401) {
        const problem =
          'the apiserver did not accept our credentials (service account token or kubeconfig user)';
        return new TrustError(
          'AUTH_FAILED',
          { url, status, problem },
          `cannot ${what}: ${problem}`,
        );
      }
      if (status === 403 && causes.includes(NAMESPACE_TERMINATING)) {
        // NamespaceLifecycle's refusal, not RBAC's: no Role would help, so no RBAC hint.
        return new TrustError(
          'HTTP_STATUS',
          { url, status, serverCode: reason ?? '' },
          `cannot ${what}: the Kubernetes API answered ${status}${reason === undefined ? '' : ` ${reason}`}${said} (no Role can allow it: recreate the namespace once it is gone)`,
        );
      }
      if (status === 403) {
        const problem = `${message ?? 'forbidden'}. ${this.#rbacHint}`;
        return new TrustError(
          'AUTH_FAILED',
          { url, status, problem },
          `cannot ${what}: ${problem}`,
        );
      }
      return new TrustError(
        'HTTP_STATUS',
        { url, status, serverCode: reason ?? '' },
        `cannot ${what}: the Kubernetes API answered ${status}${reason === undefined ? '' : ` ${reason}`}${said}`,
      );
    }
    if (err instanceof TimeoutError || (err instanceof Error && err.name === 'FetchError')) {
      // node-fetch's message names the URL and the socket error, never a request body.
      return new TrustError(
        'HTTP_UNREACHABLE',
        { url, problem: err.message },
        `cannot ${what}: the Kubernetes API at ${this.server} is unreachable: ${err.message}`,
      );
    }
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (err instanceof Error && typeof code === 'string') {
      // The client reads the CA, client certificate and token files on each request.
      const problem = `a credentials file cannot be read (${code})`;
      return new TrustError(
        'CREDENTIALS_INVALID',
        { source: 'Kubernetes credentials', problem },
        `cannot ${what}: ${problem}`,
      );
    }
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** Our own timeout, distinguishable from the client's errors. */
class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

function withTimeout<T>(call: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new TimeoutError(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`));
    }, REQUEST_TIMEOUT_MS);
    timer.unref();
  });
  return Promise.race([call, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

/** `reason` and `message` of a metav1.Status body, if the body is one. */
function parseStatus(body: unknown): { reason?: string; message?: string; causes: string[] } {
  let value: unknown = body;
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body) as unknown;
    } catch {
      return { causes: [] };
    }
  }
  if (typeof value !== 'object' || value === null) return { causes: [] };
  const record = value as Record<string, unknown>;
  if (record['kind'] !== 'Status') return { causes: [] };
  const reason = record['reason'];
  const message = record['message'];
  const details = record['details'];
  const listed =
    typeof details === 'object' && details !== null
      ? (details as Record<string, unknown>)['causes']
      : undefined;
  // The cause types only (never their messages), from a bounded prefix of the list.
  const causes = Array.isArray(listed)
    ? listed
        .slice(0, MAX_CAUSES)
        .map((cause: unknown) =>
          typeof cause === 'object' && cause !== null
            ? (cause as Record<string, unknown>)['reason']
            : undefined,
        )
        .filter((type): type is string => typeof type === 'string')
    : [];
  return {
    causes,
    ...(typeof reason === 'string' && reason !== '' ? { reason } : {}),
    ...(typeof message === 'string' && message !== ''
      ? { message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message }
      : {}),
  };
}
