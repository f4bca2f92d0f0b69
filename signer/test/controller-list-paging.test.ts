/**
 * The informer's list when a page is too large for the client's response cap: the same page asked
 * for again with half the limit, the smaller limit kept for the rest of that list only, and a
 * single object over the cap failing the list instead of being skipped. The client here answers
 * like the apiserver's paging (limit + continue token over objects in key order) and refuses a
 * page whose objects sum past the cap, as KubeHttp does with the bytes of the answer; the same
 * against the real apiserver is test/test/signer-controller-list-paging.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runController, type LogFields } from '../src/controller/controller.js';
import {
  GoneError,
  PageTooLargeError,
  runInformer,
  type ListPage,
  type ListWatchClient,
} from '../src/controller/informer.js';
import { ControllerMetrics } from '../src/controller/metrics.js';

interface Sized {
  readonly metadata: { readonly name: string; readonly resourceVersion: string };
  readonly size: number;
}

/** Objects in key order, served in pages; a page whose sizes sum past `cap` is refused unread. */
class CappedLister implements ListWatchClient {
  readonly limits: number[] = [];
  watches = 0;
  constructor(
    readonly objects: readonly Sized[],
    readonly cap: number,
    readonly onWatch: () => void,
  ) {}

  list(options: { limit: number; continueToken?: string }): Promise<ListPage> {
    this.limits.push(options.limit);
    const start = options.continueToken === undefined ? 0 : Number(options.continueToken);
    const items = this.objects.slice(start, start + options.limit);
    const bytes = items.reduce((sum, item) => sum + item.size, 0);
    if (bytes > this.cap) {
      return Promise.reject(new PageTooLargeError(this.cap, `page of ${options.limit} too large`));
    }
    const next = start + items.length;
    return Promise.resolve({
      items,
      resourceVersion: '100',
      ...(next < this.objects.length ? { continueToken: String(next) } : {}),
    });
  }

  watch(): Promise<void> {
    this.watches++;
    this.onWatch();
    return Promise.resolve();
  }
}

const objects = (sizes: readonly number[]): Sized[] =>
  sizes.map((size, i) => ({ metadata: { name: `b${i}`, resourceVersion: '100' }, size }));

const nameOf = (o: unknown): string => (o as Sized).metadata.name;

