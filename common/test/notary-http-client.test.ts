import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TrustError, isTrustError, type TrustErrorCode } from '../src/errors.js';
import type { CredentialSource } from '../src/notary/credentials.js';
import { staticCredentials } from '../src/notary/credentials.js';
import {
  MAX_CACHED_TOKENS,
  MAX_CACHED_TOKEN_LENGTH,
  NotaryHttpClient,
  type NotaryClientOptions,
} from '../src/notary/http-client.js';
import { createTestCa, type TestCa, type TestCertificate } from '../src/testing/tls.js';

const GUN = '127.0.0.1:5000/demo/app';
const TUF = `/v2/${GUN}/_trust/tuf`;
const HEX = createHash('sha256').update('snapshot').digest('hex');
const NOT_FOUND_BODY = JSON.stringify({
  errors: [
    { code: 'METADATA_NOT_FOUND', message: 'You have requested metadata that does not exist.' },
  ],
});

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** A notary-like HTTPS server on 127.0.0.1 that records requests and connections. */
interface TestServer {
  readonly url: string;
  readonly seen: Seen[];
  connections: number;
  handler: Handler;
  close(): Promise<void>;
}

async function startServer(cert: TestCertificate, handler: Handler): Promise<TestServer> {
  const state: { connections: number; handler: Handler; seen: Seen[] } = {
    connections: 0,
    handler,
    seen: [],
  };
  const sockets = new Set<Socket>();
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      state.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      state.handler(req, res, body);
    });
  });
  server.on('secureConnection', (socket: Socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    get seen() {
      return state.seen;
    },
    get connections() {
      return state.connections;
    },
    set connections(n: number) {
      state.connections = n;
    },
    get handler() {
      return state.handler;
    },
    set handler(h: Handler) {
      state.handler = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

function reply(
  res: ServerResponse,
  status: number,
  body: string | Buffer,
  headers: Record<string, string> = {},
): ServerResponse {
  res.writeHead(status, { 'Content-Type': 'text/plain', ...headers });
  return res.end(body);
}

function expectTrustError(
  code: TrustErrorCode,
  facts: Record<string, unknown>,
): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isTrustError(e, code), `expected ${code}, got ${String(e)}`);
    assert.deepEqual({ ...e.facts }, facts);
    return true;
  };
}

