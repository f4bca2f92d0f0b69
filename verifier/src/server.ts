/**
 * The only module that listens. It runs the express app over HTTPS (mTLS when a client CA is
 * configured), sets the server timeouts, swaps in rotated certificates and changed configs without
 * a restart, and shuts down gracefully: readyz turns 503, no new connections, in-flight reviews
 * finish, then the process may exit 0.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  ServerResponse,
  type IncomingMessage,
  type OutgoingHttpHeader,
  type OutgoingHttpHeaders,
  type RequestListener,
} from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ListenConfig, ListenTlsConfig, VerifierConfig } from './config/types.js';
import { createApp, type Readiness } from './http/app.js';
import { watchFiles, type FileWatch } from './http/file-watch.js';
import { DecisionLog, combineObservers, onceEvery, type Logger } from './http/logger.js';
import { checkListenTlsFiles } from './http/tls-files.js';
import { VerifierMetrics } from './http/metrics.js';
import type { DecisionObserver, ImageReviewer } from './review.js';

/** Server timeouts, in milliseconds. */
export interface ServerTimeouts {
  /** Time to receive a request's headers. */
  readonly headersTimeoutMs: number;
  /** Time to receive a whole request (the apiserver gives up after 30 s anyway). */
  readonly requestTimeoutMs: number;
  /**
   * An idle keep-alive connection is closed after this. Longer than Go's 90 s client idle timeout,
   * so the apiserver closes first and never sends a review into a connection we are closing.
   */
  readonly keepAliveTimeoutMs: number;
  /** Time to finish a TLS handshake. */
  readonly handshakeTimeoutMs: number;
}

/** The defaults of ServerTimeouts. */
export const DEFAULT_TIMEOUTS: ServerTimeouts = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 120_000,
  handshakeTimeoutMs: 10_000,
});

/** How much the listener takes at once; past these it refuses rather than run out of memory. */
export interface ListenerLimits {
  /**
   * Open connections (those in a TLS handshake included); a connection past it is closed as it is
   * accepted (`server.maxConnections`), and counted.
   */
  readonly maxConnections: number;
  /**
   * POSTs in flight, pipelined ones included; past it a POST is answered 503 with
   * `Connection: close` unread. GETs (probes, metrics) are never refused, so an overload does not
   * fail the liveness probe and restart the pod.
   */
  readonly maxRequests: number;
}

/** The defaults of ListenerLimits: far above what kube-apiservers open, far below what OOMs. */
export const DEFAULT_LIMITS: ListenerLimits = Object.freeze({
  maxConnections: 1024,
  maxRequests: 1024,
});

/**
 * How often Node checks open requests against headersTimeout and requestTimeout (its default is
 * 30 s, which would let a slow client hold a connection up to 30 s past either).
 */
const CONNECTIONS_CHECKING_INTERVAL_MS = 1000;

/** How to run the HTTPS listener. */
export interface HttpsListenOptions {
  readonly handler: RequestListener;
  readonly port: number;
  /** Bind address; default all interfaces (the pod's IP must be reachable). */
  readonly host?: string;
  readonly tls: ListenTlsConfig;
  readonly timeouts?: Partial<ServerTimeouts>;
  readonly limits?: Partial<ListenerLimits>;
  readonly logger: Logger;
  readonly metrics?: VerifierMetrics;
  /** Watch the TLS files for rotation (default on); `false` leaves reloads to reloadTls(). */
  readonly watch?: { readonly debounceMs?: number; readonly pollMs?: number } | false;
}

/** What reloadTls() did. */
export type TlsReloadResult = 'reloaded' | 'unchanged' | 'failed';

/** A listening HTTPS server. */
export interface HttpsListener {
  readonly server: Server;
  readonly port: number;
  /** Re-reads the certificate, key and client CA; installs them when they changed and are valid. */
  reloadTls(): Promise<TlsReloadResult>;
  /**
   * Stops accepting connections, lets in-flight requests finish (closing each connection after its
   * response), and destroys whatever is left after `graceMs`. Resolves when all are closed.
   */
  close(graceMs?: number): Promise<void>;
}

interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
  readonly fingerprint: string;
}

async function readTls(files: ListenTlsConfig): Promise<TlsMaterial> {
  const [cert, key, ca] = await Promise.all([
    readFile(files.cert),
    readFile(files.key),
    files.clientCA !== undefined ? readFile(files.clientCA) : Promise.resolve(undefined),
  ]);
  const hash = createHash('sha256');
  for (const part of [cert, key, ca ?? Buffer.alloc(0)]) {
    hash.update(String(part.length)).update(':').update(part);
  }
  return { cert, key, ...(ca ? { ca } : {}), fingerprint: hash.digest('hex') };
}

/**
 * Throws (TlsFilesError) on files the listener must not serve with: a certificate that does not
 * match its key, has expired, or a client CA file that would trust no one (check-config's check).
 */
function checkTls(files: ListenTlsConfig, material: TlsMaterial): void {
  checkListenTlsFiles(
    files,
    {
      cert: material.cert,
      key: material.key,
      ...(material.ca ? { clientCA: material.ca } : {}),
    },
    new Date(),
  );
}

/**
 * The response class of a server: once `closing()` turns true, every response not yet sent gets
 * `Connection: close` as its headers are written (writeHead is where both explicit and implicit
 * headers go), so clients stop reusing connections that are about to close.
 */
function shutdownAwareResponse(closing: () => boolean): typeof ServerResponse {
  return class ShutdownAwareResponse<
    Request extends IncomingMessage = IncomingMessage,
  > extends ServerResponse<Request> {
    override writeHead(
      statusCode: number,
      reasonOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
      headers?: OutgoingHttpHeaders | OutgoingHttpHeader[],
    ): this {
      if (closing() && !this.headersSent) this.setHeader('Connection', 'close');
      return typeof reasonOrHeaders === 'string'
        ? super.writeHead(statusCode, reasonOrHeaders, headers)
        : super.writeHead(statusCode, reasonOrHeaders);
    }
  };
}

/**
 * Starts the HTTPS server; rejects when the TLS files are unreadable or unusable (checkTls), with
 * the file system's code (ENOENT) or TLS_FILES_INVALID.
 */
