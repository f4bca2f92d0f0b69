/**
 * Thousands of hostile bodies against a real HTTPS listener on 127.0.0.1: random JSON shapes,
 * mutated reviews, random bytes, truncated valid bodies, and raw garbage on the TLS socket. Every
 * answer must be a well-formed reply from the closed set of statuses, and afterwards the server
 * must still answer a valid review. The seed is printed so a failure can be replayed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createApp } from '../src/http/app.js';
import { createJsonLogger } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import { listenHttps, type HttpsListener } from '../src/server.js';
import { httpsCall } from './support/https-client.js';
import { StubReviewer, reviewBody } from './support/stub-reviewer.js';
import { createAuthority, type TestAuthority } from './support/tls.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31);
const HTTP_CASES = 3000;
const RAW_CASES = 200;
const BUDGET_MS = 60_000;

/** mulberry32: small, seedable, good enough to pick shapes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const random = prng(SEED);
const int = (n: number): number => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;

const STRINGS = [
  '',
  'ImageReview',
  'imagepolicy.k8s.io/v1alpha1',
  'imagepolicy.k8s.io/v1beta1',
  'alpine',
  'registry.test/allowed/app:1',
  'registry.test/allowed/app@sha256:' + 'b'.repeat(64),
  'UPPER:1',
  '::::',
  '@sha256:',
  '\u0000\uffff\ud800',
  '__proto__',
  'constructor',
  'a'.repeat(300),
  'x.image-policy.k8s.io/break-glass',
];

function randomValue(depth: number): unknown {
  const choice = int(depth > 3 ? 6 : 9);
  switch (choice) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return pick([0, -1, 1.5, 1e308, -0, 2 ** 53 + 1]);
    case 3:
    case 4:
    case 5:
      return random() < 0.7
        ? pick(STRINGS)
        : String.fromCharCode(...Array.from({ length: int(20) }, () => int(0x10000)));
    case 6:
    case 7:
      return Array.from({ length: int(5) }, () => randomValue(depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = int(5); i > 0; i -= 1) {
        Object.defineProperty(
          out,
          pick([
            ...STRINGS,
            'spec',
            'containers',
            'image',
            'annotations',
            'namespace',
            'kind',
            'apiVersion',
          ]),
          {
            value: randomValue(depth + 1),
            enumerable: true,
            configurable: true,
            writable: true,
          },
        );
      }
      return out;
    }
  }
}

/** A valid review with one path replaced by a random value. */
function mutatedReview(): unknown {
  const body = reviewBody(
    Array.from({ length: 1 + int(4) }, () => pick(STRINGS.filter((s) => s !== ''))),
    { annotations: { 'x.image-policy.k8s.io/ticket': 'break-glass' }, namespace: pick(STRINGS) },
  ) as Record<string, Record<string, unknown>>;
  const spec = body['spec'] as Record<string, unknown>;
  const targets: (() => void)[] = [
    () => (body['kind'] = randomValue(0) as Record<string, unknown>),
    () => (body['apiVersion'] = randomValue(0) as Record<string, unknown>),
    () => (body['spec'] = randomValue(0) as Record<string, unknown>),
    () => (spec['containers'] = randomValue(0)),
    () => (spec['annotations'] = randomValue(0)),
    () => (spec['namespace'] = randomValue(0)),
    () => (spec['containers'] as unknown[]).push(randomValue(1)),
    () => undefined,
  ];
  pick(targets)();
  return body;
}

function randomBytes(): Buffer {
  return Buffer.from(Array.from({ length: int(2048) }, () => int(256)));
}

interface Case {
  readonly body: Buffer;
  readonly contentType: string | undefined;
  readonly path: string;
}

function nextCase(): Case {
  const path = pick(['/', '/image-policy', '/image-policy/', '/healthz', '/nope']);
  const contentType =
    random() < 0.85
      ? 'application/json'
      : pick([undefined, 'text/plain', 'application/json; charset=utf-16', 'multipart/form-data']);
  const kind = int(4);
  let body: Buffer;
  if (kind === 0) body = Buffer.from(JSON.stringify(randomValue(0)) ?? 'undefined');
  else if (kind === 1) body = Buffer.from(JSON.stringify(mutatedReview()));
  else if (kind === 2) body = randomBytes();
  else {
    const valid = Buffer.from(JSON.stringify(reviewBody(['registry.test/allowed/a:1', 'alpine'])));
    body = valid.subarray(0, int(valid.length));
  }
  return { body, contentType, path };
}

