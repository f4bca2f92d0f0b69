/**
 * The registry manifest lookup against a local server answering as a Docker registry does: size
 * from HEAD, token and Basic auth, the GET fallback, and each failure with its code; and a lookup
 * given up on by its caller (the controller's sign-attempt deadline) while a server stalls it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TrustError, isTrustError, staticCredentials } from '@kpack-trust/common';
import { createTestCa } from '@kpack-trust/common/testing';
import { ExitCode, exitCodeFor } from '../src/cli/exit-codes.js';
import { RegistryHttpClient, parseChallenge } from '../src/registry/manifest-client.js';

const MANIFEST = Buffer.from(
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}',
);
const DIGEST = `sha256:${createHash('sha256').update(MANIFEST).digest('hex')}`;
const OTHER = `sha256:${'0f'.repeat(32)}`;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('RegistryHttpClient', () => {
  let server: Server;
  let host = '';
  let handler: Handler = () => undefined;
  const seen: { method: string; url: string; authorization: string; accept: string }[] = [];

  before(async () => {
    server = createServer((req, res) => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: req.headers.authorization ?? '',
        accept: req.headers.accept ?? '',
      });
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  function client(
    options: ConstructorParameters<typeof RegistryHttpClient>[0] = {},
  ): RegistryHttpClient {
    return new RegistryHttpClient(options);
  }

  function serveManifest(
    res: ServerResponse,
    req: IncomingMessage,
    extra: Record<string, string> = {},
  ): void {
    res.writeHead(200, {
      'Content-Type': 'application/vnd.oci.image.manifest.v1+json',
      'Content-Length': String(MANIFEST.length),
      'Docker-Content-Digest': DIGEST,
      ...extra,
    });
    res.end(req.method === 'HEAD' ? undefined : MANIFEST);
  }

  it('reads the size with an anonymous HEAD by digest, asking for every manifest type', async () => {
    seen.length = 0;
    handler = (req, res) => {
      serveManifest(res, req);
    };
    const c = client();
    try {
      assert.equal(
        await c.manifestSize({ registry: host, path: 'team/app' }, DIGEST),
        MANIFEST.length,
      );
    } finally {
      c.close();
    }
    const head = seen.find((s) => s.method === 'HEAD');
    assert.equal(head?.url, `/v2/team/app/manifests/${DIGEST}`);
    assert.match(head.accept, /application\/vnd\.oci\.image\.manifest\.v1\+json/);
    assert.match(head.accept, /application\/vnd\.docker\.distribution\.manifest\.v2\+json/);
  });

  it('answers a Bearer challenge with a token fetched using the configured credentials', async () => {
    seen.length = 0;
    const realm = `http://${host}/token`;
    handler = (req, res) => {
      if (req.url?.startsWith('/token')) {
        const url = new URL(req.url, 'http://x');
        const ok =
          req.headers.authorization === `Basic ${Buffer.from('builder:pw').toString('base64')}` &&
          url.searchParams.get('service') === 'registry' &&
          url.searchParams.get('scope') === 'repository:team/app:pull' &&
          url.searchParams.get('account') === 'builder';
        res.writeHead(ok ? 200 : 401, { 'Content-Type': 'application/json' });
        res.end(ok ? JSON.stringify({ access_token: 'tok-1' }) : '{}');
        return;
      }
      if (req.headers.authorization !== 'Bearer tok-1') {
        res.writeHead(401, {
          'WWW-Authenticate': `Bearer realm="${realm}",service="registry",scope="repository:team/app:pull"`,
        });
        res.end();
        return;
      }
      serveManifest(res, req);
    };
    const c = client({ credentials: staticCredentials('builder', 'pw') });
    try {
      assert.equal(
        await c.manifestSize({ registry: host, path: 'team/app' }, DIGEST),
        MANIFEST.length,
      );
    } finally {
      c.close();
    }
    assert.deepEqual(
      seen.map((s) => s.method),
      ['HEAD', 'GET', 'HEAD'],
    );
  });

  it('answers a Basic challenge with the credentials, and refuses when there are none', async () => {
    handler = (req, res) => {
      if (req.headers.authorization !== `Basic ${Buffer.from('u:p').toString('base64')}`) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="registry"' });
        res.end();
        return;
      }
      serveManifest(res, req);
    };
    const c = client({ credentials: staticCredentials('u', 'p') });
    const anonymous = client();
    try {
      assert.equal(await c.manifestSize({ registry: host, path: 'a' }, DIGEST), MANIFEST.length);
      await assert.rejects(anonymous.manifestSize({ registry: host, path: 'a' }, DIGEST), {
        code: 'AUTH_FAILED',
        facts: {
          url: `http://${host}/v2/a/manifests/${DIGEST}`,
          status: 401,
          problem: 'the registry requires credentials and none are configured for it',
        },
      });
    } finally {
      c.close();
      anonymous.close();
    }
  });

  it('fails AUTH_FAILED when the token service refuses or the token is refused', async () => {
    const realm = `http://${host}/token`;
    let tokenStatus = 401;
    handler = (req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(tokenStatus, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ token: 'never-good' }));
        return;
      }
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm}",service="registry"` });
      res.end();
    };
    const c = client({ credentials: staticCredentials('u', 'wrong') });
    try {
      await assert.rejects(c.manifestSize({ registry: host, path: 'a' }, DIGEST), {
        code: 'AUTH_FAILED',
        facts: {
          url: realm,
          status: 401,
          problem: 'the token service rejected the credentials (HTTP 401)',
        },
      });
      tokenStatus = 200;
      await assert.rejects(c.manifestSize({ registry: host, path: 'a' }, DIGEST), {
        code: 'AUTH_FAILED',
        facts: {
          url: `http://${host}/v2/a/manifests/${DIGEST}`,
          status: 401,
          problem: 'the registry refused the token',
        },
      });
    } finally {
      c.close();
    }
  });

  it('fails HTTP_STATUS, as for a registry answering 5xx, when the token service is unavailable', async () => {
    // A token service outage is the registry being unavailable (exit 4), not our credentials (exit 3).
    const realm = `http://${host}/token`;
    let tokenStatus = 503;
    handler = (req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(tokenStatus, { 'Content-Type': 'application/json' });
        res.end('{}');
        return;
      }
      if (req.url?.includes('/broken/')) {
        res.writeHead(502);
        res.end();
        return;
      }
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm}",service="registry"` });
      res.end();
    };
    const c = client({ credentials: staticCredentials('u', 'pw') });
    try {
      const registryDown = await c
        .manifestSize({ registry: host, path: 'broken/a' }, DIGEST)
        .catch((err: unknown) => err);
      assert.ok(isTrustError(registryDown, 'HTTP_STATUS'));
      for (const status of [503, 500, 429]) {
        tokenStatus = status;
        const err = await c
          .manifestSize({ registry: host, path: 'a' }, DIGEST)
          .catch((e: unknown) => e);
        assert.ok(isTrustError(err, 'HTTP_STATUS'), `token service ${status}: ${String(err)}`);
        assert.deepEqual(err.facts, { url: realm, status, serverCode: '' });
        assert.equal(exitCodeFor(err), ExitCode.UNAVAILABLE, `token service ${status}`);
      }
      assert.equal(exitCodeFor(registryDown), ExitCode.UNAVAILABLE);
      tokenStatus = 403;
      await assert.rejects(c.manifestSize({ registry: host, path: 'a' }, DIGEST), {
        code: 'AUTH_FAILED',
        facts: {
          url: realm,
          status: 403,
          problem: 'the token service rejected the credentials (HTTP 403)',
        },
      });
    } finally {
      c.close();
    }
  });

  it('refuses, sending it nothing, a plain http token realm named by an https registry', async () => {
    const ca = createTestCa();
    const leaf = ca.issue({ commonName: '127.0.0.1' });
    let realmRequests = 0;
    const realmServer = createServer((_req, res) => {
      realmRequests++;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"token":"t"}');
    });
    await new Promise<void>((resolve) => realmServer.listen(0, '127.0.0.1', resolve));
    const realm = `http://127.0.0.1:${(realmServer.address() as AddressInfo).port}/token`;
    let named = realm;
    let registryRequests = 0;
    const registry = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => {
      registryRequests++;
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${named}",service="registry"` });
      res.end();
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    const registryHost = `127.0.0.1:${(registry.address() as AddressInfo).port}`;
    const c = client({ ca: ca.certPem, credentials: staticCredentials('u', 'secret') });
    try {
      await assert.rejects(c.manifestSize({ registry: registryHost, path: 'a' }, DIGEST), {
        code: 'AUTH_FAILED',
        facts: {
          url: realm,
          status: 401,
          problem: 'the Bearer challenge sends an https registry to a plain http token service',
        },
      });
      assert.equal(registryRequests, 1);
      assert.equal(realmRequests, 0);
      named = 'ftp://127.0.0.1/token';
      await assert.rejects(c.manifestSize({ registry: registryHost, path: 'a' }, DIGEST), {
        code: 'AUTH_FAILED',
        facts: {
          url: 'ftp://127.0.0.1/token',
          status: 401,
          problem: 'the Bearer challenge realm is not an http(s) URL',
        },
      });
    } finally {
      c.close();
      for (const s of [registry, realmServer]) {
        s.closeAllConnections();
        s.close();
      }
    }
  });

  it('fails MANIFEST_UNKNOWN for a digest the registry does not have', async () => {
    handler = (_req, res) => {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
    };
    const c = client();
    try {
      await assert.rejects(c.manifestSize({ registry: host, path: 'team/app' }, OTHER), {
        code: 'MANIFEST_UNKNOWN',
        facts: {
          image: `${host}/team/app@${OTHER}`,
          digest: OTHER,
          url: `http://${host}/v2/team/app/manifests/${OTHER}`,
          status: 404,
        },
      });
    } finally {
      c.close();
    }
  });

  it('falls back to GET when HEAD has no length, and checks the bytes hash to the digest', async () => {
    let body = MANIFEST;
    handler = (req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'Docker-Content-Digest': DIGEST });
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Length': String(body.length) });
      res.end(body);
    };
    const c = client();
    try {
      assert.equal(await c.manifestSize({ registry: host, path: 'a' }, DIGEST), MANIFEST.length);
      body = Buffer.from('{"tampered":true}');
      await assert.rejects(c.manifestSize({ registry: host, path: 'a' }, DIGEST), {
        code: 'MANIFEST_UNKNOWN',
        facts: {
          image: `${host}/a@${DIGEST}`,
          digest: DIGEST,
          url: `http://${host}/v2/a/manifests/${DIGEST}`,
          status: 200,
        },
      });
    } finally {
      c.close();
    }
  });

  it('refuses a registry that names another digest for the manifest', async () => {
    handler = (req, res) => {
      serveManifest(res, req, { 'Docker-Content-Digest': OTHER });
    };
    const c = client();
    try {
      await assert.rejects(c.manifestSize({ registry: host, path: 'a' }, DIGEST), {
        code: 'MANIFEST_UNKNOWN',
      });
    } finally {
      c.close();
    }
  });

  it('fails HTTP_UNREACHABLE when nothing listens, after trying HTTPS then HTTP on loopback', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) =>
      closed.close(() => {
        resolve();
      }),
    );
    const c = client({ timeoutMs: 2000 });
    try {
      await assert.rejects(
        c.manifestSize({ registry: `127.0.0.1:${port}`, path: 'a' }, DIGEST),
        (err: unknown) => {
          const e = err as { code?: string; facts?: { url?: string; problem?: string } };
          return (
            e.code === 'HTTP_UNREACHABLE' &&
            e.facts?.url === `http://127.0.0.1:${port}/v2/a/manifests/${DIGEST}` &&
            /ECONNREFUSED/.test(e.facts.problem ?? '')
          );
        },
      );
    } finally {
      c.close();
    }
  });
});

describe("RegistryHttpClient given up on by its caller's signal", () => {
  const ca = createTestCa();
  const leaf = ca.issue({ commonName: '127.0.0.1' });
  /** What the stalling server saw: each connection, with a promise resolved when it closes. */
  const connections: { socket: Socket; closed: Promise<void> }[] = [];
  const track = (socket: Socket): void => {
    connections.push({
      socket,
      closed: new Promise<void>((resolve) =>
        socket.once('close', () => {
          resolve();
        }),
      ),
    });
  };
  /** Fires on the first request the server receives whose path starts with the awaited prefix. */
  let onRequest: (path: string) => void = () => undefined;
  // Answers the manifest with a Bearer challenge and never answers the token request, and answers
  // nothing at all under /v2/stall/: each is a request in flight that only its caller can end.
  const stalling = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    const path = req.url ?? '';
    onRequest(path);
    if (path.startsWith('/v2/challenge/')) {
      res.writeHead(401, {
        'WWW-Authenticate': `Bearer realm="https://${req.headers.host ?? ''}/token",service="registry"`,
      });
      res.end();
    }
  });
  stalling.on('secureConnection', track);
  let host = '';

  before(async () => {
    await new Promise<void>((resolve) => stalling.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(stalling.address() as AddressInfo).port}`;
  });
  after(() => {
    for (const { socket } of connections) socket.destroy();
    stalling.close();
  });

  /** `ms` passes, failing with `what`. */
  const within = (ms: number, what: string): Promise<never> =>
    new Promise((_resolve, reject) =>
      setTimeout(() => {
        reject(new Error(what));
      }, ms).unref(),
    );

  for (const [stage, path, awaited] of [
    ['the manifest HEAD', 'stall/app', '/v2/stall/'],
    ['the token request', 'challenge/app', '/token'],
  ] as const) {
    it(`rejects with the abort's error at once and closes the connection, during ${stage}`, async () => {
      const c = new RegistryHttpClient({ ca: ca.certPem, timeoutMs: 10_000 });
      const gaveUp = new AbortController();
      const reason = new TrustError(
        'HTTP_UNREACHABLE',
        { url: host, problem: 'the caller gave up' },
        'The caller gave up.',
      );
      const from = connections.length;
      const inFlight = new Promise<void>((resolve) => {
        onRequest = (seen) => {
          if (seen.startsWith(awaited)) resolve();
        };
      });
      const lookup = c
        .manifestSize({ registry: host, path }, DIGEST, { signal: gaveUp.signal })
        .catch((err: unknown) => err);
      try {
        await Promise.race([inFlight, within(5_000, `${stage} never reached the server`)]);
        const abortedAt = Date.now();
        gaveUp.abort(reason);
        const outcome = await Promise.race([lookup, within(2_000, 'the lookup ran on')]);
        assert.equal(outcome, reason, `the abort's own error, got ${String(outcome)}`);
        const ms = Date.now() - abortedAt;
        assert.ok(ms < 1_000, `rejected ${ms} ms after the abort`);
        const mine = connections.slice(from);
        assert.ok(mine.length >= 1);
        await Promise.race([
          Promise.all(mine.map((m) => m.closed)),
          within(2_000, 'the server still holds the connection'),
        ]);
      } finally {
        c.close();
      }
    });
  }

  it('closes a connection stalled in its TLS handshake (the --use-openssl-ca agent)', async () => {
    // A TCP listener that reads the ClientHello and never answers it. Under --use-openssl-ca the
    // client's agent holds the socket until the handshake is done, out of request.destroy()'s
    // reach; agentTrusting reads the flag from NODE_OPTIONS when the client is built.
    const accepted: { socket: Socket; closed: Promise<void> }[] = [];
    let connected: () => void = () => undefined;
    const silent = createTcpServer((socket) => {
      socket.resume();
      accepted.push({
        socket,
        closed: new Promise<void>((resolve) =>
          socket.once('close', () => {
            resolve();
          }),
        ),
      });
      connected();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentHost = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const saved = process.env['NODE_OPTIONS'];
    process.env['NODE_OPTIONS'] = `${saved ?? ''} --use-openssl-ca`;
    let c: RegistryHttpClient;
    try {
      c = new RegistryHttpClient({ ca: ca.certPem, timeoutMs: 10_000 });
    } finally {
      if (saved === undefined) delete process.env['NODE_OPTIONS'];
      else process.env['NODE_OPTIONS'] = saved;
    }
    const gaveUp = new AbortController();
    const handshaking = new Promise<void>((resolve) => {
      connected = resolve;
    });
    const lookup = c
      .manifestSize({ registry: silentHost, path: 'a' }, DIGEST, { signal: gaveUp.signal })
      .catch((err: unknown) => err);
    try {
      await Promise.race([handshaking, within(5_000, 'the client never connected')]);
      const abortedAt = Date.now();
      gaveUp.abort();
      const outcome = await Promise.race([lookup, within(2_000, 'the lookup ran on')]);
      assert.ok(isTrustError(outcome, 'HTTP_UNREACHABLE'), String(outcome));
      assert.equal(outcome.facts.problem, 'the request was aborted');
      assert.ok(Date.now() - abortedAt < 1_000);
      // The HTTPS attempt only: an abort is not a transport failure to retry over plain HTTP.
      assert.equal(accepted.length, 1);
      await Promise.race([
        accepted[0]?.closed,
        within(2_000, 'the stalled handshake was left open'),
      ]);
    } finally {
      c.close();
      for (const { socket } of accepted) socket.destroy();
      silent.close();
    }
  });

  it('sends nothing when the signal has already fired', async () => {
    const c = new RegistryHttpClient({ ca: ca.certPem });
    const from = connections.length;
    try {
      const outcome = await c
        .manifestSize({ registry: host, path: 'stall/app' }, DIGEST, {
          signal: AbortSignal.abort(),
        })
        .catch((err: unknown) => err);
      assert.ok(isTrustError(outcome, 'HTTP_UNREACHABLE'), String(outcome));
      assert.equal(connections.length, from);
    } finally {
      c.close();
    }
  });
});

describe('parseChallenge', () => {
  it('reads the scheme and quoted or bare parameters', () => {
    const c = parseChallenge(
      'Bearer realm="https://auth.example/token",service=registry.example,scope="repository:a/b:pull,push"',
    );
    assert.equal(c?.scheme, 'bearer');
    assert.deepEqual(
      [...(c?.params ?? [])],
      [
        ['realm', 'https://auth.example/token'],
        ['service', 'registry.example'],
        ['scope', 'repository:a/b:pull,push'],
      ],
    );
    assert.equal(parseChallenge('')?.scheme, undefined);
  });
});