export async function listenHttps(options: HttpsListenOptions): Promise<HttpsListener> {
  const { logger, metrics } = options;
  const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const mutualTls = options.tls.clientCA !== undefined;
  let material: TlsMaterial;
  try {
    material = await readTls(options.tls);
    checkTls(options.tls, material);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw Object.assign(
      new Error(
        `listen.tls: cannot use the certificate ${options.tls.cert} and key ${options.tls.key}: ${(error as Error).message}`,
        { cause: error },
      ),
      code !== undefined ? { code } : {},
    );
  }

  let closing = false;
  let openRequests = 0;
  const server = createServer({
    // Every response written once a shutdown has begun says `Connection: close`, including
    // those of requests already in flight — without tracking each response in a set, which
    // measurably slowed every review (bench/cached.ts).
    ServerResponse: shutdownAwareResponse(() => closing),
    cert: material.cert,
    key: material.key,
    ...(material.ca ? { ca: material.ca } : {}),
    // mTLS: the apiserver's client certificate must chain to clientCA, or the handshake fails.
    requestCert: mutualTls,
    rejectUnauthorized: mutualTls,
    handshakeTimeout: timeouts.handshakeTimeoutMs,
    headersTimeout: timeouts.headersTimeoutMs,
    requestTimeout: timeouts.requestTimeoutMs,
    keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
  });
  server.maxConnections = limits.maxConnections;

  // One warning per 10 s at most per kind of overload: a flood must not flood the log too.
  const overloadLogDue = { requests: onceEvery(10_000), connections: onceEvery(10_000) };
  const overloaded = (limit: 'requests' | 'connections'): void => {
    metrics?.overloaded(limit);
    if (overloadLogDue[limit]())
      logger.warn('server.overloaded', { limit, ...limits, openRequests });
  };
  server.on('drop', () => {
    overloaded('connections');
  });

  const onResponseClosed = (): void => {
    openRequests -= 1;
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    openRequests += 1;
    res.on('close', onResponseClosed);
    if (openRequests > limits.maxRequests && req.method === 'POST') {
      overloaded('requests');
      const body = Buffer.from(
        '{"error":"ServiceUnavailable","message":"too many requests in flight; retry"}',
      );
      // Closing beats reading a body nobody will look at; the apiserver retries on a new one.
      res.writeHead(503, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': body.length,
        Connection: 'close',
      });
      res.end(body);
      return;
    }
    options.handler(req, res);
  });

  // One line per 10 s at most: a scanner or a misconfigured apiserver must not flood the log.
  const tlsErrorLogDue = onceEvery(10_000);
  server.on('tlsClientError', (error, socket) => {
    if (tlsErrorLogDue()) {
      logger.warn('tls.handshake-failed', { remoteAddress: socket.remoteAddress, error });
    }
  });

  const reloadTls = async (): Promise<TlsReloadResult> => {
    let next: TlsMaterial;
    try {
      next = await readTls(options.tls);
      if (next.fingerprint === material.fingerprint) return 'unchanged';
      // Mid-rotation (a new cert beside the old key) fails here, and the next event completes
      // it; so does a client CA file that would trust no one, which would otherwise fail every
      // mTLS handshake, the apiserver's too.
      checkTls(options.tls, next);
    } catch (error) {
      metrics?.reloaded('tls', false);
      logger.warn('tls.reload-failed', { error, keeping: 'the certificate already in use' });
      return 'failed';
    }
    // Node keeps requestCert/rejectUnauthorized from creation, so mTLS stays as configured.
    server.setSecureContext({
      cert: next.cert,
      key: next.key,
      ...(next.ca ? { ca: next.ca } : {}),
    });
    material = next;
    metrics?.reloaded('tls', true);
    logger.info('tls.reloaded', { cert: options.tls.cert });
    return 'reloaded';
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => {
    logger.error('server.error', { error });
  });

  const tlsFiles = [
    options.tls.cert,
    options.tls.key,
    ...(options.tls.clientCA ? [options.tls.clientCA] : []),
  ];
  const watch: FileWatch | undefined =
    options.watch === false
      ? undefined
      : watchFiles(
          tlsFiles,
          async () => {
            await reloadTls();
          },
          { logger, label: 'tls', ...options.watch },
        );

  let closed: Promise<void> | undefined;
  const close = (graceMs = 25_000): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      closing = true;
      watch?.close();
      // A keep-alive connection turns idle once its response is out; close it then.
      const sweep = setInterval(() => {
        server.closeIdleConnections();
      }, 50);
      const force = setTimeout(() => {
        logger.warn('server.forced-close', { openRequests, graceMs });
        server.closeAllConnections();
      }, graceMs);
      server.close(() => {
        clearInterval(sweep);
        clearTimeout(force);
        resolve();
      });
      server.closeIdleConnections();
    });
    return closed;
  };

  return {
    server,
    port: (server.address() as AddressInfo).port,
    reloadTls,
    close,
  };
}

/** The decision engine as serve() drives it: an ImageReviewer that can take a new config. */
export interface ReconfigurableReviewer extends ImageReviewer {
  reconfigure(config: VerifierConfig): void;
}

/** What serve() needs from the engine's side (wired in main.ts; faked in tests). */
export interface EngineBindings {
  loadConfig(path: string): Promise<VerifierConfig>;
  createEngine(config: VerifierConfig, observer: DecisionObserver): ReconfigurableReviewer;
}

