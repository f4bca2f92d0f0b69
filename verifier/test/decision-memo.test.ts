/**
 * The engine's decision memo never serves stale trust: a memoised verdict lives only as long as
 * the very collection it was resolved from is fresh in the trust cache (TTL, expiry, eviction,
 * a failed refresh), reconfigure drops it, failures are never memoised, and its keys cannot be
 * forged by splitting one string between namespace and image differently.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { FixtureRepository, type MemoryFetcher } from '@kpack-trust/common/testing';
import {
  ControlledFetcher,
  GUN,
  HOUR,
  IMAGE,
  NOW,
  PREAMBLE,
  V1,
  V2,
  configFrom,
  engineWith,
  expireTimestampAfter,
  pinnedConfig,
  pod,
  signedRepository,
  unreachable,
} from './support/engine.js';
import { podMemoKey, routeMemoKey } from '../src/policy/memo.js';

describe('decision memo', () => {
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;

  beforeEach(async () => {
    ({ repo, fetcher } = await signedRepository());
  });

  it('answers repeated reviews from the memo, still counting each as a cache hit', async () => {
    const { engine, observer } = engineWith(pinnedConfig(repo), fetcher);
    const first = await engine.review(pod([IMAGE]));
    const second = await engine.review(pod([IMAGE]));
    assert.equal(second, first, 'the same frozen status');
    assert.ok(Object.isFrozen(second) && Object.isFrozen(second.auditAnnotations));
    assert.equal(fetcher.requests.length, 4);
    assert.deepEqual(observer.lookups, [false, true]);
    // One event per decision, the memoised one marked with the same memo as before.
    assert.equal(observer.images.length, 2);
    assert.equal(observer.images[1]?.memo, observer.images[0]?.memo);
  });

  it('re-resolves after the TTL: a re-signed tag is seen, the old digest is no longer signed', async () => {
    const { engine, clock } = engineWith(
      pinnedConfig(repo, { top: 'cache: { ttlSeconds: 60 }' }),
      fetcher,
    );
    const oldDigest = `${GUN}@sha256:${V1.digestHex}`;
    assert.equal(
      (await engine.review(pod([IMAGE]))).auditAnnotations?.['image-0-digest'],
      `sha256:${V1.digestHex}`,
    );
    assert.equal((await engine.review(pod([oldDigest]))).allowed, true);
    // v1 now points to another digest; the verified collection in the cache still says v1.
    await repo.signTag('v1', V2.digestHex, V2.length);
    clock.advance(59_000);
    assert.equal(
      (await engine.review(pod([IMAGE]))).auditAnnotations?.['image-0-digest'],
      `sha256:${V1.digestHex}`,
    );
    clock.advance(1_000);
    assert.equal(
      (await engine.review(pod([IMAGE]))).auditAnnotations?.['image-0-digest'],
      `sha256:${V2.digestHex}`,
    );
    const stale = await engine.decide(pod([oldDigest]));
    assert.equal(stale.images[0]?.code, 'NOT_SIGNED');
    assert.equal(fetcher.requests.length, 8);
  });

  it('never answers from a collection at or past its expiry, whatever the TTL', async () => {
    await expireTimestampAfter(repo, HOUR);
    // Without refresh-ahead, which would renew the collection in the background before it expires.
    const { engine, clock } = engineWith(
      pinnedConfig(repo, { top: 'cache: { ttlSeconds: 86400, refreshAheadSeconds: 0 }' }),
      fetcher,
    );
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    clock.advance(HOUR - 1);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.equal(fetcher.requests.length, 4, 'memoised while fresh');
    clock.advance(1);
    const expired = await engine.decide(pod([IMAGE]));
    assert.equal(expired.status.allowed, false);
    assert.equal(expired.images[0]?.code, 'EXPIRED');
    assert.ok(fetcher.requests.length > 4, 'asked notary again');
  });

  it('does not answer from a collection the cache has evicted', async () => {
    const { engine, observer } = engineWith(pinnedConfig(repo), fetcher);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    engine.trustCache.evictCollections();
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.equal(fetcher.requests.length, 8);
    assert.deepEqual(observer.lookups, [false, false]);
  });

  it('a failed refresh after the TTL denies, and is not memoised: the next review asks again', async () => {
    const flaky = new ControlledFetcher(fetcher);
    // Without stale-if-error, which would answer from the verified collection instead.
    const { engine, clock, observer } = engineWith(
      pinnedConfig(repo, { top: 'cache: { staleIfErrorSeconds: 0 }' }),
      flaky,
    );
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    clock.advance(61_000);
    flaky.failWith = unreachable();
    const failed = await engine.decide(pod([IMAGE]));
    assert.equal(failed.images[0]?.code, 'HTTP_UNREACHABLE');
    assert.equal(failed.status.allowed, false);
    const again = await engine.decide(pod([IMAGE]));
    assert.equal(again.images[0]?.code, 'HTTP_UNREACHABLE');
    flaky.failWith = undefined;
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.deepEqual(
      observer.fetches.map((f) => f.ok),
      [true, false, false, true],
    );
    assert.equal(observer.images[1]?.memo, undefined, 'failures carry no memo');
  });

  it('a verification failure is not memoised either: fixed data is admitted on the next review', async () => {
    const good = repo.bytesOf('timestamp');
    repo.files.set('timestamp.json', Buffer.from(good).fill(0x20, 10, 20));
    // Without negative caching, which would remember the failure for a few seconds.
    const { engine } = engineWith(
      pinnedConfig(repo, { top: 'cache: { negativeTtlSeconds: 0 }' }),
      fetcher,
    );
    assert.equal((await engine.review(pod([IMAGE]))).allowed, false);
    repo.files.set('timestamp.json', good);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
  });

  it('reconfigure drops memoised decisions: new rules apply at once', async () => {
    const { engine } = engineWith(pinnedConfig(repo), fetcher);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.equal((await engine.review(pod(['alpine']))).allowed, false);
    engine.reconfigure(
      pinnedConfig(repo, {
        rules: [
          `  - { images: "${GUN}", deny: true }`,
          '  - { images: "docker.io/library/*", allow: true }',
        ].join('\n'),
      }),
    );
    const denied = await engine.decide(pod([IMAGE]));
    assert.equal(denied.images[0]?.code, 'RULE_DENY');
    assert.equal((await engine.review(pod(['alpine']))).allowed, true);
  });

  it('reconfigure to other pins: the memoised admission under the old pins is not used', async () => {
    const other = await FixtureRepository.create(GUN, NOW);
    const { engine } = engineWith(pinnedConfig(repo), fetcher);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    engine.reconfigure(pinnedConfig(other));
    const decision = await engine.decide(pod([IMAGE]));
    assert.equal(decision.status.allowed, false);
    assert.equal(decision.images[0]?.code, 'ROOT_NOT_TRUSTED');
  });

  it('a pod status is reused only while every image keeps its outcome', async () => {
    const { engine, clock } = engineWith(
      pinnedConfig(repo, { top: 'cache: { ttlSeconds: 60 }' }),
      fetcher,
    );
    const images = [IMAGE, `${GUN}:v2`];
    const first = await engine.review(pod(images));
    assert.equal(first.allowed, false);
    assert.equal(await engine.review(pod(images)), first);
    await repo.signTag('v2', V2.digestHex, V2.length);
    clock.advance(60_000);
    const after = await engine.review(pod(images));
    assert.equal(after.allowed, true, after.reason);
    assert.equal(after.auditAnnotations?.['image-1-digest'], `sha256:${V2.digestHex}`);
    // The same images in another order are another pod: indexes differ.
    const swapped = await engine.review(pod([...images].reverse()));
    assert.equal(swapped.auditAnnotations?.['image-0-digest'], `sha256:${V2.digestHex}`);
  });

  it('splitting the same characters differently between namespace and image is another key', async () => {
    // Naively concatenated, both reviews would be "devquay.io/x/y".
    const config = configFrom(`${PREAMBLE}
rules:
  - { images: "quay.io/**", namespaces: [dev], allow: true }
`);
    const { engine } = engineWith(config, fetcher);
    assert.equal((await engine.review(pod(['quay.io/x/y'], { namespace: 'dev' }))).allowed, true);
    const other = await engine.decide(pod(['vquay.io/x/y'], { namespace: 'de' }));
    assert.equal(other.images[0]?.code, 'NO_RULE');
    assert.notEqual(routeMemoKey('dev', 'quay.io/x/y'), routeMemoKey('de', 'vquay.io/x/y'));
    assert.notEqual(
      podMemoKey(pod(['ab', 'c'], { namespace: 'n' })),
      podMemoKey(pod(['a', 'bc'], { namespace: 'n' })),
    );
  });

  it('does not memoise strings longer than any image reference', async () => {
    const long = `quay.io/${'a'.repeat(600)}`;
    assert.equal(routeMemoKey('default', long), undefined);
    assert.equal(podMemoKey(pod([long])), undefined);
    assert.equal(podMemoKey(pod(Array.from({ length: 65 }, () => 'alpine'))), undefined);
    const { engine } = engineWith(pinnedConfig(repo), fetcher);
    const first = await engine.decide(pod([long]));
    const second = await engine.decide(pod([long]));
    assert.equal(second.images[0]?.code, first.images[0]?.code);
    assert.notEqual(second.status, first.status, 'built afresh, not memoised');
  });

  it('memoEntries: 0 turns memoising off and decides the same', async () => {
    const { engine, observer } = engineWith(pinnedConfig(repo), fetcher, { memoEntries: 0 });
    const first = await engine.review(pod([IMAGE]));
    const second = await engine.review(pod([IMAGE]));
    assert.deepEqual(second, first);
    assert.notEqual(second, first);
    assert.equal(Object.isFrozen(second), false);
    assert.equal(observer.images[1]?.memo, undefined);
    assert.throws(() => engineWith(pinnedConfig(repo), fetcher, { memoEntries: -1 }), RangeError);
  });
});