void describe('NotaryHttpClient', () => {
  let ca: TestCa;
  let otherCa: TestCa;
  let cert: TestCertificate;
  let server: TestServer;
  const clients: NotaryHttpClient[] = [];
  const client = (options: Partial<NotaryClientOptions> = {}): NotaryHttpClient => {
    const c = new NotaryHttpClient({
      baseUrl: server.url,
      ca: ca.certPem,
      timeoutMs: 5_000,
      ...options,
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    ca = createTestCa({ commonName: 'notary test CA' });
    otherCa = createTestCa({ commonName: 'unrelated CA' });
    cert = ca.issue({ commonName: 'notary-server' });
    server = await startServer(cert, (_req, res) => reply(res, 500, 'no handler'));
  });
  after(async () => {
    for (const c of clients) c.close();
    await server.close();
  });
  const reset = (handler: Handler): void => {
    server.seen.length = 0;
    server.connections = 0;
    server.handler = handler;
  };

  void describe('reading metadata', () => {
    void it('asks for <role>.json, <version>.<role>.json and <role>.<sha256>.json under /v2/<gun>/_trust/tuf/', async () => {
      reset((req, res) => reply(res, 200, `body of ${req.url ?? ''}`));
      const c = client({ userAgent: 'kpack-trust-test/1' });
      const root = await c.fetchMetadata(GUN, { role: 'root', maxBytes: 1000 });
      await c.fetchMetadata(GUN, { role: 'root', version: 3, maxBytes: 1000 });
      await c.fetchMetadata(GUN, { role: 'snapshot', sha256Hex: HEX, maxBytes: 1000 });
      await c.fetchMetadata(GUN, { role: 'targets/releases', sha256Hex: HEX, maxBytes: 1000 });
      await c.fetchMetadata(GUN, { role: 'targets/a/b-c_d', version: 1, maxBytes: 1000 });
      await c.fetchMetadata('docker.io/library/alpine', { role: 'timestamp', maxBytes: 1000 });
      assert.deepEqual(
        server.seen.map((s) => `${s.method} ${s.url}`),
        [
          `GET ${TUF}/root.json`,
          `GET ${TUF}/3.root.json`,
          `GET ${TUF}/snapshot.${HEX}.json`,
          `GET ${TUF}/targets/releases.${HEX}.json`,
          `GET ${TUF}/1.targets/a/b-c_d.json`,
          'GET /v2/docker.io/library/alpine/_trust/tuf/timestamp.json',
        ],
      );
      assert.ok(root instanceof Uint8Array);
      assert.equal(Buffer.from(root).toString(), `body of ${TUF}/root.json`);
      assert.equal(server.seen[0]?.headers['user-agent'], 'kpack-trust-test/1');
      assert.equal(server.seen[0]?.headers.authorization, undefined);
      // One kept-alive connection serves every request.
      assert.equal(server.connections, 1);
    });

    void it('keeps a path prefix of the base URL and passes bracketed IPv6 GUNs through', async () => {
      reset((_req, res) => reply(res, 200, '{}'));
      const c = client({ baseUrl: `${server.url}/notary/` });
      await c.fetchMetadata('[::1]:5000/app', { role: 'root', maxBytes: 10 });
      assert.deepEqual(
        server.seen.map((s) => s.url),
        ['/notary/v2/[::1]:5000/app/_trust/tuf/root.json'],
      );
    });

    void it('returns the exact bytes, including non-UTF-8 ones', async () => {
      const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x0d, 0x0a]);
      reset((_req, res) => reply(res, 200, bytes));
      const got = await client().fetchMetadata(GUN, { role: 'root', maxBytes: bytes.length });
      assert.deepEqual(Buffer.from(got), bytes);
    });

    void it('fails 404 with the notary error code as HTTP_STATUS/404/METADATA_NOT_FOUND', async () => {
      reset((_req, res) => reply(res, 404, NOT_FOUND_BODY, { 'Content-Type': 'application/json' }));
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 1000 }),
        expectTrustError('HTTP_STATUS', {
          url: `${server.url}${TUF}/root.json`,
          status: 404,
          serverCode: 'METADATA_NOT_FOUND',
        }),
      );
    });

    void it('reports a status without a notary error body with an empty server code', async () => {
      reset((_req, res) => reply(res, 502, '<html>bad gateway</html>'));
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'timestamp', maxBytes: 1000 }),
        expectTrustError('HTTP_STATUS', {
          url: `${server.url}${TUF}/timestamp.json`,
          status: 502,
          serverCode: '',
        }),
      );
    });

    void it('reads an error code even from a huge error body', async () => {
      reset((_req, res) => {
        res.writeHead(404);
        res.write(NOT_FOUND_BODY);
        res.write(' '.repeat(1 << 20)); // stays valid JSON only if read whole; we only need the head
        res.end();
      });
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 10 }),
        (e: unknown) => {
          assert.ok(isTrustError(e, 'HTTP_STATUS'));
          assert.equal(e.facts.status, 404);
          return true;
        },
      );
    });

    void it('rejects a bad GUN, role or checksum before any request', async () => {
      reset((_req, res) => reply(res, 200, 'x'));
      const c = client();
      for (const gun of ['', '../etc', 'a//b', 'a/b?c', 'a/./b', 'a/b c', 'a/b#c', 'a/%2e%2e']) {
        await assert.rejects(c.fetchMetadata(gun, { role: 'root', maxBytes: 10 }), (e: unknown) => {
          assert.ok(isTrustError(e, 'REFERENCE_INVALID'), gun);
          assert.equal(e.facts.reference, gun);
          return true;
        });
      }
      for (const role of [
        '',
        'Root',
        'root.json',
        'targets/',
        'targets//x',
        'targets/../root',
        'targets/a.b',
        'releases',
      ]) {
        await assert.rejects(c.fetchMetadata(GUN, { role, maxBytes: 10 }), (e: unknown) => {
          assert.ok(isTrustError(e, 'METADATA_MALFORMED'), role);
          assert.deepEqual(
            { ...e.facts },
            {
              role,
              field: 'role',
              problem: 'not a base role or a targets/ delegation name notary accepts',
            },
          );
          return true;
        });
      }
      await assert.rejects(
        c.fetchMetadata(GUN, { role: 'snapshot', sha256Hex: HEX.toUpperCase(), maxBytes: 10 }),
        expectTrustError('METADATA_MALFORMED', {
          role: 'snapshot',
          field: 'sha256Hex',
          problem: 'not 64 lowercase hex digits',
        }),
      );
      await assert.rejects(
        c.fetchMetadata(GUN, { role: 'root', version: 0, maxBytes: 10 }),
        RangeError,
      );
      await assert.rejects(
        c.fetchMetadata(GUN, { role: 'root', version: 1, sha256Hex: HEX, maxBytes: 10 }),
        RangeError,
      );
      await assert.rejects(c.fetchMetadata(GUN, { role: 'root', maxBytes: -1 }), RangeError);
      assert.equal(server.seen.length, 0);
    });
  });

  void describe('byte caps and deadlines', () => {
    void it('accepts a body of exactly maxBytes, with and without Content-Length', async () => {
      const body = Buffer.alloc(100, 0x61);
      reset((req, res) => {
        if (req.url?.endsWith('root.json') === true) {
          reply(res, 200, body);
        } else {
          res.writeHead(200);
          res.write(body.subarray(0, 50));
          res.end(body.subarray(50));
        }
      });
      const c = client();
      assert.equal((await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 })).length, 100);
      assert.equal((await c.fetchMetadata(GUN, { role: 'targets', maxBytes: 100 })).length, 100);
    });

    void it('rejects a Content-Length above maxBytes before reading the body', async () => {
      // Declares one byte too many and then sends nothing: only the header can trigger the error.
      reset((_req, res) => {
        res.writeHead(200, { 'Content-Length': '101' });
        res.flushHeaders();
      });
      const started = Date.now();
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'snapshot', maxBytes: 100 }),
        expectTrustError('DOWNLOAD_TOO_LARGE', {
          role: 'snapshot',
          limit: 100,
          url: `${server.url}${TUF}/snapshot.json`,
        }),
      );
      assert.ok(Date.now() - started < 2_000);
    });

    void it('aborts a chunked body as soon as it passes maxBytes', async () => {
      // Sends maxBytes + 1 bytes and then never ends: only streaming enforcement can fail it early.
      reset((_req, res) => {
        res.writeHead(200);
        res.write(Buffer.alloc(60, 0x62));
        setTimeout(() => res.write(Buffer.alloc(41, 0x62)), 20);
      });
      const started = Date.now();
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'timestamp', maxBytes: 100 }),
        expectTrustError('DOWNLOAD_TOO_LARGE', {
          role: 'timestamp',
          limit: 100,
          url: `${server.url}${TUF}/timestamp.json`,
        }),
      );
      assert.ok(Date.now() - started < 2_000);
    });

    void it('cuts off a server that trickles bytes forever at the deadline', async () => {
      const timers: NodeJS.Timeout[] = [];
      reset((_req, res) => {
        res.writeHead(200);
        timers.push(setInterval(() => res.write('x'), 25));
      });
      const started = Date.now();
      await assert.rejects(
        client({ timeoutMs: 300 }).fetchMetadata(GUN, { role: 'root', maxBytes: 1 << 20 }),
        expectTrustError('HTTP_UNREACHABLE', {
          url: `${server.url}${TUF}/root.json`,
          problem: 'no complete answer within 300 ms',
        }),
      );
      const elapsed = Date.now() - started;
      for (const t of timers) clearInterval(t);
      assert.ok(elapsed >= 250 && elapsed < 2_000, `took ${elapsed} ms`);
    });

    void it('cuts off a server that never answers', async () => {
      reset(() => undefined);
      await assert.rejects(
        client({ timeoutMs: 200 }).fetchMetadata(GUN, { role: 'root', maxBytes: 10 }),
        expectTrustError('HTTP_UNREACHABLE', {
          url: `${server.url}${TUF}/root.json`,
          problem: 'no complete answer within 200 ms',
        }),
      );
    });

    void it('stops a request mid-body when the caller aborts, with the abort reason', async () => {
      const timers: NodeJS.Timeout[] = [];
      const controller = new AbortController();
      const deadline = new TrustError(
        'HTTP_UNREACHABLE',
        { url: 'caller', problem: 'the caller gave up' },
        'the caller gave up',
      );
      let closed = false;
      reset((_req, res) => {
        res.writeHead(200);
        timers.push(setInterval(() => res.write('x'), 10));
        res.on('close', () => {
          closed = true;
        });
        // The caller gives up while the body is streaming.
        setTimeout(() => {
          controller.abort(deadline);
        }, 50);
      });
      const started = Date.now();
      await assert.rejects(
        client({ timeoutMs: 5_000 }).fetchMetadata(GUN, {
          role: 'root',
          maxBytes: 1 << 20,
          signal: controller.signal,
        }),
        (e: unknown) => e === deadline,
      );
      assert.ok(Date.now() - started < 2_000);
      for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 20));
      for (const t of timers) clearInterval(t);
      assert.equal(closed, true, 'the server saw the connection go');
    });

    void it('sends nothing once the signal has fired, and names the abort without a reason', async () => {
      reset((_req, res) => reply(res, 200, '{}'));
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 10, signal: controller.signal }),
        expectTrustError('HTTP_UNREACHABLE', {
          url: `${server.url}${TUF}/root.json`,
          problem: 'the request was aborted',
        }),
      );
      assert.equal(server.seen.length, 0);
    });

    void it('fails a body cut short by the server', async () => {
      reset((_req, res) => {
        res.writeHead(200, { 'Content-Length': '100' });
        res.write('only ten..');
        setTimeout(() => res.socket?.destroy(), 20);
      });
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 1000 }),
        expectTrustError('HTTP_UNREACHABLE', {
          url: `${server.url}${TUF}/root.json`,
          problem: 'the connection closed before the answer was complete',
        }),
      );
    });

    void it('reports a refused connection as HTTP_UNREACHABLE', async () => {
      const closed = await startServer(cert, () => undefined);
      const url = closed.url;
      await closed.close();
      await assert.rejects(
        client({ baseUrl: url }).fetchMetadata(GUN, { role: 'root', maxBytes: 10 }),
        (e: unknown) => {
          assert.ok(isTrustError(e, 'HTTP_UNREACHABLE'));
          assert.equal(e.facts.url, `${url}${TUF}/root.json`);
          assert.match(e.facts.problem, /^ECONNREFUSED: /);
          return true;
        },
      );
    });
  });

  void describe('TLS', () => {
    void it('refuses a server whose certificate chains to another CA', async () => {
      reset((_req, res) => reply(res, 200, 'x'));
      for (const options of [{ ca: otherCa.certPem, exclusiveCa: true }, { ca: otherCa.certPem }]) {
        await assert.rejects(
          client(options).fetchMetadata(GUN, { role: 'root', maxBytes: 10 }),
          (e: unknown) => {
            assert.ok(isTrustError(e, 'HTTP_UNREACHABLE'));
            assert.match(e.facts.problem, /certificate/);
            assert.match(e.facts.problem, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
            return true;
          },
        );
      }
      assert.equal(server.seen.length, 0);
    });

    void it('refuses the test CA when no CA is configured (public roots only)', async () => {
      reset((_req, res) => reply(res, 200, 'x'));
      const c = new NotaryHttpClient({ baseUrl: server.url });
      clients.push(c);
      await assert.rejects(c.fetchMetadata(GUN, { role: 'root', maxBytes: 10 }), (e: unknown) => {
        assert.ok(isTrustError(e, 'HTTP_UNREACHABLE'));
        assert.match(e.facts.problem, /certificate/);
        return true;
      });
    });

    void it('trusts the configured CA alone or alongside the public roots', async () => {
      reset((_req, res) => reply(res, 200, 'x'));
      assert.equal(
        (await client({ exclusiveCa: true }).fetchMetadata(GUN, { role: 'root', maxBytes: 10 }))
          .length,
        1,
      );
      assert.equal(
        (await client({ exclusiveCa: false }).fetchMetadata(GUN, { role: 'root', maxBytes: 10 }))
          .length,
        1,
      );
    });

    void it('verifies each of many concurrent connections against the configured CA', async () => {
      reset((_req, res) => {
        setTimeout(() => reply(res, 200, 'x'), 20);
      });
      const fetchAll = (c: NotaryHttpClient): Promise<Uint8Array>[] =>
        Array.from({ length: 8 }, () => c.fetchMetadata(GUN, { role: 'root', maxBytes: 10 }));
      const trusted = await Promise.all(fetchAll(client({ exclusiveCa: true })));
      assert.deepEqual(
        trusted.map((b) => b.length),
        Array.from({ length: 8 }, () => 1),
      );
      assert.equal(server.connections, 8, 'one connection per concurrent request');
      const refused = await Promise.allSettled(
        fetchAll(client({ ca: otherCa.certPem, exclusiveCa: true })),
      );
      assert.ok(refused.every((r) => r.status === 'rejected'));
      assert.equal(server.seen.length, 8, 'only the trusted client got answers');
    });

    void it('refuses a certificate for another host name', async () => {
      const wrongName = ca.issue({
        commonName: 'elsewhere',
        subjectAltNames: ['DNS:elsewhere.example'],
      });
      const other = await startServer(wrongName, (_req, res) => reply(res, 200, 'x'));
      try {
        await assert.rejects(
          client({ baseUrl: other.url }).fetchMetadata(GUN, { role: 'root', maxBytes: 10 }),
          (e: unknown) => {
            assert.ok(isTrustError(e, 'HTTP_UNREACHABLE'));
            assert.match(e.facts.problem, /ERR_TLS_CERT_ALTNAME_INVALID/);
            return true;
          },
        );
      } finally {
        await other.close();
      }
    });
  });

  void describe('base URL', () => {
    const cases: { readonly baseUrl: string; readonly url: string; readonly problem: string }[] = [
      { baseUrl: 'not a url', url: 'not a url', problem: 'not a URL' },
      { baseUrl: 'ftp://127.0.0.1/', url: 'ftp://127.0.0.1/', problem: 'not an http(s) URL' },
      {
        baseUrl: 'https://user:pw@127.0.0.1/',
        url: 'https://127.0.0.1/',
        problem: 'credentials belong in a CredentialSource, not in the URL',
      },
      {
        baseUrl: 'https://127.0.0.1/?x=1',
        url: 'https://127.0.0.1/?x=1',
        problem: 'a query or fragment is not allowed',
      },
    ];
    for (const c of cases) {
      void it(`refuses ${c.baseUrl}`, () => {
        assert.throws(
          () => new NotaryHttpClient({ baseUrl: c.baseUrl }),
          expectTrustError('HTTP_UNREACHABLE', { url: c.url, problem: c.problem }),
        );
      });
    }
    void it('refuses a non-positive timeout', () => {
      assert.throws(
        () => new NotaryHttpClient({ baseUrl: 'https://127.0.0.1', timeoutMs: 0 }),
        RangeError,
      );
    });
  });

  void describe('server keys', () => {
    const KEY = {
      keytype: 'ecdsa',
      keyval: { private: null, public: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE' },
    };

    void it('GETs <role>.key and returns the public key JSON', async () => {
      reset((_req, res) => reply(res, 200, JSON.stringify(KEY)));
      const c = client();
      assert.deepEqual(await c.fetchServerKey(GUN, 'timestamp'), {
        keytype: 'ecdsa',
        keyval: { public: KEY.keyval.public, private: null },
      });
      await c.fetchServerKey(GUN, 'snapshot');
      assert.deepEqual(
        server.seen.map((s) => `${s.method} ${s.url}`),
        [`GET ${TUF}/timestamp.key`, `GET ${TUF}/snapshot.key`],
      );
    });

    const malformed: { readonly body: string; readonly field: string; readonly problem: string }[] =
      [
        { body: 'not json', field: '$', problem: 'is not JSON' },
        { body: '[]', field: '$', problem: 'is not an object' },
        {
          body: '{"keyval":{"public":"x","private":null}}',
          field: 'keytype',
          problem: 'is not a non-empty string',
        },
        { body: '{"keytype":"ecdsa","keyval":"x"}', field: 'keyval', problem: 'is not an object' },
        {
          body: '{"keytype":"ecdsa","keyval":{"public":"","private":null}}',
          field: 'keyval.public',
          problem: 'is not a non-empty string',
        },
        {
          body: '{"keytype":"ecdsa","keyval":{"public":"x","private":"secret"}}',
          field: 'keyval.private',
          problem: 'must be null: a server never hands out private keys',
        },
      ];
    for (const m of malformed) {
      void it(`rejects a key answer whose ${m.field} ${m.problem}`, async () => {
        reset((_req, res) => reply(res, 200, m.body));
        await assert.rejects(
          client().fetchServerKey(GUN, 'timestamp'),
          expectTrustError('METADATA_MALFORMED', {
            role: 'timestamp.key',
            field: m.field,
            problem: m.problem,
          }),
        );
      });
    }
  });

  void describe('publishing', () => {
    void it('POSTs one multipart/form-data part per role, bytes intact', async () => {
      reset((_req, res) => reply(res, 200, ''));
      // Bodies that look like multipart syntax must survive untouched.
      const files = [
        { role: 'root', bytes: new TextEncoder().encode('{"signed":{"_type":"Root"}}') },
        { role: 'targets', bytes: Buffer.from('\r\n--\r\n--boundary\r\n\r\n') },
        { role: 'snapshot', bytes: Uint8Array.from({ length: 256 }, (_, i) => i) },
        { role: 'targets/releases', bytes: new Uint8Array(0) },
      ];
      await client().publish(GUN, files);

      assert.equal(server.seen.length, 1);
      const seen = server.seen[0];
      assert.ok(seen !== undefined);
      assert.equal(seen.method, 'POST');
      assert.equal(seen.url, `${TUF}/`);
      const contentType = seen.headers['content-type'] ?? '';
      const match = /^multipart\/form-data; boundary=([!-~]+)$/.exec(contentType);
      assert.ok(match?.[1] !== undefined, contentType);
      assert.equal(seen.headers['content-length'], String(seen.body.length));
      const parts = parseMultipart(seen.body, match[1]);
      assert.deepEqual(
        parts.map((p) => p.headers),
        files.map((f) => [
          `Content-Disposition: form-data; name="files"; filename="${f.role}"`,
          'Content-Type: application/octet-stream',
        ]),
      );
      for (const [i, part] of parts.entries()) {
        assert.deepEqual(part.content, Buffer.from(files[i]?.bytes ?? []));
      }

      // An independent parser (undici's FormData) reads the same parts. It is deprecated for
      // servers because it buffers whole bodies, which is harmless for a test's few bytes.
      const response = new Response(seen.body, { headers: { 'content-type': contentType } });
      // eslint-disable-next-line @typescript-eslint/no-deprecated
      const form = await response.formData();
      const entries = form.getAll('files');
      assert.equal(entries.length, files.length);
      for (const [i, entry] of entries.entries()) {
        assert.ok(typeof entry !== 'string');
        assert.equal(entry.name, files[i]?.role);
        assert.deepEqual(
          Buffer.from(await entry.arrayBuffer()),
          Buffer.from(files[i]?.bytes ?? []),
        );
      }
    });

    void it('reports a concurrent writer as HTTP_STATUS 400 with the server code', async () => {
      reset((_req, res) =>
        reply(
          res,
          400,
          JSON.stringify({ errors: [{ code: 'VERSION', message: 'old version', detail: {} }] }),
        ),
      );
      await assert.rejects(
        client().publish(GUN, [{ role: 'targets', bytes: new Uint8Array([1]) }]),
        expectTrustError('HTTP_STATUS', {
          url: `${server.url}${TUF}/`,
          status: 400,
          serverCode: 'VERSION',
        }),
      );
    });

    void it('refuses an empty or duplicated publish before any request', async () => {
      reset((_req, res) => reply(res, 200, ''));
      await assert.rejects(client().publish(GUN, []), RangeError);
      await assert.rejects(
        client().publish(GUN, [
          { role: 'targets', bytes: new Uint8Array([1]) },
          { role: 'targets', bytes: new Uint8Array([2]) },
        ]),
        RangeError,
      );
      await assert.rejects(
        client().publish(GUN, [{ role: 'timestamp.json', bytes: new Uint8Array([1]) }]),
        (e: unknown) => isTrustError(e, 'METADATA_MALFORMED'),
      );
      assert.equal(server.seen.length, 0);
    });
  });

  void describe('token auth', () => {
    interface TokenService {
      requests: number;
      readonly scopes: string[];
      readonly queries: URLSearchParams[];
      readonly authorizations: (string | undefined)[];
    }
    /**
     * The notary side accepts `Bearer tok-N` only when token N was issued for a scope that covers
     * the request; the token side checks alice's Basic password (or allows anonymous pull).
     */
    const tokenMode = (
      options: {
        readonly postChallengeScope?: 'pull' | 'push,pull';
        readonly expiresIn?: number;
        readonly field?: 'token' | 'access_token';
        readonly anonymousPull?: boolean;
        readonly refuseTokens?: boolean;
      } = {},
    ): TokenService => {
      const service: TokenService = { requests: 0, scopes: [], queries: [], authorizations: [] };
      const issued = new Map<string, string>();
      reset((req, res) => {
        const url = new URL(req.url ?? '/', server.url);
        if (url.pathname === '/token') {
          service.requests++;
          service.queries.push(url.searchParams);
          service.authorizations.push(req.headers.authorization);
          const scope = url.searchParams.getAll('scope').join(' ');
          service.scopes.push(scope);
          const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
          const anonymousOk = options.anonymousPull === true && !scope.includes('push');
          if (
            req.headers.authorization !== basic &&
            !(req.headers.authorization === undefined && anonymousOk)
          ) {
            reply(res, 401, '{"details":"incorrect username or password"}');
            return;
          }
          const token = `tok-${service.requests}`;
          issued.set(token, scope);
          const answer: Record<string, unknown> = { [options.field ?? 'token']: token };
          if (options.expiresIn !== undefined) answer['expires_in'] = options.expiresIn;
          reply(res, 200, JSON.stringify(answer), { 'Content-Type': 'application/json' });
          return;
        }
        const needed =
          req.method === 'POST' || url.pathname.endsWith('.key') ? 'push,pull' : 'pull';
        const auth = req.headers.authorization ?? '';
        const scope = issued.get(auth.replace(/^Bearer /, ''));
        if (
          options.refuseTokens !== true &&
          scope !== undefined &&
          scope.includes(`repository:${GUN}:${needed}`)
        ) {
          reply(res, 200, req.method === 'POST' ? '' : 'metadata');
          return;
        }
        const challengeScope =
          req.method === 'POST' ? (options.postChallengeScope ?? 'push,pull') : needed;
        reply(res, 401, '{"errors":[{"code":"UNAUTHORIZED"}]}', {
          'Www-Authenticate': `Bearer realm="${server.url}/token",service="notary-test",scope="repository:${GUN}:${challengeScope}"`,
        });
      });
      return service;
    };

    void it('answers a Bearer challenge with a token and retries once', async () => {
      const tokens = tokenMode();
      const c = client({ credentials: staticCredentials('alice', 's3cret') });
      assert.equal(
        Buffer.from(await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 })).toString(),
        'metadata',
      );
      assert.deepEqual(
        server.seen.map(
          (s) => `${s.method} ${s.url.split('?')[0] ?? ''} ${s.headers.authorization ?? '-'}`,
        ),
        [
          `GET ${TUF}/root.json -`,
          `GET /token Basic ${Buffer.from('alice:s3cret').toString('base64')}`,
          `GET ${TUF}/root.json Bearer tok-1`,
        ],
      );
      const query = tokens.queries[0];
      assert.ok(query !== undefined);
      assert.deepEqual(
        [...query.entries()],
        [
          ['service', 'notary-test'],
          ['scope', `repository:${GUN}:pull`],
          ['account', 'alice'],
        ],
      );
    });

    void it('caches the token across requests for the same scope', async () => {
      const tokens = tokenMode({ expiresIn: 300 });
      const c = client({ credentials: staticCredentials('alice', 's3cret') });
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      await c.fetchMetadata(GUN, { role: 'timestamp', maxBytes: 100 });
      await c.fetchMetadata(GUN, { role: 'snapshot', sha256Hex: HEX, maxBytes: 100 });
      assert.equal(tokens.requests, 1);
      // Only the very first request went out without a token.
      assert.equal(server.seen.filter((s) => s.headers.authorization === undefined).length, 1);
    });

    void it('fetches a new token once the cached one expires (injected clock)', async () => {
      const tokens = tokenMode({ expiresIn: 120 });
      let now = 1_000_000;
      const c = client({ credentials: staticCredentials('alice', 's3cret'), now: () => now });
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      now += 100_000;
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.equal(tokens.requests, 1);
      now += 20_000; // 120 s after issue: past expiry (less the safety margin)
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.equal(tokens.requests, 2);
    });

    void it('treats a token without expires_in as valid for 60 s', async () => {
      const tokens = tokenMode();
      let now = 0;
      const c = client({ credentials: staticCredentials('alice', 's3cret'), now: () => now });
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      now = 50_000;
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.equal(tokens.requests, 1);
      now = 56_000;
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.equal(tokens.requests, 2);
    });

    void it('asks for push,pull when publishing, even if the challenge names pull only', async () => {
      const tokens = tokenMode({ postChallengeScope: 'pull' });
      const c = client({ credentials: staticCredentials('alice', 's3cret') });
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      await c.publish(GUN, [{ role: 'targets', bytes: new Uint8Array([1]) }]);
      await c.fetchServerKey(GUN, 'timestamp').catch(() => undefined); // body is not a key; scope is what matters
      assert.deepEqual(tokens.scopes, [`repository:${GUN}:pull`, `repository:${GUN}:push,pull`]);
    });

    void it('accepts access_token in place of token', async () => {
      const tokens = tokenMode({ field: 'access_token' });
      const c = client({ credentials: staticCredentials('alice', 's3cret') });
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.equal(tokens.requests, 1);
    });

    void it('asks the token service anonymously without credentials', async () => {
      const tokens = tokenMode({ anonymousPull: true });
      await client().fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.deepEqual(tokens.authorizations, [undefined]);
      assert.equal(tokens.queries[0]?.has('account'), false);
    });

    void it('fails AUTH_FAILED on a wrong password, without leaking it', async () => {
      tokenMode();
      const c = client({ credentials: staticCredentials('alice', 'WRONG-pw') });
      await assert.rejects(c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 }), (e: unknown) => {
        assert.ok(isTrustError(e, 'AUTH_FAILED'));
        assert.deepEqual(
          { ...e.facts },
          {
            url: `${server.url}/token?service=notary-test&scope=repository%3A127.0.0.1%3A5000%2Fdemo%2Fapp%3Apull`,
            status: 401,
            problem: 'the token service rejected the credentials',
          },
        );
        const text = `${e.message} ${JSON.stringify(e.facts)} ${String(e.stack)}`;
        assert.doesNotMatch(text, /WRONG-pw|alice/);
        assert.doesNotMatch(text, new RegExp(Buffer.from('alice:WRONG-pw').toString('base64')));
        return true;
      });
    });

    void it('fails AUTH_FAILED on anonymous access the token service refuses', async () => {
      tokenMode();
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 100 }),
        (e: unknown) => {
          assert.ok(isTrustError(e, 'AUTH_FAILED'));
          assert.equal(e.facts.status, 401);
          assert.equal(e.facts.problem, 'the token service refused anonymous access');
          return true;
        },
      );
    });

    /** The notary side challenges every request; the token service answers `status` with `body`. */
    const tokenServiceAnswers = (status: number, body: string): void => {
      reset((req, res) => {
        if (req.url?.startsWith('/token') === true) {
          reply(res, status, body, { 'Content-Type': 'application/json' });
          return;
        }
        reply(res, 401, '', {
          'Www-Authenticate': `Bearer realm="${server.url}/token",service="s",scope="repository:${GUN}:pull"`,
        });
      });
    };
    const tokenUrl = (): string =>
      `${server.url}/token?service=s&scope=repository%3A127.0.0.1%3A5000%2Fdemo%2Fapp%3Apull`;

    for (const status of [500, 502, 503, 429]) {
      void it(`reports a token service answering ${status} as HTTP_STATUS, as a metadata GET would be, not AUTH_FAILED`, async () => {
        tokenServiceAnswers(status, '{"errors":[{"code":"UNAVAILABLE"}]}');
        const c = client({ credentials: staticCredentials('alice', 's3cret') });
        await assert.rejects(
          c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 }),
          (e: unknown) => {
            assert.ok(isTrustError(e, 'HTTP_STATUS'), `expected HTTP_STATUS, got ${String(e)}`);
            // The account name Docker's token client adds to the query stays out of the error.
            assert.deepEqual(
              { ...e.facts },
              { url: tokenUrl(), status, serverCode: 'UNAVAILABLE' },
            );
            assert.doesNotMatch(`${e.message} ${JSON.stringify(e.facts)}`, /alice|s3cret/);
            return true;
          },
        );
        // Challenge and token request; no retry with a token that was never issued.
        assert.equal(server.seen.length, 2);
      });
    }

    void it('still reports a token service answering 403 as AUTH_FAILED', async () => {
      tokenServiceAnswers(403, '{"details":"access denied"}');
      const c = client({ credentials: staticCredentials('alice', 's3cret') });
      await assert.rejects(
        c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 }),
        expectTrustError('AUTH_FAILED', {
          url: tokenUrl(),
          status: 403,
          problem: 'the token service rejected the credentials',
        }),
      );
    });

    void it('fails AUTH_FAILED when the server refuses the token it was given, without leaking it', async () => {
      tokenMode({ refuseTokens: true });
      const c = client({ credentials: staticCredentials('alice', 's3cret') });
      await assert.rejects(c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 }), (e: unknown) => {
        assert.ok(isTrustError(e, 'AUTH_FAILED'));
        assert.deepEqual(
          { ...e.facts },
          {
            url: `${server.url}${TUF}/root.json`,
            status: 401,
            problem: `the server refused the token issued for repository:${GUN}:pull`,
          },
        );
        assert.doesNotMatch(`${e.message} ${JSON.stringify(e.facts)}`, /tok-1|s3cret/);
        return true;
      });
      // Exactly one retry: challenge, token, retry.
      assert.equal(server.seen.length, 3);
    });

    void it('fails AUTH_FAILED on a token answer without a token', async () => {
      reset((req, res) => {
        if (req.url?.startsWith('/token') === true) {
          reply(res, 200, '{"expires_in":60}');
          return;
        }
        reply(res, 401, '', {
          'Www-Authenticate': `Bearer realm="${server.url}/token",service="s"`,
        });
      });
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 100 }),
        expectTrustError('AUTH_FAILED', {
          url: `${server.url}/token?service=s&scope=repository%3A127.0.0.1%3A5000%2Fdemo%2Fapp%3Apull`,
          status: 200,
          problem: 'the token service answer has no token',
        }),
      );
    });

    void it('fails AUTH_FAILED, asking nothing, when an https server names a plain http realm', async () => {
      reset((_req, res) => {
        reply(res, 401, '', {
          'Www-Authenticate': `Bearer realm="${server.url.replace('https:', 'http:')}/token",service="s"`,
        });
      });
      const c = client({ credentials: staticCredentials('alice', 's3cret') });
      await assert.rejects(
        c.fetchMetadata(GUN, { role: 'root', maxBytes: 100 }),
        expectTrustError('AUTH_FAILED', {
          url: `${server.url.replace('https:', 'http:')}/token`,
          status: 401,
          problem:
            'the Bearer challenge sends an https notary server to a plain http token service',
        }),
      );
      // Only the challenge: no request went to the http realm.
      assert.equal(server.seen.length, 1);
    });

    void it('asks credentials for the GUN registry first, then the notary host', async () => {
      tokenMode();
      const asked: string[] = [];
      const source: CredentialSource = {
        credentialsFor: (host) => {
          asked.push(host);
          return Promise.resolve(
            host === '127.0.0.1:5000' ? { username: 'alice', password: 's3cret' } : undefined,
          );
        },
      };
      await client({ credentials: source }).fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.deepEqual(asked, ['127.0.0.1:5000']);

      asked.length = 0;
      const fallback: CredentialSource = {
        credentialsFor: (host) => {
          asked.push(host);
          return Promise.resolve(
            host === new URL(server.url).host
              ? { username: 'alice', password: 's3cret' }
              : undefined,
          );
        },
      };
      await client({ credentials: fallback }).fetchMetadata(GUN, { role: 'root', maxBytes: 100 });
      assert.deepEqual(asked, ['127.0.0.1:5000', new URL(server.url).host]);
    });

    void it('keeps at most MAX_CACHED_TOKENS tokens, and none longer than MAX_CACHED_TOKEN_LENGTH', async () => {
      // One scope per GUN, as the verifier's pods may name any number of repositories.
      const requested = new Map<string, number>();
      let tokenLength = 8;
      reset((req, res) => {
        const url = new URL(req.url ?? '/', server.url);
        if (url.pathname === '/token') {
          const scope = url.searchParams.get('scope') ?? '';
          requested.set(scope, (requested.get(scope) ?? 0) + 1);
          const token = `${scope}#`.padEnd(tokenLength, 'x');
          reply(res, 200, JSON.stringify({ token, expires_in: 3600 }));
          return;
        }
        const gun = url.pathname.slice('/v2/'.length, url.pathname.indexOf('/_trust/'));
        const scope = `repository:${gun}:pull`;
        if ((req.headers.authorization ?? '').startsWith(`Bearer ${scope}#`)) {
          reply(res, 200, 'metadata');
          return;
        }
        reply(res, 401, '{"errors":[{"code":"UNAUTHORIZED"}]}', {
          'Www-Authenticate': `Bearer realm="${server.url}/token",service="s",scope="${scope}"`,
        });
      });
      const c = client();
      const gun = (i: number): string => `127.0.0.1:5000/many/repo-${i}`;
      const read = (i: number): Promise<Uint8Array> =>
        c.fetchMetadata(gun(i), { role: 'root', maxBytes: 100 });
      for (let i = 0; i <= MAX_CACHED_TOKENS; i++) await read(i);
      await read(MAX_CACHED_TOKENS); // still cached
      await read(0); // the oldest was dropped when the 33rd arrived
      assert.equal(requested.get(`repository:${gun(MAX_CACHED_TOKENS)}:pull`), 1);
      assert.equal(requested.get(`repository:${gun(0)}:pull`), 2);
      assert.equal(requested.size, MAX_CACHED_TOKENS + 1);

      tokenLength = MAX_CACHED_TOKEN_LENGTH + 1;
      const big = MAX_CACHED_TOKENS + 1;
      await read(big);
      await read(big);
      assert.equal(requested.get(`repository:${gun(big)}:pull`), 2, 'a huge token is not kept');
    });
    /**
     * The notary side challenges every request without a token and answers `metadata` to one; the
     * token service holds each request open until `release` is called, and records when the client
     * closes the connection.
     */
    const stalledTokenService = (): {
      readonly requests: number;
      readonly closed: number;
      release(): void;
    } => {
      const held: ServerResponse[] = [];
      const state = { requests: 0, closed: 0 };
      reset((req, res) => {
        if (req.url?.startsWith('/token') === true) {
          state.requests++;
          held.push(res);
          res.on('close', () => {
            if (!res.writableFinished) state.closed++;
          });
          return;
        }
        if (req.headers.authorization === 'Bearer late') {
          reply(res, 200, 'metadata');
          return;
        }
        reply(res, 401, '', {
          'Www-Authenticate': `Bearer realm="${server.url}/token",service="s",scope="repository:${GUN}:pull"`,
        });
      });
      return {
        get requests() {
          return state.requests;
        },
        get closed() {
          return state.closed;
        },
        release: () => {
          for (const res of held.splice(0)) {
            if (!res.destroyed) reply(res, 200, JSON.stringify({ token: 'late' }));
          }
        },
      };
    };

    const until = async (done: () => boolean): Promise<void> => {
      for (let i = 0; i < 250 && !done(); i++) await new Promise((r) => setTimeout(r, 20));
    };

    void it('stops the token request when the caller aborts, with the abort reason', async () => {
      const tokens = stalledTokenService();
      const controller = new AbortController();
      const deadline = new TrustError(
        'HTTP_UNREACHABLE',
        { url: 'caller', problem: 'the caller gave up' },
        'the caller gave up',
      );
      const c = client({ timeoutMs: 5_000 });
      const read = c.fetchMetadata(GUN, { role: 'root', maxBytes: 100, signal: controller.signal });
      await until(() => tokens.requests === 1);
      assert.equal(tokens.requests, 1, 'the token request went out');
      const started = Date.now();
      controller.abort(deadline);
      await assert.rejects(read, (e: unknown) => e === deadline);
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 1_000, `rejected ${elapsed} ms after the abort`);
      await until(() => tokens.closed === 1);
      assert.equal(tokens.closed, 1, 'the token service saw the connection go');
      assert.equal(tokens.requests, 1, 'no second token request (stale-socket retry)');
      tokens.release();
    });

    void it('keeps a token request another caller still waits for when one caller aborts', async () => {
      const tokens = stalledTokenService();
      const controller = new AbortController();
      const c = client({ timeoutMs: 5_000 });
      const aborted = c.fetchMetadata(GUN, {
        role: 'root',
        maxBytes: 100,
        signal: controller.signal,
      });
      const waiting = c.fetchMetadata(GUN, { role: 'timestamp', maxBytes: 100 });
      await until(() => tokens.requests === 1 && server.seen.length >= 3);
      controller.abort();
      await assert.rejects(
        aborted,
        expectTrustError('HTTP_UNREACHABLE', {
          url: `${server.url}${TUF}/root.json`,
          problem: 'the request was aborted',
        }),
      );
      tokens.release();
      assert.equal(Buffer.from(await waiting).toString(), 'metadata');
      assert.equal(tokens.requests, 1, 'one token request served both callers');
      assert.equal(tokens.closed, 0);
    });
  });

  void describe('basic auth', () => {
    const basicMode = (): { challenges: number } => {
      const counts = { challenges: 0 };
      reset((req, res) => {
        if (
          req.headers.authorization ===
          `Basic ${Buffer.from('bob:pw:with:colon').toString('base64')}`
        ) {
          reply(res, 200, 'ok');
          return;
        }
        counts.challenges++;
        reply(res, 401, '', { 'Www-Authenticate': 'Basic realm="notary"' });
      });
      return counts;
    };

    void it('answers a Basic challenge and then sends Basic up front', async () => {
      const counts = basicMode();
      const c = client({ credentials: staticCredentials('bob', 'pw:with:colon') });
      await c.fetchMetadata(GUN, { role: 'root', maxBytes: 10 });
      await c.fetchMetadata(GUN, { role: 'timestamp', maxBytes: 10 });
      assert.equal(counts.challenges, 1);
      assert.equal(server.seen.length, 3);
    });

    void it('fails AUTH_FAILED without credentials or with wrong ones', async () => {
      basicMode();
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 10 }),
        expectTrustError('AUTH_FAILED', {
          url: `${server.url}${TUF}/root.json`,
          status: 401,
          problem: 'the server requires Basic credentials and none are configured',
        }),
      );
      await assert.rejects(
        client({ credentials: staticCredentials('bob', 'nope') }).fetchMetadata(GUN, {
          role: 'root',
          maxBytes: 10,
        }),
        expectTrustError('AUTH_FAILED', {
          url: `${server.url}${TUF}/root.json`,
          status: 401,
          problem: 'the server refused the Basic credentials',
        }),
      );
    });

    void it('fails AUTH_FAILED on a 401 without a usable challenge', async () => {
      reset((_req, res) => reply(res, 401, '', { 'Www-Authenticate': 'Negotiate' }));
      await assert.rejects(
        client().fetchMetadata(GUN, { role: 'root', maxBytes: 10 }),
        expectTrustError('AUTH_FAILED', {
          url: `${server.url}${TUF}/root.json`,
          status: 401,
          problem: 'the server demands authentication but offers no Bearer or Basic challenge',
        }),
      );
    });
  });
});

/** Splits a multipart body strictly: every delimiter, header block and CRLF where RFC 7578 puts it. */
function parseMultipart(body: Buffer, boundary: string): { headers: string[]; content: Buffer }[] {
  const open = Buffer.from(`--${boundary}\r\n`);
  assert.deepEqual(body.subarray(0, open.length), open, 'body starts with the first delimiter');
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const parts: { headers: string[]; content: Buffer }[] = [];
  let position = open.length;
  for (;;) {
    const end = body.indexOf(delimiter, position);
    assert.ok(end !== -1, 'every part is closed by a delimiter');
    const part = body.subarray(position, end);
    const headerEnd = part.indexOf('\r\n\r\n');
    assert.ok(headerEnd !== -1, 'every part has a header block');
    parts.push({
      headers: part.subarray(0, headerEnd).toString('utf8').split('\r\n'),
      content: Buffer.from(part.subarray(headerEnd + 4)),
    });
    const tail = body.subarray(end + delimiter.length).toString('latin1');
    if (tail.startsWith('--')) {
      assert.equal(tail, '--\r\n', 'the close delimiter ends the body');
      return parts;
    }
    assert.ok(tail.startsWith('\r\n'));
    position = end + delimiter.length + 2;
  }
}
