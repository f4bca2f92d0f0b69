import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import request from 'supertest';
import { createApp, type AppOptions, type Readiness } from '../src/http/app.js';
import { createJsonLogger } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import type { ImageReviewStatus } from '../src/review.js';
import { StubReviewer, reviewBody } from './support/stub-reviewer.js';

function setup(options: Partial<AppOptions> & { ready?: Readiness } = {}) {
  const metrics = new VerifierMetrics({ defaultMetrics: false });
  const reviewer = new StubReviewer(metrics);
  const lines: Record<string, unknown>[] = [];
  const logger = createJsonLogger({
    write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
  });
  const app = createApp({
    reviewer,
    metrics,
    logger,
    ...(options.ready ? { readiness: () => options.ready ?? { ready: true } } : {}),
    ...options,
  });
  return { app, reviewer, metrics, lines };
}

const API = 'imagepolicy.k8s.io/v1alpha1';

/** The JSON fields the tests read from a reply (an ImageReview or an error). */
interface ReplyBody {
  readonly error?: string;
  readonly message?: string;
  readonly status?: { readonly allowed: boolean; readonly reason?: string };
}

function reply(res: request.Response): ReplyBody {
  return res.body as ReplyBody;
}

function post(app: ReturnType<typeof setup>['app'], body: unknown, path = '/') {
  return request(app).post(path).set('Content-Type', 'application/json').send(JSON.stringify(body));
}

async function assertBadRequest(body: unknown, mentions: RegExp): Promise<void> {
  const { app, reviewer } = setup();
  const res = await post(app, body);
  assert.equal(res.status, 400, JSON.stringify(res.body));
  assert.match(res.headers['content-type'] ?? '', /^application\/json/);
  assert.equal(reply(res).error, 'BadRequest');
  assert.match(reply(res).message ?? '', mentions);
  assert.equal(reviewer.calls.length, 0, 'the reviewer must not see a malformed review');
}

