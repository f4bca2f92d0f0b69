/**
 * The trust cache: fully verified collections per (notary source, GUN, trust anchor), and beside
 * them the trust state every later update resumes from — the trusted root bytes and the highest
 * versions seen (rollback floors).
 *
 * - A cached collection is used until `ttlMs` has passed since it was verified, and never at or
 *   after the collection's own `expires` (the earliest expiry of any role it trusts), judged by the
 *   injected clock. Then the next lookup updates it through `updateCollection`.
 * - Collections are read with invalid delegations recorded, not fatal: a delegation that is merely
 *   expired or short of its signature threshold denies only the images whose resolution reaches it
 *   (see resolve-image.ts). Such a role does not count towards `expires`, so an expired one cannot
 *   make every lookup a refetch; it is read again after `ttlMs`, like everything else.
 * - Concurrent lookups of one key share one in-flight update (coalescing), so a burst of reviews of
 *   a cold image costs one fetch per role.
 * - A failed update is never a verdict: it rejects the lookups waiting on it. A failure that is a
 *   verdict on the data (verification failed, not signed, malformed) drops the cached collection
 *   at once — a replayed (frozen) timestamp cannot keep old data alive — and is remembered for
 *   `negativeTtlMs` (per server, GUN and anchor; an LRU as long as the collections), so a repository
 *   that costs a full fetch and verification to reject is not fetched again on every review. A
 *   success forgets it.
 * - Stale-if-error (RFC 5861's name): when a refresh fails only because notary is unavailable (see
 *   isUnavailable: transport errors, timeouts, 5xx, an open circuit), the last verified collection is
 *   answered for up to `staleIfErrorMs` past its TTL, never at or past its own `expires`, and the
 *   answer says it is stale. 0 turns it off.
 * - A root rotation ends the old collection's life: as soon as an update has verified a newer root
 *   (TUF 5.3.4–5.3.6), that root is kept in the trust state (5.3.8: persisted, so the next update
 *   resumes from it and never from the old one) and the collection verified under the old root is
 *   dropped, even if a later step of the same update fails. Its keys are superseded — the rotation
 *   may be what revokes a compromised targets key — so it answers nothing more, stale or fresh: an
 *   outage after a rotation fails with the outage's own error (HTTP_STATUS, HTTP_UNREACHABLE).
 * - Requests go through a circuit breaker per source (circuit-breaker.ts; NotarySource.key, never
 *   the bare URL) and carry an AbortSignal:
 *   at the deadline the update is aborted, not only abandoned, and its in-flight slot is kept until
 *   the work has settled, so reviews meanwhile join it (and fail at once) instead of starting more.
 * - Refresh-ahead: a hit on a collection within `refreshAheadMs` of its TTL end (or expiry) starts
 *   its update in the background, at most MAX_BACKGROUND_REFRESHES at once, so steady traffic never
 *   waits for a fetch.
 * - Trust states live in a second LRU, `maxTrustStates` long (10× the collections by default), so
 *   evicting a collection does not forget its floors: a GUN loses rollback protection only after
 *   more than `maxTrustStates` other (server, GUN, anchor) keys were verified since it was last used.
 *
 * The key includes a fingerprint of the anchor, because a root accepted under one rule's pins (or
 * TOFU) must never be resumed for a rule with other pins; the same anchor in a reloaded config has
 * the same fingerprint and keeps its state.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { VerifierConfig } from '../config/types.js';
import {
  TrustError,
  isTrustError,
  updateCollection,
  type CompiledAnchor,
  type DownloadLimits,
  type MetadataFetcher,
  type TrustState,
  type TrustedCollection,
} from '@kpack-trust/common';
import {
  CircuitBreakers,
  isUnavailable,
  type BreakerEvent,
  type BreakerState,
} from './circuit-breaker.js';

/** A notary server as the cache sees it. */
export interface NotarySource {
  /** The server's URL, for messages and events. */
  readonly server: string;
  /**
   * Who the source is: the key of its circuit breaker, in-flight updates, cached collections and
   * trust states. Not the URL: a registry the config does not name maps to `https://<registry>`,
   * which the pod's author can make equal a configured server's URL while the source has none of
   * its CA or credentials; sharing that state would let the author open the configured server's
   * circuit (or resume its trust states) with requests of their own.
   */
  readonly key: string;
  readonly fetcher: MetadataFetcher;
  /** Deadline of one whole collection update. */
  readonly timeoutMs: number;
}

