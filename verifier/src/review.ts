/**
 * The ImageReview contract (imagepolicy.k8s.io/v1alpha1) as the decision engine sees it. The HTTP
 * layer parses and validates requests into an ImageReviewSpec and serialises the status back; the
 * policy engine implements ImageReviewer. Neither knows about the other's internals.
 */

/** One image of the pod, exactly as written in the pod spec. */
export interface ImageReviewContainer {
  readonly image: string;
}

/** The `spec` of an ImageReview request. */
export interface ImageReviewSpec {
  /** containers, then initContainers (and only ephemeral containers for pods/ephemeralcontainers). */
  readonly containers: readonly ImageReviewContainer[];
  /** Only pod annotations whose key contains `.image-policy.k8s.io/` are forwarded by the apiserver. */
  readonly annotations: Readonly<Record<string, string>>;
  readonly namespace: string;
}

/** The `status` of an ImageReview response. */
export interface ImageReviewStatus {
  readonly allowed: boolean;
  /** Names each denied image and why, in one sentence each. */
  readonly reason?: string;
  /** Keys are sent bare; the apiserver prefixes `imagepolicywebhook.image-policy.k8s.io/`. */
  readonly auditAnnotations?: Readonly<Record<string, string>>;
}

/** Decides an ImageReview. Implementations fail closed: any error becomes a denial with a reason. */
export interface ImageReviewer {
  review(spec: ImageReviewSpec): Promise<ImageReviewStatus>;
}

/** What the decision engine reports for metrics and logs; the HTTP layer implements it. */
export interface DecisionObserver {
  /** One line per image decision. */
  imageDecided(event: {
    readonly image: string;
    readonly namespace: string;
    readonly digest?: string;
    readonly role?: string;
    readonly rule?: string;
    readonly result: 'allowed' | 'denied' | 'would-deny' | 'break-glass' | 'exempt';
    readonly reason: string;
    /** The engine's outcome code (ImageDecision.code), for bounded metric labels. */
    readonly code?: string;
    /** For the log only: the error a failure's reason names by its class (ImageDecision.detail). */
    readonly detail?: string;
    /** Answered from trust data past its TTL while notary was unavailable: when it was verified (ISO 8601). */
    readonly stale?: string;
    readonly durationMs: number;
    /**
     * Set on memoised decisions: events carrying the same `memo` object have identical fields
     * apart from `durationMs`, so an observer may cache work per memo (the log line's fields).
     */
    readonly memo?: object;
  }): void;
  /** One notary fetch (a whole collection update). */
  notaryFetched(event: {
    readonly server: string;
    readonly gun: string;
    readonly ok: boolean;
    readonly errorCode?: string;
    readonly durationMs: number;
  }): void;
  /** A cache lookup of a GUN's verified collection. */
  cacheLookup(event: { readonly hit: boolean }): void;
  /** One answer from verified data past its TTL because notary was unavailable (stale-if-error). */
  staleServed?(event: {
    readonly server: string;
    readonly gun: string;
    readonly verifiedAt: Date;
    readonly errorCode: string;
  }): void;
  /** A notary server's circuit breaker changed state. */
  breakerChanged?(event: {
    readonly server: string;
    readonly state: 'closed' | 'open' | 'half-open';
    readonly failures: number;
  }): void;
}

/** One image's decision as the admission webhooks read it (the engine's ImageDecision fits). */
export interface DecidedImage {
  /** The image exactly as written in the pod. */
  readonly image: string;
  readonly result: 'allowed' | 'denied' | 'would-deny' | 'break-glass' | 'exempt';
  /** One sentence, without the image name. */
  readonly reason: string;
  /** `sha256:…` the image verified to; set only when a verify rule admitted it. */
  readonly digest?: string;
}

/**
 * Decides a review and reports each image's decision: what `/mutate` needs to pin admitted images
 * to their verified digests. The status is the very one `ImageReviewer.review` would answer.
 */
export interface PodDecider {
  decide(spec: ImageReviewSpec): Promise<{
    readonly status: ImageReviewStatus;
    /** One per distinct image string, in order of first appearance. */
    readonly images: readonly DecidedImage[];
  }>;
}
