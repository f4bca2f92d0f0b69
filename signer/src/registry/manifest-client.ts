/**
 * The one Registry HTTP API v2 call the signer needs: does the registry hold this manifest, and how
 * many bytes is it (the `length` a Notary target must state)? `HEAD /v2/<path>/manifests/<digest>`,
 * falling back to a capped `GET` whose bytes are hashed when a registry omits Content-Length.
 *
 * Auth as Docker does it: anonymous first; on a 401 `Bearer` challenge a token from the realm
 * (`GET realm?service=…&scope=repository:<path>:pull`, Basic credentials when configured; never a
 * plain http realm named by an https registry), on a `Basic` challenge the credentials themselves.
 * Insecure registries (loopback, as dockerd's default `127.0.0.0/8`, and any named) are tried over
 * HTTPS first and then over plain HTTP.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import {
  TrustError,
  agentTrusting,
  isTrustError,
  type CredentialSource,
  type Credentials,
  type TrustingRequestOptions,
} from '@kpack-trust/common';

/** Answers the size of a pushed manifest. */
export interface ManifestLookup {
  /** The manifest's length in bytes; throws MANIFEST_UNKNOWN when the registry does not have it. */
  manifestSize(
    image: { registry: string; path: string },
    digest: string,
    options?: LookupOptions,
  ): Promise<number>;
}

/** One lookup's caller's controls. */
export interface LookupOptions {
  /**
   * Ends the lookup wherever it is (manifest request, token request, TLS handshake), closing its
   * connection: the lookup rejects with the signal's reason when that is a TrustError (the
   * controller's attempt deadline), else HTTP_UNREACHABLE.
   */
  readonly signal?: AbortSignal;
}

/** How to reach registries. */
export interface RegistryClientOptions {
  /** Credentials for Basic and token auth; anonymous when absent. */
  readonly credentials?: CredentialSource;
  /** PEM bundle trusted in addition to Node's public roots. */
  readonly ca?: string | Buffer;
  /** Hosts (`host:port`) that may be reached over plain HTTP when HTTPS fails; loopback always may. */
  readonly insecureRegistries?: readonly string[];
  /** Deadline per request, default 10 000 ms. */
  readonly timeoutMs?: number;
  readonly userAgent?: string;
}

/** Every manifest type a build can produce; without them docker-registry 2.8 hides OCI manifests. */
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
/** The distribution spec's recommended manifest limit. */
const MANIFEST_LIMIT = 4 * 1024 * 1024;
const SMALL_LIMIT = 64 * 1024;
/** Docker Hub's API host; `docker.io` itself serves no registry API. */
const DOCKER_HUB_API = 'registry-1.docker.io';

interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A Registry HTTP API v2 client for manifest sizes. Call `close()` when done. */
export class RegistryHttpClient implements ManifestLookup {
  private readonly options: RegistryClientOptions;
  private readonly httpsAgent: https.Agent;
  private readonly httpAgent = new http.Agent({ keepAlive: true });

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
    this.httpsAgent = agentTrusting({ ca: options.ca, handshakeTimeoutMs: this.timeoutMs() });
  }

  async manifestSize(
    image: { registry: string; path: string },
    digest: string,
    options: LookupOptions = {},
  ): Promise<number> {
    const signal = options.signal;
    const host = image.registry === 'docker.io' ? DOCKER_HUB_API : image.registry;
    const bases = [`https://${host}`];
    if (isLoopback(host) || (this.options.insecureRegistries ?? []).includes(image.registry)) {
      bases.push(`http://${host}`);
    }
    let lastError: unknown;
    for (const base of bases) {
      try {
        return await this.sizeAt(base, image, digest, signal);
      } catch (err) {
        // Only a transport failure (TLS against a plain-HTTP registry, say) moves on to HTTP; a
        // caller that gave up is not one.
        if (!(err instanceof TrustError && err.code === 'HTTP_UNREACHABLE')) throw err;
        if (signal?.aborted === true) throw err;
        lastError = err;
      }
    }
    throw lastError;
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.httpsAgent.destroy();
    this.httpAgent.destroy();
  }

  private async sizeAt(
    base: string,
    image: { registry: string; path: string },
    digest: string,
    signal: AbortSignal | undefined,
  ): Promise<number> {
    const url = new URL(`${base}/v2/${image.path}/manifests/${digest}`);
    const reference = `${image.registry}/${image.path}@${digest}`;
    const head = await this.authorized('HEAD', url, image, SMALL_LIMIT, signal);
    const unknown = (status: number): TrustError =>
      new TrustError(
        'MANIFEST_UNKNOWN',
        { image: reference, digest, url: url.href, status },
        `The registry does not have ${reference} (HTTP ${status} for ${url.href}); push the image before signing it.`,
      );
    if (head.status === 404) throw unknown(404);
    if (head.status !== 200) throw statusError('HEAD', url, head.status);
    const served = headerText(head.headers['docker-content-digest']);
    if (served !== '' && served !== digest) {
      throw new TrustError(
        'MANIFEST_UNKNOWN',
        { image: reference, digest, url: url.href, status: head.status },
        `The registry answered ${url.href} with a different manifest (${served}).`,
      );
    }
    const length = Number(headerText(head.headers['content-length']));
    if (Number.isSafeInteger(length) && length > 0) return length;

    // No usable Content-Length: fetch the bytes and make sure they are the manifest named.
    const get = await this.authorized('GET', url, image, MANIFEST_LIMIT, signal);
    if (get.status === 404) throw unknown(404);
    if (get.status !== 200) throw statusError('GET', url, get.status);
    const actual = `sha256:${createHash('sha256').update(get.body).digest('hex')}`;
    if (actual !== digest) {
      throw new TrustError(
        'MANIFEST_UNKNOWN',
        { image: reference, digest, url: url.href, status: get.status },
        `The registry served bytes hashing to ${actual} for ${reference}.`,
      );
    }
    return get.body.length;
  }

  /** One manifest request, answering one auth challenge if the registry poses it. */
  private async authorized(
    method: 'HEAD' | 'GET',
    url: URL,
    image: { registry: string; path: string },
    maxBytes: number,
    signal: AbortSignal | undefined,
  ): Promise<Reply> {
    const headers = { Accept: MANIFEST_ACCEPT, 'User-Agent': this.userAgent() };
    const first = await this.roundTrip(method, url, headers, maxBytes, signal);
    if (first.status !== 401) return this.refused(first, url);
    const challenge = parseChallenge(headerText(first.headers['www-authenticate']));
    const credentials = await this.options.credentials?.credentialsFor(image.registry);
    let authorization: string;
    if (challenge?.scheme === 'bearer') {
      authorization = `Bearer ${await this.token(url, challenge.params, image.path, credentials, signal)}`;
    } else if (challenge?.scheme === 'basic' && credentials !== undefined) {
      authorization = basic(credentials);
    } else {
      throw authFailed(
        url.href,
        401,
        challenge?.scheme === 'basic'
          ? 'the registry requires credentials and none are configured for it'
          : 'the registry demands authentication but offers no Bearer or Basic challenge',
      );
    }
    const second = await this.roundTrip(
      method,
      url,
      { ...headers, Authorization: authorization },
      maxBytes,
      signal,
    );
    if (second.status === 401) throw authFailed(url.href, 401, 'the registry refused the token');
    return this.refused(second, url);
  }

  private refused(reply: Reply, url: URL): Reply {
    if (reply.status === 403) throw authFailed(url.href, 403, 'access to the manifest is denied');
    return reply;
  }

  /** The distribution token protocol: `GET realm?service&scope` → `{"token"}` or `{"access_token"}`. */
  private async token(
    challenged: URL,
    params: ReadonlyMap<string, string>,
    path: string,
    credentials: Credentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const realmText = params.get('realm') ?? '';
    let realm: URL;
    try {
      realm = new URL(realmText);
    } catch {
      throw authFailed(realmText, 401, 'the Bearer challenge names no usable realm');
    }
    const shown = realm.origin + realm.pathname;
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw authFailed(shown, 401, 'the Bearer challenge realm is not an http(s) URL');
    }
    // The realm is the registry's word, as for the notary client (common/src/notary/http-client.ts):
    // an https registry may not send us to plain http, where the Basic credentials below would
    // travel in the clear. Over an insecure registry's plain http, there is nothing left to protect.
    if (challenged.protocol === 'https:' && realm.protocol !== 'https:') {
      throw authFailed(
        shown,
        401,
        'the Bearer challenge sends an https registry to a plain http token service',
      );
    }
    const service = params.get('service');
    if (service !== undefined) realm.searchParams.set('service', service);
    realm.searchParams.set('scope', params.get('scope') ?? `repository:${path}:pull`);
    const headers: Record<string, string> = { 'User-Agent': this.userAgent() };
    if (credentials !== undefined) {
      realm.searchParams.set('account', credentials.username);
      headers['Authorization'] = basic(credentials);
    }
    const reply = await this.roundTrip('GET', realm, headers, SMALL_LIMIT, signal);
    if (reply.status === 401 || reply.status === 403) {
      throw authFailed(
        shown,
        reply.status,
        credentials === undefined
          ? `the token service refused anonymous access (HTTP ${reply.status})`
          : `the token service rejected the credentials (HTTP ${reply.status})`,
      );
    }
    // A token service that is down or throttling says nothing about our credentials: fail as a
    // registry answering the manifest request with that status does (exit 4, not 3).
    if (reply.status >= 500 || reply.status === 429) throw statusError('GET', shown, reply.status);
    if (reply.status !== 200) {
      throw authFailed(shown, reply.status, `the token service answered HTTP ${reply.status}`);
    }
    let answer: unknown;
    try {
      answer = JSON.parse(reply.body.toString('utf8'));
    } catch {
      answer = undefined;
    }
    const fields = typeof answer === 'object' && answer !== null ? answer : {};
    const token =
      'token' in fields && typeof fields.token === 'string' && fields.token !== ''
        ? fields.token
        : 'access_token' in fields && typeof fields.access_token === 'string'
          ? fields.access_token
          : '';
    if (token === '') {
      throw authFailed(shown, 200, 'the token answer holds no token');
    }
    return token;
  }

  private userAgent(): string {
    return this.options.userAgent ?? 'kpack-trust-signer';
  }

  private timeoutMs(): number {
    return this.options.timeoutMs ?? 10_000;
  }

  /**
   * One request under the client's deadline and the caller's signal. Either closes the connection
   * wherever it is; one still in its TLS handshake through the agent's `handshakeSignal`, since
   * request.destroy() cannot reach it (see common/src/notary/tls-trust.ts).
   */
  private roundTrip(
    method: string,
    url: URL,
    headers: Record<string, string>,
    maxBytes: number,
    signal: AbortSignal | undefined,
  ): Promise<Reply> {
    const timeoutMs = this.timeoutMs();
    const shown = url.origin + url.pathname;
    if (signal?.aborted === true) return Promise.reject(abortedError(signal, method, shown));
    return new Promise<Reply>((resolve, reject) => {
      const secure = url.protocol === 'https:';
      const handshake = new AbortController();
      let settled = false;
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
      const fail = (problem: string, cause?: unknown): void => {
        settle(
          new TrustError(
            'HTTP_UNREACHABLE',
            { url: shown, problem },
            `${method} ${shown} failed: ${problem}.`,
            cause === undefined ? undefined : { cause },
          ),
        );
      };
      const onAbort = (): void => {
        settle(abortedError(signal, method, shown));
      };
      // Armed before the connection opens, so that it fires before the agent's handshake deadline
      // of the same length and a stalled handshake is reported as this request's deadline.
      const timer = setTimeout(() => {
        fail(`no complete answer within ${timeoutMs} ms`);
      }, timeoutMs);
      const options: https.RequestOptions & TrustingRequestOptions = {
        method,
        headers,
        agent: secure ? this.httpsAgent : this.httpAgent,
        ...(secure ? { handshakeSignal: handshake.signal } : {}),
      };
      const request = (secure ? https : http).request(url, options);
      signal?.addEventListener('abort', onAbort, { once: true });
      request.on('error', (error: NodeJS.ErrnoException) => {
        fail(error.code === undefined ? error.message : `${error.code}: ${error.message}`, error);
      });
      request.on('response', (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          if (settled) return;
          size += chunk.length;
          if (size > maxBytes) {
            fail(`the answer exceeds ${maxBytes} bytes`);
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => {
          settle({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
          });
        });
      });
      request.end();
    });
  }
}