/** Why an answer came from a collection past its TTL. */
export interface StaleAnswer {
  /** When the collection was verified, on the cache's clock. */
  readonly verifiedAt: Date;
  /** The code of the unavailability the stale data stands in for (HTTP_UNREACHABLE, HTTP_STATUS). */
  readonly errorCode: string;
}

/** A lookup's answer: a verified collection, with `stale` set when notary could not refresh it. */
export interface CollectionLookup {
  readonly collection: TrustedCollection;
  readonly stale?: StaleAnswer;
}

/**
 * Reports of the cache, for metrics. Events name the source by NotarySource.key in `server`: a
 * configured server's URL, so that a pod-chosen source with the same URL is never counted as it.
 */
export interface TrustCacheObserver {
  notaryFetched(event: {
    readonly server: string;
    readonly gun: string;
    readonly ok: boolean;
    readonly errorCode?: string;
    readonly durationMs: number;
  }): void;
  cacheLookup(event: { readonly hit: boolean }): void;
  /** One answer from a stale collection (stale-if-error). */
  staleServed?(event: { readonly server: string; readonly gun: string } & StaleAnswer): void;
  /** A notary server's circuit breaker changed state. */
  breakerChanged?(event: BreakerEvent): void;
}

/** Circuit breaker settings (see circuit-breaker.ts). */
export interface TrustCacheBreakerOptions {
  /** Consecutive unavailability failures that open a server's circuit; 0 turns it off. */
  readonly failureThreshold: number;
  readonly cooldownMs: number;
}

/** Sizes, TTL and clock of the cache. */
export interface TrustCacheOptions {
  readonly maxRepositories: number;
  readonly maxTrustStates: number;
  readonly ttlMs: number;
  /** The injected clock: TTL and expiry are judged by it, and updates verify against it. */
  readonly now: () => Date;
  readonly observer?: TrustCacheObserver;
  readonly limits?: Partial<DownloadLimits>;
  /** How long past its TTL a collection may answer while notary is unavailable; default 0 (off). */
  readonly staleIfErrorMs?: number;
  /** How long a failure that is a verdict on the data is remembered; default 0 (off). */
  readonly negativeTtlMs?: number;
  /** Refresh a collection in use this long before its TTL ends (at most half the TTL); default 0 (off). */
  readonly refreshAheadMs?: number;
  /** Default off. */
  readonly breaker?: TrustCacheBreakerOptions;
}

/** The settings a reloaded configuration may change. */
export type TrustCacheSettings = Pick<
  TrustCacheOptions,
  'maxRepositories' | 'maxTrustStates' | 'ttlMs'
> &
  Partial<
    Pick<TrustCacheOptions, 'staleIfErrorMs' | 'negativeTtlMs' | 'refreshAheadMs' | 'breaker'>
  >;

interface CachedCollection {
  readonly collection: TrustedCollection;
  /** Clock time (ms) of the verification. */
  readonly verifiedAt: number;
}

/** A remembered failure (negative caching). */
interface CachedFailure {
  readonly error: Error;
  /** Clock time (ms) it is forgotten. */
  readonly until: number;
}

/** One update under way: its slot is held until `work` settles, whatever the deadline did. */
interface Update {
  /** The update itself. */
  readonly work: Promise<TrustedCollection>;
  /** The work raced against the deadline: what lookups wait for. */
  answer: Promise<TrustedCollection>;
  /** Set when the deadline passed: lookups meanwhile fail with it at once instead of waiting. */
  expired: TrustError | undefined;
}

/** Counts, for tests and metrics. */
export interface TrustCacheStats {
  readonly repositories: number;
  readonly trustStates: number;
  readonly inFlight: number;
}

/** Background refreshes under way at once, across all keys; a hit beyond it refreshes later. */
export const MAX_BACKGROUND_REFRESHES = 4;
/** Servers with a circuit breaker kept (healthy servers need none). */
const MAX_BREAKERS = 4096;

// One frozen event each, rather than an object per lookup.
const HIT = Object.freeze({ hit: true });
const MISS = Object.freeze({ hit: false });

/** Verified collections with coalesced updates; see the module comment for the rules. */
export class TrustCache {
  private collections: LRUCache<string, CachedCollection>;
  private states: LRUCache<string, TrustState>;
  private failures: LRUCache<string, CachedFailure>;
  private readonly inFlight = new Map<string, Update>();
  private readonly breakers: CircuitBreakers;
  private background = 0;
  private options: TrustCacheOptions;

