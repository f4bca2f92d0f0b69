/**
 * The admission webhooks beside the ImagePolicyWebhook path, for clusters whose control plane
 * cannot be given ImagePolicyWebhook's flags and files (EKS, GKE, AKS, …):
 * - `/mutate` (Pods: CREATE and UPDATE, and UPDATE of `pods/ephemeralcontainers`) decides the pod's images
 *   and pins every verified one to its digest (mutate.ts);
 * - `/validate` (Pods and the workloads that carry pod templates) decides the template, and never
 *   changes it — GitOps tools would fight a webhook rewriting what they apply.
 *
 * Both ask the same engine the same question as the ImagePolicyWebhook path — the same images in
 * the same order, with the same forwarded annotations — so a denial carries the same reason.
 * Detection mode admits and returns the would-be denials as `warnings`, which kubectl prints.
 * The engine failing under `failure: error` is answered 500, so the webhook's failurePolicy
 * decides, as the ImagePolicyWebhook path leaves it to defaultAllow.
 *
 * Every body is parsed. A memo of the parse by the body's bytes with the uid cut out was tried and
 * removed: kube-apiserver's ServiceAccount admission gives each Pod its own token volume
 * (`kube-api-access-<random>`) before the webhooks see it, and managedFields carry the second it
 * was made, so the Pods of one ReplicaSet never repeat (test/test/kube-admission-webhooks.e2e:
 * 0 hits in 14 lookups for a Deployment of 6), and each miss cost ~17 µs of bookkeeping.
 */
import { performance } from 'node:perf_hooks';
import type { DecidedImage, ImageReviewSpec, PodDecider } from '../review.js';
import {
  ADMISSION_API_VERSION,
  ADMISSION_REVIEW_KIND,
  admissionReviewReply,
  parseAdmissionReview,
  refusal,
  type AdmissionResponse,
} from './admission-review.js';
import type { Logger } from './logger.js';
import type { AdmissionOutcome, VerifierMetrics } from './metrics.js';
import { DEFAULT_MAX_PATCH_BYTES, encodePatch, pinningPatch } from './mutate.js';
import {
  containersToReview,
  forwardedAnnotations,
  isPod,
  podTemplateOf,
  type PodContainer,
} from './validate.js';

/** The two webhook paths. */
export type Webhook = 'mutate' | 'validate';

/** What createAdmission needs. */
export interface AdmissionOptions {
  readonly decider: PodDecider;
  readonly metrics: VerifierMetrics;
  readonly logger: Logger;
  /** Containers considered per pod at most; more deny the pod. */
  readonly maxImages: number;
  /** Largest patch sent; default DEFAULT_MAX_PATCH_BYTES. */
  readonly maxPatchBytes?: number;
}

/** The HTTP status and the body of an answer: a value to serialize, or JSON bytes already made. */
export interface AdmissionAnswer {
  readonly httpStatus: number;
  readonly body: unknown;
}

/** Answers the AdmissionReviews of both paths; throws only on a bug. */
export interface AdmissionHandler {
  /**
   * Answers one parsed request body (`undefined` for an empty body). Every body is parsed: no two
   * Pods the apiserver sends are alike but for the uid (see the module comment).
   */
  answer(
    webhook: Webhook,
    document: unknown,
    started: number,
  ): AdmissionAnswer | Promise<AdmissionAnswer>;
}

/** What a review body means once parsed: the same for every uid it is sent with. */
interface ReviewPlan {
  readonly containers: readonly PodContainer[];
  /** What the engine is asked (frozen: shared by every review of the same body). */
  readonly spec: ImageReviewSpec;
  /** patchFor's key of the container layout, when the pod is small enough for patches to be kept. */
  readonly layout: string | undefined;
}

/** How many images a patch pins, and the patch (undefined when none, or when over the limit). */
interface PinningPatch {
  readonly pins: number;
  readonly patch: string | undefined;
  /** The reply's bytes after the uid when the patch is all it says (see `patched`). */
  readonly replyTail: Buffer | undefined;
}

/** The reply up to the uid's value. */
const REPLY_HEAD = Buffer.from(
  `{"apiVersion":${JSON.stringify(ADMISSION_API_VERSION)},"kind":${JSON.stringify(ADMISSION_REVIEW_KIND)},"response":{"uid":`,
);

/** Patches are kept only for pods this small, and this many container layouts per status. */
const MAX_CACHED_CONTAINERS = 8;
const MAX_LAYOUTS_PER_STATUS = 16;

/** Warnings returned per review at most, and characters per warning (the apiserver truncates too). */
const MAX_WARNINGS = 20;
const MAX_WARNING_LENGTH = 512;

