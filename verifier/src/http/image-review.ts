/**
 * The wire form of `imagepolicy.k8s.io/v1alpha1` ImageReview: strict validation of what the
 * apiserver sends and the exact reply shape it decodes. Go's types mark `containers`, `annotations`,
 * `namespace` and `image` as `omitempty`, so an absent field means "empty", while a present field
 * of the wrong type is a malformed request; unknown fields (`metadata`, a zero `status`) are
 * ignored, as Kubernetes decoders do.
 */
import type { ImageReviewSpec, ImageReviewStatus } from '../review.js';
import { describe, isRecord } from './json-shape.js';

/** The API group/version the ImagePolicyWebhook plugin speaks. */
export const IMAGE_REVIEW_API_VERSION = 'imagepolicy.k8s.io/v1alpha1';
/** The only kind accepted and answered. */
export const IMAGE_REVIEW_KIND = 'ImageReview';

/** A request that fits the contract, or the one-sentence reason it does not. */
export type ParsedImageReview =
  | { readonly ok: true; readonly spec: ImageReviewSpec }
  | { readonly ok: false; readonly problem: string };

/** The reply body the apiserver decodes; `reason`/`auditAnnotations` are omitted when empty (Go `omitempty`). */
export interface ImageReviewResponse {
  readonly apiVersion: typeof IMAGE_REVIEW_API_VERSION;
  readonly kind: typeof IMAGE_REVIEW_KIND;
  readonly status: ImageReviewStatus;
}

/**
 * Validates a parsed JSON body as an ImageReview request. `maxImages` is not checked here: a pod
 * with too many images is a well-formed review and gets a denial, not a 4xx (see app.ts).
 */
export function parseImageReview(body: unknown): ParsedImageReview {
  const fail = (problem: string): ParsedImageReview => ({ ok: false, problem });
  if (!isRecord(body)) return fail(`the body must be a JSON object, got ${describe(body)}`);
  if (body['apiVersion'] !== IMAGE_REVIEW_API_VERSION) {
    return fail(
      `apiVersion must be "${IMAGE_REVIEW_API_VERSION}", got ${describe(body['apiVersion'])}`,
    );
  }
  if (body['kind'] !== IMAGE_REVIEW_KIND) {
    return fail(`kind must be "${IMAGE_REVIEW_KIND}", got ${describe(body['kind'])}`);
  }
  const spec = body['spec'];
  if (!isRecord(spec)) return fail(`spec must be an object, got ${describe(spec)}`);

  const rawContainers = spec['containers'] ?? [];
  if (!Array.isArray(rawContainers)) {
    return fail(`spec.containers must be an array, got ${describe(rawContainers)}`);
  }
  const containers: { image: string }[] = [];
  for (const [index, container] of (rawContainers as readonly unknown[]).entries()) {
    if (!isRecord(container)) {
      return fail(`spec.containers[${index}] must be an object, got ${describe(container)}`);
    }
    const image = container['image'];
    if (typeof image !== 'string' || image.length === 0) {
      return fail(
        `spec.containers[${index}].image must be a non-empty string, got ${describe(image)}`,
      );
    }
    containers.push({ image });
  }

  const rawAnnotations = spec['annotations'] ?? {};
  if (!isRecord(rawAnnotations)) {
    return fail(`spec.annotations must be an object of strings, got ${describe(rawAnnotations)}`);
  }
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(rawAnnotations)) {
    if (typeof value !== 'string') {
      return fail(
        `spec.annotations[${JSON.stringify(key)}] must be a string, got ${describe(value)}`,
      );
    }
    // defineProperty, so a key named "__proto__" stays an ordinary own property.
    Object.defineProperty(annotations, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }

  const namespace = spec['namespace'] ?? '';
  if (typeof namespace !== 'string') {
    return fail(`spec.namespace must be a string, got ${describe(namespace)}`);
  }
  return { ok: true, spec: { containers, annotations, namespace } };
}

/** Builds the reply, copying only the fields of the contract so nothing else leaks onto the wire. */
export function imageReviewResponse(status: ImageReviewStatus): ImageReviewResponse {
  const out: { allowed: boolean; reason?: string; auditAnnotations?: Record<string, string> } = {
    allowed: status.allowed,
  };
  if (typeof status.reason === 'string' && status.reason.length > 0) out.reason = status.reason;
  if (status.auditAnnotations !== undefined) {
    const audit: Record<string, string> = {};
    for (const [key, value] of Object.entries(status.auditAnnotations)) {
      Object.defineProperty(audit, key, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    if (Object.keys(audit).length > 0) out.auditAnnotations = audit;
  }
  return { apiVersion: IMAGE_REVIEW_API_VERSION, kind: IMAGE_REVIEW_KIND, status: out };
}