  constructor(options: TrustCacheOptions) {
    this.options = options;
    this.collections = new LRUCache({ max: options.maxRepositories });
    this.states = new LRUCache({ max: options.maxTrustStates });
    this.failures = new LRUCache({ max: options.maxRepositories });
    this.breakers = new CircuitBreakers({
      failureThreshold: options.breaker?.failureThreshold ?? 0,
      cooldownMs: options.breaker?.cooldownMs ?? 0,
      maxServers: MAX_BREAKERS,
      now: () => this.options.now().getTime(),
      onStateChange: (event) => this.options.observer?.breakerChanged?.(event),
    });
  }

  /** Applies new sizes, TTL and availability settings (a reloaded config), keeping every entry that still fits. */
  resize(options: TrustCacheSettings): void {
    const { maxRepositories, maxTrustStates } = this.options;
    this.options = { ...this.options, ...options };
    if (options.maxRepositories !== maxRepositories) {
      this.collections = copyLru(this.collections, options.maxRepositories);
      // Remembered failures live seconds: starting afresh loses nothing that matters.
      this.failures = new LRUCache({ max: options.maxRepositories });
    }
    if (options.maxTrustStates !== maxTrustStates) {
      this.states = copyLru(this.states, options.maxTrustStates);
    }
    if (options.breaker !== undefined) this.breakers.configure(options.breaker);
  }

  /** The verified collection of `gun` on `source` under `anchor`: cached while fresh, else updated. */
  async collection(
    source: NotarySource,
    gun: string,
    anchor: CompiledAnchor,
  ): Promise<TrustedCollection> {
    return (await this.lookup(source, gun, anchor)).collection;
  }

  /**
   * Like collection(), and says when the answer is stale: notary was unavailable and the last
   * verified collection stands in for it (see the module comment).
   */
  lookup(source: NotarySource, gun: string, anchor: CompiledAnchor): Promise<CollectionLookup> {
    const key = collectionKey(source.key, gun, anchor);
    const cached = this.collections.get(key);
    const now = this.options.now().getTime();
    if (cached !== undefined && this.fresh(cached, now)) {
      this.options.observer?.cacheLookup(HIT);
      this.refreshAhead(key, cached, now, source, gun, anchor);
      return Promise.resolve({ collection: cached.collection });
    }
    this.options.observer?.cacheLookup(MISS);
    const failure = this.failures.get(key);
    if (failure !== undefined) {
      if (now < failure.until) return Promise.reject(failure.error);
      this.failures.delete(key);
    }
    const pending = this.inFlight.get(key);
    if (pending?.expired !== undefined) return this.fallback(key, source.key, gun, pending.expired);
    const update = pending ?? this.start(key, source, gun, anchor);
    if (cached !== undefined && this.breakers.state(source.key) !== 'closed') {
      // The server is known to be down: the update (at most the half-open probe) goes on in the
      // background, and this review answers from stale data at once rather than waiting for it.
      const down = circuitNotClosed(source.server);
      if (this.staleAllowed(cached, now)) return this.fallback(key, source.key, gun, down);
    }
    return update.answer.then(
      (collection) => ({ collection }),
      (error: unknown) => this.fallback(key, source.key, gun, error),
    );
  }

  /**
   * The cached collection of `key` (see collectionKey) while it is fresh, counted as a hit; else
   * undefined, uncounted — the collection() call that follows counts the miss. Never waits for a
   * fetch; given the source, GUN and anchor of the key, a hit near the TTL end starts a background
   * refresh. Decision memos compare its identity: the same object means the same verified data.
   */
  freshCollection(
    key: string,
    source?: NotarySource,
    gun?: string,
    anchor?: CompiledAnchor,
  ): TrustedCollection | undefined {
    const cached = this.collections.get(key);
    if (cached === undefined) return undefined;
    const now = this.options.now().getTime();
    if (!this.fresh(cached, now)) return undefined;
    this.options.observer?.cacheLookup(HIT);
    if (source !== undefined && gun !== undefined && anchor !== undefined) {
      this.refreshAhead(key, cached, now, source, gun, anchor);
    }
    return cached.collection;
  }

  /** The trust state kept for a source's key (NotarySource.key), GUN and anchor (tests and diagnostics). */
  trustState(sourceKey: string, gun: string, anchor: CompiledAnchor): TrustState | undefined {
    return this.states.peek(collectionKey(sourceKey, gun, anchor));
  }

  /** The state of a source's circuit breaker, by NotarySource.key (tests and diagnostics). */
  breakerState(sourceKey: string): BreakerState {
    return this.breakers.state(sourceKey);
  }

  /** Drops cached collections but keeps trust states (floors), as an eviction would. */
  evictCollections(): void {
    this.collections.clear();
  }

