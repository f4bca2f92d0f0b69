/**
 * The notary server's HTTP API (Notary v1, `/v2/<gun>/_trust/tuf/`), on node:http/node:https so
 * that the CA bundle, the whole-request deadline and the byte caps are ours to enforce: a download
 * stops the moment it passes its cap, and a server that trickles bytes is cut off at the deadline.
 *
 * Auth follows the Docker registry token protocol (a 401 with a Bearer challenge → a token from the
 * realm, presented on one retry) or plain Basic, with the credentials Docker would send: those of
 * the GUN's registry.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { TrustError, isTrustError } from '../errors.js';
import type { PublicKeyJson } from '../keys/public-key.js';
import type { CredentialSource, Credentials } from './credentials.js';
import type { MetadataFetcher, MetadataPublisher, MetadataRequest, PublishFile } from './remote.js';
import { agentTrusting, type TrustingRequestOptions } from './tls-trust.js';

/** How to reach one notary server. */
export interface NotaryClientOptions {
  /** The server's root URL, `https://notary.example:4443` (a path prefix is kept). */
  readonly baseUrl: string;
  /**
   * PEM bundle trusted in addition to Node's bundled public roots — as the notary CLI's
   * `--tlscacert` adds to the system pool. Set `exclusiveCa` to trust this bundle alone.
   */
  readonly ca?: string | Buffer;
  /** Trust only `ca`, not the public roots: pins a private notary server to its own CA. */
  readonly exclusiveCa?: boolean;
  /** Deadline per HTTP request (connect, headers and the whole body), default 10 000 ms. */
  readonly timeoutMs?: number;
  /** Credentials for Basic and token auth; anonymous when absent. */
  readonly credentials?: CredentialSource;
  /** The User-Agent header, default `kpack-trust`. */
  readonly userAgent?: string;
  /** Milliseconds since the epoch, for token expiry; injected by tests. */
  readonly now?: () => number;
}

/** Default per-request deadline. */
const DEFAULT_TIMEOUT_MS = 10_000;
/** Enough of an error body to read the server's error code. */
const ERROR_BODY_LIMIT = 16 * 1024;
/** The Go client's cap on a `<role>.key` answer. */
const KEY_LIMIT = 256 * 1024;
/** A token answer: a JWT with an x5c chain is a few KiB. */
const TOKEN_LIMIT = 1024 * 1024;
/** The token spec's default lifetime when the answer has no `expires_in`. */
const DEFAULT_TOKEN_SECONDS = 60;
/** Stop presenting a cached token this long before it expires (at most half its life). */
const TOKEN_EXPIRY_MARGIN_MS = 5_000;
/**
 * Per-client caps on auth state kept per GUN: callers such as the verifier pass GUNs (and, for
 * servers a pod names, whole servers with their challenges and tokens) chosen by others, so each
 * map drops its least recently stored entry beyond its cap. Evicting costs one more 401 round trip
 * or token request for that GUN later.
 */
export const MAX_AUTH_PLANS = 128;
/** Most tokens cached per client (see MAX_AUTH_PLANS). */
export const MAX_CACHED_TOKENS = 32;
/** Longer tokens are used once and not cached: a token service may answer up to TOKEN_LIMIT. */
export const MAX_CACHED_TOKEN_LENGTH = 8 * 1024;

/** The notary server's scopes: metadata reads need pull; publishing and `<role>.key` need push,pull. */
type Access = 'pull' | 'push,pull';

/** The base roles, and delegations as notary names them (`IsDelegation`: `targets/` + `[-a-z0-9_/]`, clean path). */
const ROLE = /^(?:root|targets|snapshot|timestamp|targets(?:\/[-a-z0-9_]+)+)$/;
/** Path segments of a GUN: the reference grammar's characters (registry case, port, IPv6 brackets). */
const GUN_SEGMENT = /^[A-Za-z0-9._:[\]-]+$/;
/** The consistent-download name carries the hex of a sha256 the parent role states. */
const SHA256_HEX = /^[a-f0-9]{64}$/;

interface Exchange {
  readonly method: 'GET' | 'POST';
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  /** Cap on a 2xx body; passing it fails with DOWNLOAD_TOO_LARGE naming `role`. */
  readonly maxBytes: number;
  readonly role: string;
  /** The caller's abort signal: cuts the exchange off wherever it is. */
  readonly signal?: AbortSignal;
}

interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** How requests for one (access, GUN) were last authorized, so the next one can go out authorized. */
type AuthPlan =
  | { readonly kind: 'basic' }
  | {
      readonly kind: 'bearer';
      readonly realm: string;
      readonly service: string | undefined;
      readonly scopes: readonly string[];
      readonly cacheKey: string;
    };

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

/**
 * One token request shared by every caller that needs the same (realm, service, scopes). It runs
 * under its own signal, fired when the last caller still waiting gives up: one caller's deadline
 * may not cut off another's token, and an abandoned request may not hold a connection.
 */
interface PendingToken {
  readonly answer: Promise<CachedToken>;
  readonly controller: AbortController;
  /** Callers waiting that may still give up; a caller without a signal pins the request. */
  waiters: number;
  pinned: boolean;
}

/** Reads and publishes Notary v1 metadata on one notary server. Call `close()` when done. */
export class NotaryHttpClient implements MetadataFetcher, MetadataPublisher {
  private readonly base: URL;
  private readonly timeoutMs: number;
  private readonly credentials: CredentialSource | undefined;
  private readonly userAgent: string;
  private readonly now: () => number;
  private readonly httpsAgent: https.Agent;
  private readonly httpAgent: http.Agent;
  private readonly plans = new Map<string, AuthPlan>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pendingTokens = new Map<string, PendingToken>();

