/**
 * A list-then-watch informer, as client-go's reflector does it: list (paged) to learn every object
 * and the collection's resourceVersion, then watch from that version with bookmarks so the version
 * keeps moving even when nothing we watch changes; when the apiserver says `410 Gone` (the version
 * was compacted away — as an HTTP status or as an ERROR event in the stream) list again, so no
 * object is missed; on any other failure wait with exponential backoff and jitter, then resume
 * from the last version seen. A periodic full re-list is the safety net for keys the bounded work
 * queue had to drop.
 *
 * A watch whose connection goes silent (a network partition: no events, no bookmarks, no close)
 * would hold the informer forever: the apiserver ending it at `timeoutSeconds` never reaches us.
 * client-go's transport notices through HTTP/2 health pings; over our HTTP/1.1 stream the informer
 * gives the watch `timeoutSeconds` plus a slack from its last event or bookmark, then aborts it and
 * fails it like any other watch error (backoff, then resume from the last version seen).
 *
 * It hands objects to `onObject` and keeps no cache: the controller reads each Build fresh when it
 * works on it, so memory stays flat however many Builds the cluster holds.
 */

/** One event of a watch stream, as the apiserver sends it. */
export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: unknown;
}

/** One page of a list. */
export interface ListPage {
  readonly items: readonly unknown[];
  readonly resourceVersion: string;
  readonly continueToken?: string;
}

/** The two calls an informer makes; the controller implements them over HTTPS. */
export interface ListWatchClient {
  list(options: { limit: number; continueToken?: string }): Promise<ListPage>;
  /**
   * Watches from `resourceVersion` (bookmarks on), calling `onEvent` per event; resolves when the
   * server ends the stream, rejects on failure — with a {@link GoneError} for HTTP 410.
   */
  watch(
    options: { resourceVersion: string; timeoutSeconds: number },
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
  ): Promise<void>;
}

/** The apiserver no longer has the requested resourceVersion. */
export class GoneError extends Error {
  override readonly name = 'GoneError';
}

/** A list page was refused unread: its answer exceeds the client's response cap (`maxBytes`). */
export class PageTooLargeError extends Error {
  override readonly name = 'PageTooLargeError';
  constructor(
    readonly maxBytes: number,
    message: string,
  ) {
    super(message);
  }
}

/** Settings and hooks of an informer. */
export interface InformerOptions {
  readonly client: ListWatchClient;
  /** Called for every object listed, added or modified (not deleted). */
  readonly onObject: (object: unknown) => void;
  /** After each complete list: the informer has seen everything up to that point. */
  readonly onSynced?: () => void;
  /**
   * `list` after 410 / periodic resync / start, `watch-error` after a failed watch, `page-shrunk`
   * when a page was too large and is asked for again with a smaller limit.
   */
  readonly onEvent?: (
    what: 'list' | 'gone' | 'watch-error' | 'bookmark' | 'page-shrunk',
    detail?: string,
  ) => void;
  /** Objects asked for per list page (default 500, as client-go's reflector). */
  readonly pageSize?: number;
  /** Full re-list at least this often (default 10 minutes). */
  readonly resyncMs?: number;
  /** The watch's `timeoutSeconds`, after which the apiserver ends it (default 300). */
  readonly watchTimeoutSeconds?: number;
  /**
   * A watch with no event or bookmark for `watchTimeoutSeconds` plus this long is presumed dead and
   * aborted (default 30 000 ms: the apiserver ends a live one by then, bookmark or not).
   */
  readonly watchIdleSlackMs?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  readonly now?: () => number;
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly random?: () => number;
}

const MAX_PAGES = 10_000;
const DEFAULT_WATCH_TIMEOUT_SECONDS = 300;
const DEFAULT_WATCH_IDLE_SLACK_MS = 30_000;

