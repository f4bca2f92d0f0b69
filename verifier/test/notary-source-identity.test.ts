/**
 * A notary source is who the config says it is, not the URL it maps to. A registry without a notary
 * entry maps to `https://<registry>`, so a pod can name the host of a configured notary server as
 * its registry (`127.0.0.1:4443/x/a1` against the entry `server: https://127.0.0.1:4443`) and get
 * a source with the configured server's URL but none of its CA or credentials. Its failures must
 * never count against the configured server's circuit breaker, and a refusal of the verifier's own
 * (the pool of requests to unconfigured servers is full) counts against no server at all.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { compileAnchor, type MetadataFetcher } from '@kpack-trust/common';
import type { FixtureRepository, MemoryFetcher } from '@kpack-trust/common/testing';
import { VerifierMetrics } from '../src/http/metrics.js';
import { ImagePolicyEngine, NO_TRUST_DATA } from '../src/policy/engine.js';
import { TrustCache } from '../src/trust/cache.js';
import { NotarySources, type ClosableFetcher } from '../src/trust/notary-clients.js';
import {
  GUN,
  IMAGE,
  NOTARY,
  NOW,
  PREAMBLE,
  REGISTRY,
  TestClock,
  configFrom,
  pod,
  signedRepository,
  unreachable,
} from './support/engine.js';

/** The configured notary server's own host:port, written as a registry by the pod's author. */
const NOTARY_HOST = new URL(NOTARY).host;
const THRESHOLD = 3;

/** Serves `inner` for the configured entry; every unconfigured server fails as unreachable. */
function splitFactory(inner: MetadataFetcher): (endpoint: { registry: string }) => ClosableFetcher {
  return (endpoint) => ({
    fetchMetadata: (gun, request) =>
      endpoint.registry === REGISTRY
        ? inner.fetchMetadata(gun, request)
        : Promise.reject(unreachable(`${NOTARY}/v2/${gun}/_trust/tuf/root.json`)),
  });
}

describe('notary sources are keyed by who they are, not by URL', () => {
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;

  beforeEach(async () => {
    ({ repo, fetcher } = await signedRepository());
  });

  it('gives an unconfigured registry that maps to a configured URL a key of its own', () => {
    const sources = new NotarySources(splitFactory(fetcher), [
      { registry: REGISTRY, server: NOTARY, timeoutMs: 1000 },
    ]);
    const configured = sources.forRegistry(REGISTRY);
    const chosen = sources.forRegistry(NOTARY_HOST);
    assert.equal(chosen.server, configured.server, 'the same URL');
    assert.equal(chosen.implicit, true);
    assert.equal(configured.implicit, false);
    assert.notEqual(chosen.key, configured.key);
    assert.notEqual(sources.forRegistry('other.test').key, chosen.key);
  });

  it("keeps the configured server's breaker closed while the same-URL pod-chosen source fails", async () => {
    const clock = new TestClock();
    const sources = new NotarySources(splitFactory(fetcher), [
      { registry: REGISTRY, server: NOTARY, timeoutMs: 1000 },
    ]);
    const cache = new TrustCache({
      maxRepositories: 10,
      maxTrustStates: 10,
      ttlMs: 60_000,
      now: clock.now,
      breaker: { failureThreshold: THRESHOLD, cooldownMs: 10_000 },
    });
    const anchor = compileAnchor({ rootKeyIds: [repo.rootKeys[0]?.publicKey.id ?? ''] });
    const chosen = sources.forRegistry(NOTARY_HOST);
    for (let i = 0; i < THRESHOLD * 2; i++) {
      await assert.rejects(cache.collection(chosen, `${NOTARY_HOST}/x/a${i}`, anchor), {
        code: 'HTTP_UNREACHABLE',
      });
    }
    assert.equal(cache.breakerState(chosen.key), 'open', 'its own breaker opened');
    const configured = sources.forRegistry(REGISTRY);
    assert.equal(cache.breakerState(configured.key), 'closed');
    const collection = await cache.collection(configured, GUN, anchor);
    assert.equal(collection.gun, GUN);
  });

  it('never counts a refusal of the full request pool against a server', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const sources = new NotarySources(
      () => ({
        fetchMetadata: async () => {
          await gate;
          throw unreachable();
        },
      }),
      [],
      { maxImplicitRequests: 1 },
    );
    const cache = new TrustCache({
      maxRepositories: 10,
      maxTrustStates: 10,
      ttlMs: 60_000,
      now: new TestClock().now,
      breaker: { failureThreshold: 1, cooldownMs: 10_000 },
    });
    const anchor = compileAnchor({ tofu: true });
    const holder = sources.forRegistry('holder.test');
    const held = cache.collection(holder, 'holder.test/a', anchor);
    const refused = sources.forRegistry('refused.test');
    for (let i = 0; i < 3; i++) {
      await assert.rejects(cache.collection(refused, `refused.test/a${i}`, anchor), {
        code: 'HTTP_UNREACHABLE',
      });
    }
    assert.equal(cache.breakerState(refused.key), 'closed', 'the server was never asked');
    release();
    await assert.rejects(held, { code: 'HTTP_UNREACHABLE' });
    assert.equal(cache.breakerState(holder.key), 'open', 'a real failure still counts');
  });

  it("counts the pod-chosen source's failures as implicit, never as the configured server's", async () => {
    const metrics = new VerifierMetrics({ defaultMetrics: false, notaryServers: [NOTARY] });
    const engine = new ImagePolicyEngine({
      config: configFrom(`${PREAMBLE}
rules:
  - images: "**"
    trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.canonicalId ?? ''}"] }
`),
      fetcherFor: splitFactory(fetcher),
      now: () => NOW,
      observer: metrics,
    });
    await engine.review(pod([1, 2, 3].map((i) => `${NOTARY_HOST}/x/a${i}:v1`)));
    const { body } = await metrics.exposition();
    const errors = body
      .split('\n')
      .filter((l) => l.startsWith('kpack_trust_verifier_notary_fetch_errors_total{'));
    assert.deepEqual(errors, [
      'kpack_trust_verifier_notary_fetch_errors_total{server="implicit",code="HTTP_UNREACHABLE"} 3',
    ]);
    await engine.close();
  });

  for (const failure of ['deny', 'error'] as const) {
    it(`still verifies the configured registry's images after a pod's images fail against its server's URL (failure: ${failure})`, async () => {
      const config = configFrom(`${PREAMBLE}
failure: ${failure}
circuitBreaker: { failureThreshold: ${THRESHOLD} }
rules:
  - images: "**"
    trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.canonicalId ?? ''}"] }
`);
      const engine = new ImagePolicyEngine({
        config,
        fetcherFor: splitFactory(fetcher),
        now: () => NOW,
      });
      const attacker = [1, 2, 3, 4, 5].map((i) => `${NOTARY_HOST}/x/a${i}:v1`);
      const attack = await engine.decide(pod(attacker));
      assert.equal(attack.status.allowed, false);
      assert.deepEqual(
        attack.images.map((d) => d.code),
        attacker.map(() => NO_TRUST_DATA),
      );
      assert.equal(engine.trustCache.breakerState(NOTARY), 'closed');
      const legit = await engine.decide(pod([IMAGE]));
      assert.equal(legit.status.allowed, true, legit.status.reason);
      assert.equal(legit.images[0]?.code, 'SIGNED');
      assert.equal(legit.images[0]?.stale, undefined);
      await engine.close();
    });
  }
});