  /** Resolves when every update under way has settled (not merely passed its deadline). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()].map((u) => u.work));
  }

  stats(): TrustCacheStats {
    return {
      repositories: this.collections.size,
      trustStates: this.states.size,
      inFlight: this.inFlight.size,
    };
  }

  private fresh(entry: CachedCollection, now: number): boolean {
    return now - entry.verifiedAt < this.options.ttlMs && now < entry.collection.expires.getTime();
  }

  /** Whether stale-if-error may answer from `entry` at `now`. */
  private staleAllowed(entry: CachedCollection, now: number): boolean {
    const window = this.options.staleIfErrorMs ?? 0;
    return (
      window > 0 &&
      now < entry.verifiedAt + this.options.ttlMs + window &&
      now < entry.collection.expires.getTime()
    );
  }

  /** The last verified collection when `error` is an outage and stale-if-error allows it; else `error`. */
  private fallback(
    key: string,
    sourceKey: string,
    gun: string,
    error: unknown,
  ): Promise<CollectionLookup> {
    const entry = isUnavailable(error) ? this.collections.get(key) : undefined;
    if (entry !== undefined) {
      if (this.staleAllowed(entry, this.options.now().getTime())) {
        const stale: StaleAnswer = {
          verifiedAt: new Date(entry.verifiedAt),
          errorCode: (error as TrustError).code,
        };
        this.options.observer?.staleServed?.({ server: sourceKey, gun, ...stale });
        return Promise.resolve({ collection: entry.collection, stale });
      }
    }
    return Promise.reject(asError(error));
  }

  /** Starts the background update of a collection in use whose TTL (or expiry) is near. */
  private refreshAhead(
    key: string,
    entry: CachedCollection,
    now: number,
    source: NotarySource,
    gun: string,
    anchor: CompiledAnchor,
  ): void {
    const window = Math.min(this.options.refreshAheadMs ?? 0, this.options.ttlMs / 2);
    if (window <= 0) return;
    const end = Math.min(entry.verifiedAt + this.options.ttlMs, entry.collection.expires.getTime());
    if (now < end - window || this.inFlight.has(key)) return;
    if (this.background >= MAX_BACKGROUND_REFRESHES) return;
    this.background += 1;
    void this.start(key, source, gun, anchor)
      .work.catch(() => undefined)
      .finally(() => {
        this.background -= 1;
      });
  }

  /** Starts an update in the key's in-flight slot, under the source's deadline. */
  private start(key: string, source: NotarySource, gun: string, anchor: CompiledAnchor): Update {
    const controller = new AbortController();
    const work = this.update(key, source, gun, anchor, controller.signal);
    const update: Update = { work, answer: work, expired: undefined };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = deadlineError(source, gun);
        update.expired = error;
        // Stops the requests, not only the waiting: the HTTP client destroys them.
        controller.abort(error);
        reject(error);
      }, source.timeoutMs);
    });
    update.answer = Promise.race([work, deadline]);
    // Nobody may be waiting (a background refresh): the outcome is reported, never unhandled.
    update.answer.catch(() => undefined);
    const release = (): void => {
      clearTimeout(timer);
      if (this.inFlight.get(key) === update) this.inFlight.delete(key);
    };
    work.then(release, release);
    this.inFlight.set(key, update);
    return update;
  }

  private async update(
    key: string,
    source: NotarySource,
    gun: string,
    anchor: CompiledAnchor,
    signal: AbortSignal,
  ): Promise<TrustedCollection> {
    const started = performance.now();
    const now = this.options.now();
    const state = this.states.get(key);
    const breakers = this.breakers;
    const fetcher: MetadataFetcher = {
      fetchMetadata: (g, request) =>
        breakers.call(
          source.key,
          () => source.fetcher.fetchMetadata(g, { ...request, signal }),
          // A request cut off by our deadline counts against the server only when it alone
          // waited half of it: a hung server does, a long chain of quick answers does not.
          { signal, afterMs: source.timeoutMs / 2 },
        ),
    };
    try {
      const collection = await updateCollection(fetcher, gun, {
        anchor,
        now,
        invalidDelegations: 'record',
        // The deadline also stops verification between roles, not only the requests.
        signal,
        onRootTrusted: (root) => {
          this.rootTrusted(key, state, root);
        },
        ...(state === undefined ? {} : { state }),
        ...(this.options.limits === undefined ? {} : { limits: this.options.limits }),
      });
      this.states.set(key, { rootBytes: collection.rootBytes, floors: collection.floors });
      this.collections.set(key, { collection, verifiedAt: now.getTime() });
      this.failures.delete(key);
      this.options.observer?.notaryFetched({
        server: source.key,
        gun,
        ok: true,
        durationMs: performance.now() - started,
      });
      return collection;
    } catch (error) {
      if (!isUnavailable(error)) {
        // A verdict on the data: the stale entry goes at once (the floors stay), and the failure
        // is remembered briefly, never beyond what a success would replace.
        this.collections.delete(key);
        const negativeTtlMs = this.options.negativeTtlMs ?? 0;
        if (negativeTtlMs > 0) {
          this.failures.set(key, {
            error: asError(error),
            until: this.options.now().getTime() + negativeTtlMs,
          });
        }
      }
      this.options.observer?.notaryFetched({
        server: source.key,
        gun,
        ok: false,
        errorCode: isTrustError(error) ? error.code : 'INTERNAL',
        durationMs: performance.now() - started,
      });
      throw error;
    }
  }

  /**
   * An update of `key` trusts `root`, before it fetches the timestamp: a root other than the one
   * it resumed from is kept at once, and a cached collection verified under an older root is
   * dropped (see the module comment), whatever the rest of the update does.
   */
  private rootTrusted(
    key: string,
    state: TrustState | undefined,
    root: { readonly bytes: Uint8Array; readonly version: number },
  ): void {
    // Resumed without a rotation: updateCollection hands back the very bytes it was given.
    if (root.bytes === state?.rootBytes) return;
    const floors = state?.floors ?? {};
    this.states.set(key, {
      rootBytes: root.bytes,
      floors: { ...floors, root: Math.max(floors['root'] ?? 0, root.version) },
    });
    const entry = this.collections.peek(key);
    if (entry !== undefined && entry.collection.root.version < root.version) {
      this.collections.delete(key);
    }
  }
}