/** Builds the handler of both webhook paths. */
export function createAdmission(options: AdmissionOptions): AdmissionHandler {
  const { decider, metrics, logger, maxImages } = options;
  const maxPatchBytes = options.maxPatchBytes ?? DEFAULT_MAX_PATCH_BYTES;
  const patches = new WeakMap<object, Map<string, PinningPatch>>();

  const ok = (
    webhook: Webhook,
    outcome: AdmissionOutcome,
    started: number,
    body: unknown,
  ): AdmissionAnswer => {
    metrics.admissionAnswered(webhook, outcome, (performance.now() - started) / 1000);
    return { httpStatus: 200, body };
  };
  const rejected = (
    webhook: Webhook,
    uid: string | undefined,
    problem: string,
    started: number,
  ): AdmissionAnswer => {
    logger.warn('admission.rejected', { webhook, problem });
    const message = `not a valid AdmissionReview: ${problem}`;
    if (uid === undefined) {
      metrics.admissionAnswered(webhook, 'rejected', (performance.now() - started) / 1000);
      return { httpStatus: 400, body: { error: 'BadRequest', message } };
    }
    return ok(webhook, 'rejected', started, refusal(uid, 400, message));
  };

  const answer: AdmissionHandler['answer'] = (webhook, document, started) => {
    const parsed = parseAdmissionReview(document);
    if (!parsed.ok) return rejected(webhook, parsed.uid, parsed.problem, started);
    const request = parsed.request;
    const { uid } = request;
    // Only writes put images into pods; a webhook registered for more admits the rest unread.
    if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') {
      return ok(webhook, 'allowed', started, admissionReviewReply({ uid, allowed: true }));
    }
    if (webhook === 'mutate' && !isPod(request.kind)) {
      const kind =
        request.kind.group === ''
          ? request.kind.kind
          : `${request.kind.group}/${request.kind.kind}`;
      return rejected(webhook, uid, `/mutate admits Pods, got ${JSON.stringify(kind)}`, started);
    }
    if (request.object === undefined) {
      return rejected(webhook, uid, `request.object is required for ${request.operation}`, started);
    }
    const lookup = podTemplateOf(request.kind, request.object);
    if (!lookup.ok) return rejected(webhook, uid, lookup.problem, started);
    const template = lookup.template;
    if (template === undefined) {
      return ok(webhook, 'allowed', started, admissionReviewReply({ uid, allowed: true }));
    }
    let oldSpec;
    if (request.operation === 'UPDATE' && request.oldObject !== undefined) {
      const old = podTemplateOf(request.kind, request.oldObject);
      oldSpec = old.ok ? old.template?.spec : undefined;
    }
    const selection = containersToReview(template.spec, oldSpec, maxImages);
    if (!selection.ok) {
      if (selection.tooMany === undefined) {
        return rejected(webhook, uid, selection.problem, started);
      }
      logger.warn('admission.too-many-images', {
        webhook,
        namespace: request.namespace,
        images: selection.tooMany,
        maxImages,
      });
      const message =
        `the pod has ${selection.tooMany} containers and at most ${maxImages} are reviewed ` +
        `per pod, so it is denied`;
      return ok(webhook, 'denied', started, refusal(uid, 403, message));
    }
    const containers = selection.containers;
    if (containers.length === 0) {
      return ok(webhook, 'allowed', started, admissionReviewReply({ uid, allowed: true }));
    }
    const annotations = forwardedAnnotations(template.metadata);
    if (!annotations.ok) return rejected(webhook, uid, annotations.problem, started);
    const plan = planOf(containers, annotations.annotations, request.namespace);
    return decided(webhook, uid, plan, started);
  };

  /** Asks the engine about a planned review and answers with its decision. */
  function decided(
    webhook: Webhook,
    uid: string,
    plan: ReviewPlan,
    started: number,
  ): AdmissionAnswer | Promise<AdmissionAnswer> {
    const { spec } = plan;
    const failed = (error: unknown): AdmissionAnswer => {
      metrics.admissionAnswered(webhook, 'error', (performance.now() - started) / 1000);
      logger.error('admission.failed', { webhook, namespace: spec.namespace, error });
      return {
        httpStatus: 500,
        body: {
          error: 'InternalError',
          message: 'the image policy engine could not decide; the webhook failurePolicy applies',
        },
      };
    };
    let pending;
    try {
      pending = decider.decide(spec);
    } catch (error) {
      return failed(error);
    }
    return pending.then(({ status, images }) => {
      if (!status.allowed) {
        return ok(
          webhook,
          'denied',
          started,
          refusal(uid, 403, status.reason ?? 'denied by image policy'),
        );
      }
      const response: { -readonly [K in keyof AdmissionResponse]: AdmissionResponse[K] } = {
        uid,
        allowed: true,
      };
      const warnings = warningsOf(images);
      if (warnings !== undefined) response.warnings = warnings;
      if (webhook === 'validate')
        return ok(webhook, 'allowed', started, admissionReviewReply(response));
      return patched(response, plan, status, images, started);
    }, failed);
  }

  /**
   * The encoded patch, kept beside a memoised status: the engine returns the same frozen status
   * object only for the same outcomes (so the same digests), and the layout key names every
   * container's place and image, which is all else a patch depends on.
   */
  function patchFor(
    status: object,
    { containers, layout }: ReviewPlan,
    images: readonly DecidedImage[],
  ): PinningPatch {
    const cacheable = layout !== undefined && Object.isFrozen(status);
    let byLayout: Map<string, PinningPatch> | undefined;
    if (cacheable) {
      byLayout = patches.get(status);
      const known = byLayout?.get(layout);
      if (known !== undefined) return known;
    }
    const operations = pinningPatch(containers, images);
    const patch = operations.length === 0 ? undefined : encodePatch(operations, maxPatchBytes);
    const made: PinningPatch = {
      pins: operations.length,
      patch,
      replyTail:
        patch === undefined
          ? undefined
          : Buffer.from(
              `,"allowed":true,"patchType":"JSONPatch","patch":${JSON.stringify(patch)}}}`,
            ),
    };
    if (cacheable) {
      if (byLayout === undefined) patches.set(status, (byLayout = new Map<string, PinningPatch>()));
      if (byLayout.size >= MAX_LAYOUTS_PER_STATUS) byLayout.clear();
      byLayout.set(layout, made);
    }
    return made;
  }

  function patched(
    response: { -readonly [K in keyof AdmissionResponse]: AdmissionResponse[K] },
    plan: ReviewPlan,
    status: object,
    images: readonly DecidedImage[],
    started: number,
  ): AdmissionAnswer {
    const { pins, patch, replyTail } = patchFor(status, plan, images);
    if (pins === 0) return ok('mutate', 'allowed', started, admissionReviewReply(response));
    if (patch === undefined) {
      // Admitting without the pins would trust the registry after all: refuse instead.
      const message =
        `pinning ${pins} images to their digests needs a patch over ` +
        `${maxPatchBytes} bytes, so the pod is denied`;
      return ok('mutate', 'denied', started, refusal(response.uid, 403, message));
    }
    if (response.warnings === undefined && replyTail !== undefined) {
      // The common answer, as bytes: only the uid differs between pods pinned alike, so the rest
      // is serialized once per patch (the same fields, in the same order, as admissionReviewReply
      // makes) and the reply is three copies into one buffer.
      const uid = Buffer.from(JSON.stringify(response.uid));
      const bytes = Buffer.concat(
        [REPLY_HEAD, uid, replyTail],
        REPLY_HEAD.length + uid.length + replyTail.length,
      );
      return ok('mutate', 'patched', started, bytes);
    }
    response.patchType = 'JSONPatch';
    response.patch = patch;
    return ok('mutate', 'patched', started, admissionReviewReply(response));
  }

  return { answer };
}