describe('informer list under a response cap', () => {
  it('asks for a refused page again from the same token with half the limit, and lists every object once', async () => {
    const stop = new AbortController();
    const all = objects(Array.from({ length: 10 }, () => 10));
    // Three objects fit in the cap, four do not.
    const client = new CappedLister(all, 35, () => {
      stop.abort();
    });
    const seen: string[] = [];
    const events: string[] = [];
    await runInformer(
      {
        client,
        onObject: (o) => seen.push(nameOf(o)),
        onEvent: (what, detail) => {
          events.push(`${what}: ${detail ?? ''}`);
          if (what === 'watch-error') stop.abort();
        },
        sleep: () => Promise.resolve(),
      },
      stop.signal,
    );
    assert.deepEqual(
      seen,
      all.map((o) => o.metadata.name),
    );
    // 500 → 7 refused (all ten objects), 3 fits; 3 is kept for the rest of the list.
    assert.deepEqual(client.limits, [500, 250, 125, 62, 31, 15, 7, 3, 3, 3, 3]);
    assert.equal(client.watches, 1, 'the watch starts once the list is complete');
    assert.equal(
      events[0],
      'page-shrunk: a page of 500 exceeds the 35-byte response cap after 0 objects; asking for 250',
    );
    assert.equal(events.filter((e) => e.startsWith('page-shrunk')).length, 7);
    assert.equal(events.at(-1), 'list: 100');
  });

  it('keeps the smaller limit for the rest of one list only: the next list starts at the page size again', async () => {
    const stop = new AbortController();
    // Two large objects first (one tenant's), then small ones.
    const all = objects([40, 40, 1, 1, 1, 1, 1, 1]);
    let watched = 0;
    const client = new CappedLister(all, 50, () => {
      watched++;
      if (watched === 2) stop.abort();
    });
    let clock = 0;
    await runInformer(
      {
        client,
        onObject: () => undefined,
        pageSize: 4,
        resyncMs: 1_000,
        onEvent: (what) => {
          if (what === 'watch-error') stop.abort();
        },
        // Each watch returns at once; the clock passes the resync period between the two lists.
        now: () => (clock += 1_000),
        sleep: () => Promise.resolve(),
      },
      stop.signal,
    );
    // First list: 4 refused, 2 refused (80 bytes), then 1 for each of the eight objects.
    // Second list: 4 again from the start.
    assert.deepEqual(client.limits.slice(0, 10), [4, 2, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert.equal(client.limits[10], 4);
  });

  it('fails the list when one object alone exceeds the cap, naming how far it got, and never watches', async () => {
    const stop = new AbortController();
    const all = objects([5, 5, 5, 100, 5]);
    const client = new CappedLister(all, 50, () => {
      stop.abort();
    });
    const seen: string[] = [];
    const failures: string[] = [];
    await runInformer(
      {
        client,
        onObject: (o) => seen.push(nameOf(o)),
        pageSize: 2,
        onEvent: (what, detail) => {
          if (what === 'watch-error') {
            failures.push(detail ?? '');
            stop.abort();
          }
        },
        sleep: () => Promise.resolve(),
      },
      stop.signal,
    );
    assert.deepEqual(failures, [
      'list failed after 3 objects: the next object alone exceeds the 50-byte response cap (page limit 1); not skipped, as that would hide it',
    ]);
    assert.deepEqual(seen, ['b0', 'b1', 'b2']);
    assert.equal(client.watches, 0);
  });

  it('retries only a page refused as too large: another list failure is not answered with a smaller page', async () => {
    const stop = new AbortController();
    const limits: number[] = [];
    const client: ListWatchClient = {
      list: (options) => {
        limits.push(options.limit);
        return Promise.reject(new GoneError('the list continue token expired'));
      },
      watch: () => Promise.resolve(),
    };
    await runInformer(
      {
        client,
        onObject: () => undefined,
        onEvent: (what) => {
          // A 410 on a list relists from the start at the full page size.
          if (what === 'gone' && limits.length === 2) stop.abort();
        },
        sleep: () => Promise.resolve(),
      },
      stop.signal,
    );
    assert.deepEqual(limits, [500, 500]);
  });
});

describe('the controller under a response cap', () => {
  it("logs each smaller page asked for as a warning, with the informer's detail", async () => {
    const stop = new AbortController();
    // Three objects fit in the cap, four do not; none is a Build, so nothing is reconciled.
    const client = new CappedLister(objects(Array.from({ length: 10 }, () => 10)), 35, () => {
      stop.abort();
    });
    const logs: { level: string; message: string; fields: LogFields | undefined }[] = [];
    const unused = (): Promise<never> => Promise.reject(new Error('nothing is reconciled'));
    await runController(
      {
        sources: [client],
        reconcile: {
          getBuild: unused,
          getImage: unused,
          annotateBuild: unused,
          recordEvent: unused,
          sign: unused,
          defaults: { optInNamespaces: [], allowedNotaryUrls: [] },
          now: () => new Date(0),
        },
        metrics: new ControllerMetrics(),
        log: (level, message, fields) => logs.push({ level, message, fields }),
        workers: 1,
        queue: { maxSize: 10, maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
      },
      stop.signal,
    );
    const shrunk = logs.filter((l) => l.message === 'list page too large; asking for fewer');
    assert.equal(shrunk.length, 7, '500 → 250 → … → 3');
    assert.deepEqual(shrunk[0], {
      level: 'warn',
      message: 'list page too large; asking for fewer',
      fields: {
        detail: 'a page of 500 exceeds the 35-byte response cap after 0 objects; asking for 250',
      },
    });
    assert.ok(logs.some((l) => l.message === 'listed Builds'));
  });
});
