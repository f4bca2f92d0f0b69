import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import type { RequestListener } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { connect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VerifierConfig } from '../src/config/types.js';
import { loadConfig } from '../src/config/index.js';
import { createApp } from '../src/http/app.js';
import { createJsonLogger, type Logger } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import {
  listenHttps,
  serve,
  type HttpsListener,
  type HttpsListenOptions,
  type ReconfigurableReviewer,
} from '../src/server.js';
import type { ImageReviewStatus } from '../src/review.js';
import { eventually, httpsCall } from './support/https-client.js';
import { StubReviewer, reviewBody } from './support/stub-reviewer.js';
import { createAuthority, type Pem, type TestAuthority } from './support/tls.js';

interface LogCapture {
  readonly logger: Logger;
  readonly lines: Record<string, unknown>[];
  events(name: string): Record<string, unknown>[];
}

function captureLogs(): LogCapture {
  const lines: Record<string, unknown>[] = [];
  return {
    lines,
    logger: createJsonLogger({
      level: 'debug',
      write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
    }),
    events: (name) => lines.filter((line) => line['event'] === name),
  };
}

const ok: RequestListener = (_req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end('{"status":"ok"}');
};

let ca: TestAuthority;
let otherCa: TestAuthority;
let first: Pem;
let second: Pem;
let client: Pem;
let strangerClient: Pem;
let expiredLeaf: Pem;
let dir: string;

