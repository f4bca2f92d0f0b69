/**
 * The work queue's fairness between namespaces and its backoff against a tenant who touches
 * Builds: a namespace whose Builds stall holds one worker, not all; other namespaces are served
 * in turn; an add during a backoff (or after giving up) never shortens it. Timers are injected
 * (a manual clock that records every delay asked for); workers are plain async loops.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue, type WorkItem } from '../src/controller/work-queue.js';
import { manualTimers, type ManualTimers } from './support/manual-timers.js';

function queue(options: { maxAttempts?: number; perNamespace?: number; maxSize?: number } = {}): {
  q: WorkQueue;
  timers: ManualTimers;
} {
  const timers = manualTimers();
  const q = new WorkQueue({
    maxSize: options.maxSize ?? 100,
    maxAttempts: options.maxAttempts ?? 3,
    baseDelayMs: 1000,
    maxDelayMs: 8000,
    failureMemoryMs: 60_000,
    ...(options.perNamespace === undefined ? {} : { maxInFlightPerGroup: options.perNamespace }),
    setTimer: timers.setTimer,
    random: () => 0.5,
  });
  return { q, timers };
}

/** Resolves with the item if `next()` hands one out within a few turns of the event loop. */
async function nextNow(q: WorkQueue): Promise<WorkItem | 'waiting'> {
  const waiting = Symbol('waiting');
  const item = await Promise.race([
    q.next(),
    new Promise<typeof waiting>((resolve) => {
      setImmediate(() => {
        resolve(waiting);
      });
    }),
  ]);
  if (item === waiting) return 'waiting';
  assert.ok(item !== undefined, 'the queue is not shut down');
  return item;
}

describe('work queue: fairness between namespaces', () => {
  it('a namespace with many stalled Builds holds one worker; the other namespace is signed at once', async () => {
    const { q } = queue();
    for (let i = 1; i <= 10; i++) q.add(`tenant-a/stalled-${i}`);
    q.add('tenant-b/app-1');

    // Two workers, as the controller's default: tenant-a's Builds never finish (a registry that
    // never answers); tenant-b's finish at once.
    const handled: string[] = [];
    const stalled: string[] = [];
    const worker = async (): Promise<void> => {
      for (;;) {
        const item = await q.next();
        if (item === undefined) return;
        handled.push(item.key);
        if (item.key.startsWith('tenant-a/')) {
          stalled.push(item.key);
          await new Promise<never>(() => undefined);
        }
        q.done(item.key, 'forget');
      }
    };
    void worker();
    void worker();
    await new Promise((resolve) => setImmediate(resolve));

    assert.deepEqual(stalled, ['tenant-a/stalled-1'], 'one of tenant-a’s Builds in hand, not two');
    assert.ok(handled.includes('tenant-b/app-1'), `tenant-b was served: ${handled.join(', ')}`);
    assert.equal(q.inFlight, 1);
    assert.equal(q.depth, 9);

    // A Build of tenant-b arriving later still finds the free worker.
    q.add('tenant-b/app-2');
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(handled.includes('tenant-b/app-2'));
    assert.deepEqual(stalled, ['tenant-a/stalled-1']);
    q.shutDown();
  });

  it('a namespace’s next key is handed out once its key in hand is done', async () => {
    const { q } = queue();
    q.add('a/1');
    q.add('a/2');
    const first = await nextNow(q);
    assert.equal(first !== 'waiting' && first.key, 'a/1');
    const second = q.next();
    assert.equal(await nextNow(q), 'waiting');
    q.done('a/1', 'forget');
    assert.equal((await second)?.key, 'a/2');
    q.shutDown();
  });

  it('serves waiting namespaces in turn, not in arrival order', async () => {
    const { q } = queue();
    for (const key of ['a/1', 'a/2', 'a/3', 'b/1', 'b/2', 'c/1']) q.add(key);
    const order: string[] = [];
    for (let i = 0; i < 6; i++) {
      const item = await nextNow(q);
      assert.ok(item !== 'waiting');
      order.push(item.key);
      q.done(item.key, 'forget');
    }
    assert.deepEqual(order, ['a/1', 'b/1', 'c/1', 'a/2', 'b/2', 'a/3']);
  });

  it('a cap of two per namespace lets a namespace use two workers, not a third', async () => {
    const { q } = queue({ perNamespace: 2 });
    for (const key of ['a/1', 'a/2', 'a/3']) q.add(key);
    const one = await nextNow(q);
    const two = await nextNow(q);
    assert.deepEqual(
      [one, two].map((item) => (item === 'waiting' ? item : item.key)),
      ['a/1', 'a/2'],
    );
    assert.equal(await nextNow(q), 'waiting');
    q.shutDown();
  });

  it('hands out nothing more once shut down, even with keys waiting', async () => {
    const { q } = queue();
    q.add('a/1');
    q.add('b/1');
    q.shutDown();
    assert.equal(await q.next(), undefined);
  });
});