/**
 * The error of a lookup its caller gave up on: the signal's reason when it is a TrustError (the
 * controller's attempt deadline, naming what stalled), else HTTP_UNREACHABLE.
 */
function abortedError(signal: AbortSignal | undefined, method: string, url: string): TrustError {
  const reason: unknown = signal?.reason;
  if (isTrustError(reason)) return reason;
  return new TrustError(
    'HTTP_UNREACHABLE',
    { url, problem: 'the request was aborted' },
    `${method} ${url} failed: the request was aborted.`,
  );
}

/** 127.0.0.0/8, ::1 and localhost — insecure by default, as dockerd treats them. */
function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** The first challenge of a `WWW-Authenticate` header: scheme and its quoted or bare parameters. */
export function parseChallenge(
  header: string,
): { scheme: string; params: ReadonlyMap<string, string> } | undefined {
  const match = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(header);
  if (match === null) return undefined;
  const params = new Map<string, string>();
  const pattern = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (const p of (match[2] ?? '').matchAll(pattern)) {
    const name = p[1];
    if (name === undefined) continue;
    params.set(name.toLowerCase(), (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1'));
  }
  return { scheme: (match[1] ?? '').toLowerCase(), params };
}

function headerText(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}

function basic(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

function authFailed(url: string, status: number, problem: string): TrustError {
  return new TrustError(
    'AUTH_FAILED',
    { url, status, problem },
    `Authentication at ${url} failed: ${problem}.`,
  );
}

function statusError(method: string, url: URL | string, status: number): TrustError {
  const shown = typeof url === 'string' ? url : url.href;
  return new TrustError(
    'HTTP_STATUS',
    { url: shown, status, serverCode: '' },
    `${method} ${shown} answered HTTP ${status}.`,
  );
}
