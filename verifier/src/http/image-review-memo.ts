/**
 * The ImageReview parse memo: what an ImageReview body means, kept by its exact bytes. An
 * ImageReview carries no per-request identity (no uid), so the apiserver's requests for the pods
 * of one ReplicaSet, and its retries, are byte-identical; a body seen before skips `JSON.parse` and
 * the shape checks. Only the parse is kept, never a decision: the engine still decides every
 * review. Identical bytes parse to an identical document, so a hit means exactly what a fresh
 * parse would; the specs handed out are frozen, so no caller can change what the next one gets.
 */
import { LRUCache } from 'lru-cache';
import type { ImageReviewSpec } from '../review.js';

/** Bounds of the memo. */
export interface ImageReviewMemoLimits {
  readonly maxEntries: number;
  /** Bytes of kept bodies, all entries together. */
  readonly maxBytes: number;
  /** Larger bodies are parsed every time. */
  readonly maxBodyBytes: number;
}

/** 1,024 bodies of up to 16 KiB, 4 MiB in all (an ImageReview is a few hundred bytes per image). */
export const DEFAULT_IMAGE_REVIEW_MEMO_LIMITS: ImageReviewMemoLimits = Object.freeze({
  maxEntries: 1024,
  maxBytes: 4 * 1024 * 1024,
  maxBodyBytes: 16 * 1024,
});

/** Parsed ImageReview specs by the exact bytes of their bodies. */
export class ImageReviewParseMemo {
  private readonly limits: ImageReviewMemoLimits;
  private readonly specs: LRUCache<string, ImageReviewSpec>;

  constructor(limits: ImageReviewMemoLimits = DEFAULT_IMAGE_REVIEW_MEMO_LIMITS) {
    this.limits = limits;
    this.specs = new LRUCache<string, ImageReviewSpec>({
      max: limits.maxEntries,
      maxSize: limits.maxBytes,
      sizeCalculation: (_spec, key) => Math.max(1, key.length),
    });
  }

  /** The key of `body`'s bytes, or undefined for a body that is never kept (empty, too large). */
  keyOf(body: Buffer): string | undefined {
    if (body.length === 0 || body.length > this.limits.maxBodyBytes) return undefined;
    // latin1 maps each byte to one character: equal keys are equal bytes.
    return body.toString('latin1');
  }

  /** The spec parsed before from the bytes of `key`, if it is still kept. */
  specOf(key: string | undefined): ImageReviewSpec | undefined {
    return key === undefined ? undefined : this.specs.get(key);
  }

  /** Keeps `spec`, freshly parsed from the bytes of `key`, frozen; returns it. */
  remember(key: string | undefined, spec: ImageReviewSpec): ImageReviewSpec {
    const frozen = freezeSpec(spec);
    if (key !== undefined) this.specs.set(key, frozen);
    return frozen;
  }

  /** Bodies kept (tests). */
  get size(): number {
    return this.specs.size;
  }
}

function freezeSpec(spec: ImageReviewSpec): ImageReviewSpec {
  for (const container of spec.containers) Object.freeze(container);
  Object.freeze(spec.containers);
  Object.freeze(spec.annotations);
  return Object.freeze(spec);
}