describe('POST / and /image-policy', () => {
  for (const path of ['/', '/image-policy']) {
    it(`answers an allowed review on ${path} with exactly the ImageReview reply shape`, async () => {
      const { app } = setup();
      const res = await post(app, reviewBody(['registry.test/allowed/app:1']), path);
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'] ?? '', /^application\/json/);
      assert.deepEqual(res.body, {
        apiVersion: API,
        kind: 'ImageReview',
        status: {
          allowed: true,
          auditAnnotations: { 'image-0': `registry.test/allowed/app@sha256:${'a'.repeat(64)}` },
        },
      });
    });
  }

  it('passes the reason and audit annotations of a denial through unchanged', async () => {
    const { app } = setup();
    const res = await post(
      app,
      reviewBody(['registry.test/allowed/app:1', 'registry.test/evil/app:2']),
    );
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {
      apiVersion: API,
      kind: 'ImageReview',
      status: {
        allowed: false,
        reason: 'registry.test/evil/app:2: not signed in notary https://notary.test',
        auditAnnotations: { 'image-0': `registry.test/allowed/app@sha256:${'a'.repeat(64)}` },
      },
    });
  });

  it('omits an empty reason and empty audit annotations, as Go omitempty does', async () => {
    const { app, reviewer } = setup();
    reviewer.review = () => Promise.resolve({ allowed: true, reason: '', auditAnnotations: {} });
    const res = await post(app, reviewBody(['a']));
    assert.deepEqual(res.body, { apiVersion: API, kind: 'ImageReview', status: { allowed: true } });
  });

  it('hands the reviewer the spec exactly: containers in order, annotations, namespace', async () => {
    const { app, reviewer } = setup();
    const annotations = {
      'mycluster.image-policy.k8s.io/ticket-1234': 'break-glass',
      __proto__: 'not a prototype',
    };
    const body = reviewBody(['b:1', 'a:2', 'b:1'], { annotations, namespace: 'team-a' });
    // JSON text keeps the literal "__proto__" key, as a hostile client could send it.
    const text = JSON.stringify(body).replace('"annotations":{', '"annotations":{"__proto__":"x",');
    const res = await request(app).post('/').set('Content-Type', 'application/json').send(text);
    assert.equal(res.status, 200);
    assert.equal(reviewer.calls.length, 1);
    const spec = reviewer.calls[0];
    assert.deepEqual(
      spec?.containers.map((c) => c.image),
      ['b:1', 'a:2', 'b:1'],
    );
    assert.equal(spec?.namespace, 'team-a');
    assert.equal(spec?.annotations['mycluster.image-policy.k8s.io/ticket-1234'], 'break-glass');
    assert.equal(Object.getPrototypeOf(spec?.annotations), Object.prototype);
    assert.ok(Object.hasOwn(spec?.annotations ?? {}, '__proto__'));
  });

  it('treats omitted containers, annotations and namespace as empty (Go omitempty)', async () => {
    const { app, reviewer } = setup();
    const res = await post(app, { apiVersion: API, kind: 'ImageReview', spec: {} });
    assert.equal(res.status, 200);
    assert.deepEqual(reviewer.calls[0], { containers: [], annotations: {}, namespace: '' });
  });

  it('accepts a charset parameter and a +json media type', async () => {
    const { app } = setup();
    const body = JSON.stringify(reviewBody(['registry.test/allowed/a']));
    for (const type of ['application/json; charset=utf-8', 'application/vnd.k8s+json']) {
      const res = await request(app).post('/').set('Content-Type', type).send(body);
      assert.equal(res.status, 200, type);
    }
  });

  it('returns unparseable image strings from the reviewer as a denial naming the image', async () => {
    const { app, reviewer } = setup();
    const res = await post(app, reviewBody(['Upper:1', 'a b', 'x@sha256:zz']));
    assert.equal(res.status, 200);
    assert.equal(reply(res).status?.allowed, false);
    assert.equal(reviewer.calls.length, 1);
    for (const image of ['Upper:1', 'a b', 'x@sha256:zz']) {
      assert.ok(
        reply(res).status?.reason?.includes(`${image}: not a valid image reference (`),
        reply(res).status?.reason,
      );
    }
  });

  it('reuses the reply bytes of a frozen status only, never of one that can change', async () => {
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const logger = createJsonLogger({ write: () => undefined });
    const mutable: { allowed: boolean; reason?: string } = { allowed: true };
    const frozen = Object.freeze({
      allowed: false,
      reason: 'x: denied',
      auditAnnotations: Object.freeze({ 'image-0-rule': 'r' }),
    });
    let next: ImageReviewStatus = mutable;
    const app = createApp({ reviewer: { review: () => Promise.resolve(next) }, metrics, logger });
    const body = reviewBody(['registry.test/allowed/a:1']);
    assert.deepEqual(reply(await post(app, body)).status, { allowed: true });
    mutable.allowed = false;
    mutable.reason = 'changed';
    assert.deepEqual(reply(await post(app, body)).status, { allowed: false, reason: 'changed' });
    next = frozen;
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(reply(await post(app, body)).status, {
        allowed: false,
        reason: 'x: denied',
        auditAnnotations: { 'image-0-rule': 'r' },
      });
    }
  });

  it('answers 500 as well when the reviewer throws before returning a promise', async () => {
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const lines: string[] = [];
    const logger = createJsonLogger({ write: (line) => lines.push(line) });
    const app = createApp({
      reviewer: {
        review: () => {
          throw new Error('synchronous failure');
        },
      },
      metrics,
      logger,
    });
    const res = await post(app, reviewBody(['registry.test/allowed/a:1']));
    assert.equal(res.status, 500);
    assert.equal(reply(res).error, 'InternalError');
    assert.ok(lines.some((l) => l.includes('"event":"review.failed"')));
  });

  it('answers 500 when the reviewer throws, so the apiserver retries and applies defaultAllow', async () => {
    const { app, reviewer, metrics, lines } = setup();
    reviewer.failWith = new Error('notary unreachable');
    const res = await post(app, reviewBody(['registry.test/allowed/a']));
    assert.equal(res.status, 500);
    assert.equal(reply(res).error, 'InternalError');
    assert.equal(reply(res).status, undefined, 'no decision is sent with a failure');
    const failure = lines.find((l) => l['event'] === 'review.failed');
    assert.deepEqual(failure?.['error'], { name: 'Error', message: 'notary unreachable' });
    const { body } = await metrics.exposition();
    assert.match(body, /^kpack_trust_verifier_reviews_total\{outcome="error"\} 1$/m);
  });

  it('denies (200, not 4xx) a pod with more images than the limit, without reviewing it', async () => {
    const { app, reviewer } = setup();
    const images = Array.from({ length: 10_000 }, (_, i) => `registry.test/allowed/app:${i}`);
    const res = await post(app, reviewBody(images));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {
      apiVersion: API,
      kind: 'ImageReview',
      status: {
        allowed: false,
        reason: 'the pod has 10000 images and at most 1000 are reviewed per pod, so it is denied',
      },
    });
    assert.equal(reviewer.calls.length, 0);
  });

  it('reviews a pod with exactly maxImages images', async () => {
    const { app, reviewer } = setup({ maxImages: 3 });
    const res = await post(app, reviewBody(['allowed/a', 'allowed/b', 'allowed/c']));
    assert.equal(res.status, 200);
    assert.equal(reply(res).status?.allowed, true);
    const four = await post(app, reviewBody(['allowed/a', 'allowed/b', 'allowed/c', 'allowed/d']));
    assert.equal(reply(four).status?.allowed, false);
    assert.equal(reviewer.calls.length, 1);
  });
});

