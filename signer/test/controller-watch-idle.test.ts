/**
 * The informer's idle deadline on a watch, through the controller's real client (KubeHttp and
 * buildListWatch) against a FAKE apiserver: a tiny HTTP server in this file that lists nothing and
 * answers each watch's headers, then sends what the test scripts and no more. The fake is needed
 * because the real apiserver cannot be made to go silent on demand: a watch whose connection is cut
 * by a network partition sees no events, no bookmarks and no close, and the apiserver on the far
 * side honours `timeoutSeconds` without the informer ever hearing of it. What is asserted: such a
 * watch is aborted once nothing arrived for timeoutSeconds + the slack, its connection closed, and
 * watched again from the last version seen (no re-list); a quiet watch that keeps sending
 * bookmarks is never cut off, since each one restarts the deadline.
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { runInformer } from '../src/controller/informer.js';
import { KubeHttp, buildListWatch, type KpackApi } from '../src/controller/kube-api.js';
import { listenAsApiserver } from './support/loopback-apiserver.js';

interface WatchSeen {
  readonly resourceVersion: string | null;
  readonly timeoutSeconds: string | null;
  readonly at: number;
  /** When the server saw this watch's connection close (set then). */
  closedAt?: number;
}

const API: KpackApi = { groupVersion: 'kpack.io/v1alpha2' };
const TIMEOUT_SECONDS = 1;
const SLACK_MS = 300;
const IDLE_MS = TIMEOUT_SECONDS * 1000 + SLACK_MS;

describe('a watch that goes silent (fake apiserver)', () => {
  let lists = 0;
  const watches: WatchSeen[] = [];
  /** What the fake sends on the n-th watch (0-based), after its headers. */
  let script: (n: number, res: ServerResponse) => void = () => undefined;
  /** Resolves when the fake has received `count` watches. */
  let awaitWatches: { count: number; resolve: () => void } | undefined;

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.searchParams.get('watch') !== 'true') {
      lists++;
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ items: [], metadata: { resourceVersion: '100' } }));
      return;
    }
    const seen: WatchSeen = {
      resourceVersion: url.searchParams.get('resourceVersion'),
      timeoutSeconds: url.searchParams.get('timeoutSeconds'),
      at: Date.now(),
    };
    watches.push(seen);
    res.on('close', () => {
      seen.closedAt = Date.now();
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    script(watches.length - 1, res);
    if (awaitWatches !== undefined && watches.length >= awaitWatches.count) awaitWatches.resolve();
  });
  let http: KubeHttp;

  before(async () => {
    http = new KubeHttp(await listenAsApiserver(server));
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const bookmark = (res: ServerResponse, version: string): void => {
    res.write(
      `${JSON.stringify({
        type: 'BOOKMARK',
        object: { kind: 'Build', metadata: { resourceVersion: version } },
      })}\n`,
    );
  };

  /** Runs the informer until the fake has seen `count` watches (or 10 s pass); its events. */
  async function runUntilWatches(count: number): Promise<{ what: string; detail?: string }[]> {
    lists = 0;
    watches.length = 0;
    const events: { what: string; detail?: string }[] = [];
    const stop = new AbortController();
    const reached = new Promise<void>((resolve) => {
      awaitWatches = { count, resolve };
    });
    const informer = runInformer(
      {
        client: buildListWatch(http, API),
        onObject: () => undefined,
        onEvent: (what, detail) => {
          events.push({ what, ...(detail === undefined ? {} : { detail }) });
        },
        watchTimeoutSeconds: TIMEOUT_SECONDS,
        watchIdleSlackMs: SLACK_MS,
        backoffBaseMs: 10,
        backoffMaxMs: 10,
      },
      stop.signal,
    );
    let capped: () => void = () => undefined;
    const cap = setTimeout(() => {
      capped();
    }, 10_000);
    try {
      await Promise.race([
        reached,
        new Promise<void>((resolve) => {
          capped = resolve;
        }),
      ]);
    } finally {
      clearTimeout(cap);
      stop.abort();
      awaitWatches = undefined;
      await informer;
    }
    return events;
  }

  it('aborts a watch silent after its headers once timeoutSeconds + slack pass, and watches again from the last version', async () => {
    let bookmarkAt = 0;
    script = (n, res) => {
      // The first watch sends one bookmark and then nothing, and never ends: a partition.
      if (n === 0) {
        bookmark(res, '105');
        bookmarkAt = Date.now();
      }
    };

    const events = await runUntilWatches(2);

    const [first, second] = watches;
    assert.ok(first !== undefined && second !== undefined);
    assert.equal(first.resourceVersion, '100');
    assert.equal(first.timeoutSeconds, String(TIMEOUT_SECONDS));
    assert.ok(first.closedAt !== undefined, 'the silent watch was never closed');
    const silentFor = first.closedAt - bookmarkAt;
    // Not before the deadline; after it, within what a busy 2-core machine adds.
    assert.ok(
      silentFor >= IDLE_MS - 50 && silentFor < IDLE_MS + 1_500,
      `closed ${silentFor} ms after the last bookmark (deadline ${IDLE_MS} ms)`,
    );
    assert.equal(second.resourceVersion, '105', 'resumed from the bookmark, not from the list');
    assert.ok(second.at >= first.closedAt);
    assert.equal(lists, 1, 'no re-list: the version seen is still good');
    const failed = events.filter((e) => e.what === 'watch-error');
    assert.equal(failed.length, 1);
    assert.match(failed[0]?.detail ?? '', /no event or bookmark for 1\.3 s/);
  });

  it('keeps a quiet watch that sends bookmarks open past the deadline: each one restarts it', async () => {
    const timers: NodeJS.Timeout[] = [];
    script = (n, res) => {
      if (n !== 0) return;
      // Six bookmarks 400 ms apart, 2.4 s in all (past the 1.3 s deadline), then the end.
      for (let i = 1; i <= 6; i++) {
        timers.push(
          setTimeout(() => {
            bookmark(res, String(100 + i));
            if (i === 6) res.end();
          }, i * 400),
        );
      }
    };

    const events = await runUntilWatches(2);
    for (const timer of timers) clearTimeout(timer);

    assert.deepEqual(
      events.filter((e) => e.what === 'watch-error'),
      [],
    );
    assert.equal(events.filter((e) => e.what === 'bookmark').length, 6);
    assert.equal(watches[1]?.resourceVersion, '106');
    assert.equal(lists, 1);
  });
});