/** How to serve. */
export interface ServeOptions {
  readonly configPath: string;
  readonly engine: EngineBindings;
  readonly logger: Logger;
  /** Overrides listen.port (tests use 0). */
  readonly port?: number;
  /** Overrides listen.host. */
  readonly host?: string;
  /** Installs SIGTERM/SIGINT (shutdown) and SIGHUP (reload) handlers; default true. */
  readonly handleSignals?: boolean;
  /** How long in-flight requests get after a shutdown starts; default 25 s. */
  readonly shutdownGraceMs?: number;
  /** readyz answers 503 this long before the listener closes (endpoint propagation); default 0. */
  readonly drainDelayMs?: number;
  readonly timeouts?: Partial<ServerTimeouts>;
  /** Connections and POSTs in flight at most; default DEFAULT_LIMITS. */
  readonly limits?: Partial<ListenerLimits>;
  /** Request body bytes held at once; default DEFAULT_BODY_BUDGET_BYTES (http/app.ts). */
  readonly bodyBudgetBytes?: number;
  /** File watch timing for the config and the TLS files. */
  readonly watch?: { readonly debounceMs?: number; readonly pollMs?: number };
  readonly bodyLimitBytes?: number;
  readonly maxImages?: number;
}

/** A serving verifier. */
export interface RunningVerifier {
  readonly port: number;
  readonly metrics: VerifierMetrics;
  /** Resolves once a shutdown has finished. */
  readonly stopped: Promise<void>;
  /** Re-reads the config; false (old config kept) when the new one is invalid. */
  reloadConfig(): Promise<boolean>;
  reloadTls(): Promise<TlsReloadResult>;
  /** Starts (or joins) the graceful shutdown. */
  shutdown(reason: string): Promise<void>;
}

function sameListen(a: ListenConfig, b: ListenConfig): boolean {
  return (
    a.port === b.port &&
    a.host === b.host &&
    a.tls.cert === b.tls.cert &&
    a.tls.key === b.tls.key &&
    a.tls.clientCA === b.tls.clientCA
  );
}

async function fingerprintOf(paths: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const path of paths) {
    const bytes = await readFile(path);
    hash.update(`${path}\0${String(bytes.length)}\0`).update(bytes);
  }
  return hash.digest('hex');
}

/**
 * The files a loaded config was built from and is reloaded for: the config file and the notary
 * credentials files it names. Kubelet rotates a credentials Secret by swapping files in that
 * Secret's own volume while config.yaml stays the same, so only watching these catches it.
 */
function sourcesOf(configPath: string, config: VerifierConfig | undefined): string[] {
  const credentials = (config?.notary ?? []).flatMap((entry) =>
    entry.credentialsFile === undefined ? [] : [entry.credentialsFile],
  );
  return [configPath, ...credentials];
}

/**
 * Marks a fingerprint taken over fewer files than the config now depends on: the next check
 * reloads once and records a complete one. Erring this way reloads once too often, never too few.
 */
const INCOMPLETE_FINGERPRINT = 'incomplete';

/** One line per thing in the config that is valid but matches nothing (VerifierConfig.warnings). */
function logConfigWarnings(logger: Logger, configPath: string, config: VerifierConfig): void {
  for (const warning of config.warnings ?? []) {
    logger.warn('config.warning', { config: configPath, warning });
  }
}