describe('work queue: backoff cannot be skipped by touching a Build', () => {
  it('adds during a retry backoff do not shorten it', async () => {
    const { q, timers } = queue();
    q.add('a/build');
    const first = await nextNow(q);
    assert.ok(first !== 'waiting');
    q.done('a/build', 'retry');
    assert.deepEqual(timers.delays, [1000]);

    // The tenant touches the Build ten times during the backoff.
    for (let i = 0; i < 10; i++) assert.equal(q.add('a/build'), true);
    assert.equal(q.depth, 0);
    assert.equal(await nextNow(q), 'waiting');

    timers.fire();
    // One timer was ever set for this backoff: no add replaced it with a shorter one.
    assert.deepEqual(timers.delays, [1000]);
    assert.equal(q.depth, 0, 'the waiting next() took it');
    q.shutDown();
  });

  it('an add while the key is in hand after a retry waits out the backoff too', async () => {
    const { q, timers } = queue();
    q.add('a/build');
    await nextNow(q);
    q.add('a/build');
    q.done('a/build', 'retry');
    assert.equal(q.depth, 0);
    assert.equal(await nextNow(q), 'waiting');
    timers.fire();
    q.shutDown();
  });

  it('a key that gave up keeps its attempt count: a touch waits out a growing backoff and gets one last attempt', async () => {
    const { q, timers } = queue({ maxAttempts: 3 });
    q.add('a/build');
    const attempts: { attempt: number; last: boolean }[] = [];
    const run = async (result: 'retry' | 'give-up'): Promise<void> => {
      const item = await nextNow(q);
      assert.ok(item !== 'waiting', 'handed out');
      attempts.push({ attempt: item.attempt, last: item.last });
      q.done(item.key, result);
    };
    await run('retry');
    timers.fire();
    await run('retry');
    timers.fire();
    await run('give-up'); // the third (last) attempt failed and was recorded as final

    // Not queued again by itself; the tenant removes the record at once, and again and again.
    assert.equal(q.add('a/build'), true);
    assert.equal(q.add('a/build'), true);
    assert.equal(q.depth, 0, 'kept back until the backoff ends');
    timers.fire();
    await run('give-up');
    q.add('a/build');
    assert.equal(q.depth, 0, 'kept back until the backoff ends');
    timers.fire();
    await run('give-up');

    assert.deepEqual(attempts, [
      { attempt: 1, last: false },
      { attempt: 2, last: false },
      { attempt: 3, last: true },
      { attempt: 4, last: true },
      { attempt: 5, last: true },
    ]);
    // Backoff doubles on every failure, capped at maxDelayMs, whoever queued the key.
    assert.deepEqual(timers.delays, [1000, 2000, 4000, 8000, 8000]);
    q.shutDown();
  });

  it('a key that gave up with no touch during its backoff is kept back until the backoff ends, then queued on the next add', async () => {
    const { q, timers } = queue({ maxAttempts: 3 });
    q.add('a/build');
    await nextNow(q);
    q.done('a/build', 'give-up');
    timers.fire(); // backoff over, nobody added it: not queued
    assert.equal(q.depth, 0);
    assert.equal(q.add('a/build'), true);
    const item = await nextNow(q);
    assert.ok(item !== 'waiting');
    assert.equal(item.attempt, 2, 'the count survives the backoff');
    q.shutDown();
  });

  it('forgets a given-up key’s count after failureMemoryMs without an add, and on success', async () => {
    const { q, timers } = queue({ maxAttempts: 3 });
    q.add('a/build');
    await nextNow(q);
    q.done('a/build', 'give-up');
    timers.fire(); // the backoff
    assert.equal(timers.delays.at(-1), 60_000, 'the memory timer');
    timers.fire(); // the memory ends
    q.add('a/build');
    const fresh = await nextNow(q);
    assert.ok(fresh !== 'waiting');
    assert.equal(fresh.attempt, 1);
    q.done('a/build', 'forget');
    q.add('a/build');
    const afterSuccess = await nextNow(q);
    assert.ok(afterSuccess !== 'waiting');
    assert.equal(afterSuccess.attempt, 1);
    q.shutDown();
  });

  it('remembers at most maxSize given-up keys, dropping the oldest', async () => {
    const { q, timers } = queue({ maxSize: 2 });
    for (const key of ['a/1', 'b/1', 'c/1']) {
      q.add(key);
      await nextNow(q);
      q.done(key, 'give-up');
      timers.fire();
    }
    for (const key of ['a/1', 'c/1']) {
      q.add(key);
      const item = await nextNow(q);
      assert.ok(item !== 'waiting');
      assert.equal(item.attempt, key === 'a/1' ? 1 : 2, key);
      q.done(key, 'forget');
    }
    q.shutDown();
  });
});
