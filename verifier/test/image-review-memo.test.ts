import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import request from 'supertest';
import { createApp } from '../src/http/app.js';
import { ImageReviewParseMemo } from '../src/http/image-review-memo.js';
import { createJsonLogger } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import type { ImageReviewSpec } from '../src/review.js';
import { StubReviewer, reviewBody } from './support/stub-reviewer.js';

const spec = (image: string): ImageReviewSpec => ({
  containers: [{ image }],
  annotations: {},
  namespace: 'team',
});

/** The memo's answer for `body`, as app.ts asks for it. */
const lookup = (memo: ImageReviewParseMemo, body: Buffer): ImageReviewSpec | undefined =>
  memo.specOf(memo.keyOf(body));
/** Keeps `parsed` for `body`, as app.ts does after a parse. */
const keep = (memo: ImageReviewParseMemo, body: Buffer, parsed: ImageReviewSpec): ImageReviewSpec =>
  memo.remember(memo.keyOf(body), parsed);

describe('ImageReviewParseMemo', () => {
  it('gives the remembered spec, frozen, for exactly the same bytes and nothing for any other', () => {
    const memo = new ImageReviewParseMemo();
    const body = Buffer.from(JSON.stringify(reviewBody(['registry.test/allowed/app:1'])));
    const kept = keep(memo, body, spec('registry.test/allowed/app:1'));
    assert.equal(lookup(memo, Buffer.from(body)), kept);
    assert.ok(Object.isFrozen(kept) && Object.isFrozen(kept.containers));
    assert.ok(Object.isFrozen(kept.containers[0]) && Object.isFrozen(kept.annotations));
    for (let i = 0; i < body.length; i++) {
      const changed = Buffer.from(body);
      changed[i] = (changed[i] ?? 0) ^ 0x01;
      assert.equal(lookup(memo, changed), undefined, `byte ${i} flipped`);
    }
    assert.equal(lookup(memo, body.subarray(0, body.length - 1)), undefined);
    assert.equal(lookup(memo, Buffer.concat([body, Buffer.from(' ')])), undefined);
  });

  it('keeps no body over the size bound, and at most maxEntries bodies', () => {
    const memo = new ImageReviewParseMemo({ maxEntries: 3, maxBytes: 1 << 20, maxBodyBytes: 64 });
    keep(memo, Buffer.alloc(65, 0x20), spec('a'));
    assert.equal(memo.size, 0);
    for (let i = 0; i < 10; i++) keep(memo, Buffer.from(`{"n":${i}}`), spec(`i${i}`));
    assert.equal(memo.size, 3);
    assert.equal(lookup(memo, Buffer.from('{"n":0}')), undefined);
    assert.equal(lookup(memo, Buffer.from('{"n":9}'))?.containers[0]?.image, 'i9');
  });

  it('keeps at most maxBytes of bodies', () => {
    const memo = new ImageReviewParseMemo({ maxEntries: 100, maxBytes: 100, maxBodyBytes: 64 });
    for (let i = 0; i < 10; i++) keep(memo, Buffer.from(`${i}`.padEnd(40, ' ')), spec(`i${i}`));
    assert.equal(memo.size, 2);
  });
});

describe('POST / with a body sent again', () => {
  it('the reviewer decides every review, given the same frozen spec; a changed body is parsed afresh', async () => {
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const reviewer = new StubReviewer(metrics);
    const app = createApp({
      reviewer,
      metrics,
      logger: createJsonLogger({ write: () => undefined }),
    });
    const send = (images: string[]) =>
      request(app)
        .post('/')
        .set('Content-Type', 'application/json')
        .send(JSON.stringify(reviewBody(images)));
    const first = await send(['registry.test/allowed/app:1']);
    const second = await send(['registry.test/allowed/app:1']);
    const third = await send(['registry.test/evil/app:1']);
    assert.deepEqual(second.body, first.body);
    assert.equal((third.body as { status: { allowed: boolean } }).status.allowed, false);
    assert.equal(reviewer.calls.length, 3);
    assert.equal(reviewer.calls[1], reviewer.calls[0]);
    assert.ok(Object.isFrozen(reviewer.calls[0]));
    assert.notEqual(reviewer.calls[2], reviewer.calls[0]);
    const exposition = (await metrics.exposition()).body;
    assert.match(
      exposition,
      /^kpack_trust_verifier_image_review_parse_memo_lookups_total\{result="hit"\} 1$/m,
    );
    assert.match(
      exposition,
      /^kpack_trust_verifier_image_review_parse_memo_lookups_total\{result="miss"\} 2$/m,
    );
  });
});