const ALLOWED_STATUSES = new Set([200, 400, 404, 405, 413, 415]);

let ca: TestAuthority;
let dir: string;
let listener: HttpsListener;
let reviewer: StubReviewer;

before(async () => {
  ca = await createAuthority();
  const server = await ca.issue('verifier', 'server');
  dir = await mkdtemp(join(tmpdir(), 'verifier-fuzz-'));
  await writeFile(join(dir, 'tls.crt'), server.cert);
  await writeFile(join(dir, 'tls.key'), server.key);
  const metrics = new VerifierMetrics({ defaultMetrics: false });
  reviewer = new StubReviewer(metrics);
  const logger = createJsonLogger({ write: () => undefined });
  listener = await listenHttps({
    handler: createApp({ reviewer, metrics, logger, bodyLimitBytes: 64 * 1024, maxImages: 50 }),
    port: 0,
    host: '127.0.0.1',
    tls: { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') },
    logger,
    watch: false,
  });
});

after(async () => {
  await listener.close(1000);
  await rm(dir, { recursive: true, force: true });
});

describe(`fuzzing the review endpoint (FUZZ_SEED=${SEED})`, () => {
  it(`answers ${HTTP_CASES} random requests with a well-formed reply, never a crash or a 500`, async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const deadline = Date.now() + BUDGET_MS;
    const statuses = new Map<number, number>();
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < HTTP_CASES && Date.now() < deadline) {
        sent += 1;
        const c = nextCase();
        const reply = await httpsCall({
          port: listener.port,
          ca: ca.cert,
          agent,
          method: 'POST',
          path: c.path,
          body: c.body,
          headers: {
            ...(c.contentType !== undefined ? { 'Content-Type': c.contentType } : {}),
            'Content-Length': String(c.body.length),
          },
        });
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
        assert.ok(
          ALLOWED_STATUSES.has(reply.status),
          `status ${reply.status} for ${c.body.toString('latin1').slice(0, 200)}`,
        );
        const parsed = JSON.parse(reply.body) as Record<string, unknown>;
        if (reply.status === 200 && c.path !== '/healthz') {
          assert.equal(parsed['kind'], 'ImageReview');
          const status = parsed['status'] as Record<string, unknown>;
          assert.equal(typeof status['allowed'], 'boolean');
        } else if (reply.status !== 200) {
          assert.equal(typeof parsed['error'], 'string');
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    agent.destroy();
    assert.ok(sent >= HTTP_CASES, `only ${sent} cases ran within ${BUDGET_MS} ms`);
    assert.ok(
      (statuses.get(400) ?? 0) > 0 && (statuses.get(200) ?? 0) > 0,
      JSON.stringify([...statuses]),
    );
    assert.ok(
      reviewer.calls.length > 0,
      'some mutated reviews are still valid and reach the reviewer',
    );
  });

  it(`survives ${RAW_CASES} raw garbage streams on the TLS socket`, async () => {
    const heads = [
      '',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"apiVersion":',
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
      'POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
    ];
    for (let i = 0; i < RAW_CASES; i += 1) {
      await new Promise<void>((resolve) => {
        const socket = connect(
          { host: '127.0.0.1', port: listener.port, ca: ca.cert, servername: 'localhost' },
          () => {
            socket.write(Buffer.concat([Buffer.from(pick(heads)), randomBytes()]));
            socket.end();
          },
        );
        socket.on('data', () => undefined);
        socket.on('error', () => {
          resolve();
        });
        socket.on('close', () => {
          resolve();
        });
        socket.setTimeout(5000, () => socket.destroy());
      });
    }
    const reply = await httpsCall({ port: listener.port, ca: ca.cert });
    assert.equal(reply.status, 200);
  });

  it('still answers a valid review afterwards', async () => {
    const reply = await httpsCall({
      port: listener.port,
      ca: ca.cert,
      method: 'POST',
      path: '/',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(reviewBody(['registry.test/allowed/app:1'])),
    });
    assert.equal(reply.status, 200);
    const parsed = JSON.parse(reply.body) as { status: { allowed: boolean } };
    assert.equal(parsed.status.allowed, true);
  });
});