/** The plan of a review, frozen so that the reviews sharing it through the memo cannot change it. */
function planOf(
  containers: readonly PodContainer[],
  annotations: Record<string, string>,
  namespace: string,
): ReviewPlan {
  const spec: ImageReviewSpec = Object.freeze({
    containers: Object.freeze(containers.map((c) => Object.freeze({ image: c.image }))),
    annotations: Object.freeze(annotations),
    namespace,
  });
  let layout: string | undefined;
  if (containers.length <= MAX_CACHED_CONTAINERS) {
    layout = '';
    for (const c of containers) layout += `${c.list}\n${c.index}\n${c.image}\n`;
  }
  return Object.freeze({
    // containersToReview made these objects for this review: frozen in place, not copied.
    containers: Object.freeze(containers.map((c) => Object.freeze(c))),
    spec,
    layout,
  });
}

/** Detection mode's would-be denials and break-glass admissions, bounded, for kubectl to print. */
function warningsOf(images: readonly DecidedImage[]): string[] | undefined {
  let warnings: string[] | undefined;
  let more = 0;
  for (const decision of images) {
    let text: string;
    if (decision.result === 'would-deny') {
      text = `detection mode: ${decision.image} would be denied: ${decision.reason}`;
    } else if (decision.result === 'break-glass') {
      text = `${decision.image}: ${decision.reason}`;
    } else {
      continue;
    }
    warnings ??= [];
    if (warnings.length >= MAX_WARNINGS) {
      more++;
      continue;
    }
    warnings.push(
      text.length > MAX_WARNING_LENGTH ? `${text.slice(0, MAX_WARNING_LENGTH)}…` : text,
    );
  }
  if (more > 0) warnings?.push(`and ${more} more images with warnings`);
  return warnings;
}