before(async () => {
  [ca, otherCa] = await Promise.all([createAuthority('verifier CA'), createAuthority('other CA')]);
  [first, second, client, strangerClient, expiredLeaf] = await Promise.all([
    ca.issue('first', 'server'),
    ca.issue('second', 'server'),
    ca.issue('kube-apiserver', 'client'),
    otherCa.issue('kube-apiserver', 'client'),
    ca.issue('expired', 'server', { notAfter: new Date(Date.now() - 60_000) }),
  ]);
  dir = await mkdtemp(join(tmpdir(), 'verifier-server-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function tlsDir(name: string, pem: Pem, clientCa?: string) {
  const at = join(dir, name);
  await mkdir(at, { recursive: true });
  await writeFile(join(at, 'tls.crt'), pem.cert);
  await writeFile(join(at, 'tls.key'), pem.key);
  if (clientCa !== undefined) await writeFile(join(at, 'client-ca.crt'), clientCa);
  return {
    dir: at,
    tls: {
      cert: join(at, 'tls.crt'),
      key: join(at, 'tls.key'),
      ...(clientCa !== undefined ? { clientCA: join(at, 'client-ca.crt') } : {}),
    },
  };
}

/** listenHttps on an OS-chosen loopback port; TLS file watching is off unless `watch` is given. */
function listenLoopback(
  options: Omit<HttpsListenOptions, 'port' | 'host'>,
): Promise<HttpsListener> {
  return listenHttps({ port: 0, host: '127.0.0.1', watch: false, ...options });
}

describe('listenHttps', () => {
  it('serves HTTPS with the configured certificate', async () => {
    const { tls } = await tlsDir('plain', first);
    const { logger } = captureLogs();
    const listener = await listenLoopback({ handler: ok, tls, logger });
    try {
      const reply = await httpsCall({ port: listener.port, ca: ca.cert });
      assert.equal(reply.status, 200);
      assert.equal(reply.serverCN, 'first');
    } finally {
      await listener.close();
    }
  });

  it('rejects a certificate that does not match its key at startup', async () => {
    const { tls } = await tlsDir('mismatch', { cert: first.cert, key: second.key });
    const { logger } = captureLogs();
    await assert.rejects(
      listenLoopback({ handler: ok, tls, logger }),
      /listen\.tls\.key .*tls\.key is not the private key of the certificate/,
    );
  });

  it('refuses at startup a client CA file that trusts no one, and an expired certificate', async () => {
    const { logger } = captureLogs();
    const noCa = await tlsDir('no-client-ca', first, 'not a certificate\n');
    await assert.rejects(
      listenLoopback({ handler: ok, tls: noCa.tls, logger }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'TLS_FILES_INVALID');
        assert.match(
          error.message,
          /listen\.tls\.clientCA .*client-ca\.crt holds no PEM certificate/,
        );
        return true;
      },
    );
    // A garbled block: Node's TLS would skip it (and everything after it) without a word.
    const garbled = await tlsDir(
      'garbled-client-ca',
      first,
      `-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n${ca.cert}`,
    );
    await assert.rejects(
      listenLoopback({ handler: ok, tls: garbled.tls, logger }),
      /holds a PEM certificate that does not parse/,
    );
    const expired = await tlsDir('expired', expiredLeaf);
    await assert.rejects(
      listenLoopback({ handler: ok, tls: expired.tls, logger }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'TLS_FILES_INVALID');
        assert.match(error.message, /listen\.tls\.cert .*tls\.crt expired on /);
        return true;
      },
    );
  });

  describe('with clientCA (mTLS from the apiserver)', () => {
    let listener: HttpsListener;
    let served = 0;
    before(async () => {
      const { tls } = await tlsDir('mtls', first, ca.cert);
      const handler: RequestListener = (req, res) => {
        served += 1;
        ok(req, res);
      };
      listener = await listenLoopback({ handler, tls, logger: captureLogs().logger });
    });
    after(() => listener.close());

    it('fails the handshake of a client without a certificate', async () => {
      const before = served;
      await assert.rejects(
        httpsCall({ port: listener.port, ca: ca.cert }),
        (error: NodeJS.ErrnoException) => {
          assert.match(
            String(error.code),
            /ECONNRESET|ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ERR_SSL/,
          );
          return true;
        },
      );
      assert.equal(served, before, 'no request reaches the app');
    });

    it('fails the handshake of a client certificate from another CA', async () => {
      const before = served;
      await assert.rejects(
        httpsCall({ port: listener.port, ca: ca.cert, ...strangerClient }),
        (error: NodeJS.ErrnoException) => {
          assert.match(String(error.code), /ECONNRESET|ERR_SSL/);
          return true;
        },
      );
      assert.equal(served, before);
    });

    it('serves a client certificate issued by clientCA', async () => {
      const reply = await httpsCall({ port: listener.port, ca: ca.cert, ...client });
      assert.equal(reply.status, 200);
    });
  });
});

describe('TLS certificate hot reload', () => {
  it('keeps the old pair while the rotation is half-written, then switches without a restart', async () => {
    const { tls } = await tlsDir('manual', first, ca.cert);
    const logs = captureLogs();
    const listener = await listenLoopback({ handler: ok, tls, logger: logs.logger });
    try {
      await writeFile(tls.cert, second.cert);
      assert.equal(await listener.reloadTls(), 'failed');
      assert.equal(logs.events('tls.reload-failed').length, 1);
      const during = await httpsCall({ port: listener.port, ca: ca.cert, ...client });
      assert.equal(during.serverCN, 'first', 'a mismatched pair is never installed');

      await writeFile(tls.key, second.key);
      assert.equal(await listener.reloadTls(), 'reloaded');
      assert.equal(await listener.reloadTls(), 'unchanged');
      const afterRotation = await httpsCall({ port: listener.port, ca: ca.cert, ...client });
      assert.equal(afterRotation.serverCN, 'second');
      // setSecureContext must not silently drop client-certificate enforcement.
      await assert.rejects(httpsCall({ port: listener.port, ca: ca.cert }));
    } finally {
      await listener.close();
    }
  });

  it('keeps the old context when the new client CA trusts no one or the new pair has expired', async () => {
    const { tls } = await tlsDir('unusable-rotation', first, ca.cert);
    const logs = captureLogs();
    const listener = await listenLoopback({ handler: ok, tls, logger: logs.logger });
    try {
      assert.ok(tls.clientCA !== undefined);
      await writeFile(tls.clientCA, 'not a certificate\n');
      assert.equal(await listener.reloadTls(), 'failed');
      const failures = logs.events('tls.reload-failed');
      assert.equal(failures.length, 1);
      assert.match(
        String((failures[0]?.['error'] as { message?: string }).message),
        /holds no PEM certificate/,
      );
      // The apiserver's client certificate still gets through: the old CA is still trusted.
      const kept = await httpsCall({ port: listener.port, ca: ca.cert, ...client });
      assert.equal(kept.status, 200);

      await writeFile(tls.clientCA, ca.cert);
      await writeFile(tls.cert, expiredLeaf.cert);
      await writeFile(tls.key, expiredLeaf.key);
      assert.equal(await listener.reloadTls(), 'failed');
      assert.match(
        String((logs.events('tls.reload-failed')[1]?.['error'] as { message?: string }).message),
        /expired on /,
      );
      const still = await httpsCall({ port: listener.port, ca: ca.cert, ...client });
      assert.equal(still.serverCN, 'first', 'an expired certificate is never installed');
      assert.equal(logs.events('tls.reloaded').length, 0);
    } finally {
      await listener.close();
    }
  });

  it('notices files replaced in place', async () => {
    const { tls } = await tlsDir('in-place', first);
    const logs = captureLogs();
    const listener = await listenLoopback({
      handler: ok,
      tls,
      logger: logs.logger,
      watch: { debounceMs: 50, pollMs: 0 },
    });
    try {
      await writeFile(tls.cert, second.cert);
      await writeFile(tls.key, second.key);
      await eventually(
        async () => (await httpsCall({ port: listener.port, ca: ca.cert })).serverCN === 'second',
        5000,
        'the rotated certificate',
      );
      assert.ok(logs.events('tls.reloaded').length >= 1);
    } finally {
      await listener.close();
    }
  });

  it('notices a Kubernetes Secret volume update (the ..data symlink swap)', async () => {
    const root = join(dir, 'secret-volume');
    await mkdir(join(root, '..v1'), { recursive: true });
    await mkdir(join(root, '..v2'), { recursive: true });
    await writeFile(join(root, '..v1', 'tls.crt'), first.cert);
    await writeFile(join(root, '..v1', 'tls.key'), first.key);
    await writeFile(join(root, '..v2', 'tls.crt'), second.cert);
    await writeFile(join(root, '..v2', 'tls.key'), second.key);
    await symlink('..v1', join(root, '..data'));
    await symlink('..data/tls.crt', join(root, 'tls.crt'));
    await symlink('..data/tls.key', join(root, 'tls.key'));
    const listener = await listenLoopback({
      handler: ok,
      tls: { cert: join(root, 'tls.crt'), key: join(root, 'tls.key') },
      logger: captureLogs().logger,
      watch: { debounceMs: 50, pollMs: 0 },
    });
    try {
      assert.equal((await httpsCall({ port: listener.port, ca: ca.cert })).serverCN, 'first');
      // What the kubelet's atomic writer does: a new ..data symlink renamed over the old one.
      await symlink('..v2', join(root, '..data_tmp'));
      await rename(join(root, '..data_tmp'), join(root, '..data'));
      await eventually(
        async () => (await httpsCall({ port: listener.port, ca: ca.cert })).serverCN === 'second',
        5000,
        'the swapped certificate',
      );
    } finally {
      await listener.close();
    }
  });
});

/** A TLS connection to the listener that has finished its handshake. */
function openTls(port: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost' });
    socket.once('secureConnect', () => {
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Sends only the headers of a POST declaring `length` body bytes; resolves with the answer. */
function headersOnly(
  port: number,
  length: number,
): Promise<{ status: number; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/image-policy',
      ca: ca.cert,
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': String(length) },
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, connection: res.headers.connection });
      req.destroy();
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

/** The value of one sample line of the metrics exposition, 0 when absent. */
async function sample(metrics: VerifierMetrics, line: string): Promise<number> {
  const { body } = await metrics.exposition();
  const found = body.split('\n').find((text) => text.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.slice(line.length + 1));
}

describe('load limits', () => {
  const review = JSON.stringify(reviewBody(['registry.test/allowed/app:1']));

  it('answers 503 with Connection: close past the body budget, and still serves a small review', async () => {
    const { tls } = await tlsDir('budget', first);
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const logs = captureLogs();
    const app = createApp({
      reviewer: new StubReviewer(),
      metrics,
      logger: logs.logger,
      bodyBudgetBytes: 64 * 1024,
    });
    const listener = await listenLoopback({ handler: app, tls, logger: logs.logger, metrics });
    const holder = await openTls(listener.port);
    try {
      // A review declaring 48 KiB that sends one: the budget holds 48 KiB for it.
      const reserved = new Promise((resolve) => listener.server.once('request', resolve));
      holder.write(
        'POST /image-policy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${48 * 1024}\r\n\r\n${' '.repeat(1024)}`,
      );
      await reserved;

      const refused = await headersOnly(listener.port, 32 * 1024);
      assert.equal(refused.status, 503);
      assert.equal(refused.connection, 'close');
      assert.equal(
        await sample(metrics, 'kpack_trust_verifier_overload_refusals_total{limit="body_bytes"}'),
        1,
      );
      assert.equal(logs.events('server.overloaded').length, 1);

      const small = await httpsCall({
        port: listener.port,
        ca: ca.cert,
        path: '/image-policy',
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: review,
      });
      assert.equal(small.status, 200, 'a small review still fits beside the held bytes');

      // The held bytes come back when the holder's request ends, however it ends.
      holder.destroy();
      const padded = review + ' '.repeat(32 * 1024);
      await eventually(
        async () => {
          const reply = await httpsCall({
            port: listener.port,
            ca: ca.cert,
            path: '/image-policy',
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: padded,
          });
          return reply.status === 200;
        },
        5000,
        'the budget to be given back',
      );
    } finally {
      holder.destroy();
      await listener.close();
    }
  });

  it('answers 503 to a chunked body that grows past the budget', async () => {
    const { tls } = await tlsDir('budget-chunked', first);
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const { logger } = captureLogs();
    const app = createApp({ reviewer: new StubReviewer(), metrics, logger, bodyBudgetBytes: 8192 });
    const listener = await listenLoopback({ handler: app, tls, logger });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: listener.port,
            method: 'POST',
            path: '/image-policy',
            ca: ca.cert,
            agent: false,
            headers: { 'Content-Type': 'application/json' },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
            req.destroy();
          },
        );
        req.on('error', reject);
        // Under the 4 MiB body limit, over the 8 KiB budget; the answer comes before the end.
        for (let i = 0; i < 4; i += 1) req.write(' '.repeat(4096));
      });
      assert.equal(status, 503);
      assert.equal(
        await sample(metrics, 'kpack_trust_verifier_overload_refusals_total{limit="body_bytes"}'),
        1,
      );
    } finally {
      await listener.close();
    }
  });

  it('answers 503 to a POST past maxRequests while GETs are still served', async () => {
    const { tls } = await tlsDir('max-requests', first);
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const { logger } = captureLogs();
    const held: (() => void)[] = [];
    const handler: RequestListener = (req, res) => {
      if (req.method === 'POST')
        held.push(() => {
          ok(req, res);
        });
      else ok(req, res);
    };
    const listener = await listenLoopback({
      handler,
      tls,
      logger,
      metrics,
      limits: { maxRequests: 1 },
    });
    try {
      const post = () =>
        httpsCall({
          port: listener.port,
          ca: ca.cert,
          method: 'POST',
          path: '/image-policy',
          body: '{}',
        });
      const inFlight = post();
      await eventually(() => held.length === 1, 5000, 'the first POST to be in flight');
      const second = await post();
      assert.equal(second.status, 503);
      assert.equal(second.headers['connection'], 'close');
      assert.equal(held.length, 1, 'the refused POST never reached the handler');
      const probe = await httpsCall({ port: listener.port, ca: ca.cert });
      assert.equal(probe.status, 200, 'a probe is never refused');
      held[0]?.();
      assert.equal((await inFlight).status, 200);
      // Its slot is free again once it has answered.
      const third = post();
      await eventually(() => held.length === 2, 5000, 'the third POST to reach the handler');
      held[1]?.();
      assert.equal((await third).status, 200);
      assert.equal(
        await sample(metrics, 'kpack_trust_verifier_overload_refusals_total{limit="requests"}'),
        1,
      );
    } finally {
      await listener.close();
    }
  });

  it('enforces headersTimeout within about a second, not after Node’s 30 s check interval', async () => {
    const { tls } = await tlsDir('headers-timeout', first);
    const { logger } = captureLogs();
    const listener = await listenLoopback({
      handler: ok,
      tls,
      logger,
      timeouts: { headersTimeoutMs: 500, requestTimeoutMs: 1000 },
    });
    const socket = await openTls(listener.port);
    try {
      const started = Date.now();
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (answer += chunk));
      const closed = new Promise<void>((resolve) =>
        socket.once('close', () => {
          resolve();
        }),
      );
      socket.write('POST /image-policy HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      await closed;
      const elapsed = Date.now() - started;
      assert.match(answer, /^HTTP\/1\.1 408 /);
      assert.ok(elapsed < 3000, `closed after ${elapsed} ms`);
    } finally {
      socket.destroy();
      await listener.close();
    }
  });

  it('closes connections past maxConnections as they are accepted, and counts them', async () => {
    const { tls } = await tlsDir('max-connections', first);
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const { logger } = captureLogs();
    const listener = await listenLoopback({
      handler: ok,
      tls,
      logger,
      metrics,
      limits: { maxConnections: 2 },
    });
    const open = [await openTls(listener.port), await openTls(listener.port)];
    try {
      await assert.rejects(openTls(listener.port), (error: NodeJS.ErrnoException) => {
        assert.match(String(error.code), /ECONNRESET|EPIPE/);
        return true;
      });
      assert.equal(
        await sample(metrics, 'kpack_trust_verifier_overload_refusals_total{limit="connections"}'),
        1,
      );
      open.pop()?.destroy();
      await eventually(
        async () =>
          (await httpsCall({ port: listener.port, ca: ca.cert }).catch(() => undefined))?.status ===
          200,
        5000,
        'a connection slot to free up',
      );
    } finally {
      for (const socket of open) socket.destroy();
      await listener.close();
    }
  });
});

