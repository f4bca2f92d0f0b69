/**
 * The trust cache through the engine: TTL and expiry by the injected clock, rollback floors kept
 * across eviction and reconfiguration, coalesced concurrent updates, deadlines, and errors that are
 * never cached as verdicts.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { MetadataFetcher } from '@kpack-trust/common';
import { FixtureRepository, MemoryFetcher } from '@kpack-trust/common/testing';
import {
  ControlledFetcher,
  GUN,
  HOUR,
  IMAGE,
  NOTARY,
  NOW,
  REGISTRY,
  V1,
  V2,
  engineWith,
  expireTimestampAfter,
  pinnedConfig,
  pod,
  repositoryWithSameRootKey,
  signedRepository,
  unreachable,
} from './support/engine.js';

/** Requests per file kind, with checksums elided. */
function requestKinds(fetcher: MemoryFetcher): string[] {
  return fetcher.requests.map((r) => r.slice(r.lastIndexOf('/') + 1).replace(/[0-9a-f]{64}/, 'H'));
}

describe('trust cache', () => {
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;

  beforeEach(async () => {
    ({ repo, fetcher } = await signedRepository());
  });

  it('serves a verified collection until the TTL passes, then updates it', async () => {
    // Refresh-ahead off: this is the TTL alone (trust-availability.test.ts covers refresh-ahead).
    const { engine, clock, observer } = engineWith(
      pinnedConfig(repo, { top: 'cache: { ttlSeconds: 60, refreshAheadSeconds: 0 }' }),
      fetcher,
    );
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.equal(fetcher.requests.length, 4);
    clock.advance(59_000);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.equal(fetcher.requests.length, 4, 'fresh: no request');
    // A tag signed meanwhile is seen only after the TTL.
    await repo.signTag('v2', V2.digestHex, V2.length);
    assert.equal((await engine.review(pod([`${GUN}:v2`]))).allowed, false);
    clock.advance(1_000);
    assert.equal((await engine.review(pod([`${GUN}:v2`]))).allowed, true);
    assert.equal(fetcher.requests.length, 8);
    assert.deepEqual(observer.lookups, [false, true, true, false]);
  });

  it('never uses a collection at or past its expiry, whatever the TTL', async () => {
    await expireTimestampAfter(repo, HOUR);
    const { engine, clock } = engineWith(
      pinnedConfig(repo, { top: 'cache: { ttlSeconds: 86400, negativeTtlSeconds: 0 }' }),
      fetcher,
    );
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    clock.advance(HOUR);
    const decision = await engine.decide(pod([IMAGE]));
    // Updated, not reused: the update stops at the expired timestamp.
    assert.deepEqual(requestKinds(fetcher).slice(4), ['root.json', 'timestamp.json']);
    assert.equal(decision.images[0]?.code, 'EXPIRED');
    // The server signs a fresh timestamp: admitted again on the next review, no TTL wait.
    repo.now = clock.now();
    await repo.publish([]);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
  });

  it('200 concurrent reviews of one cold image cause exactly one fetch per role', async () => {
    await repo.addDelegation('targets/releases');
    await repo.signTag('v1', V1.digestHex, V1.length, 'targets/releases');
    const slow = new ControlledFetcher(fetcher);
    slow.delayMs = 5;
    const { engine, observer } = engineWith(pinnedConfig(repo), slow);
    const statuses = await Promise.all(
      Array.from({ length: 200 }, () => engine.review(pod([IMAGE]))),
    );
    assert.ok(statuses.every((s) => s.allowed));
    assert.deepEqual(requestKinds(fetcher), [
      'root.json',
      'timestamp.json',
      'snapshot.H.json',
      'targets.H.json',
      'releases.H.json',
    ]);
    assert.equal(observer.fetches.length, 1);
    assert.equal(engine.trustCache.stats().inFlight, 0);
  });

  it('does not cache errors: the next review asks again and recovers', async () => {
    const flaky = new ControlledFetcher(fetcher);
    flaky.failWith = unreachable();
    const { engine, observer } = engineWith(pinnedConfig(repo), flaky);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, false);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, false);
    flaky.failWith = undefined;
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.deepEqual(
      observer.fetches.map((f) => f.ok),
      [false, false, true],
    );
  });

  it('does not serve a stale collection when its refresh fails and staleIfErrorSeconds is 0', async () => {
    const flaky = new ControlledFetcher(fetcher);
    const { engine, clock } = engineWith(
      pinnedConfig(repo, { top: 'cache: { staleIfErrorSeconds: 0 }' }),
      flaky,
    );
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    clock.advance(61_000);
    flaky.failWith = unreachable();
    const decision = await engine.decide(pod([IMAGE]));
    assert.equal(decision.status.allowed, false);
    assert.equal(decision.images[0]?.code, 'HTTP_UNREACHABLE');
  });

  it('keeps rollback floors when the collection is evicted (freeze detected)', async () => {
    const other = await repositoryWithSameRootKey(repo, `${REGISTRY}/demo/other`);
    await other.signTag('v1', V1.digestHex, V1.length);
    const both = new MemoryFetcher(repo, other);
    const oldTimestamp = repo.bytesOf('timestamp');
    await repo.signTag('v2', V2.digestHex, V2.length);
    const { engine } = engineWith(
      pinnedConfig(repo, { canonical: true, top: 'cache: { maxRepositories: 1 }' }),
      both,
    );
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    assert.equal((await engine.review(pod([`${other.gun}:v1`]))).allowed, true);
    assert.deepEqual(engine.trustCache.stats(), { repositories: 1, trustStates: 2, inFlight: 0 });
    // The server replays an old, still-validly-signed timestamp.
    repo.files.set('timestamp.json', oldTimestamp);
    const decision = await engine.decide(pod([IMAGE]));
    assert.equal(decision.images[0]?.code, 'VERSION_ROLLBACK');
    assert.match(
      decision.status.reason ?? '',
      /failed verification: timestamp version 2 is lower than version 3 already trusted \(rollback or freeze\)$/,
    );
  });

  it('a fresh engine, with no floors, would have accepted that frozen timestamp', async () => {
    const oldTimestamp = repo.bytesOf('timestamp');
    await repo.signTag('v2', V2.digestHex, V2.length);
    repo.files.set('timestamp.json', oldTimestamp);
    const { engine } = engineWith(pinnedConfig(repo), fetcher);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
  });

  it('keeps rollback floors across reconfiguration', async () => {
    const oldTimestamp = repo.bytesOf('timestamp');
    await repo.signTag('v2', V2.digestHex, V2.length);
    const { engine, clock } = engineWith(pinnedConfig(repo), fetcher);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    engine.reconfigure(
      pinnedConfig(repo, {
        top: 'cache: { maxRepositories: 50, maxTrustStates: 60, ttlSeconds: 10 }',
        rules: '  - { images: "docker.io/library/*", allow: true }',
      }),
    );
    engine.trustCache.evictCollections();
    repo.files.set('timestamp.json', oldTimestamp);
    clock.advance(1_000);
    const decision = await engine.decide(pod([IMAGE]));
    assert.equal(decision.images[0]?.code, 'VERSION_ROLLBACK');
  });

  it('records the trusted root bytes and the floors per (server, GUN, anchor)', async () => {
    const { engine } = engineWith(pinnedConfig(repo), fetcher);
    assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    const rule = engine.config.rules[0];
    assert.ok(rule?.action === 'verify');
    const state = engine.trustCache.trustState('https://127.0.0.1:4443', GUN, rule.trust.anchor);
    assert.deepEqual(state?.rootBytes, Uint8Array.from(repo.bytesOf('root')));
    assert.deepEqual(state.floors, { root: 1, timestamp: 2, snapshot: 3, targets: 3 });
  });

  it('gives up on an update after the notary deadline', async () => {
    const stalled: MetadataFetcher = {
      fetchMetadata: () => new Promise<Uint8Array>(() => undefined),
    };
    const config = pinnedConfig(repo, { top: '' });
    const withDeadline = {
      ...config,
      notary: config.notary.map((n) => ({ ...n, timeoutMs: 50 })),
    };
    const { engine } = engineWith(withDeadline, stalled);
    const started = performance.now();
    const decision = await engine.decide(pod([IMAGE]));
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 1_000, `took ${elapsed} ms`);
    assert.equal(decision.images[0]?.code, 'HTTP_UNREACHABLE');
    assert.equal(
      decision.status.reason,
      `${IMAGE}: notary ${NOTARY} is unavailable for ${GUN} (timed out)`,
    );
  });

  it('keeps separate trust per anchor, so a TOFU rule cannot vouch for a pinned one', async () => {
    const attacker = await FixtureRepository.create(GUN, NOW);
    await attacker.signTag('v1', V2.digestHex, V2.length);
    const served = new MemoryFetcher(attacker);
    const { engine } = engineWith(
      pinnedConfig(repo, {
        ruleExtra: '    excludeNamespaces: [dev]',
        rules: `  - { images: "${REGISTRY}/demo/*", namespaces: [dev], tofu: true }`,
      }),
      served,
    );
    assert.equal((await engine.review(pod([IMAGE], { namespace: 'dev' }))).allowed, true);
    const prod = await engine.decide(pod([IMAGE], { namespace: 'prod' }));
    assert.equal(prod.images[0]?.code, 'ROOT_NOT_TRUSTED');
  });
});
