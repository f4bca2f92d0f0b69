/**
 * The trust cache under notary outages, on a fake clock: stale-if-error only for unavailability and
 * never past the window or any role's expiry; negative caching of verdict-class failures; the
 * deadline aborting the work while its slot is kept; refresh-ahead with bounded concurrency.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { beforeEach, describe, it } from 'node:test';
import {
  NotaryHttpClient,
  TrustError,
  compileAnchor,
  isTrustError,
  type CompiledAnchor,
  type MetadataFetcher,
  type MetadataRequest,
} from '@kpack-trust/common';
import {
  fixtureKey,
  type FixtureRepository,
  type MemoryFetcher,
} from '@kpack-trust/common/testing';
import {
  MAX_BACKGROUND_REFRESHES,
  TrustCache,
  collectionKey,
  type NotarySource,
  type TrustCacheOptions,
} from '../src/trust/cache.js';
import {
  ControlledFetcher,
  GUN,
  HOUR,
  NOTARY,
  NOW,
  REGISTRY,
  TestClock,
  V1,
  V2,
  IMAGE,
  engineWith,
  expireTimestampAfter,
  pinnedConfig,
  pod,
  repositoryWithSameRootKey,
  signedRepository,
  unreachable,
} from './support/engine.js';

const TTL = 60_000;

interface Recorded {
  stale: { gun: string; errorCode: string }[];
  fetches: boolean[];
}

function cacheWith(
  clock: TestClock,
  options: Partial<TrustCacheOptions> = {},
): { cache: TrustCache; recorded: Recorded } {
  const recorded: Recorded = { stale: [], fetches: [] };
  const cache = new TrustCache({
    maxRepositories: 100,
    maxTrustStates: 1000,
    ttlMs: TTL,
    now: clock.now,
    staleIfErrorMs: HOUR,
    negativeTtlMs: 5_000,
    observer: {
      notaryFetched: (e) => recorded.fetches.push(e.ok),
      cacheLookup: () => undefined,
      staleServed: (e) => recorded.stale.push({ gun: e.gun, errorCode: e.errorCode }),
    },
    ...options,
  });
  return { cache, recorded };
}

function source(fetcher: MetadataFetcher, timeoutMs = 5_000): NotarySource {
  return { server: NOTARY, key: NOTARY, fetcher, timeoutMs };
}

/** Fails every request for the roles in `down` with `error`; serves the others from `inner`. */
class RoleOutage implements MetadataFetcher {
  readonly down = new Set<string>();
  private readonly inner: MetadataFetcher;
  private readonly error: TrustError;

  constructor(inner: MetadataFetcher, error: TrustError) {
    this.inner = inner;
    this.error = error;
  }

  fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
    if (this.down.has(request.role)) return Promise.reject(this.error);
    return this.inner.fetchMetadata(gun, request);
  }
}

/** The error NotaryHttpClient raises for a 503. */
function serviceUnavailable(): TrustError {
  return new TrustError(
    'HTTP_STATUS',
    { url: `${NOTARY}/v2/${GUN}/_trust/tuf/timestamp.json`, status: 503, serverCode: '' },
    'notary answered 503',
  );
}

/** The 503 of serviceUnavailable(), and nothing else. */
function is503(error: unknown): boolean {
  return isTrustError(error, 'HTTP_STATUS') && error.facts.status === 503;
}