describe('graceful close', () => {
  it('finishes an in-flight request, closes its connection, and refuses new ones', async () => {
    const { tls } = await tlsDir('close', first);
    let release: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      release = resolve;
    });
    const handler: RequestListener = (req, res) => {
      release();
      setTimeout(() => {
        ok(req, res);
      }, 300);
    };
    const listener = await listenLoopback({ handler, tls, logger: captureLogs().logger });
    const agent = new Agent({ keepAlive: true });
    try {
      const inFlight = httpsCall({ port: listener.port, ca: ca.cert, agent });
      await started;
      const closed = listener.close(5000);
      const reply = await inFlight;
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['connection'], 'close');
      await closed;
      await assert.rejects(httpsCall({ port: listener.port, ca: ca.cert }), {
        code: 'ECONNREFUSED',
      });
    } finally {
      agent.destroy();
    }
  });

  it('closes idle keep-alive connections at once and forces the rest after the grace period', async () => {
    const { tls } = await tlsDir('force', first);
    const handler: RequestListener = (req, res) => {
      if (req.url === '/hang') return; // never answers
      ok(req, res);
    };
    const logs = captureLogs();
    const listener = await listenLoopback({ handler, tls, logger: logs.logger });
    const agent = new Agent({ keepAlive: true });
    try {
      await httpsCall({ port: listener.port, ca: ca.cert, agent }); // leaves an idle connection
      const hanging = httpsCall({ port: listener.port, ca: ca.cert, path: '/hang' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const startedAt = Date.now();
      await listener.close(300);
      const took = Date.now() - startedAt;
      assert.ok(took >= 250 && took < 3000, `close took ${took} ms`);
      await assert.rejects(hanging, { code: 'ECONNRESET' });
      assert.deepEqual(
        logs.events('server.forced-close').map((e) => e['openRequests']),
        [1],
        'the hanging request, not the answered one',
      );
    } finally {
      agent.destroy();
    }
  });
});

