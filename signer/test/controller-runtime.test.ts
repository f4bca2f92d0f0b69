/**
 * The controller's machinery with injected clocks and clients: the work queue (dedup, re-queue of a
 * key changed while in hand, bounds, backoff), the informer (list then watch, bookmarks, 410 Gone →
 * re-list, backoff on errors) and Lease election (one winner under optimistic concurrency, expiry
 * judged on our own clock, release).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  GoneError,
  runInformer,
  type ListPage,
  type ListWatchClient,
  type WatchEvent,
} from '../src/controller/informer.js';
import {
  LeaseCandidate,
  LeaseConflictError,
  microTime,
  runLeaderElection,
  type LeaseClient,
  type LeaseRecord,
  type LeaseWrite,
} from '../src/controller/leader-election.js';
import { WorkQueue } from '../src/controller/work-queue.js';
import { manualTimers, type ManualTimers } from './support/manual-timers.js';

function queue(overrides: { maxSize?: number; maxAttempts?: number } = {}): {
  q: WorkQueue;
  timers: ManualTimers;
} {
  const timers = manualTimers();
  const q = new WorkQueue({
    maxSize: overrides.maxSize ?? 100,
    maxAttempts: overrides.maxAttempts ?? 3,
    baseDelayMs: 1000,
    maxDelayMs: 8000,
    setTimer: timers.setTimer,
    random: () => 0.5,
  });
  return { q, timers };
}

describe('work queue', () => {
  it('queues a key once however often it is added', async () => {
    const { q } = queue();
    q.add('ns/a');
    q.add('ns/a');
    q.add('ns/b');
    assert.equal(q.depth, 2);
    assert.equal((await q.next())?.key, 'ns/a');
    q.done('ns/a', 'forget'); // one key of a namespace in hand at a time
    assert.equal((await q.next())?.key, 'ns/b');
  });

  it('a key added while in hand is handed out again after done, never twice at once', async () => {
    const { q } = queue();
    q.add('ns/a');
    const item = await q.next();
    q.add('ns/a');
    assert.equal(q.depth, 0);
    q.done('ns/a', 'forget');
    assert.equal(q.depth, 1);
    assert.equal(item?.attempt, 1);
  });

  it('drops new keys beyond its size and counts them', () => {
    const { q } = queue({ maxSize: 2 });
    assert.equal(q.add('ns/a'), true);
    assert.equal(q.add('ns/b'), true);
    assert.equal(q.add('ns/c'), false);
    assert.equal(q.dropped, 1);
  });

  it('retries with exponential backoff and flags the last attempt', async () => {
    const { q, timers } = queue({ maxAttempts: 3 });
    q.add('ns/a');
    const seen: { attempt: number; last: boolean }[] = [];
    for (let i = 0; i < 3; i++) {
      const item = await q.next();
      assert.ok(item);
      seen.push({ attempt: item.attempt, last: item.last });
      q.done(item.key, 'retry');
      timers.fire();
    }
    assert.deepEqual(seen, [
      { attempt: 1, last: false },
      { attempt: 2, last: false },
      { attempt: 3, last: true },
    ]);
    assert.deepEqual(timers.delays, [1000, 2000, 4000]);
  });

  it('shutDown wakes a waiting worker with nothing', async () => {
    const { q } = queue();
    const waiting = q.next();
    q.shutDown();
    assert.equal(await waiting, undefined);
  });
});

function build(name: string, rv: string): unknown {
  return { metadata: { namespace: 'ns', name, resourceVersion: rv } };
}

/** A scripted apiserver: each list/watch call takes the next scripted answer. */
function scripted(
  lists: (() => ListPage)[],
  watches: ((onEvent: (e: WatchEvent) => void) => void)[],
  onDone: () => void,
): ListWatchClient & { watchedFrom: string[]; lists: number } {
  const client = {
    watchedFrom: [] as string[],
    lists: 0,
    list(): Promise<ListPage> {
      client.lists++;
      const next = lists.shift();
      if (next === undefined) throw new Error('unexpected list');
      return Promise.resolve(next());
    },
    watch(options: { resourceVersion: string }, onEvent: (e: WatchEvent) => void): Promise<void> {
      client.watchedFrom.push(options.resourceVersion);
      const next = watches.shift();
      if (next === undefined) {
        onDone();
        return Promise.resolve();
      }
      try {
        next(onEvent);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      return Promise.resolve();
    },
  };
  return client;
}

describe('informer', () => {
  it('lists, watches from the list version, follows bookmarks, and re-lists after 410 Gone', async () => {
    const stop = new AbortController();
    const seen: string[] = [];
    const client = scripted(
      [
        () => ({ items: [build('a', '10')], resourceVersion: '10' }),
        () => ({ items: [build('a', '10'), build('c', '40')], resourceVersion: '40' }),
      ],
      [
        (emit) => {
          emit({ type: 'ADDED', object: build('b', '11') });
          emit({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '20' } } });
        },
        (emit) => {
          emit({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
        },
      ],
      () => {
        stop.abort();
      },
    );

    await runInformer(
      {
        client,
        onObject: (o) => seen.push((o as { metadata: { name: string } }).metadata.name),
        sleep: () => Promise.resolve(),
      },
      stop.signal,
    );

    assert.deepEqual(seen, ['a', 'b', 'a', 'c']);
    // 10 from the list, 20 from the bookmark, then 40 from the list after 410.
    assert.deepEqual(client.watchedFrom, ['10', '20', '40']);
    assert.equal(client.lists, 2);
  });

  it('an HTTP 410 on the watch also re-lists', async () => {
    const stop = new AbortController();
    const client = scripted(
      [() => ({ items: [], resourceVersion: '5' }), () => ({ items: [], resourceVersion: '9' })],
      [
        () => {
          throw new GoneError('too old resource version');
        },
      ],
      () => {
        stop.abort();
      },
    );
    await runInformer({ client, onObject: () => undefined }, stop.signal);
    assert.deepEqual(client.watchedFrom, ['5', '9']);
  });

  it('backs off exponentially on watch errors and resumes from the last version', async () => {
    const stop = new AbortController();
    const sleeps: number[] = [];
    const failing = (): never => {
      throw new Error('connection reset');
    };
    const client = scripted(
      [() => ({ items: [], resourceVersion: '7' })],
      [failing, failing, failing],
      () => {
        stop.abort();
      },
    );
    await runInformer(
      {
        client,
        onObject: () => undefined,
        backoffBaseMs: 100,
        random: () => 0.5,
        sleep: (ms) => {
          sleeps.push(ms);
          return Promise.resolve();
        },
      },
      stop.signal,
    );
    assert.deepEqual(sleeps, [100, 200, 400]);
    assert.deepEqual(client.watchedFrom, ['7', '7', '7', '7']);
  });
});

/** A Lease store that behaves as the apiserver: resourceVersion checked on every write. */
class MemoryLease implements LeaseClient {
  record: LeaseRecord | undefined;
  #version = 0;
  writes = 0;

  get(): Promise<LeaseRecord | undefined> {
    return Promise.resolve(this.record);
  }

  create(write: LeaseWrite): Promise<LeaseRecord> {
    if (this.record !== undefined) return Promise.reject(new LeaseConflictError('exists'));
    return Promise.resolve(this.#store(write));
  }

  update(resourceVersion: string, write: LeaseWrite): Promise<LeaseRecord> {
    if (this.record?.resourceVersion !== resourceVersion) {
      return Promise.reject(new LeaseConflictError('conflict'));
    }
    return Promise.resolve(this.#store(write));
  }

  #store(write: LeaseWrite): LeaseRecord {
    this.writes++;
    this.record = { resourceVersion: String(++this.#version), ...write };
    return this.record;
  }
}

describe('Lease election', () => {
  const options = (client: LeaseClient, identity: string, clock: { t: number }) => ({
    client,
    identity,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    monotonic: () => clock.t,
    now: () => new Date(1_800_000_000_000 + clock.t),
  });

  it('of two candidates one holds the Lease; the other takes it only after it goes unrenewed for its duration', async () => {
    const lease = new MemoryLease();
    const clock = { t: 0 };
    const a = new LeaseCandidate(options(lease, 'a', clock));
    const b = new LeaseCandidate(options(lease, 'b', clock));

    assert.equal(await a.tryAcquireOrRenew(), true);
    assert.equal(await b.tryAcquireOrRenew(), false);
    clock.t = 14_000;
    assert.equal(await b.tryAcquireOrRenew(), false);
    clock.t = 15_001;
    assert.equal(await b.tryAcquireOrRenew(), true);
    assert.equal(lease.record?.holderIdentity, 'b');
    assert.equal(lease.record.leaseTransitions, 1);
    assert.equal(await a.tryAcquireOrRenew(), false);
  });

  it('a renewal restarts the other candidate’s expiry clock', async () => {
    const lease = new MemoryLease();
    const clock = { t: 0 };
    const a = new LeaseCandidate(options(lease, 'a', clock));
    const b = new LeaseCandidate(options(lease, 'b', clock));
    await a.tryAcquireOrRenew();
    await b.tryAcquireOrRenew();
    clock.t = 10_000;
    await a.tryAcquireOrRenew();
    await b.tryAcquireOrRenew();
    clock.t = 20_000;
    assert.equal(await b.tryAcquireOrRenew(), false);
  });

  it('a stale resourceVersion loses the race (409) instead of overwriting', async () => {
    const lease = new MemoryLease();
    const clock = { t: 0 };
    await new LeaseCandidate(options(lease, 'a', clock)).tryAcquireOrRenew();
    const stale = lease.record;
    assert.ok(stale);
    lease.record = { ...stale, resourceVersion: 'newer', holderIdentity: '' };
    const racing: LeaseClient = {
      get: () => Promise.resolve(stale),
      create: (w) => lease.create(w),
      update: (rv, w) => lease.update(rv, w),
    };
    assert.equal(await new LeaseCandidate(options(racing, 'b', clock)).tryAcquireOrRenew(), false);
  });

  it('leads, finishes the work in hand when stopped, then releases the Lease', async () => {
    const lease = new MemoryLease();
    const stop = new AbortController();
    const log: string[] = [];
    await runLeaderElection(
      {
        client: lease,
        identity: 'a',
        leaseDurationMs: 15_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 5,
      },
      async (leading) => {
        log.push('start');
        stop.abort();
        assert.equal(leading.aborted, true);
        // The Build in hand: finishes although the signal has aborted.
        await new Promise((resolve) => setTimeout(resolve, 20));
        log.push(`finished holding ${lease.record?.holderIdentity ?? ''}`);
      },
      stop.signal,
    );
    assert.deepEqual(log, ['start', 'finished holding a']);
    assert.equal(lease.record?.holderIdentity, '');
  });

  it('writes MicroTime with six fractional digits', () => {
    assert.equal(microTime(new Date('2026-01-02T03:04:05.678Z')), '2026-01-02T03:04:05.678000Z');
  });
});