/** Loads the config, starts the engine and the HTTPS server, and keeps both current. */
export async function serve(options: ServeOptions): Promise<RunningVerifier> {
  const { logger, configPath } = options;
  const metrics = new VerifierMetrics();
  let configFingerprint = await fingerprintOf(sourcesOf(configPath, undefined));
  let config = await options.engine.loadConfig(configPath);
  if (sourcesOf(configPath, config).length > 1) configFingerprint = INCOMPLETE_FINGERPRINT;
  logConfigWarnings(logger, configPath, config);
  metrics.setNotaryServers(config.notary.map((entry) => entry.server));
  const engine = options.engine.createEngine(
    config,
    combineObservers(metrics, new DecisionLog(logger)),
  );
  let shuttingDown = false;
  const readiness = (): Readiness =>
    shuttingDown ? { ready: false, reason: 'shutting down' } : { ready: true };

  const app = createApp({
    reviewer: engine,
    metrics,
    logger,
    readiness,
    ...(options.bodyLimitBytes !== undefined ? { bodyLimitBytes: options.bodyLimitBytes } : {}),
    ...(options.bodyBudgetBytes !== undefined ? { bodyBudgetBytes: options.bodyBudgetBytes } : {}),
    ...(options.maxImages !== undefined ? { maxImages: options.maxImages } : {}),
  });
  const listen = config.listen;
  const host = options.host ?? listen.host;
  const listener = await listenHttps({
    handler: app,
    port: options.port ?? listen.port,
    ...(host !== undefined ? { host } : {}),
    tls: listen.tls,
    logger,
    metrics,
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.watch ? { watch: options.watch } : {}),
  });
  logger.info('server.listening', {
    port: listener.port,
    host: host ?? '*',
    mutualTls: listen.tls.clientCA !== undefined,
    config: configPath,
    rules: config.rules.length,
  });

  const reloadConfig = async (force: boolean): Promise<boolean> => {
    let fingerprint: string;
    let next: VerifierConfig;
    try {
      // Taken before loading, so a file that changes during the load is seen again next time.
      fingerprint = await fingerprintOf(sourcesOf(configPath, config));
      if (!force && fingerprint === configFingerprint) return true;
      next = await options.engine.loadConfig(configPath);
      engine.reconfigure(next);
      metrics.setNotaryServers(next.notary.map((entry) => entry.server));
    } catch (error) {
      metrics.reloaded('config', false);
      logger.error('config.reload-failed', {
        config: configPath,
        error,
        keeping: 'the previous config',
      });
      return false;
    }
    if (!sameListen(listen, next.listen)) {
      logger.warn('config.listen-changed', {
        problem:
          'listen (port, host, TLS file paths, clientCA) changes take effect after a restart',
      });
    }
    const sourcesChanged =
      sourcesOf(configPath, next).join('\0') !== sourcesOf(configPath, config).join('\0');
    configFingerprint = sourcesChanged ? INCOMPLETE_FINGERPRINT : fingerprint;
    config = next;
    if (sourcesChanged) {
      configWatch.close();
      configWatch = watchConfigSources();
    }
    logConfigWarnings(logger, configPath, config);
    metrics.reloaded('config', true);
    logger.info('config.reloaded', { config: configPath, rules: config.rules.length });
    return true;
  };
  const watchConfigSources = (): FileWatch =>
    watchFiles(sourcesOf(configPath, config), () => reloadConfig(false).then(() => undefined), {
      logger,
      label: 'config',
      ...options.watch,
    });
  let configWatch = watchConfigSources();

  let resolveStopped: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  let shutdownPromise: Promise<void> | undefined;

  const shutdown = (reason: string): Promise<void> => {
    shutdownPromise ??= (async () => {
      shuttingDown = true;
      const graceMs = options.shutdownGraceMs ?? 25_000;
      logger.info('server.shutting-down', { reason, graceMs });
      configWatch.close();
      if (options.drainDelayMs)
        await new Promise((resolve) => setTimeout(resolve, options.drainDelayMs));
      await listener.close(graceMs);
      logger.info('server.stopped', { reason });
      // The asynchronous log sink may still hold lines; the process exits soon after this.
      await logger.flush?.();
      resolveStopped();
    })();
    return shutdownPromise;
  };

  if (options.handleSignals ?? true) {
    // The handlers stay until the process exits: without one, a SIGHUP or a second SIGTERM
    // during the drain would kill the process at once, losing the log lines still queued.
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.on(signal, () => {
        if (shutdownPromise === undefined) {
          void shutdown(signal);
          return;
        }
        // A second one asks for an exit now, not a drain: as the default action would, but with
        // the queued log lines written out first (process.exit does not wait for the sink).
        logger.warn('server.forced-exit', { signal });
        logger.flushSync?.();
        process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
      });
    }
    process.on('SIGHUP', () => {
      // Reloading a config nobody will be served with would only race the shutdown.
      if (shuttingDown) logger.info('config.reload-skipped', { reason: 'shutting down' });
      else void reloadConfig(true);
    });
  }

  return {
    port: listener.port,
    metrics,
    stopped,
    reloadConfig: () => reloadConfig(true),
    reloadTls: () => listener.reloadTls(),
    shutdown,
  };
}