describe('malformed reviews get 400 with a clear message', () => {
  const valid = reviewBody(['a']);
  const spec = valid['spec'] as Record<string, unknown>;
  const cases: [string, unknown, RegExp][] = [
    [
      'wrong kind',
      { ...valid, kind: 'AdmissionReview' },
      /^not a valid ImageReview: kind must be "ImageReview", got the string "AdmissionReview"$/,
    ],
    ['missing kind', { ...valid, kind: undefined }, /kind must be "ImageReview", got nothing/],
    [
      'wrong apiVersion',
      { ...valid, apiVersion: 'imagepolicy.k8s.io/v1beta1' },
      /apiVersion must be "imagepolicy.k8s.io\/v1alpha1", got the string "imagepolicy.k8s.io\/v1beta1"/,
    ],
    [
      'missing apiVersion',
      { ...valid, apiVersion: undefined },
      /apiVersion must be .*, got nothing/,
    ],
    ['missing spec', { ...valid, spec: undefined }, /spec must be an object, got nothing/],
    ['spec is an array', { ...valid, spec: [] }, /spec must be an object, got an array/],
    [
      'containers is an object',
      { ...valid, spec: { ...spec, containers: { image: 'a' } } },
      /spec.containers must be an array, got a object/,
    ],
    [
      'container is a string',
      { ...valid, spec: { ...spec, containers: ['a'] } },
      /spec.containers\[0\] must be an object, got the string "a"/,
    ],
    [
      'container without image',
      { ...valid, spec: { ...spec, containers: [{ image: 'a' }, {}] } },
      /spec.containers\[1\].image must be a non-empty string, got nothing/,
    ],
    [
      'empty image',
      { ...valid, spec: { ...spec, containers: [{ image: '' }] } },
      /spec.containers\[0\].image must be a non-empty string, got the string ""/,
    ],
    [
      'numeric image',
      { ...valid, spec: { ...spec, containers: [{ image: 7 }] } },
      /spec.containers\[0\].image must be a non-empty string, got a number/,
    ],
    [
      'annotations is an array',
      { ...valid, spec: { ...spec, annotations: ['x'] } },
      /spec.annotations must be an object of strings, got an array/,
    ],
    [
      'annotation value is a number',
      { ...valid, spec: { ...spec, annotations: { 'a.image-policy.k8s.io/x': 1 } } },
      /spec.annotations\["a.image-policy.k8s.io\/x"\] must be a string, got a number/,
    ],
    [
      'namespace is a number',
      { ...valid, spec: { ...spec, namespace: 3 } },
      /spec.namespace must be a string, got a number/,
    ],
    ['body is an array', [valid], /the body must be a JSON object, got an array/],
  ];
  for (const [name, body, mentions] of cases) {
    it(name, () => assertBadRequest(body, mentions));
  }

  it('malformed JSON', async () => {
    const { app, reviewer } = setup();
    const res = await request(app)
      .post('/')
      .set('Content-Type', 'application/json')
      .send('{"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": ');
    assert.equal(res.status, 400);
    assert.deepEqual(res.body, {
      error: 'BadRequest',
      message: 'the request body is not valid JSON',
    });
    assert.equal(reviewer.calls.length, 0);
  });

  it('a JSON scalar body: null, a string, a number', async () => {
    const { app } = setup();
    for (const [text, got] of [
      ['null', 'null'],
      ['"x"', 'the string "x"'],
      ['7', 'a number'],
    ] as const) {
      const res = await request(app).post('/').set('Content-Type', 'application/json').send(text);
      assert.equal(res.status, 400, text);
      assert.equal(
        reply(res).message,
        `not a valid ImageReview: the body must be a JSON object, got ${got}`,
      );
    }
  });

  it('an empty body', async () => {
    const { app } = setup();
    const res = await request(app).post('/').set('Content-Type', 'application/json').send('');
    assert.equal(res.status, 400);
    assert.equal(
      reply(res).message,
      'not a valid ImageReview: the body must be a JSON object, got nothing',
    );
  });
});