/** Why a lookup answered stale without waiting: the server's circuit is open or probing. */
function circuitNotClosed(server: string): TrustError {
  return new TrustError(
    'HTTP_UNREACHABLE',
    { url: server, problem: 'circuit open' },
    `notary ${server} is not asked: circuit open`,
  );
}

/** What was thrown, as an Error (ours always are; anything else is wrapped, not lost). */
function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The failure of an update that outlasted its source's deadline. */
function deadlineError(source: NotarySource, gun: string): TrustError {
  return new TrustError(
    'HTTP_UNREACHABLE',
    {
      url: source.server,
      problem: `no complete trust data for ${gun} within ${source.timeoutMs} ms`,
    },
    `notary ${source.server} gave no complete trust data for ${gun} within ${source.timeoutMs} ms`,
  );
}

/** The cache settings a verifier configuration asks for. */
export function trustCacheSettings(config: VerifierConfig): Required<TrustCacheSettings> {
  const cache = config.cache;
  return {
    maxRepositories: cache.maxRepositories,
    maxTrustStates: cache.maxTrustStates,
    ttlMs: cache.ttlSeconds * 1000,
    staleIfErrorMs: cache.staleIfErrorSeconds * 1000,
    negativeTtlMs: cache.negativeTtlSeconds * 1000,
    refreshAheadMs: cache.refreshAheadSeconds * 1000,
    breaker: {
      failureThreshold: config.circuitBreaker.failureThreshold,
      cooldownMs: config.circuitBreaker.cooldownSeconds * 1000,
    },
  };
}

/** Key of a (source, GUN, anchor) triple: the source by NotarySource.key, the anchor by a fingerprint of what it pins. */
export function collectionKey(sourceKey: string, gun: string, anchor: CompiledAnchor): string {
  return `${sourceKey}\n${gun}\n${anchorFingerprint(anchor)}`;
}

const fingerprints = new WeakMap<CompiledAnchor, string>();

/** A stable digest of the pins: the same pins in a reloaded config give the same fingerprint. */
export function anchorFingerprint(anchor: CompiledAnchor): string {
  const known = fingerprints.get(anchor);
  if (known !== undefined) return known;
  const parts = {
    keyIds: [...anchor.keyIds].sort(),
    spkis: [...anchor.spkis].sort(),
    cas: anchor.cas.map((c) => c.fingerprint256).sort(),
    tofu: anchor.tofu,
  };
  const fingerprint = createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
  fingerprints.set(anchor, fingerprint);
  return fingerprint;
}

function copyLru<V extends object>(from: LRUCache<string, V>, max: number): LRUCache<string, V> {
  const to = new LRUCache<string, V>({ max });
  // Least recently used first, so the most recent end up most recent again.
  for (const key of from.rkeys()) {
    const value = from.peek(key);
    if (value !== undefined) to.set(key, value);
  }
  return to;
}