  constructor(options: NotaryClientOptions) {
    this.base = parseBaseUrl(options.baseUrl);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new RangeError(`timeoutMs must be a positive number, got ${timeoutMs}`);
    }
    this.timeoutMs = timeoutMs;
    this.credentials = options.credentials;
    this.userAgent = options.userAgent ?? 'kpack-trust';
    this.now = options.now ?? Date.now;
    // One TLS context for every connection: given only `ca`, Node builds a new context (parsing
    // each CA certificate) per connection, which showed in profiles of 20 cold GUNs at once.
    this.httpsAgent = agentTrusting({
      ca: options.ca,
      exclusive: options.exclusiveCa === true,
      handshakeTimeoutMs: timeoutMs,
    });
    this.httpAgent = new http.Agent({ keepAlive: true });
  }

  /** GET `<role>.json`, `<version>.<role>.json` or `<role>.<sha256 hex>.json`, capped at `maxBytes`. */
  async fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
    checkGun(gun);
    checkRole(request.role);
    if (!Number.isSafeInteger(request.maxBytes) || request.maxBytes < 0) {
      throw new RangeError(`maxBytes must be a non-negative integer, got ${request.maxBytes}`);
    }
    if (request.version !== undefined && request.sha256Hex !== undefined) {
      throw new RangeError('ask for a version or a checksum, not both');
    }
    let file: string;
    if (request.version !== undefined) {
      if (!Number.isSafeInteger(request.version) || request.version < 1) {
        throw new RangeError(`version must be a positive integer, got ${request.version}`);
      }
      file = `${request.version}.${request.role}.json`;
    } else if (request.sha256Hex !== undefined) {
      if (!SHA256_HEX.test(request.sha256Hex)) {
        throw new TrustError(
          'METADATA_MALFORMED',
          { role: request.role, field: 'sha256Hex', problem: 'not 64 lowercase hex digits' },
          `Cannot fetch ${request.role}: the checksum "${request.sha256Hex}" is not 64 lowercase hex digits.`,
        );
      }
      file = `${request.role}.${request.sha256Hex}.json`;
    } else {
      file = `${request.role}.json`;
    }
    const url = this.tufUrl(gun, file);
    const signal = request.signal;
    throwIfAborted(signal, url);
    const reply = await this.send(gun, 'pull', (authorization) => ({
      method: 'GET',
      url,
      headers: this.headers(authorization),
      maxBytes: request.maxBytes,
      role: request.role,
      ...(signal === undefined ? {} : { signal }),
    }));
    if (!isSuccess(reply.status)) throw statusError('GET', url, reply);
    return new Uint8Array(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength);
  }

  /**
   * GET `<role>.key`. Observed on notary-server 0.7.0: until a published root lists a key for the
   * role, every call creates a new key; afterwards it returns the listed one. Call it once per
   * first publish and put that key in the root.
   */
  async fetchServerKey(gun: string, role: 'timestamp' | 'snapshot'): Promise<PublicKeyJson> {
    checkGun(gun);
    if (role !== 'timestamp' && role !== 'snapshot') checkRole(role);
    const url = this.tufUrl(gun, `${role}.key`);
    const reply = await this.send(gun, 'push,pull', (authorization) => ({
      method: 'GET',
      url,
      headers: this.headers(authorization),
      maxBytes: KEY_LIMIT,
      role: `${role}.key`,
    }));
    if (!isSuccess(reply.status)) throw statusError('GET', url, reply);
    return parseServerKey(role, reply.body);
  }

  /** POST every changed role in one multipart request, which the server applies atomically or not at all. */
  async publish(gun: string, files: readonly PublishFile[]): Promise<void> {
    checkGun(gun);
    if (files.length === 0) throw new RangeError('publish needs at least one role');
    const seen = new Set<string>();
    for (const file of files) {
      checkRole(file.role);
      if (seen.has(file.role)) throw new RangeError(`role ${file.role} is listed twice`);
      seen.add(file.role);
    }
    const { body, boundary } = multipartBody(files);
    const url = this.tufUrl(gun, '');
    const reply = await this.send(gun, 'push,pull', (authorization) => ({
      method: 'POST',
      url,
      headers: {
        ...this.headers(authorization),
        'Content-Type': `multipart/form-data; boundary=${boundary}`,
        'Content-Length': String(body.length),
      },
      body,
      maxBytes: ERROR_BODY_LIMIT,
      role: 'publish',
    }));
    if (!isSuccess(reply.status)) throw statusError('POST', url, reply);
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.httpsAgent.destroy();
    this.httpAgent.destroy();
  }

  /** `<base>/v2/<gun>/_trust/tuf/<file>`; the GUN goes in raw, slashes and port colons included, as the Go client sends it. */
  private tufUrl(gun: string, file: string): URL {
    const prefix = this.base.pathname.replace(/\/+$/, '');
    return new URL(`${this.base.origin}${prefix}/v2/${gun}/_trust/tuf/${file}`);
  }

  private headers(authorization: string | undefined): Record<string, string> {
    return {
      'User-Agent': this.userAgent,
      ...(authorization === undefined ? {} : { Authorization: authorization }),
    };
  }

  /**
   * One request with auth: presents what worked last time for this (access, GUN); on a 401 answers
   * the challenge and retries exactly once.
   */
  private async send(
    gun: string,
    access: Access,
    build: (authorization: string | undefined) => Exchange,
  ): Promise<Reply> {
    const planKey = `${access} ${gun}`;
    const known = this.plans.get(planKey);
    let presented = known === undefined ? undefined : await this.cachedAuthorization(known, gun);
    let reply = await this.roundTrip(build(presented));
    if (reply.status !== 401) return reply;

    const url = redact(build(undefined).url);
    const challenges = parseChallenges(headerText(reply.headers['www-authenticate']));
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    let plan: AuthPlan;
    if (bearer !== undefined) {
      const realm = bearer.params.get('realm');
      if (realm === undefined || realm === '') {
        throw authFailed(url, 401, 'the Bearer challenge names no realm');
      }
      const scopes = scopesFor(bearer.params.get('scope'), gun, access);
      const service = bearer.params.get('service');
      plan = {
        kind: 'bearer',
        realm,
        service,
        scopes,
        cacheKey: JSON.stringify([realm, service ?? '', scopes]),
      };
      // A token that was just refused is stale (revoked, or its scope changed): never reuse it.
      if (known?.kind === 'bearer' && presented !== undefined) this.tokens.delete(known.cacheKey);
      presented = `Bearer ${(await this.token(plan, gun, build(undefined).signal, url)).token}`;
    } else if (basic !== undefined) {
      if (known?.kind === 'basic' && presented !== undefined) {
        throw authFailed(url, 401, 'the server refused the Basic credentials');
      }
      const credentials = await this.credentialsFor(gun);
      if (credentials === undefined) {
        throw authFailed(url, 401, 'the server requires Basic credentials and none are configured');
      }
      plan = { kind: 'basic' };
      presented = basicAuthorization(credentials);
    } else {
      throw authFailed(
        url,
        401,
        'the server demands authentication but offers no Bearer or Basic challenge',
      );
    }

    const retry = build(presented);
    // The token or credentials lookup may have outlasted the caller's deadline.
    throwIfAborted(retry.signal, retry.url);
    reply = await this.roundTrip(retry);
    if (reply.status === 401) {
      if (plan.kind === 'bearer') this.tokens.delete(plan.cacheKey);
      throw authFailed(
        url,
        401,
        plan.kind === 'bearer'
          ? `the server refused the token issued for ${plan.scopes.join(' ')}`
          : 'the server refused the Basic credentials',
      );
    }
    remember(this.plans, planKey, plan, MAX_AUTH_PLANS);
    return reply;
  }

  private async cachedAuthorization(plan: AuthPlan, gun: string): Promise<string | undefined> {
    if (plan.kind === 'basic') {
      const credentials = await this.credentialsFor(gun);
      return credentials === undefined ? undefined : basicAuthorization(credentials);
    }
    const cached = this.tokens.get(plan.cacheKey);
    return cached !== undefined && cached.expiresAt > this.now()
      ? `Bearer ${cached.token}`
      : undefined;
  }

  /**
   * A token for the plan's (realm, service, scopes): cached until shortly before it expires.
   * `signal` is the caller's: when it fires the caller stops waiting at once (rejecting as a
   * request it cut off would, naming `url`), and the token request itself is cut off when no
   * other caller still waits for it.
   */
  private token(
    plan: AuthPlan & { kind: 'bearer' },
    gun: string,
    signal: AbortSignal | undefined,
    url: string,
  ): Promise<CachedToken> {
    const cached = this.tokens.get(plan.cacheKey);
    if (cached !== undefined && cached.expiresAt > this.now()) return Promise.resolve(cached);
    if (signal?.aborted === true) return Promise.reject(abortedError(signal, url));
    let pending = this.pendingTokens.get(plan.cacheKey);
    if (pending === undefined) {
      const controller = new AbortController();
      const started: PendingToken = {
        answer: this.requestToken(plan, gun, controller.signal).finally(() => {
          if (this.pendingTokens.get(plan.cacheKey) === started) {
            this.pendingTokens.delete(plan.cacheKey);
          }
        }),
        controller,
        waiters: 0,
        pinned: false,
      };
      // Whoever waits handles the outcome; with every waiter gone nobody does, and need not.
      started.answer.catch(() => undefined);
      pending = started;
      this.pendingTokens.set(plan.cacheKey, pending);
    }
    if (signal === undefined) {
      pending.pinned = true;
      return pending.answer;
    }
    return this.awaitToken(plan.cacheKey, pending, signal, url);
  }

  /** Waits for a shared token request until `signal` fires; the last waiter to leave aborts it. */
  private awaitToken(
    cacheKey: string,
    pending: PendingToken,
    signal: AbortSignal,
    url: string,
  ): Promise<CachedToken> {
    pending.waiters++;
    return new Promise<CachedToken>((resolve, reject) => {
      const onAbort = (): void => {
        pending.waiters--;
        if (pending.waiters === 0 && !pending.pinned) {
          // A new caller must not join a request that is being cut off.
          if (this.pendingTokens.get(cacheKey) === pending) this.pendingTokens.delete(cacheKey);
          pending.controller.abort(signal.reason);
        }
        reject(abortedError(signal, url));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pending.answer.then(
        (token) => {
          signal.removeEventListener('abort', onAbort);
          resolve(token);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  /** GET `realm?service=…&scope=…` with Basic credentials (anonymous without), per the token spec. */
  private async requestToken(
    plan: AuthPlan & { kind: 'bearer' },
    gun: string,
    signal: AbortSignal,
  ): Promise<CachedToken> {
    let realm: URL;
    try {
      realm = new URL(plan.realm);
    } catch {
      throw authFailed(plan.realm, 401, 'the Bearer challenge realm is not a URL');
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw authFailed(redact(realm), 401, 'the Bearer challenge realm is not an http(s) URL');
    }
    // The realm is the server's word, and for the verifier the server may be the pod author's: an
    // https notary may not send us to plain http, where Basic credentials would travel in the clear
    // and any in-cluster http endpoint (a cloud metadata service, say) would be ours to request.
    if (this.base.protocol === 'https:' && realm.protocol !== 'https:') {
      throw authFailed(
        redact(realm),
        401,
        'the Bearer challenge sends an https notary server to a plain http token service',
      );
    }
    if (plan.service !== undefined) realm.searchParams.append('service', plan.service);
    for (const scope of plan.scopes) realm.searchParams.append('scope', scope);
    const shown = redact(realm);
    const credentials = await this.credentialsFor(gun);
    const headers: Record<string, string> = { 'User-Agent': this.userAgent };
    if (credentials !== undefined) {
      // Docker's token client names the account alongside Basic credentials.
      realm.searchParams.append('account', credentials.username);
      headers['Authorization'] = basicAuthorization(credentials);
    }
    const issuedAt = this.now();
    const reply = await this.roundTrip({
      method: 'GET',
      url: realm,
      headers,
      maxBytes: TOKEN_LIMIT,
      role: 'token',
      signal,
    });
    if (reply.status === 401 || reply.status === 403) {
      throw authFailed(
        shown,
        reply.status,
        credentials === undefined
          ? 'the token service refused anonymous access'
          : 'the token service rejected the credentials',
      );
    }
    if (!isSuccess(reply.status)) {
      // Only 401/403 say the credentials are wrong. A 5xx or 429 is the token service being
      // unavailable, classified as a 5xx on a metadata GET is (the signer's exit 4, the verifier's
      // circuit breaker), not as "fix the credentials". The URL shown is the one without `account`.
      throw statusError('GET', new URL(shown), reply);
    }
    let answer: unknown;
    try {
      answer = JSON.parse(reply.body.toString('utf8'));
    } catch {
      throw authFailed(shown, reply.status, 'the token service answer is not JSON');
    }
    const fields = isRecord(answer) ? answer : {};
    // `token` is the spec's field; `access_token` is its OAuth 2.0 alias. Either may come alone.
    const token = nonEmptyString(fields['token']) ?? nonEmptyString(fields['access_token']);
    if (token === undefined) {
      throw authFailed(shown, reply.status, 'the token service answer has no token');
    }
    const expiresIn = fields['expires_in'];
    const lifetimeMs =
      (typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0
        ? expiresIn
        : DEFAULT_TOKEN_SECONDS) * 1000;
    const cached: CachedToken = {
      token,
      expiresAt: issuedAt + lifetimeMs - Math.min(TOKEN_EXPIRY_MARGIN_MS, lifetimeMs / 2),
    };
    if (token.length <= MAX_CACHED_TOKEN_LENGTH) {
      remember(this.tokens, plan.cacheKey, cached, MAX_CACHED_TOKENS);
    }
    return cached;
  }

  /** Docker sends the image registry's credentials; fall back to ones filed under the notary host. */
  private async credentialsFor(gun: string): Promise<Credentials | undefined> {
    if (this.credentials === undefined) return undefined;
    const slash = gun.indexOf('/');
    const registry = slash === -1 ? undefined : gun.slice(0, slash);
    const forRegistry =
      registry === undefined ? undefined : await this.credentials.credentialsFor(registry);
    return forRegistry ?? (await this.credentials.credentialsFor(this.base.host));
  }

  /**
   * One HTTP exchange. A GET that fails on a reused keep-alive connection before any answer arrived
   * (the server closed it while idle) is sent once more on a fresh connection, as Go's transport
   * does; anything else fails at once.
   */
  private async roundTrip(exchange: Exchange): Promise<Reply> {
    try {
      return await this.attempt(exchange);
    } catch (error) {
      if (exchange.method !== 'GET' || !isStaleSocket(error) || exchange.signal?.aborted === true) {
        throw error;
      }
      return this.attempt(exchange);
    }
  }

  /** One attempt under one deadline, with the body capped while it streams. */
  private attempt(exchange: Exchange): Promise<Reply> {
    const shown = redact(exchange.url);
    return new Promise<Reply>((resolve, reject) => {
      let settled = false;
      const signal = exchange.signal;
      // Closes a connection still in its TLS handshake, which request.destroy() cannot reach.
      const handshake = new AbortController();
      const settle = (outcome: Reply | TrustError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (outcome instanceof TrustError) {
          request.destroy();
          handshake.abort();
          reject(outcome);
        } else {
          resolve(outcome);
        }
      };
      const unreachable = (problem: string, cause?: unknown): TrustError =>
        new TrustError(
          'HTTP_UNREACHABLE',
          { url: shown, problem },
          `${exchange.method} ${shown} failed: ${problem}.`,
          cause === undefined ? undefined : { cause },
        );
      const tooLarge = (): TrustError =>
        new TrustError(
          'DOWNLOAD_TOO_LARGE',
          { role: exchange.role, limit: exchange.maxBytes, url: shown },
          `${exchange.method} ${shown}: the answer for ${exchange.role} exceeds ${exchange.maxBytes} bytes.`,
        );

      const secure = exchange.url.protocol === 'https:';
      const options: http.RequestOptions & TrustingRequestOptions = {
        method: exchange.method,
        // URL keeps IPv6 literals bracketed; the socket layer wants them bare.
        hostname: exchange.url.hostname.replace(/^\[(.*)\]$/, '$1'),
        path: exchange.url.pathname + exchange.url.search,
        headers: exchange.headers,
        agent: secure ? this.httpsAgent : this.httpAgent,
        ...(secure ? { handshakeSignal: handshake.signal } : {}),
      };
      if (exchange.url.port !== '') options.port = Number(exchange.url.port);
      // Armed before the request opens its connection, so that this deadline fires before the
      // agent's handshake deadline of the same length (timers of one duration fire in order) and a
      // stalled handshake is reported as the request's deadline.
      const timer = setTimeout(() => {
        settle(unreachable(`no complete answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const request = (secure ? https : http).request(options);
      // Destroys the socket mid-connect or mid-body: the server sees the request go away.
      const onAbort = (): void => {
        settle(abortedError(signal, shown));
      };
      if (signal !== undefined) {
        if (signal.aborted) {
          onAbort();
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
      }

      let answered = false;
      request.on('error', (error: NodeJS.ErrnoException) => {
        const stale =
          request.reusedSocket &&
          !answered &&
          (error.code === 'ECONNRESET' || error.code === 'EPIPE');
        settle(unreachable(describeTransportError(error), stale ? staleSocket(error) : error));
      });
      request.on('response', (response) => {
        answered = true;
        const status = response.statusCode ?? 0;
        const strict = isSuccess(status);
        const limit = strict ? exchange.maxBytes : ERROR_BODY_LIMIT;
        const declared = Number(response.headers['content-length']);
        if (strict && Number.isFinite(declared) && declared > limit) {
          settle(tooLarge());
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        const reply = (): Reply => ({
          status,
          headers: response.headers,
          body: Buffer.concat(chunks),
        });
        response.on('data', (chunk: Buffer) => {
          if (settled) return;
          if (size + chunk.length > limit) {
            if (strict) {
              settle(tooLarge());
            } else {
              // An error body only has to yield its error code: keep the head, drop the rest.
              chunks.push(chunk.subarray(0, limit - size));
              settle(reply());
              request.destroy();
            }
            return;
          }
          size += chunk.length;
          chunks.push(chunk);
        });
        response.on('end', () => {
          settle(reply());
        });
        response.on('close', () => {
          if (!response.complete)
            settle(unreachable('the connection closed before the answer was complete'));
        });
      });
      request.end(exchange.body);
    });
  }
}

/**
 * The error of an aborted request: the signal's reason when it is a TrustError (the caller's own
 * deadline, say), else HTTP_UNREACHABLE — the server did not answer in time for the caller.
 */
function abortedError(signal: AbortSignal | undefined, url: string): TrustError {
  const reason: unknown = signal?.reason;
  if (isTrustError(reason)) return reason;
  return new TrustError(
    'HTTP_UNREACHABLE',
    { url, problem: 'the request was aborted' },
    `GET ${url} failed: the request was aborted.`,
  );
}

/** Fails before any work once the caller has given up. */
function throwIfAborted(signal: AbortSignal | undefined, url: URL): void {
  if (signal?.aborted === true) throw abortedError(signal, redact(url));
}

/** Marks a failure on a reused idle connection (the `cause` of the HTTP_UNREACHABLE error). */
class StaleSocketError extends Error {}

function staleSocket(error: Error): StaleSocketError {
  return new StaleSocketError('a reused keep-alive connection was closed by the server', {
    cause: error,
  });
}

function isStaleSocket(error: unknown): boolean {
  return error instanceof Error && error.cause instanceof StaleSocketError;
}

function parseBaseUrl(baseUrl: string): URL {
  const fail = (problem: string): never => {
    throw new TrustError(
      'HTTP_UNREACHABLE',
      { url: baseUrl.replace(/\/\/[^/@]*@/, '//'), problem },
      `Cannot use the notary server URL: ${problem}.`,
    );
  };
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return fail('not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return fail('not an http(s) URL');
  if (url.username !== '' || url.password !== '') {
    return fail('credentials belong in a CredentialSource, not in the URL');
  }
  if (url.search !== '' || url.hash !== '') return fail('a query or fragment is not allowed');
  return url;
}

function checkGun(gun: string): void {
  const segments = gun.split('/');
  const bad = segments.find((s) => !GUN_SEGMENT.test(s) || s === '.' || s === '..');
  if (gun.length > 255 || bad !== undefined) {
    throw new TrustError(
      'REFERENCE_INVALID',
      { reference: gun, problem: 'not a GUN: "/"-separated registry and repository path segments' },
      `Cannot address "${gun}" on a notary server: it is not a valid GUN.`,
    );
  }
}

function checkRole(role: string): void {
  if (!ROLE.test(role) || role.length > 255) {
    throw new TrustError(
      'METADATA_MALFORMED',
      {
        role,
        field: 'role',
        problem: 'not a base role or a targets/ delegation name notary accepts',
      },
      `Cannot address role "${role}": notary serves only base roles and targets/[-a-z0-9_/] delegations.`,
    );
  }
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/** HTTP_STATUS with the first error code of the server's `{"errors":[{"code":…}]}` body, if any. */
function statusError(method: string, url: URL, reply: Reply): TrustError {
  let serverCode = '';
  try {
    const parsed: unknown = JSON.parse(reply.body.toString('utf8'));
    const errors = isRecord(parsed) ? parsed['errors'] : undefined;
    const first: unknown = Array.isArray(errors) ? errors[0] : undefined;
    const code = isRecord(first) ? first['code'] : undefined;
    if (typeof code === 'string') serverCode = code;
  } catch {
    // Not the registry error envelope; the status alone has to do.
  }
  const shown = redact(url);
  return new TrustError(
    'HTTP_STATUS',
    { url: shown, status: reply.status, serverCode },
    `${method} ${shown} answered HTTP ${reply.status}${serverCode === '' ? '' : ` ${serverCode}`}.`,
  );
}

function authFailed(url: string, status: number, problem: string): TrustError {
  return new TrustError(
    'AUTH_FAILED',
    { url, status, problem },
    `Authentication at ${url} failed: ${problem}.`,
  );
}

/** The `{"keytype":…,"keyval":{"public":…,"private":null}}` answer of `GET <role>.key`. */
function parseServerKey(role: string, body: Buffer): PublicKeyJson {
  const fail = (field: string, problem: string): never => {
    throw new TrustError(
      'METADATA_MALFORMED',
      { role: `${role}.key`, field, problem },
      `The server's ${role} key is malformed: ${field} ${problem}.`,
    );
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return fail('$', 'is not JSON');
  }
  if (!isRecord(parsed)) return fail('$', 'is not an object');
  const keytype = parsed['keytype'];
  if (typeof keytype !== 'string' || keytype === '')
    return fail('keytype', 'is not a non-empty string');
  const keyval = parsed['keyval'];
  if (!isRecord(keyval)) return fail('keyval', 'is not an object');
  const publicValue = keyval['public'];
  if (typeof publicValue !== 'string' || publicValue === '') {
    return fail('keyval.public', 'is not a non-empty string');
  }
  const privateValue = keyval['private'];
  if (privateValue !== undefined && privateValue !== null) {
    return fail('keyval.private', 'must be null: a server never hands out private keys');
  }
  return { keytype, keyval: { public: publicValue, private: null } };
}

/**
 * The upload Go's `mime/multipart` writer produces for `CreateFormFile("files", role)`: one part per
 * role, the complete signed document as its body. The boundary is random and checked against
 * every body, so no document can end a part early.
 */
function multipartBody(files: readonly PublishFile[]): { body: Buffer; boundary: string } {
  let boundary = `kpack-trust-${randomBytes(16).toString('hex')}`;
  while (
    files.some((f) =>
      Buffer.from(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength).includes(boundary),
    )
  ) {
    boundary = `kpack-trust-${randomBytes(16).toString('hex')}`;
  }
  const parts: Buffer[] = [];
  files.forEach((file, index) => {
    parts.push(
      Buffer.from(
        `${index === 0 ? '' : '\r\n'}--${boundary}\r\n` +
          `Content-Disposition: form-data; name="files"; filename="${file.role}"\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n',
        'utf8',
      ),
      Buffer.from(file.bytes.buffer, file.bytes.byteOffset, file.bytes.byteLength),
    );
  });
  parts.push(Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8'));
  return { body: Buffer.concat(parts), boundary };
}

interface Challenge {
  readonly scheme: string;
  readonly params: ReadonlyMap<string, string>;
}

/**
 * RFC 7235 challenges: `Bearer realm="…",service="…",scope="…"`, possibly several in one header
 * (Node joins repeated headers with ", "). Scheme and parameter names are case-insensitive.
 */
function parseChallenges(header: string): Challenge[] {
  const challenges: { scheme: string; params: Map<string, string> }[] = [];
  const token = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
  let i = 0;
  const skip = (): void => {
    while (i < header.length && /[\s,]/.test(header.charAt(i))) i++;
  };
  while (true) {
    skip();
    token.lastIndex = i;
    const name = token.exec(header)?.[0];
    if (name === undefined) break;
    i += name.length;
    while (header.charAt(i) === ' ') i++;
    const current = challenges.at(-1);
    if (header.charAt(i) === '=' && current !== undefined) {
      i++;
      while (header.charAt(i) === ' ') i++;
      let value = '';
      if (header.charAt(i) === '"') {
        i++;
        while (i < header.length && header.charAt(i) !== '"') {
          if (header.charAt(i) === '\\') i++;
          value += header.charAt(i);
          i++;
        }
        i++;
      } else {
        while (i < header.length && !/[\s,]/.test(header.charAt(i))) value += header.charAt(i++);
      }
      current.params.set(name.toLowerCase(), value);
    } else {
      challenges.push({ scheme: name.toLowerCase(), params: new Map() });
    }
  }
  return challenges;
}

/**
 * The scopes to ask for: the challenge's own, with this GUN's repository scope widened to the
 * actions the operation needs (a server may challenge a publish with `pull` only).
 */
function scopesFor(challengeScope: string | undefined, gun: string, access: Access): string[] {
  const required = access === 'pull' ? ['pull'] : ['push', 'pull'];
  let found = false;
  const scopes = (challengeScope ?? '')
    .split(' ')
    .filter((s) => s !== '')
    .map((scope) => {
      // `repository:<name>:<actions>` — the name may itself hold ':' (a registry port).
      const first = scope.indexOf(':');
      const last = scope.lastIndexOf(':');
      if (
        first === last ||
        scope.slice(0, first) !== 'repository' ||
        scope.slice(first + 1, last) !== gun
      ) {
        return scope;
      }
      found = true;
      return `repository:${gun}:${orderActions([...scope.slice(last + 1).split(','), ...required])}`;
    });
  if (!found) scopes.push(`repository:${gun}:${orderActions(required)}`);
  return scopes;
}

/** Deduplicated, with `push` before `pull` as Docker writes them. */
function orderActions(actions: readonly string[]): string {
  const unique = [...new Set(actions.filter((a) => a !== ''))];
  const rank = (a: string): number => (a === 'push' ? 0 : a === 'pull' ? 1 : 2);
  return unique.sort((a, b) => rank(a) - rank(b)).join(',');
}

function basicAuthorization(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64')}`;
}

function headerText(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}

/** Sets `key` as the newest entry of `map`, dropping the oldest beyond `max` (Maps keep insertion order). */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
}

/** A URL as errors may show it: never with userinfo. */
function redact(url: URL): string {
  if (url.username === '' && url.password === '') return url.href;
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

/** Names TLS trust failures as certificate problems, so the operator looks at the CA first. */
function describeTransportError(error: NodeJS.ErrnoException): string {
  const code = error.code ?? '';
  const certificate =
    /CERT|SELF_SIGNED|UNABLE_TO_(?:GET|VERIFY)|ERR_TLS_CERT/.test(code) ||
    /certificate/i.test(error.message);
  if (certificate) {
    return `TLS: the server's certificate is not trusted (${code === '' ? '' : `${code}: `}${error.message})`;
  }
  return code === '' ? error.message : `${code}: ${error.message}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
