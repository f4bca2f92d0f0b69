/**
 * The engine's decision memo, so a cached decision costs a lookup rather than a parse, a rule
 * match, a resolution through the collection and a dozen strings:
 *
 * - routes: per (namespace, image string), what the image means under one configuration — a
 *   decision that needs no trust data (invalid reference, no rule, requireDigest, allow, deny), or
 *   the reference, rule, notary source and trust-cache key to verify it with. A verify route also
 *   keeps its last verdict beside the collection object it was resolved from; the engine uses that
 *   verdict only while the trust cache still holds that very object fresh, so the memo never
 *   outlives a collection's TTL or expiry, and a refreshed collection is resolved afresh.
 * - pods: per (namespace, container images), the status built from the images' outcomes, reused
 *   while every image still has the identical outcome (a one-container pod's status is kept on
 *   its outcome).
 *
 * A memo belongs to one configuration: reconfigure starts a new one. Only lasting outcomes are
 * kept; failures (notary unavailable, failed verification, bugs) never are, so the next review
 * asks again. Both maps are LRUs of `entries` entries (the default 4,096 each: about 7 MiB of heap
 * with both full), and image strings longer than any valid reference are not memoised (a pod spec may
 * carry megabytes of junk).
 */
import { LRUCache } from 'lru-cache';
import type { ImageReference, TrustedCollection } from '@kpack-trust/common';
import type { PolicyRule } from '../config/types.js';
import type { DecisionObserver, ImageReviewSpec, ImageReviewStatus } from '../review.js';
import type { PooledNotarySource } from '../trust/notary-clients.js';
import type { Verdict } from './engine.js';

/** Default slots of each memo. */
export const DEFAULT_MEMO_ENTRIES = 4096;
/** Longest image string memoised: above any valid reference (255-char name, tag and digest). */
export const MAX_MEMO_IMAGE_LENGTH = 512;
/** Most containers of a pod whose status is memoised. */
export const MAX_MEMO_POD_CONTAINERS = 64;

/** One image decision's verdict and its observer event (without the duration). */
export interface Outcome {
  readonly verdict: Verdict;
  readonly event: Omit<Parameters<DecisionObserver['imageDecided']>[0], 'durationMs'>;
  /** True when the verdict may be memoised (see the module comment). */
  readonly lasting: boolean;
  /** The status of a pod of this one image, made on first use (lasting outcomes only). */
  solo: ImageReviewStatus | undefined;
}

/** An image that must be verified against notary trust data. */
export interface VerifyRoute {
  readonly kind: 'verify';
  readonly image: string;
  readonly namespace: string;
  readonly ref: ImageReference;
  readonly rule: Extract<PolicyRule, { action: 'verify' }>;
  readonly source: PooledNotarySource;
  readonly gun: string;
  /** The trust-cache key of (source key, GUN, anchor). */
  readonly key: string;
  /**
   * The verdict last resolved, and the collection object it was resolved from — held weakly, so
   * the memo never keeps alive a collection the trust cache has let go of.
   */
  last: { readonly collection: WeakRef<TrustedCollection>; readonly outcome: Outcome } | undefined;
}

/** What an image string means in a namespace under one configuration. */
export type Route = { readonly kind: 'settled'; readonly outcome: Outcome } | VerifyRoute;

/** A pod's status and the image outcomes it was built from. */
export interface PodEntry {
  readonly outcomes: readonly Outcome[];
  readonly status: ImageReviewStatus;
}

/** The memo of one configuration. */
export class DecisionMemo {
  readonly routes: LRUCache<string, Route>;
  readonly pods: LRUCache<string, PodEntry>;

  private constructor(entries: number) {
    this.routes = new LRUCache({ max: entries });
    this.pods = new LRUCache({ max: entries });
  }

  /** A memo with `entries` slots per map, or none when `entries` is 0. */
  static create(entries: number): DecisionMemo | undefined {
    if (!Number.isSafeInteger(entries) || entries < 0) {
      throw new RangeError(`memo entries must be a non-negative integer, got ${entries}`);
    }
    return entries === 0 ? undefined : new DecisionMemo(entries);
  }
}

/**
 * The route key of an image in a namespace; undefined when the image is too long to memoise.
 * Length-prefixed, so no (namespace, image) pair can spell another's key.
 */
export function routeMemoKey(namespace: string, image: string): string | undefined {
  if (image.length > MAX_MEMO_IMAGE_LENGTH || namespace.length > MAX_MEMO_IMAGE_LENGTH) {
    return undefined;
  }
  return `${namespace.length}:${namespace}${image}`;
}

/** The pod key: namespace and every container image in order, each length-prefixed. */
export function podMemoKey(spec: ImageReviewSpec): string | undefined {
  const { containers, namespace } = spec;
  if (containers.length > MAX_MEMO_POD_CONTAINERS || namespace.length > MAX_MEMO_IMAGE_LENGTH) {
    return undefined;
  }
  let key = `${namespace.length}:${namespace}`;
  for (const { image } of containers) {
    if (image.length > MAX_MEMO_IMAGE_LENGTH) return undefined;
    key += `${image.length}:${image}`;
  }
  return key;
}

/** True when both lists hold the very same outcome objects. */
export function sameOutcomes(a: readonly Outcome[], b: readonly Outcome[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