describe('body limits and media types', () => {
  it('413 for a body over the limit, before the reviewer sees it', async () => {
    const { app, reviewer } = setup({ bodyLimitBytes: 1024 });
    const res = await post(app, reviewBody(['a'.repeat(2000)]));
    assert.equal(res.status, 413);
    assert.deepEqual(res.body, {
      error: 'PayloadTooLarge',
      message: 'the request body exceeds 1024 bytes',
    });
    assert.equal(reviewer.calls.length, 0);
  });

  it('413 for a chunked body (no Content-Length) that grows past the limit, 200 under it', async () => {
    const { app, reviewer } = setup({ bodyLimitBytes: 4096 });
    const server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const send = (chunks: readonly string[]) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: '/image-policy',
            headers: { 'Content-Type': 'application/json' },
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (body += chunk));
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, body });
            });
          },
        );
        req.on('error', reject);
        for (const chunk of chunks) req.write(chunk);
        req.end();
      });
    try {
      const text = JSON.stringify(reviewBody(['registry.test/allowed/a:1']));
      const small = await send([text.slice(0, 10), text.slice(10)]);
      assert.equal(small.status, 200);
      const big = await send(Array.from({ length: 10 }, () => ' '.repeat(1000)));
      assert.equal(big.status, 413);
      assert.deepEqual(JSON.parse(big.body), {
        error: 'PayloadTooLarge',
        message: 'the request body exceeds 4096 bytes',
      });
      assert.equal(reviewer.calls.length, 1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('413 for a body over the default limit (4 MiB)', async () => {
    const { app } = setup();
    const res = await post(app, reviewBody(['x'.repeat(4 * 1024 * 1024)]));
    assert.equal(res.status, 413);
  });

  it('415 for a non-JSON content type, a missing one, and a compressed body', async () => {
    const { app, reviewer } = setup();
    const body = JSON.stringify(reviewBody(['a']));
    const plain = await request(app).post('/').set('Content-Type', 'text/plain').send(body);
    assert.equal(plain.status, 415);
    assert.deepEqual(plain.body, {
      error: 'UnsupportedMediaType',
      message: 'Content-Type must be application/json',
    });
    const none = await request(app).post('/image-policy').send(Buffer.from(body));
    assert.equal(none.status, 415);
    const gzip = await request(app)
      .post('/')
      .set('Content-Type', 'application/json')
      .set('Content-Encoding', 'gzip')
      .send(body);
    assert.equal(gzip.status, 415);
    assert.equal(reply(gzip).message, 'compressed request bodies are not accepted');
    const latin1 = await request(app)
      .post('/')
      .set('Content-Type', 'application/json; charset=latin1')
      .send(body);
    assert.equal(latin1.status, 415);
    assert.equal(reviewer.calls.length, 0);
  });
});

describe('other endpoints', () => {
  it('405 with Allow: POST for other methods on the review paths', async () => {
    const { app } = setup();
    for (const path of ['/', '/image-policy']) {
      const res = await request(app).get(path);
      assert.equal(res.status, 405);
      assert.equal(res.headers['allow'], 'POST');
    }
  });

  it('404 as JSON for unknown paths', async () => {
    const { app } = setup();
    const res = await request(app).post('/apis/admission').send({});
    assert.equal(res.status, 404);
    assert.deepEqual(res.body, { error: 'NotFound', message: 'no such endpoint' });
  });

  it('/healthz answers 200 while the process is up', async () => {
    const { app } = setup({ ready: { ready: false, reason: 'shutting down' } });
    const res = await request(app).get('/healthz');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { status: 'ok' });
  });

  it('/readyz follows readiness: 200 when ready, 503 with the reason otherwise', async () => {
    let state: Readiness = { ready: true };
    const { app } = setup({ readiness: () => state });
    assert.equal((await request(app).get('/readyz')).status, 200);
    state = { ready: false, reason: 'shutting down' };
    const res = await request(app).get('/readyz');
    assert.equal(res.status, 503);
    assert.deepEqual(res.body, { status: 'not ready', reason: 'shutting down' });
  });

  it('/metrics exposes decisions, reviews and HTTP responses after traffic', async () => {
    const { app } = setup();
    await post(app, reviewBody(['registry.test/allowed/a:1']));
    await post(app, reviewBody(['registry.test/denied/a:1']));
    await post(app, reviewBody(['NOT VALID']));
    await post(app, { kind: 'nope' });
    const res = await request(app).get('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
    const text = res.text;
    for (const line of [
      'kpack_trust_verifier_image_decisions_total{result="allowed",reason="signed"} 1',
      'kpack_trust_verifier_image_decisions_total{result="denied",reason="not_signed"} 1',
      'kpack_trust_verifier_image_decisions_total{result="denied",reason="reference_invalid"} 1',
      'kpack_trust_verifier_reviews_total{outcome="allowed"} 1',
      'kpack_trust_verifier_reviews_total{outcome="denied"} 2',
      'kpack_trust_verifier_reviews_total{outcome="rejected"} 1',
      'kpack_trust_verifier_http_responses_total{route="review",code="200"} 3',
      'kpack_trust_verifier_http_responses_total{route="review",code="400"} 1',
      'kpack_trust_verifier_image_decision_duration_seconds_count{result="allowed"} 1',
    ]) {
      assert.ok(text.split('\n').includes(line), `missing: ${line}`);
    }
    assert.ok(!text.includes('registry.test'), 'image names must never become label values');
  });
});
