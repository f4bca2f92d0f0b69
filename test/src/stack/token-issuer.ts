/**
 * A small Docker-registry-style token service, served by the test process itself on 127.0.0.1 so
 * notary-server can run with `"auth":{"type":"token"}`. It implements what notary-server and the
 * notary CLI use: `GET <realm>?service=…&scope=repository:<gun>:<actions>` with HTTP Basic
 * credentials, answered with an ES256 JWT whose `x5c` header chains to the server's
 * `rootcertbundle`.
 */
import { X509Certificate, createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';

/** The token service as tests see it. */
export interface TokenIssuer {
  /** Where notary-server sends clients for a token (`https://127.0.0.1:<port>/token`). */
  readonly realm: string;
  /** The `service` the server names in its challenge, and each token's `aud`. */
  readonly service: string;
  /** Each token's `iss`; notary-server only accepts this issuer. */
  readonly issuer: string;
  /** The only credentials that get a token. */
  readonly username: string;
  readonly password: string;
  /** Whether requests without credentials get a pull-only token (what read-only CLI commands send). */
  readonly anonymousPull: boolean;
  /** Count of requests to the realm, successful or not. */
  readonly requests: number;
  /** Every request to the realm, in order. */
  readonly log: readonly TokenRequestRecord[];
}

/** One request to the realm and how it was answered. */
export interface TokenRequestRecord {
  /** The Basic user name, or undefined for an anonymous request. */
  readonly user: string | undefined;
  /** The scopes asked for (`repository:<gun>:push,pull`). */
  readonly scopes: readonly string[];
  /** The actions granted per scope, in the order asked; empty when refused. */
  readonly granted: readonly string[];
  /** The HTTP status of the answer. */
  readonly status: number;
}

/** What the issuer needs to start. */
export interface TokenIssuerOptions {
  /** HTTPS certificate and key for the realm (the loopback server certificate). */
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  /** Certificate (chaining to the rootcertbundle) and key that sign the tokens. */
  readonly signingCertFile: string;
  readonly signingKeyFile: string;
  readonly service: string;
  readonly issuer: string;
  readonly username: string;
  readonly password: string;
  /** Give requests without credentials a token for `pull` only (default true). */
  readonly anonymousPull?: boolean;
}

/** A running issuer and the way to stop it. */
export interface RunningTokenIssuer {
  readonly issuer: TokenIssuer;
  close(): Promise<void>;
}

/** Token lifetime; the reply's `expires_in`. */
const TOKEN_SECONDS = 300;
/** Back-dating of `nbf`, so a server whose clock reads a second behind still accepts. */
const CLOCK_SKEW_SECONDS = 10;

/** One `access` claim entry, as the distribution token spec defines it. */
interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/**
 * Parses `type:name:actions`. A repository name may itself contain colons (a registry host with a
 * port, as in notary GUNs), so the type ends at the first colon and the actions start after the
 * last.
 */
function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last <= first + 1) return undefined;
  const actions = scope
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions };
}

/** Merges entries for the same resource, keeping each action once. */
function mergeAccess(entries: readonly AccessEntry[]): AccessEntry[] {
  const merged = new Map<string, AccessEntry>();
  for (const entry of entries) {
    const key = `${entry.type}\u0000${entry.name}`;
    const existing = merged.get(key);
    if (existing === undefined) merged.set(key, { ...entry, actions: [...new Set(entry.actions)] });
    else existing.actions = [...new Set([...existing.actions, ...entry.actions])];
  }
  return [...merged.values()];
}

/** The credentials of an HTTP Basic header, if it is one. */
function basicCredentials(header: string | undefined): { user: string; pass: string } | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (match?.[1] === undefined) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), pass: decoded.slice(colon + 1) };
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function errorBody(code: string, message: string): unknown {
  return { errors: [{ code, message }] };
}