/** A stand-in engine that records what serve() does with it. */
class RecordingEngine implements ReconfigurableReviewer {
  readonly configs: VerifierConfig[];
  constructor(config: VerifierConfig) {
    this.configs = [config];
  }
  review(): Promise<ImageReviewStatus> {
    return Promise.resolve({ allowed: true });
  }
  reconfigure(config: VerifierConfig): void {
    this.configs.push(config);
  }
}

describe('serve', () => {
  const configText = (rules: string) =>
    [
      'listen: { port: 8443, host: 127.0.0.1, tls: { cert: tls.crt, key: tls.key } }',
      'rules:',
      rules,
      '',
    ].join('\n');
  const oneRule = '  - { images: "docker.io/library/*", allow: true }';
  const twoRules = `${oneRule}\n  - { images: "registry.test/*", allow: true }`;

  async function start(rules = oneRule) {
    const { dir: at } = await tlsDir(`serve-${Math.random().toString(36).slice(2)}`, first);
    const configPath = join(at, 'verifier.yaml');
    await writeFile(configPath, configText(rules));
    const logs = captureLogs();
    let engine: RecordingEngine | undefined;
    const running = await serve({
      configPath,
      logger: logs.logger,
      port: 0,
      handleSignals: false,
      drainDelayMs: 300,
      watch: { debounceMs: 50, pollMs: 0 },
      engine: {
        loadConfig,
        createEngine: (config) => (engine = new RecordingEngine(config)),
      },
    });
    assert.ok(engine);
    return { running, engine, logs, configPath };
  }

  it('answers reviews over HTTPS with the engine built from the config file', async () => {
    const { running, engine, logs } = await start();
    try {
      assert.equal(engine.configs[0]?.rules.length, 1);
      const reply = await httpsCall({
        port: running.port,
        ca: ca.cert,
        path: '/image-policy',
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(reviewBody(['alpine:3'])),
      });
      assert.equal(reply.status, 200);
      assert.deepEqual(JSON.parse(reply.body), {
        apiVersion: 'imagepolicy.k8s.io/v1alpha1',
        kind: 'ImageReview',
        status: { allowed: true },
      });
      assert.equal(logs.events('server.listening')[0]?.['port'], running.port);
    } finally {
      await running.shutdown('test');
    }
  });

  it('logs a warning for an image pattern that matches nothing, at start and on each reload', async () => {
    const never = '  - { images: "library/*", allow: true }';
    const { running, engine, logs, configPath } = await start(never);
    const warning = (path: string): string =>
      `${path}: rules[0].images "library/*" never matches: it has no registry host, and images ` +
      'are matched by their normalized name, which starts with one ("nginx" is ' +
      'docker.io/library/nginx); write "docker.io/library/*" for Docker Hub, or name the registry';
    try {
      assert.deepEqual(
        logs.events('config.warning').map((e) => [e['level'], e['config'], e['warning']]),
        [['warn', configPath, warning(configPath)]],
      );
      await writeFile(configPath, configText(oneRule));
      await eventually(() => engine.configs.length === 2, 5000, 'the clean config');
      assert.equal(logs.events('config.warning').length, 1, 'a clean config warns about nothing');
      await writeFile(configPath, configText(never));
      await eventually(() => engine.configs.length === 3, 5000, 'the config matching nothing');
      assert.equal(logs.events('config.warning').length, 2);
    } finally {
      await running.shutdown('test');
    }
  });

  it('reloads a changed config, keeps the old one when the new one is invalid', async () => {
    const { running, engine, logs, configPath } = await start();
    try {
      await writeFile(configPath, configText(twoRules));
      await eventually(() => engine.configs.length === 2, 5000, 'the reloaded config');
      assert.equal(engine.configs[1]?.rules.length, 2);
      assert.equal(logs.events('config.reloaded').length, 1);

      await writeFile(configPath, configText('  - { images: "x/*", allow: maybe }'));
      await eventually(
        () => logs.events('config.reload-failed').length === 1,
        5000,
        'the rejected config',
      );
      assert.equal(engine.configs.length, 2, 'an invalid config never reaches the engine');
      const failure = logs.events('config.reload-failed')[0];
      assert.equal((failure?.['error'] as { code?: string }).code, 'CONFIG_INVALID');
      const ready = await httpsCall({ port: running.port, ca: ca.cert, path: '/readyz' });
      assert.equal(ready.status, 200, 'still serving with the previous config');

      const { body } = await running.metrics.exposition();
      assert.match(
        body,
        /^kpack_trust_verifier_reloads_total\{kind="config",result="success"\} 1$/m,
      );
      assert.match(
        body,
        /^kpack_trust_verifier_reloads_total\{kind="config",result="failure"\} 1$/m,
      );
    } finally {
      await running.shutdown('test');
    }
  });

  it('reloads when a notary credentials Secret rotates, the config file unchanged', async () => {
    const { dir: at } = await tlsDir(`serve-creds-${Math.random().toString(36).slice(2)}`, first);
    const configPath = join(at, 'verifier.yaml');
    // As the chart mounts it: the credentials in a volume of their own, swapped by kubelet.
    const credentialsDir = join(at, 'notary-credentials');
    await mkdir(credentialsDir);
    const dockerConfig = (password: string): string =>
      JSON.stringify({ auths: { 'registry.test': { username: 'robot', password } } });
    await writeFile(join(credentialsDir, 'config.json'), dockerConfig('first'));
    await writeFile(
      configPath,
      [
        'listen: { port: 8443, host: 127.0.0.1, tls: { cert: tls.crt, key: tls.key } }',
        'notary:',
        '  - registry: registry.test',
        '    server: https://notary.registry.test',
        '    credentials: notary-credentials/config.json',
        'rules:',
        '  - { images: "registry.test/*", trust: { tofu: true } }',
        '',
      ].join('\n'),
    );
    const logs = captureLogs();
    let engine: RecordingEngine | undefined;
    const running = await serve({
      configPath,
      logger: logs.logger,
      port: 0,
      handleSignals: false,
      watch: { debounceMs: 50, pollMs: 0 },
      engine: { loadConfig, createEngine: (config) => (engine = new RecordingEngine(config)) },
    });
    try {
      assert.ok(engine);
      const recorded = engine;
      const password = async (config: VerifierConfig | undefined): Promise<unknown> =>
        (await config?.notary[0]?.credentials?.credentialsFor('registry.test'))?.password;
      assert.equal(await password(recorded.configs[0]), 'first');
      await writeFile(join(credentialsDir, 'config.json'), dockerConfig('second'));
      await eventually(() => recorded.configs.length === 2, 5000, 'the reload for new credentials');
      assert.equal(await password(recorded.configs[1]), 'second');
      // Again, now that the fingerprint covers the credentials file: each rotation is one reload.
      await writeFile(join(credentialsDir, 'config.json'), dockerConfig('third'));
      await eventually(() => recorded.configs.length === 3, 5000, 'the second rotation');
      assert.equal(await password(recorded.configs[2]), 'third');
      await writeFile(configPath, await readFile(configPath, 'utf8'));
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(recorded.configs.length, 3, 'unchanged files are no reason to reload');
      assert.equal(logs.events('config.reloaded').length, 2);
    } finally {
      await running.shutdown('test');
    }
  });

  it('turns readyz 503 as soon as a shutdown starts, then stops', async () => {
    const { running, logs } = await start();
    assert.equal(
      (await httpsCall({ port: running.port, ca: ca.cert, path: '/readyz' })).status,
      200,
    );
    const stopping = running.shutdown('SIGTERM');
    const during = await httpsCall({ port: running.port, ca: ca.cert, path: '/readyz' });
    assert.equal(during.status, 503);
    assert.deepEqual(JSON.parse(during.body), { status: 'not ready', reason: 'shutting down' });
    await stopping;
    await running.stopped;
    assert.deepEqual(
      logs.lines.map((l) => l['event']).filter((e) => String(e).startsWith('server.')),
      ['server.listening', 'server.shutting-down', 'server.stopped'],
    );
    await assert.rejects(httpsCall({ port: running.port, ca: ca.cert }), { code: 'ECONNREFUSED' });
  });
});
