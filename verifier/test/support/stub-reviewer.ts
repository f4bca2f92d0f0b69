/**
 * A stand-in for the decision engine in HTTP tests: it records each spec and decides with the real
 * reference parser and the engine's wording, so unparseable images come back as a clear denial.
 */
import { isTrustError, parseImageReference } from '@kpack-trust/common';
import type {
  DecisionObserver,
  ImageReviewSpec,
  ImageReviewStatus,
  ImageReviewer,
} from '../../src/review.js';

/** Decides: images under `allowed/` are admitted with a fake digest, everything else is denied. */
export class StubReviewer implements ImageReviewer {
  readonly calls: ImageReviewSpec[] = [];
  /** When set, review() throws it (the engine's `failure: error` mode). */
  failWith: Error | undefined;
  /** Delays each answer (in-flight requests during shutdown). */
  delayMs = 0;

  constructor(private readonly observer?: DecisionObserver) {}

  async review(spec: ImageReviewSpec): Promise<ImageReviewStatus> {
    this.calls.push(spec);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.failWith) throw this.failWith;
    const denials: string[] = [];
    const audit: Record<string, string> = {};
    for (const [index, { image }] of spec.containers.entries()) {
      const started = performance.now();
      let reason: string;
      let allowed = false;
      try {
        const ref = parseImageReference(image);
        allowed = ref.path.startsWith('allowed/');
        reason = allowed
          ? 'signed by targets in notary https://notary.test'
          : 'not signed in notary https://notary.test';
        if (allowed) audit[`image-${index}`] = `${ref.name}@sha256:${'a'.repeat(64)}`;
      } catch (error) {
        if (!isTrustError(error, 'REFERENCE_INVALID')) throw error;
        reason = `not a valid image reference (${error.facts.problem})`;
      }
      if (!allowed) denials.push(`${image}: ${reason}`);
      this.observer?.imageDecided({
        image,
        namespace: spec.namespace,
        result: allowed ? 'allowed' : 'denied',
        reason,
        durationMs: performance.now() - started,
        ...(allowed ? { digest: `sha256:${'a'.repeat(64)}`, rule: 'allowed/*' } : {}),
      });
    }
    return denials.length === 0
      ? { allowed: true, auditAnnotations: audit }
      : { allowed: false, reason: denials.join('; '), auditAnnotations: audit };
  }
}

/** A valid ImageReview body for these images. */
export function reviewBody(
  images: readonly string[],
  extra: { annotations?: Record<string, string>; namespace?: string } = {},
): Record<string, unknown> {
  return {
    apiVersion: 'imagepolicy.k8s.io/v1alpha1',
    kind: 'ImageReview',
    metadata: { creationTimestamp: null },
    spec: {
      containers: images.map((image) => ({ image })),
      annotations: extra.annotations ?? {},
      namespace: extra.namespace ?? 'default',
    },
    status: { allowed: false },
  };
}