/** Signs a JWT with ES256 (raw r‖s signature, as JWS requires). */
function signJwt(header: object, claims: object, key: KeyObject): string {
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${base64url(signature)}`;
}

/** Starts the issuer on a free loopback port (Node binds port 0 itself, so no race). */
export async function startTokenIssuer(options: TokenIssuerOptions): Promise<RunningTokenIssuer> {
  const [tlsCert, tlsKey, signingCertPem, signingKeyPem] = await Promise.all([
    readFile(options.tlsCertFile, 'utf8'),
    readFile(options.tlsKeyFile, 'utf8'),
    readFile(options.signingCertFile, 'utf8'),
    readFile(options.signingKeyFile, 'utf8'),
  ]);
  const signingKey = createPrivateKey(signingKeyPem);
  // x5c carries standard base64 (not base64url) DER, leaf first (RFC 7515 §4.1.6).
  const x5c = [new X509Certificate(signingCertPem).raw.toString('base64')];
  const path = '/token';
  const anonymousPull = options.anonymousPull ?? true;
  const log: TokenRequestRecord[] = [];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    if (url.pathname !== path) {
      sendJson(res, 404, errorBody('NOT_FOUND', `no such endpoint ${url.pathname}`));
      return;
    }
    // Scopes come as repeated `scope` parameters, each possibly space-separated.
    const scopes = url.searchParams
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .filter((s) => s !== '');
    const credentials = basicCredentials(req.headers.authorization);
    const refuse = (status: number, code: string, message: string): void => {
      log.push({ user: credentials?.user, scopes, granted: [], status });
      const challenge: Record<string, string> =
        status === 401 ? { 'WWW-Authenticate': 'Basic realm="kpack-trust test token issuer"' } : {};
      sendJson(res, status, errorBody(code, message), challenge);
    };

    if (req.method !== 'GET') {
      refuse(405, 'UNSUPPORTED', 'only GET is supported');
      return;
    }
    // The notary CLI sends no credentials for read-only commands (list, lookup) even with
    // NOTARY_AUTH set, so anonymous callers get pull, as on a public repository; wrong
    // credentials are always refused.
    const anonymous = credentials === undefined;
    if (
      anonymous
        ? !anonymousPull
        : credentials.user !== options.username || credentials.pass !== options.password
    ) {
      refuse(401, 'UNAUTHORIZED', anonymous ? 'authentication required' : 'invalid credentials');
      return;
    }
    const service = url.searchParams.get('service');
    if (service !== options.service) {
      refuse(400, 'UNSUPPORTED', `unknown service ${JSON.stringify(service)}`);
      return;
    }
    const entries: AccessEntry[] = [];
    for (const scope of scopes) {
      const entry = parseScope(scope);
      if (entry === undefined) {
        refuse(400, 'INVALID_SCOPE', `cannot parse scope ${JSON.stringify(scope)}`);
        return;
      }
      // Anonymous callers get pull and nothing else; the server then refuses pushes with 401.
      if (anonymous) entry.actions = entry.actions.filter((a) => a === 'pull');
      entries.push(entry);
    }
    const now = Math.floor(Date.now() / 1000);
    const token = signJwt(
      { typ: 'JWT', alg: 'ES256', x5c },
      {
        iss: options.issuer,
        sub: credentials?.user ?? '',
        aud: options.service,
        exp: now + TOKEN_SECONDS,
        nbf: now - CLOCK_SKEW_SECONDS,
        iat: now,
        jti: randomBytes(16).toString('hex'),
        access: mergeAccess(entries),
      },
      signingKey,
    );
    log.push({
      user: credentials?.user,
      scopes,
      granted: entries.map((e) => e.actions.join(',')),
      status: 200,
    });
    sendJson(res, 200, {
      token,
      access_token: token,
      expires_in: TOKEN_SECONDS,
      issued_at: new Date(now * 1000).toISOString(),
    });
  };
  const server: Server = createServer({ cert: tlsCert, key: tlsKey }, handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  // A forgotten stop() must not keep the test process alive.
  server.unref();
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('token issuer has no port');

  const issuer: TokenIssuer = {
    realm: `https://127.0.0.1:${address.port}${path}`,
    service: options.service,
    issuer: options.issuer,
    username: options.username,
    password: options.password,
    anonymousPull,
    get requests() {
      return log.length;
    },
    get log() {
      return [...log];
    },
  };
  return {
    issuer,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
