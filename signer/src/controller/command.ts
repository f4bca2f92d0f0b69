/**
 * `kpack-trust-signer controller`: reads its flags once, wires the real edges (apiserver over
 * HTTPS, notary and registry clients, the Secret key store in its own namespace), serves
 * `/healthz`, `/readyz` and `/metrics`, campaigns for the Lease and, while leading, signs finished
 * Builds. SIGTERM/SIGINT: stop taking Builds, finish the one in hand, release the Lease, exit 0.
 */
import {
  NotaryHttpClient,
  dockerConfigCredentials,
  firstCredentials,
  type CredentialSource,
  type MetadataFetcher,
  type MetadataPublisher,
} from '@kpack-trust/common';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { loadKubeConfig } from '../keys/kubernetes-client.js';
import { KubernetesSecretStore, SECRET_METADATA } from '../keys/kubernetes-secret-store.js';
import { caBundleProblem } from '../cli/ca-bundle.js';
import { notaryUrlProblem } from '../cli/notary-url.js';
import { passphrasesFromEnv } from '../keys/passphrases.js';
import { RegistryHttpClient } from '../registry/manifest-client.js';
import {
  ServiceAccountCredentials,
  ownCredentials,
  type RegistryCredentials,
} from './build-credentials.js';
import { runController, type Logger } from './controller.js';
import {
  KubeHttp,
  annotateBuild,
  buildListWatch,
  countSecrets,
  createEvent,
  discoverKpack,
  getCoreObject,
  getKpackObject,
  leaseClient,
} from './kube-api.js';
import {
  DEFAULT_MAX_KEY_SECRETS_PER_NAMESPACE,
  SOURCE_NAMESPACE_LABEL,
  serializer,
  withKeySecretQuota,
} from './key-quota.js';
import { runLeaderElection } from './leader-election.js';
import { parseRepositoryAllowlist } from './repository-allowlist.js';
import { ControllerMetrics } from './metrics.js';
import { DEFAULT_SIGN_TIMEOUT_MS, controllerSigner } from './signing.js';
import type { WorkQueue } from './work-queue.js';

/** Usage of the subcommand. */
export const CONTROLLER_HELP = `kpack-trust-signer controller — sign every finished kpack Build (see signer/README.md)

  --namespace NS            the controller's own namespace: key Secrets and the Lease (default: $POD_NAMESPACE, then the kubeconfig's)
  --kubeconfig FILE         credentials (default: $KUBECONFIG, in-cluster service account, ~/.kube/config)
  --watch-namespace NS      watch Builds only here (repeatable; default: cluster-wide)
  --default-notary-url URL  notary server for Images that name none (https)
  --allow-notary-url URL    another notary server an Image may name in kpack-trust.io/notary-url
                            (repeatable; the controller presents registry credentials to it)
  --notary-ca FILE          PEM bundle trusted for notary servers, besides the public roots
  --opt-in-namespace NS     sign Images here without kpack-trust.io/sign=true (repeatable; * = all)
  --allow-repository NS=PREFIX
                            the Images of namespace NS may have signed only repositories under
                            PREFIX (registry.example.com/team-a; path-segment match, host without
                            case; repeatable); a Build outside its namespace's prefixes is not
                            signed (SigningFailed, reason RepositoryNotAllowed). A namespace with
                            no entry signs any repository (see the next flag)
  --require-repository-allowlist
                            namespaces with no --allow-repository entry sign nothing
  --docker-config FILE      the controller's own registry/notary credentials (repeatable)
  --build-credentials MODE  service-account (default): the registry Secrets of each Build's service
                            account, read through the API, before the controller's own (its own
                            alone where RBAC forbids the read); controller: its own only
  --registry-ca FILE        PEM bundle trusted for registries
  --insecure-registry HOST  registry reachable over plain HTTP (repeatable)
  --identity ID             this replica's Lease identity (default: $POD_NAME, then host name + pid)
  --lease-name NAME         default kpack-trust-signer-controller
  --lease-duration S / --renew-deadline S / --retry-period S   default 15 / 10 / 2
  --workers N               Builds signed at once (default 2)
  --max-workers-per-namespace N
                            Builds of one namespace signed at once (default 1), so a namespace whose
                            registry stalls cannot hold every worker; namespaces are served in turn
  --sign-timeout S          deadline of one sign attempt, every registry and notary round trip
                            together (default 60, at most 86400); past it the attempt fails
                            Unavailable and is retried
  --max-attempts N          attempts for transient failures before recording the error (default 5)
  --queue-size N            most Builds waiting at once (default 10000)
  --max-key-secrets-per-namespace N
                            most key Secrets the controller creates in its namespace for the Images
                            of one namespace (default 200: root and targets of 100 Images); a first
                            Build past it is not signed (SigningFailed, reason KeyQuotaExceeded)
  --resync S                full re-list at least every S seconds (default 600)
  --listen HOST:PORT        health and metrics (default 0.0.0.0:8080)
  -h, --help                this text
`;

