/**
 * The trust cache: fully verified collections per (notary server, GUN, trust anchor), and beside
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
 * - A failed update is never cached: it rejects the lookups waiting on it and the next lookup tries
 *   again. A stale collection is not served when its refresh fails — the verdict is a denial, so a
 *   replayed (frozen) timestamp cannot keep old data alive.
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

/** A notary server as the cache sees it. */
export interface NotarySource {
  /** The server's URL: part of the cache key and of messages. */
  readonly server: string;
  readonly fetcher: MetadataFetcher;
  /** Deadline of one whole collection update. */
  readonly timeoutMs: number;
}

/** Reports of the cache, for metrics. */
export interface TrustCacheObserver {
  notaryFetched(event: {
    readonly server: string;
    readonly gun: string;
    readonly ok: boolean;
    readonly errorCode?: string;
    readonly durationMs: number;
  }): void;
  cacheLookup(event: { readonly hit: boolean }): void;
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
}

interface CachedCollection {
  readonly collection: TrustedCollection;
  /** Clock time (ms) of the verification. */
  readonly verifiedAt: number;
}

/** Counts, for tests and metrics. */
export interface TrustCacheStats {
  readonly repositories: number;
  readonly trustStates: number;
  readonly inFlight: number;
}

// One frozen event each, rather than an object per lookup.
const HIT = Object.freeze({ hit: true });
const MISS = Object.freeze({ hit: false });

/** Verified collections with coalesced updates; see the module comment for the rules. */
export class TrustCache {
  private collections: LRUCache<string, CachedCollection>;
  private states: LRUCache<string, TrustState>;
  private readonly inFlight = new Map<string, Promise<TrustedCollection>>();
  private options: TrustCacheOptions;

  constructor(options: TrustCacheOptions) {
    this.options = options;
    this.collections = new LRUCache({ max: options.maxRepositories });
    this.states = new LRUCache({ max: options.maxTrustStates });
  }

  /** Applies new sizes and TTL (a reloaded config), keeping every entry that still fits. */
  resize(options: Pick<TrustCacheOptions, 'maxRepositories' | 'maxTrustStates' | 'ttlMs'>): void {
    const { maxRepositories, maxTrustStates } = this.options;
    this.options = { ...this.options, ...options };
    if (options.maxRepositories !== maxRepositories) {
      this.collections = copyLru(this.collections, options.maxRepositories);
    }
    if (options.maxTrustStates !== maxTrustStates) {
      this.states = copyLru(this.states, options.maxTrustStates);
    }
  }

  /** The verified collection of `gun` on `source` under `anchor`: cached while fresh, else updated. */
  async collection(
    source: NotarySource,
    gun: string,
    anchor: CompiledAnchor,
  ): Promise<TrustedCollection> {
    const key = collectionKey(source.server, gun, anchor);
    const cached = this.collections.get(key);
    const now = this.options.now().getTime();
    if (cached !== undefined && this.fresh(cached, now)) {
      this.options.observer?.cacheLookup(HIT);
      return cached.collection;
    }
    this.options.observer?.cacheLookup(MISS);
    const pending = this.inFlight.get(key);
    if (pending !== undefined) return pending;
    const update = this.update(key, source, gun, anchor).finally(() => {
      this.inFlight.delete(key);
    });
    this.inFlight.set(key, update);
    return update;
  }

  /**
   * The cached collection of `key` (see collectionKey) while it is fresh, counted as a hit; else
   * undefined, uncounted — the collection() call that follows counts the miss. Never fetches.
   * Decision memos compare its identity: the same object means the same verified data.
   */
  freshCollection(key: string): TrustedCollection | undefined {
    const cached = this.collections.get(key);
    if (cached === undefined || !this.fresh(cached, this.options.now().getTime())) return undefined;
    this.options.observer?.cacheLookup(HIT);
    return cached.collection;
  }

  /** The trust state kept for a key (tests and diagnostics). */
  trustState(server: string, gun: string, anchor: CompiledAnchor): TrustState | undefined {
    return this.states.peek(collectionKey(server, gun, anchor));
  }

  /** Drops cached collections but keeps trust states (floors), as an eviction would. */
  evictCollections(): void {
    this.collections.clear();
  }

  /** Resolves when every update under way has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
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

  private async update(
    key: string,
    source: NotarySource,
    gun: string,
    anchor: CompiledAnchor,
  ): Promise<TrustedCollection> {
    const started = performance.now();
    const now = this.options.now();
    const state = this.states.get(key);
    try {
      const collection = await withDeadline(
        updateCollection(source.fetcher, gun, {
          anchor,
          now,
          invalidDelegations: 'record',
          ...(state === undefined ? {} : { state }),
          ...(this.options.limits === undefined ? {} : { limits: this.options.limits }),
        }),
        source,
        gun,
      );
      this.states.set(key, { rootBytes: collection.rootBytes, floors: collection.floors });
      this.collections.set(key, { collection, verifiedAt: now.getTime() });
      this.options.observer?.notaryFetched({
        server: source.server,
        gun,
        ok: true,
        durationMs: performance.now() - started,
      });
      return collection;
    } catch (error) {
      // Never a cached verdict: the stale entry goes, the floors stay, the next lookup retries.
      this.collections.delete(key);
      this.options.observer?.notaryFetched({
        server: source.server,
        gun,
        ok: false,
        errorCode: isTrustError(error) ? error.code : 'INTERNAL',
        durationMs: performance.now() - started,
      });
      throw error;
    }
  }
}

/** One update may not outlast the source's deadline, however many requests it makes. */
function withDeadline<T>(work: Promise<T>, source: NotarySource, gun: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new TrustError(
          'HTTP_UNREACHABLE',
          {
            url: source.server,
            problem: `no complete trust data for ${gun} within ${source.timeoutMs} ms`,
          },
          `notary ${source.server} gave no complete trust data for ${gun} within ${source.timeoutMs} ms`,
        ),
      );
    }, source.timeoutMs);
  });
  // The abandoned update still ends on its own (each request has the same deadline); its late
  // result is dropped with the race.
  work.catch(() => undefined);
  return Promise.race([work, deadline]).finally(() => {
    clearTimeout(timer);
  });
}

/** Key of a (server, GUN, anchor) triple; the anchor by a fingerprint of what it pins. */
export function collectionKey(server: string, gun: string, anchor: CompiledAnchor): string {
  return `${server}\n${gun}\n${anchorFingerprint(anchor)}`;
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