/** Resolves after the promise callbacks and timers queued so far have run. */
function tick(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

describe('trust cache availability', () => {
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;
  let anchor: CompiledAnchor;
  let clock: TestClock;

  beforeEach(async () => {
    ({ repo, fetcher } = await signedRepository());
    anchor = compileAnchor({ rootKeyIds: [repo.rootKeys[0]?.publicKey.id ?? ''] });
    clock = new TestClock();
  });

  describe('stale-if-error', () => {
    it('answers the last verified collection, marked stale, while notary is unreachable', async () => {
      const flaky = new ControlledFetcher(fetcher);
      const { cache, recorded } = cacheWith(clock);
      const first = await cache.lookup(source(flaky), GUN, anchor);
      assert.equal(first.stale, undefined);
      clock.advance(TTL + 1_000);
      flaky.failWith = unreachable();
      const stale = await cache.lookup(source(flaky), GUN, anchor);
      assert.equal(stale.collection, first.collection);
      assert.deepEqual(stale.stale, {
        verifiedAt: new Date(clock.current.getTime() - TTL - 1_000),
        errorCode: 'HTTP_UNREACHABLE',
      });
      assert.deepEqual(recorded.stale, [{ gun: GUN, errorCode: 'HTTP_UNREACHABLE' }]);
      // Back: the next lookup is fresh again.
      flaky.failWith = undefined;
      const fresh = await cache.lookup(source(flaky), GUN, anchor);
      assert.equal(fresh.stale, undefined);
      assert.notEqual(fresh.collection, first.collection);
    });

    it('answers stale on a 5xx too', async () => {
      const flaky = new ControlledFetcher(fetcher);
      const { cache } = cacheWith(clock);
      await cache.lookup(source(flaky), GUN, anchor);
      clock.advance(TTL);
      flaky.failWith = new TrustError(
        'HTTP_STATUS',
        { url: NOTARY, status: 503, serverCode: '' },
        '503',
      );
      assert.equal(
        (await cache.lookup(source(flaky), GUN, anchor)).stale?.errorCode,
        'HTTP_STATUS',
      );
    });

    it('never past the window', async () => {
      const flaky = new ControlledFetcher(fetcher);
      const { cache } = cacheWith(clock);
      await cache.lookup(source(flaky), GUN, anchor);
      flaky.failWith = unreachable();
      clock.advance(TTL + HOUR - 1);
      assert.ok((await cache.lookup(source(flaky), GUN, anchor)).stale);
      clock.advance(1);
      await assert.rejects(cache.lookup(source(flaky), GUN, anchor), (e) =>
        isTrustError(e, 'HTTP_UNREACHABLE'),
      );
    });

    it("never past any role's own expiry", async () => {
      await expireTimestampAfter(repo, 2 * TTL);
      const flaky = new ControlledFetcher(fetcher);
      const { cache } = cacheWith(clock);
      await cache.lookup(source(flaky), GUN, anchor);
      flaky.failWith = unreachable();
      clock.advance(2 * TTL - 1);
      assert.ok((await cache.lookup(source(flaky), GUN, anchor)).stale);
      clock.advance(1);
      await assert.rejects(cache.lookup(source(flaky), GUN, anchor), (e) =>
        isTrustError(e, 'HTTP_UNREACHABLE'),
      );
    });

    it('never when the refresh failed verification (a replayed timestamp: freeze)', async () => {
      const oldTimestamp = repo.bytesOf('timestamp');
      await repo.signTag('v2', V2.digestHex, V2.length);
      const { cache, recorded } = cacheWith(clock);
      await cache.lookup(source(fetcher), GUN, anchor);
      clock.advance(TTL);
      repo.files.set('timestamp.json', oldTimestamp);
      await assert.rejects(cache.lookup(source(fetcher), GUN, anchor), (e) =>
        isTrustError(e, 'VERSION_ROLLBACK'),
      );
      // The server then goes away: nothing stale is left to answer with.
      const down = new ControlledFetcher(fetcher);
      down.failWith = unreachable();
      clock.advance(6_000);
      await assert.rejects(cache.lookup(source(down), GUN, anchor), (e) =>
        isTrustError(e, 'HTTP_UNREACHABLE'),
      );
      assert.deepEqual(recorded.stale, []);
    });

    it('0 turns it off', async () => {
      const flaky = new ControlledFetcher(fetcher);
      const { cache } = cacheWith(clock, { staleIfErrorMs: 0 });
      await cache.lookup(source(flaky), GUN, anchor);
      clock.advance(TTL);
      flaky.failWith = unreachable();
      await assert.rejects(cache.lookup(source(flaky), GUN, anchor), (e) =>
        isTrustError(e, 'HTTP_UNREACHABLE'),
      );
    });

    it('with the breaker open, answers stale without a request', async () => {
      const flaky = new ControlledFetcher(fetcher);
      const { cache } = cacheWith(clock, { breaker: { failureThreshold: 2, cooldownMs: 10_000 } });
      await cache.lookup(source(flaky), GUN, anchor);
      clock.advance(TTL);
      flaky.failWith = unreachable();
      await cache.lookup(source(flaky), GUN, anchor);
      await cache.lookup(source(flaky), GUN, anchor);
      assert.equal(cache.breakerState(NOTARY), 'open');
      const requests = fetcher.requests.length;
      const calls = flaky.maxInFlight;
      const answer = await cache.lookup(source(flaky), GUN, anchor);
      assert.ok(answer.stale);
      assert.equal(fetcher.requests.length, requests);
      assert.equal(flaky.maxInFlight, calls);
    });
  });

  describe('root rotation', () => {
    /** Rotates `repo`'s root to a new key (version 2), signed by the old and the new one. */
    async function rotate(): Promise<Uint8Array> {
      const old = repo.bytesOf('root');
      await repo.rotateRoot([
        await fixtureKey({ certificateFor: GUN, notBefore: new Date(NOW.getTime() - HOUR) }),
      ]);
      return old;
    }

    for (const role of ['timestamp', 'snapshot']) {
      it(`after a verified rotation, a ${role} 503 denies: the old collection never answers again`, async () => {
        const outage = new RoleOutage(fetcher, serviceUnavailable());
        const { cache, recorded } = cacheWith(clock, {
          breaker: { failureThreshold: 1, cooldownMs: 10_000 },
        });
        const first = await cache.lookup(source(outage), GUN, anchor);
        assert.equal(first.collection.root.version, 1);
        clock.advance(TTL);
        const oldRoot = await rotate();
        outage.down.add(role);
        await assert.rejects(cache.lookup(source(outage), GUN, anchor), is503);
        // Nor while the circuit is open, where stale answers come without a request.
        assert.equal(cache.breakerState(NOTARY), 'open');
        await assert.rejects(cache.lookup(source(outage), GUN, anchor), (e) =>
          isTrustError(e, 'HTTP_UNREACHABLE'),
        );
        assert.deepEqual(recorded.stale, []);
        // The rotation is kept (TUF 5.3.8): the next update resumes from root version 2 …
        const kept = cache.trustState(NOTARY, GUN, anchor)?.rootBytes ?? new Uint8Array();
        assert.deepEqual(Buffer.from(kept), repo.bytesOf('root'));
        assert.equal(cache.trustState(NOTARY, GUN, anchor)?.floors?.['root'], 2);
        // … so a server that offers the old root again is refused as a rollback,
        clock.advance(10_000);
        outage.down.clear();
        repo.files.set('root.json', Buffer.from(oldRoot));
        await assert.rejects(
          cache.lookup(source(outage), GUN, anchor),
          (e) => isTrustError(e, 'VERSION_ROLLBACK') && e.facts.role === 'root',
        );
        // … and once notary serves the rotated repository, it is verified afresh.
        repo.files.set('root.json', repo.bytesOf('root'));
        clock.advance(5_000);
        const fresh = await cache.lookup(source(outage), GUN, anchor);
        assert.equal(fresh.stale, undefined);
        assert.equal(fresh.collection.root.version, 2);
      });
    }

    it('a refresh-ahead that verifies a rotation, then meets an outage, drops the still-fresh collection', async () => {
      const outage = new RoleOutage(fetcher, serviceUnavailable());
      const { cache, recorded } = cacheWith(clock, { refreshAheadMs: 10_000 });
      const first = await cache.lookup(source(outage), GUN, anchor);
      const key = collectionKey(NOTARY, GUN, anchor);
      clock.advance(TTL - 5_000);
      await rotate();
      outage.down.add('timestamp');
      // Within its TTL: a hit, which starts the refresh in the background.
      assert.equal(cache.freshCollection(key, source(outage), GUN, anchor), first.collection);
      await cache.settled();
      assert.equal(cache.freshCollection(key), undefined);
      await assert.rejects(cache.lookup(source(outage), GUN, anchor), is503);
      assert.deepEqual(recorded.stale, []);
    });

    for (const role of ['timestamp', 'snapshot']) {
      it(`without a rotation, a ${role} 503 still answers stale and keeps the root`, async () => {
        const outage = new RoleOutage(fetcher, serviceUnavailable());
        const { cache, recorded } = cacheWith(clock);
        const first = await cache.lookup(source(outage), GUN, anchor);
        const rootBytes = cache.trustState(NOTARY, GUN, anchor)?.rootBytes;
        clock.advance(TTL);
        outage.down.add(role);
        const stale = await cache.lookup(source(outage), GUN, anchor);
        assert.equal(stale.collection, first.collection);
        assert.equal(stale.stale?.errorCode, 'HTTP_STATUS');
        assert.deepEqual(recorded.stale, [{ gun: GUN, errorCode: 'HTTP_STATUS' }]);
        // The root was fetched and resumed, and the trust state is the one verified before.
        assert.ok(fetcher.requests.slice(4).some((r) => r.endsWith('/root.json')));
        assert.equal(cache.trustState(NOTARY, GUN, anchor)?.rootBytes, rootBytes);
      });
    }
  });

  describe('negative caching', () => {
    it('remembers a verdict-class failure for its TTL, then asks again', async () => {
      const { cache, recorded } = cacheWith(clock);
      const other = `${REGISTRY}/demo/unsigned`;
      await assert.rejects(cache.lookup(source(fetcher), other, anchor), (e) =>
        isTrustError(e, 'HTTP_STATUS'),
      );
      await assert.rejects(cache.lookup(source(fetcher), other, anchor), (e) =>
        isTrustError(e, 'HTTP_STATUS'),
      );
      assert.equal(fetcher.requests.length, 1, 'the second lookup asked nobody');
      clock.advance(5_000);
      await assert.rejects(cache.lookup(source(fetcher), other, anchor));
      assert.equal(fetcher.requests.length, 2);
      assert.deepEqual(recorded.fetches, [false, false]);
    });

    it('never shadows verified data: a fresh collection answers, and a success forgets the failure', async () => {
      const { cache } = cacheWith(clock);
      const good = await cache.lookup(source(fetcher), GUN, anchor);
      clock.advance(TTL);
      const served = repo.files.get('timestamp.json');
      repo.files.delete('timestamp.json');
      await assert.rejects(cache.lookup(source(fetcher), GUN, anchor));
      if (served !== undefined) repo.files.set('timestamp.json', served);
      clock.advance(5_000);
      const again = await cache.lookup(source(fetcher), GUN, anchor);
      assert.notEqual(again.collection, good.collection);
      // Within the next 5 s a lookup is a hit, not the remembered failure.
      clock.advance(1_000);
      assert.equal((await cache.lookup(source(fetcher), GUN, anchor)).collection, again.collection);
    });

    it('does not remember unavailability (the breaker handles outages)', async () => {
      const flaky = new ControlledFetcher(fetcher);
      flaky.failWith = unreachable();
      const { cache } = cacheWith(clock);
      await assert.rejects(cache.lookup(source(flaky), GUN, anchor));
      flaky.failWith = undefined;
      assert.ok((await cache.lookup(source(flaky), GUN, anchor)).collection);
    });
  });

  describe('deadline', () => {
    it('aborts the work and keeps the slot until it settled: 20 lookups, one chain', async () => {
      let calls = 0;
      let aborted = 0;
      let finish: () => void = () => undefined;
      const settled = new Promise<void>((r) => (finish = r));
      // Honours the signal late: the work outlives the deadline by a while.
      const stalled: MetadataFetcher = {
        fetchMetadata: (_gun: string, request: MetadataRequest) => {
          calls++;
          return new Promise<Uint8Array>((_, reject) => {
            request.signal?.addEventListener('abort', () => {
              aborted++;
              void settled.then(() => {
                reject(request.signal?.reason as Error);
              });
            });
          });
        },
      };
      const { cache } = cacheWith(clock, { staleIfErrorMs: 0 });
      const lookup = (): Promise<unknown> =>
        cache.lookup(source(stalled, 30), GUN, anchor).catch((e: unknown) => e);
      const lookups = [lookup()];
      await tick(60);
      for (let i = 0; i < 19; i++) lookups.push(lookup());
      const errors = await Promise.all(lookups);
      assert.ok(errors.every((e) => isTrustError(e, 'HTTP_UNREACHABLE')));
      assert.equal(calls, 1, 'one chain, one request');
      assert.equal(aborted, 1);
      assert.equal(cache.stats().inFlight, 1, 'the slot is held until the work settles');
      finish();
      await cache.settled();
      assert.equal(cache.stats().inFlight, 0);
    });

    it('a slow HTTP server sees its request aborted at the deadline, and one chain at a time', async () => {
      let requests = 0;
      let open = 0;
      let maxOpen = 0;
      let closedEarly = 0;
      const server = createServer((request: IncomingMessage) => {
        requests++;
        open++;
        maxOpen = Math.max(maxOpen, open);
        // Never answers; the client has to go away.
        request.socket.on('close', () => {
          open--;
          closedEarly++;
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as AddressInfo).port;
      const client = new NotaryHttpClient({
        baseUrl: `http://127.0.0.1:${port}`,
        timeoutMs: 10_000,
      });
      try {
        const { cache } = cacheWith(clock, { staleIfErrorMs: 0 });
        const slow: NotarySource = {
          server: `http://127.0.0.1:${port}`,
          key: `http://127.0.0.1:${port}`,
          fetcher: client,
          timeoutMs: 50,
        };
        const started = performance.now();
        const lookups: Promise<unknown>[] = [];
        // 20 reviews over ~400 ms, deadline 50 ms: before the fix each left a chain running for 10 s.
        for (let i = 0; i < 20; i++) {
          lookups.push(cache.lookup(slow, GUN, anchor).catch((e: unknown) => e));
          await tick(20);
        }
        const errors = await Promise.all(lookups);
        assert.ok(errors.every((e) => isTrustError(e, 'HTTP_UNREACHABLE')));
        await cache.settled();
        const elapsed = performance.now() - started;
        assert.ok(
          elapsed < 3_000,
          `the work ended ${Math.round(elapsed)} ms in, not at the client's own 10 s timeout`,
        );
        await tick(50);
        assert.equal(maxOpen, 1, 'never more than one chain');
        assert.ok(requests <= 10, `${requests} requests`);
        assert.equal(open, 0, 'every request was aborted');
        assert.equal(closedEarly, requests);
      } finally {
        client.close();
        await new Promise((r) => server.close(r));
      }
    });
  });

  describe('refresh-ahead', () => {
    it('refreshes a collection in use before its TTL ends: steady traffic never misses', async () => {
      const { cache } = cacheWith(clock, { refreshAheadMs: 10_000 });
      const first = await cache.lookup(source(fetcher), GUN, anchor);
      const misses: number[] = [];
      let current = first.collection;
      // One lookup a second for three TTLs.
      const key = collectionKey(NOTARY, GUN, anchor);
      for (let s = 1; s <= 180; s++) {
        clock.advance(1_000);
        const hit = cache.freshCollection(key, source(fetcher), GUN, anchor);
        if (hit === undefined) misses.push(s);
        else current = hit;
        await tick();
      }
      assert.deepEqual(misses, []);
      assert.notEqual(current, first.collection);
      // One update per TTL (at 50 s, 100 s, 150 s), not one per lookup.
      assert.equal(fetcher.requests.length, 4 * 4);
    });

    it('runs at most MAX_BACKGROUND_REFRESHES at once', async () => {
      const slow = new ControlledFetcher(fetcher);
      const repos = await Promise.all(
        Array.from({ length: MAX_BACKGROUND_REFRESHES + 2 }, async (_, i) => {
          const r = await repositoryWithSameRootKey(repo, `${REGISTRY}/demo/r${i}`);
          await r.signTag('v1', V1.digestHex, V1.length);
          fetcher.serve(r);
          return r;
        }),
      );
      const canonical = compileAnchor({
        rootKeyIds: [repo.rootKeys[0]?.publicKey.canonicalId ?? ''],
      });
      const { cache, recorded } = cacheWith(clock, { refreshAheadMs: 10_000 });
      for (const r of repos) await cache.lookup(source(slow), r.gun, canonical);
      clock.advance(TTL - 5_000);
      slow.delayMs = 20;
      for (const r of repos) await cache.lookup(source(slow), r.gun, canonical);
      assert.equal(cache.stats().inFlight, MAX_BACKGROUND_REFRESHES);
      await cache.settled();
      assert.equal(recorded.fetches.length, repos.length + MAX_BACKGROUND_REFRESHES);
    });
  });

  describe('through the engine', () => {
    it('admits from stale data with the stale mark in the decision, the log event and the audit annotations', async () => {
      const flaky = new ControlledFetcher(fetcher);
      const { engine, clock, observer } = engineWith(
        pinnedConfig(repo, { top: 'circuitBreaker: { failureThreshold: 2 }' }),
        flaky,
      );
      const verifiedAt = clock.current.toISOString();
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
      clock.advance(TTL);
      flaky.failWith = unreachable();
      for (let i = 0; i < 3; i++) {
        const decision = await engine.decide(pod([IMAGE]));
        assert.equal(decision.status.allowed, true);
        assert.equal(decision.images[0]?.stale, verifiedAt);
        assert.equal(decision.status.auditAnnotations?.['image-0-stale'], verifiedAt);
        assert.equal(
          decision.status.auditAnnotations?.['image-0-digest'],
          `sha256:${V1.digestHex}`,
        );
      }
      assert.equal(engine.trustCache.breakerState(NOTARY), 'open');
      assert.equal(observer.images.at(-1)?.stale, verifiedAt);
      assert.equal(observer.images.at(-1)?.memo, undefined, 'a stale answer is never memoised');
      flaky.failWith = undefined;
      clock.advance(10_000);
      // The cool-down is over: this review still answers stale at once while the probe runs.
      const probing = await engine.decide(pod([IMAGE]));
      assert.equal(probing.images[0]?.stale, verifiedAt);
      await engine.trustCache.settled();
      const fresh = await engine.decide(pod([IMAGE]));
      assert.equal(fresh.images[0]?.stale, undefined);
      assert.equal(fresh.status.auditAnnotations?.['image-0-stale'], undefined);
      assert.equal(engine.trustCache.breakerState(NOTARY), 'closed');
    });

    it('denies with the outage after a verified root rotation, never from the superseded data', async () => {
      const outage = new RoleOutage(fetcher, serviceUnavailable());
      const { engine, clock, observer } = engineWith(pinnedConfig(repo), outage);
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
      clock.advance(TTL);
      await repo.rotateRoot([
        await fixtureKey({ certificateFor: GUN, notBefore: new Date(NOW.getTime() - HOUR) }),
      ]);
      outage.down.add('timestamp');
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(decision.status.allowed, false);
      assert.equal(decision.images[0]?.code, 'HTTP_STATUS');
      assert.equal(
        decision.images[0]?.reason,
        `notary ${NOTARY} is unavailable for ${GUN} (HTTP 503)`,
      );
      assert.equal(decision.images[0]?.stale, undefined);
      assert.equal(observer.images.at(-1)?.stale, undefined);
    });

    it('denies an image never verified before at once while the breaker is open', async () => {
      const flaky = new ControlledFetcher(fetcher);
      flaky.failWith = unreachable();
      const { engine } = engineWith(
        pinnedConfig(repo, { top: 'circuitBreaker: { failureThreshold: 1 }' }),
        flaky,
      );
      assert.equal((await engine.review(pod([IMAGE]))).allowed, false);
      flaky.delayMs = 5_000;
      const started = performance.now();
      const decision = await engine.decide(pod([`${REGISTRY}/demo/other:v1`]));
      assert.ok(performance.now() - started < 100);
      assert.equal(decision.status.allowed, false);
      assert.equal(decision.images[0]?.code, 'HTTP_UNREACHABLE');
    });
  });
});