/** Runs list+watch until `signal` aborts. */
export async function runInformer(options: InformerOptions, signal: AbortSignal): Promise<void> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? abortableSleep;
  const random = options.random ?? Math.random;
  const base = options.backoffBaseMs ?? 500;
  const max = options.backoffMaxMs ?? 30_000;
  const resyncMs = options.resyncMs ?? 600_000;
  const timeoutSeconds = options.watchTimeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_SECONDS;
  const slackMs = options.watchIdleSlackMs ?? DEFAULT_WATCH_IDLE_SLACK_MS;
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds <= 0) {
    throw new RangeError(`watchTimeoutSeconds must be a positive integer, got ${timeoutSeconds}`);
  }
  if (!Number.isFinite(slackMs) || slackMs < 0) {
    throw new RangeError(`watchIdleSlackMs must be a non-negative number, got ${slackMs}`);
  }
  const idleMs = timeoutSeconds * 1000 + slackMs;
  let resourceVersion = '';
  let listedAt = 0;
  let failures = 0;

  while (!signal.aborted) {
    try {
      if (resourceVersion === '' || now() - listedAt >= resyncMs) {
        resourceVersion = await listAll(options);
        listedAt = now();
        options.onEvent?.('list', resourceVersion);
        options.onSynced?.();
      }
      let gone = false;
      let progressed = false;
      const watching = new IdleWatch(signal, idleMs);
      try {
        await options.client.watch(
          { resourceVersion, timeoutSeconds },
          (event) => {
            watching.heard();
            if (gone) return;
            if (event.type === 'ERROR') {
              const code = (event.object as { code?: unknown } | null)?.code;
              if (code === 410) gone = true;
              else
                throw new Error(`watch error event: ${JSON.stringify(event.object).slice(0, 300)}`);
              return;
            }
            const version = versionOf(event.object);
            if (version !== undefined) resourceVersion = version;
            progressed = true;
            if (event.type === 'BOOKMARK') {
              options.onEvent?.('bookmark', version);
              return;
            }
            if (event.type === 'ADDED' || event.type === 'MODIFIED') options.onObject(event.object);
          },
          watching.signal,
        );
      } finally {
        watching.done();
      }
      if (progressed) failures = 0;
      // The stream ended because we cut it, not the server: resume from the last version seen.
      if (watching.idle !== undefined) throw watching.idle;
      if (gone) throw new GoneError('too old resource version');
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof GoneError) {
        // The version was compacted: only a fresh list can tell us what changed since.
        options.onEvent?.('gone', err.message);
        resourceVersion = '';
        continue;
      }
      failures++;
      options.onEvent?.('watch-error', err instanceof Error ? err.message : String(err));
      const delay = Math.min(max, base * 2 ** Math.min(failures - 1, 20));
      await sleep(Math.round(delay * (0.5 + random())), signal);
    }
  }
}

/**
 * One watch's signal: aborted with the informer's, or when nothing was heard for `idleMs` (then
 * `idle` holds the error the watch fails with).
 */
class IdleWatch {
  readonly #controller = new AbortController();
  readonly #outer: AbortSignal;
  readonly #timer: ReturnType<typeof setTimeout>;
  readonly #onOuterAbort = (): void => {
    this.#controller.abort(this.#outer.reason);
  };
  idle: Error | undefined;

  constructor(outer: AbortSignal, idleMs: number) {
    this.#outer = outer;
    this.#timer = setTimeout(() => {
      this.idle = new Error(
        `no event or bookmark for ${idleMs / 1000} s (timeoutSeconds plus slack); the watch connection is presumed dead`,
      );
      this.#controller.abort(this.idle);
    }, idleMs);
    if (outer.aborted) this.#onOuterAbort();
    else outer.addEventListener('abort', this.#onOuterAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** An event or bookmark arrived: the connection is alive, the deadline starts again. */
  heard(): void {
    if (this.idle === undefined) this.#timer.refresh();
  }

  done(): void {
    clearTimeout(this.#timer);
    this.#outer.removeEventListener('abort', this.#onOuterAbort);
  }
}

/**
 * Lists every object, page by page. Objects of up to ~1.5 MiB each (etcd's request limit; one Build
 * may carry 256 KiB of annotations alone) let a tenant make one page of the default size exceed any
 * response cap the client keeps, which would fail every list — and with it every Build in the
 * watched scope. So a page refused as too large is asked for again from the same continue token
 * with half the limit, down to 1. The smaller limit is kept for the rest of this list (large objects
 * sit together: the apiserver lists in namespace/name order, and they are one tenant's) and
 * forgotten at the next list, so a burst of them that is deleted slows no later list; each refused
 * page costs up to the cap in bytes, so growing back within one list could pay that again and again.
 * A single object over the cap fails the list: skipping it would hide a Build from signing.
 */
async function listAll(options: InformerOptions): Promise<string> {
  let continueToken: string | undefined;
  let resourceVersion = '';
  let limit = Math.max(1, Math.floor(options.pageSize ?? 500));
  let listed = 0;
  // Bounded: every refusal at least halves `limit`, so at most log2(pageSize) + 1 of them.
  for (let page = 0; page < MAX_PAGES;) {
    let result: ListPage;
    try {
      result = await options.client.list({
        limit,
        ...(continueToken === undefined ? {} : { continueToken }),
      });
    } catch (err) {
      if (!(err instanceof PageTooLargeError)) throw err;
      if (limit === 1) {
        throw new Error(
          `list failed after ${listed} objects: the next object alone exceeds the ${err.maxBytes}-byte response cap (page limit 1); not skipped, as that would hide it`,
        );
      }
      const smaller = Math.max(1, Math.floor(limit / 2));
      options.onEvent?.(
        'page-shrunk',
        `a page of ${limit} exceeds the ${err.maxBytes}-byte response cap after ${listed} objects; asking for ${smaller}`,
      );
      limit = smaller;
      continue;
    }
    page++;
    listed += result.items.length;
    for (const item of result.items) options.onObject(item);
    // The first page's version is the list's snapshot; later pages repeat it.
    if (resourceVersion === '') resourceVersion = result.resourceVersion;
    continueToken = result.continueToken;
    if (continueToken === undefined || continueToken === '') return resourceVersion;
  }
  throw new Error(`list did not end within ${MAX_PAGES} pages`);
}

function versionOf(object: unknown): string | undefined {
  const metadata = (object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata;
  const version = metadata?.resourceVersion;
  return typeof version === 'string' && version !== '' ? version : undefined;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