/** The one line printed after a command-line mistake, as the sign command's USAGE_POINTER. */
export const CONTROLLER_USAGE_POINTER = 'run "kpack-trust-signer controller --help" for the flags';

// Node's timers take at most 2^31-1 ms (~24.8 days); a longer delay fires after 1 ms instead.
// One day is far above any sensible deadline and keeps every seconds flag clear of that.
const MAX_SECONDS = 86_400;

const OPTIONS = {
  namespace: { type: 'string' },
  kubeconfig: { type: 'string' },
  'watch-namespace': { type: 'string', multiple: true },
  'default-notary-url': { type: 'string' },
  'allow-notary-url': { type: 'string', multiple: true },
  'notary-ca': { type: 'string' },
  'opt-in-namespace': { type: 'string', multiple: true },
  'allow-repository': { type: 'string', multiple: true },
  'require-repository-allowlist': { type: 'boolean' },
  'docker-config': { type: 'string', multiple: true },
  'build-credentials': { type: 'string' },
  'registry-ca': { type: 'string' },
  'insecure-registry': { type: 'string', multiple: true },
  identity: { type: 'string' },
  'lease-name': { type: 'string' },
  'lease-duration': { type: 'string' },
  'renew-deadline': { type: 'string' },
  'retry-period': { type: 'string' },
  workers: { type: 'string' },
  'max-workers-per-namespace': { type: 'string' },
  'sign-timeout': { type: 'string' },
  'max-attempts': { type: 'string' },
  'queue-size': { type: 'string' },
  'max-key-secrets-per-namespace': { type: 'string' },
  resync: { type: 'string' },
  listen: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Runs the controller until a signal; returns the exit code. */
export async function runControllerCommand(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: [...argv],
      options: OPTIONS,
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    // A usage mistake: the reason and where to look, as `sign` answers one.
    process.stderr.write(`kpack-trust-signer controller: ${(err as Error).message}\n`);
    process.stderr.write(`kpack-trust-signer controller: ${CONTROLLER_USAGE_POINTER}\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(CONTROLLER_HELP);
    return 0;
  }
  const log: Logger = (level, message, fields) => {
    process.stdout.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`,
    );
  };
  const number = (name: keyof typeof OPTIONS, fallback: number): number => {
    const text = values[name];
    if (typeof text !== 'string') return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0)
      throw new Error(`--${name} "${text}" is not a positive number`);
    return value;
  };
  /** A flag in seconds that becomes a timer's delay: bounded so the timer cannot overflow. */
  const seconds = (name: keyof typeof OPTIONS, fallback: number): number => {
    const value = number(name, fallback);
    if (value > MAX_SECONDS) {
      throw new Error(
        `--${name} "${String(values[name])}" is above ${MAX_SECONDS} seconds (one day)`,
      );
    }
    return value * 1000;
  };

  const count = (name: keyof typeof OPTIONS, fallback: number): number => {
    const text = values[name];
    if (typeof text !== 'string') return fallback;
    if (!/^[1-9][0-9]{0,5}$/.test(text)) {
      throw new Error(`--${name} "${text}" is not a whole number from 1 to 999999`);
    }
    return Number(text);
  };

  try {
    // Fail at start, not on each Build: the same rule as sign and kpack-completion.
    for (const [flag, urls] of [
      ['--default-notary-url', values['default-notary-url'] ?? []],
      ['--allow-notary-url', values['allow-notary-url'] ?? []],
    ] as const) {
      for (const url of typeof urls === 'string' ? [urls] : urls) {
        const problem = notaryUrlProblem(url);
        if (problem !== undefined) throw new Error(`${flag}: not a usable notary URL (${problem})`);
      }
    }
    const repositoryAllowlist = parseRepositoryAllowlist(
      values['allow-repository'] ?? [],
      values['require-repository-allowlist'] === true,
    );
    // Checked before anything reaches the network, by sign --notary-ca's rule: Node's TLS would
    // ignore an empty or mistaken file, and every Build would then fail on a misleading TLS error.
    const notaryCa = readCaBundle('--notary-ca', values['notary-ca']);
    const registryCa = readCaBundle('--registry-ca', values['registry-ca']);
    const signTimeoutMs = seconds('sign-timeout', DEFAULT_SIGN_TIMEOUT_MS / 1000);
    // Read before the health server listens: a mistake here must not leave it holding the process.
    const timing = {
      leaseDurationMs: seconds('lease-duration', 15),
      renewDeadlineMs: seconds('renew-deadline', 10),
      retryPeriodMs: seconds('retry-period', 2),
      workers: number('workers', 2),
      maxSize: number('queue-size', 10_000),
      maxAttempts: number('max-attempts', 5),
      resyncMs: number('resync', 600) * 1000,
    };
    const maxWorkersPerNamespace = count('max-workers-per-namespace', 1);
    const loaded = loadKubeConfig(
      values.kubeconfig === undefined ? {} : { kubeconfig: values.kubeconfig },
    );
    const namespace = values.namespace ?? env['POD_NAMESPACE'] ?? loaded.namespace;
    if (namespace === undefined)
      throw new Error('no --namespace, $POD_NAMESPACE or kubeconfig namespace');
    const identity = values.identity ?? env['POD_NAME'] ?? `${hostname()}-${process.pid}`;
    const http = new KubeHttp(loaded.config);
    const kpack = await discoverKpack(http);
    const credentials = readCredentials(values['docker-config'] ?? []);
    const mode = values['build-credentials'] ?? 'service-account';
    if (mode !== 'service-account' && mode !== 'controller') {
      throw new Error(`--build-credentials "${mode}" is not service-account or controller`);
    }
    const buildCredentials =
      mode === 'controller'
        ? undefined
        : new ServiceAccountCredentials({
            reader: {
              getServiceAccount: (ns, name) => getCoreObject(http, 'serviceaccounts', ns, name),
              getSecret: (ns, name) => getCoreObject(http, 'secrets', ns, name),
            },
            ...(credentials === undefined ? {} : { own: credentials }),
            log,
            now: Date.now,
          });
    // One registry client and notary clients per credential set: the notary client caches tokens,
    // which must never serve a Build whose service account did not log in for them.
    const clientSets = new Map<string, ClientSet>();
    const closeSet = (set: ClientSet): void => {
      for (const client of set.notaries.values()) client.close();
      set.registry.close();
    };
    const clientsFor = (set: RegistryCredentials): ClientSet => {
      let clients = clientSets.get(set.key);
      if (clients === undefined) {
        clients = {
          credentials: set,
          notaries: new Map(),
          registry: new RegistryHttpClient({
            credentials: set.source,
            ...(registryCa === undefined ? {} : { ca: registryCa }),
            insecureRegistries: values['insecure-registry'] ?? [],
            userAgent: 'kpack-trust-signer-controller',
          }),
        };
        // Bounded: past 64 credential sets the oldest is dropped.
        if (clientSets.size >= 64) retireOldest(clientSets, closeSet);
        clientSets.set(set.key, clients);
      }
      return clients;
    };
    const own = ownCredentials(credentials);
    const passphrases = passphrasesFromEnv(env);
    const maxKeySecrets = count(
      'max-key-secrets-per-namespace',
      DEFAULT_MAX_KEY_SECRETS_PER_NAMESPACE,
    );
    const serializeKeyCreation = serializer();
    const sign = controllerSigner({
      keyStoreFor: (rootKeySecret, targetsKeySecret, sourceNamespace) =>
        withKeySecretQuota(
          new KubernetesSecretStore({
            kubeConfig: loaded.config,
            namespace,
            rootKeySecret,
            targetsKeySecret,
            passphrases,
            labels: { [SOURCE_NAMESPACE_LABEL]: sourceNamespace },
          }),
          {
            sourceNamespace,
            max: maxKeySecrets,
            count: (source, limit) =>
              countSecrets(
                http,
                namespace,
                {
                  [SECRET_METADATA.managedByLabel]: SECRET_METADATA.managedBy,
                  [SOURCE_NAMESPACE_LABEL]: source,
                },
                limit,
              ),
            serialize: serializeKeyCreation,
          },
        ),
      credentialsFor: (build) =>
        buildCredentials === undefined
          ? Promise.resolve(own)
          : buildCredentials.credentialsFor(build.namespace, build.serviceAccountName),
      notaryFor: (url, set) => {
        const { notaries, credentials: used } = clientsFor(set ?? own);
        let client = notaries.get(url);
        if (client === undefined) {
          client = new NotaryHttpClient({
            baseUrl: url,
            ...(notaryCa === undefined ? {} : { ca: notaryCa }),
            credentials: used.source,
            userAgent: 'kpack-trust-signer-controller',
          });
          // Bounded: one client per distinct URL, and past 256 URLs the oldest is dropped.
          if (notaries.size >= 256)
            retireOldest(notaries, (oldest) => {
              oldest.close();
            });
          notaries.set(url, client);
        }
        return client;
      },
      registryFor: (set) => clientsFor(set ?? own).registry,
      now: () => new Date(),
      signTimeoutMs,
    });
    const defaultNotaryUrl = values['default-notary-url'];
    const metrics = new ControllerMetrics();
    let queue: WorkQueue | undefined;
    let synced = false;
    let campaigning = false;

    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        // A standby is ready (it can take over); a leader once its informers have listed.
        const ready = campaigning && (!metrics.isLeader || synced);
        res
          .writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
          .end(ready ? 'ok\n' : 'not ready\n');
      } else if (path === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(
          metrics.render({
            depth: queue?.depth ?? 0,
            inFlight: queue?.inFlight ?? 0,
            dropped: queue?.dropped ?? 0,
          }),
        );
      } else {
        res.writeHead(404).end();
      }
    });
    const [host, port] = splitListen(values.listen ?? '0.0.0.0:8080');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    const address = server.address();
    log('info', 'listening', {
      address:
        typeof address === 'object' && address !== null
          ? `${address.address}:${address.port}`
          : String(address),
      identity,
      namespace,
      kpack: kpack.groupVersion,
      buildCredentials: mode,
      signTimeoutMs,
      maxWorkersPerNamespace,
      repositoryAllowlistNamespaces: repositoryAllowlist.byNamespace.size,
      repositoryAllowlistRequired: repositoryAllowlist.required,
    });

    const stop = new AbortController();
    const onSignal = (name: string): void => {
      log('info', `${name}: finishing the Build in hand, then releasing the Lease`);
      stop.abort();
    };
    process.once('SIGTERM', () => {
      onSignal('SIGTERM');
    });
    process.once('SIGINT', () => {
      onSignal('SIGINT');
    });

    const watched = values['watch-namespace'] ?? [];
    const sources =
      watched.length === 0
        ? [buildListWatch(http, kpack)]
        : watched.map((ns) => buildListWatch(http, kpack, ns));
    const reporter = { component: 'kpack-trust-signer-controller', host: identity };
    campaigning = true;
    await runLeaderElection(
      {
        client: leaseClient(
          http,
          namespace,
          values['lease-name'] ?? 'kpack-trust-signer-controller',
        ),
        identity,
        leaseDurationMs: timing.leaseDurationMs,
        renewDeadlineMs: timing.renewDeadlineMs,
        retryPeriodMs: timing.retryPeriodMs,
        onTransition: (event, detail) => {
          // A failed renewal with time left before the renew deadline is still leadership.
          if (event !== 'renew-failed') metrics.isLeader = event === 'leading';
          log('info', `leader election: ${event}`, { detail });
        },
      },
      (leading) =>
        runController(
          {
            sources,
            reconcile: {
              getBuild: (ns, name) => getKpackObject(http, kpack, 'builds', ns, name),
              getImage: (ns, name) => getKpackObject(http, kpack, 'images', ns, name),
              annotateBuild: (build, annotations) =>
                annotateBuild(http, kpack, build.namespace, build.name, annotations),
              recordEvent: (event) => createEvent(http, event, reporter, new Date()),
              sign,
              defaults: {
                ...(defaultNotaryUrl === undefined ? {} : { notaryUrl: defaultNotaryUrl }),
                optInNamespaces: values['opt-in-namespace'] ?? [],
                allowedNotaryUrls: values['allow-notary-url'] ?? [],
                repositoryAllowlist,
              },
              now: () => new Date(),
            },
            metrics,
            log,
            workers: timing.workers,
            queue: {
              maxSize: timing.maxSize,
              maxAttempts: timing.maxAttempts,
              maxInFlightPerGroup: maxWorkersPerNamespace,
              baseDelayMs: 1_000,
              maxDelayMs: 60_000,
            },
            resyncMs: timing.resyncMs,
            onQueue: (q) => {
              queue = q;
            },
            onSynced: (value) => {
              synced = value;
            },
          },
          leading,
        ),
      stop.signal,
    );
    metrics.isLeader = false;
    for (const set of clientSets.values()) closeSet(set);
    await new Promise<void>((resolve) =>
      server.close(() => {
        resolve();
      }),
    );
    log('info', 'stopped');
    return 0;
  } catch (err) {
    log('error', 'controller failed', { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
}

/** The text of a CA bundle flag's file, refused unless it holds PEM certificates that parse. */
function readCaBundle(flag: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  const text = readFileSync(path, 'utf8');
  const problem = caBundleProblem(text);
  if (problem !== undefined) throw new Error(`${flag} ${path}: ${problem}`);
  return text;
}

/** The clients that present one credential set. */
interface ClientSet {
  readonly credentials: RegistryCredentials;
  readonly notaries: Map<string, MetadataFetcher & MetadataPublisher & { close(): void }>;
  readonly registry: RegistryHttpClient;
}

/**
 * Drops a map's oldest entry (insertion order) and closes it a minute later, once a sign that
 * may still hold it has finished.
 */
function retireOldest<V>(map: Map<string, V>, close: (value: V) => void): void {
  const [oldestKey, oldest] = map.entries().next().value ?? [];
  if (oldestKey === undefined || oldest === undefined) return;
  map.delete(oldestKey);
  setTimeout(() => {
    close(oldest);
  }, 60_000).unref();
}

function readCredentials(files: readonly string[]): CredentialSource | undefined {
  if (files.length === 0) return undefined;
  const sources = files.map((file) =>
    dockerConfigCredentials(JSON.parse(readFileSync(file, 'utf8')) as unknown, file),
  );
  return firstCredentials(sources);
}

function splitListen(text: string): [string, number] {
  const colon = text.lastIndexOf(':');
  const port = Number(text.slice(colon + 1));
  if (colon === -1 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--listen "${text}" is not HOST:PORT`);
  }
  return [text.slice(0, colon), port];
}
