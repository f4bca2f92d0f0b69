/**
 * The decision engine behind the ImagePolicyWebhook: every image of the pod must pass.
 *
 * Per pod, in order: a namespace in `exemptNamespaces` admits everything ('exempt'); an enabled
 * break-glass annotation admits everything and is audited ('break-glass'). Otherwise each distinct
 * image string is decided once (distinct GUNs concurrently):
 *   parse and normalize → the most specific rule (none: denied) → `requireDigest` → `allow` /
 *   `deny` / verify: the collection from the trust cache, then resolveImage.
 * A rule (or the global setting) in detection mode turns its denials into 'would-deny': admitted,
 * reported in the audit annotations and to the observer.
 *
 * Notary failing (unreachable, timing out, 5xx, auth, garbled or oversized answers) denies the
 * image with that reason — fail closed — unless `failure: 'error'`, where the review rejects with
 * REVIEW_FAILED so the HTTP layer answers 5xx and the apiserver's `defaultAllow` decides. A
 * definite denial of another image of the pod still wins over the error. Failed verification
 * (signatures, hashes, rollback, expiry, untrusted root) is a verdict, never an "error".
 *
 * Audit annotations (bare keys; the apiserver prefixes `imagepolicywebhook.image-policy.k8s.io/`),
 * for container index i in the order the apiserver sent them, the first 100 images only:
 *   image-<i>-digest      sha256:… the image resolved to (verified images)
 *   image-<i>-role        the role that signed it (or the required signers, comma-separated)
 *   image-<i>-tag         the signed tag a digest-only reference was admitted through
 *   image-<i>-rule        the rule that decided
 *   image-<i>-would-deny  detection mode: why the image would have been denied
 *   break-glass           `<annotation key>=<value>` when break-glass admitted the pod
 */
import {
  TrustError,
  gunOf,
  isTrustError,
  parseImageReference,
  type DownloadLimits,
  type ImageReference,
} from '@kpack-trust/common';
import type { PolicyRule, VerifierConfig } from '../config/types.js';
import type {
  DecisionObserver,
  ImageReviewer,
  ImageReviewSpec,
  ImageReviewStatus,
} from '../review.js';
import { TrustCache } from '../trust/cache.js';
import { NotarySources, httpFetcherFactory, type FetcherFactory } from '../trust/notary-clients.js';
import { compileNamespaceGlob } from './glob.js';
import { resolveImage } from './resolve-image.js';
import { RuleSet } from './rules.js';

/** How to build an engine. */
export interface ImagePolicyEngineOptions {
  readonly config: VerifierConfig;
  /** The clock that judges expiry and cache freshness (tests move it); default the system clock. */
  readonly now?: () => Date;
  /** Receives one event per image decision, notary fetch and cache lookup. */
  readonly observer?: DecisionObserver;
  /** Builds the fetcher of a notary server; default NotaryHttpClient. */
  readonly fetcherFor?: FetcherFactory;
  /** Download caps passed to updateCollection. */
  readonly limits?: Partial<DownloadLimits>;
  /** Most images of one review decided at once (default 32). */
  readonly concurrency?: number;
}

/** What happened to one image. */
export type ImageResult = 'allowed' | 'denied' | 'would-deny' | 'break-glass' | 'exempt';

/** The decision for one distinct image string of the pod. */
export interface ImageDecision {
  /** The image exactly as written in the pod. */
  readonly image: string;
  readonly result: ImageResult;
  /** One sentence: why admitted, or why (would be) denied; without the image name. */
  readonly reason: string;
  /** `sha256:…` the image resolved to, when verified. */
  readonly digest?: string;
  readonly role?: string;
  /** The signed tag a digest-only reference was admitted through. */
  readonly tag?: string;
  /** The deciding rule's name. */
  readonly rule?: string;
  /**
   * A stable, low-cardinality code of the outcome, for metrics and scripts: SIGNED,
   * RULE_ALLOW, NAMESPACE_EXEMPT, BREAK_GLASS, REFERENCE_INVALID, NO_RULE, DIGEST_REQUIRED,
   * RULE_DENY, NOT_SIGNED, DIGEST_MISMATCH, SIGNERS_NOT_MET, or the TrustError code of a failed
   * notary update (HTTP_UNREACHABLE, VERSION_ROLLBACK, EXPIRED, …; INTERNAL for a bug).
   */
  readonly code: string;
  /** True when notary could not be asked (the `failure` setting applies). */
  readonly unavailable?: boolean;
  readonly durationMs: number;
}

/** A whole review: the status to answer and each image's decision. */
export interface PodDecision {
  readonly status: ImageReviewStatus;
  /** One per distinct image string, in order of first appearance. */
  readonly images: readonly ImageDecision[];
}

/** Images whose audit annotations are written; a bound on what one review adds to the audit log. */
const MAX_ANNOTATED_IMAGES = 100;
/** Denied images named in `reason`; the rest are counted. */
const MAX_REASONS = 20;
const DEFAULT_CONCURRENCY = 32;

/** Errors that mean "notary could not be asked", as opposed to a verdict on the trust data. */
const UNAVAILABLE_CODES = new Set<string>([
  'HTTP_UNREACHABLE',
  'AUTH_FAILED',
  'METADATA_MALFORMED',
  'DOWNLOAD_TOO_LARGE',
]);

type Verdict = Omit<ImageDecision, 'image' | 'durationMs'>;

/** Decides ImageReviews; see the module comment. */
export class ImagePolicyEngine implements ImageReviewer {
  private current: VerifierConfig;
  private rules: RuleSet;
  private exempt: readonly RegExp[];
  private readonly now: () => Date;
  private readonly observer: DecisionObserver | undefined;
  private readonly sources: NotarySources;
  private readonly cache: TrustCache;
  private readonly concurrency: number;

  constructor(options: ImagePolicyEngineOptions) {
    const config = options.config;
    this.current = config;
    this.rules = new RuleSet(config.rules);
    this.exempt = config.exemptNamespaces.map(compileNamespaceGlob);
    this.now = options.now ?? (() => new Date());
    this.observer = options.observer;
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    this.sources = new NotarySources(options.fetcherFor ?? httpFetcherFactory, config.notary);
    this.cache = new TrustCache({
      maxRepositories: config.cache.maxRepositories,
      maxTrustStates: config.cache.maxTrustStates,
      ttlMs: config.cache.ttlSeconds * 1000,
      now: this.now,
      ...(options.observer === undefined ? {} : { observer: options.observer }),
      ...(options.limits === undefined ? {} : { limits: options.limits }),
    });
  }

  /** The configuration in force. */
  get config(): VerifierConfig {
    return this.current;
  }

  /** The trust cache (for diagnostics and tests). */
  get trustCache(): TrustCache {
    return this.cache;
  }

  /**
   * Switches to a new configuration without a restart. Trust states (roots, rollback floors) and
   * cached collections are kept for anchors that did not change; notary clients whose settings
   * changed are closed once the updates using them have settled.
   */
  reconfigure(config: VerifierConfig): void {
    const rules = new RuleSet(config.rules);
    const exempt = config.exemptNamespaces.map(compileNamespaceGlob);
    const retired = this.sources.reconfigure(config.notary);
    this.cache.resize({
      maxRepositories: config.cache.maxRepositories,
      maxTrustStates: config.cache.maxTrustStates,
      ttlMs: config.cache.ttlSeconds * 1000,
    });
    this.current = config;
    this.rules = rules;
    this.exempt = exempt;
    if (retired.length > 0) {
      void this.cache.settled().then(() => {
        for (const fetcher of retired) fetcher.close?.();
      });
    }
  }

  /** The ImageReviewer contract: the status only. */
  async review(spec: ImageReviewSpec): Promise<ImageReviewStatus> {
    return (await this.decide(spec)).status;
  }

  /** Decides a review and reports each image's decision (what `check` prints). */
  async decide(spec: ImageReviewSpec): Promise<PodDecision> {
    const config = this.current;
    const rules = this.rules;
    const distinct = [...new Set(spec.containers.map((c) => c.image))];

    const podWide = this.podWideVerdict(spec, config);
    let decisions: ImageDecision[];
    if (podWide !== undefined) {
      decisions = distinct.map((image) => ({ image, ...podWide, durationMs: 0 }));
    } else {
      decisions = await mapConcurrently(distinct, this.concurrency, (image) =>
        this.decideImage(image, spec.namespace, config, rules),
      );
    }
    for (const d of decisions) {
      // `code` rides along beyond the contract's fields: observers may read it for bounded labels.
      const event = {
        image: d.image,
        namespace: spec.namespace,
        ...(d.digest === undefined ? {} : { digest: d.digest }),
        ...(d.role === undefined ? {} : { role: d.role }),
        ...(d.rule === undefined ? {} : { rule: d.rule }),
        result: d.result,
        reason: d.reason,
        code: d.code,
        durationMs: d.durationMs,
      };
      this.observer?.imageDecided(event);
    }

    const denied = decisions.filter((d) => d.result === 'denied');
    if (
      config.failure === 'error' &&
      denied.length > 0 &&
      denied.every((d) => d.unavailable === true)
    ) {
      const first = denied[0] as ImageDecision;
      throw new TrustError(
        'REVIEW_FAILED',
        { image: first.image, problem: first.reason },
        `cannot decide ${first.image}: ${first.reason}`,
      );
    }

    const byImage = new Map(decisions.map((d) => [d.image, d]));
    const auditAnnotations: Record<string, string> = {};
    if (podWide?.result === 'break-glass') {
      auditAnnotations['break-glass'] =
        `${config.breakGlass.annotation}=${spec.annotations[config.breakGlass.annotation] ?? ''}`;
    }
    spec.containers.slice(0, MAX_ANNOTATED_IMAGES).forEach((container, i) => {
      const d = byImage.get(container.image);
      if (d === undefined) return;
      if (d.digest !== undefined) auditAnnotations[`image-${i}-digest`] = d.digest;
      if (d.role !== undefined) auditAnnotations[`image-${i}-role`] = d.role;
      if (d.tag !== undefined) auditAnnotations[`image-${i}-tag`] = d.tag;
      if (d.rule !== undefined) auditAnnotations[`image-${i}-rule`] = d.rule;
      if (d.result === 'would-deny') auditAnnotations[`image-${i}-would-deny`] = d.reason;
    });

    const reasons = denied.slice(0, MAX_REASONS).map((d) => `${d.image}: ${d.reason}`);
    if (denied.length > MAX_REASONS) {
      reasons.push(`and ${denied.length - MAX_REASONS} more images denied`);
    }
    const status: ImageReviewStatus = {
      allowed: denied.length === 0,
      ...(denied.length === 0 ? {} : { reason: reasons.join('; ') }),
      ...(Object.keys(auditAnnotations).length === 0 ? {} : { auditAnnotations }),
    };
    return { status, images: decisions };
  }

  /** Stops: waits for updates under way, then closes every notary client. */
  async close(): Promise<void> {
    await this.cache.settled();
    for (const fetcher of this.sources.all()) fetcher.close?.();
  }

  private podWideVerdict(spec: ImageReviewSpec, config: VerifierConfig): Verdict | undefined {
    if (this.exempt.some((ns) => ns.test(spec.namespace))) {
      return {
        result: 'exempt',
        code: 'NAMESPACE_EXEMPT',
        reason: `namespace "${spec.namespace}" is exempt from image policy`,
      };
    }
    const breakGlass = config.breakGlass;
    if (breakGlass.enabled) {
      const value = spec.annotations[breakGlass.annotation];
      if (value !== undefined && value !== '') {
        return {
          result: 'break-glass',
          code: 'BREAK_GLASS',
          reason: `admitted without verification by the break-glass annotation ${breakGlass.annotation}`,
        };
      }
    }
    return undefined;
  }

  private async decideImage(
    image: string,
    namespace: string,
    config: VerifierConfig,
    rules: RuleSet,
  ): Promise<ImageDecision> {
    const started = performance.now();
    let verdict: Verdict;
    try {
      verdict = await this.verdict(image, namespace, config, rules);
    } catch (error) {
      // A bug must not crash the review or admit the image: deny it, as notary failures are.
      const message = error instanceof Error ? error.message : String(error);
      verdict = deny(config.detectionMode, {
        reason: `internal error while deciding: ${sentence(message)}`,
        code: 'INTERNAL',
        unavailable: true,
      });
    }
    return { image, ...verdict, durationMs: performance.now() - started };
  }

  private async verdict(
    image: string,
    namespace: string,
    config: VerifierConfig,
    rules: RuleSet,
  ): Promise<Verdict> {
    let ref: ImageReference;
    try {
      ref = parseImageReference(image);
    } catch (error) {
      if (!isTrustError(error, 'REFERENCE_INVALID')) throw error;
      return deny(config.detectionMode, {
        reason: `not a valid image reference (${error.facts.problem})`,
        code: error.code,
      });
    }
    const rule = rules.match(ref.name, namespace);
    if (rule === undefined) {
      return deny(config.detectionMode, {
        reason: `no policy rule matches ${ref.name} in namespace "${namespace}"`,
        code: 'NO_RULE',
      });
    }
    const ruleFacts = { rule: rule.name };
    if (rule.requireDigest && ref.digest === undefined) {
      return deny(rule.detectionMode, {
        ...ruleFacts,
        reason: `rule "${rule.name}" requires a digest reference (${ref.name}@sha256:…)`,
        code: 'DIGEST_REQUIRED',
      });
    }
    switch (rule.action) {
      case 'allow':
        return {
          ...ruleFacts,
          result: 'exempt',
          code: 'RULE_ALLOW',
          reason: `admitted without verification by rule "${rule.name}"`,
        };
      case 'deny':
        return deny(rule.detectionMode, {
          ...ruleFacts,
          reason: `denied by rule "${rule.name}"`,
          code: 'RULE_DENY',
        });
      case 'verify':
        return this.verify(ref, rule);
    }
  }

  private async verify(
    ref: ImageReference,
    rule: Extract<PolicyRule, { action: 'verify' }>,
  ): Promise<Verdict> {
    const source = this.sources.forRegistry(ref.registry);
    const gun = gunOf(ref);
    const base = { rule: rule.name };
    try {
      const collection = await this.cache.collection(source, gun, rule.trust.anchor);
      const resolved = resolveImage(collection, ref, rule.trust, source.server);
      if (!resolved.ok) {
        return deny(rule.detectionMode, { ...base, reason: resolved.why, code: resolved.code });
      }
      return {
        ...base,
        result: 'allowed',
        code: 'SIGNED',
        reason: `signed by ${resolved.role} in notary ${source.server}`,
        digest: `sha256:${resolved.digestHex}`,
        role: resolved.role,
        ...(ref.tag === undefined ? { tag: resolved.tag } : {}),
      };
    } catch (error) {
      return deny(rule.detectionMode, { ...base, ...explainFailure(error, source.server, gun) });
    }
  }
}

/** A denial, or in detection mode a would-deny that admits. */
function deny(
  detection: boolean,
  facts: { reason: string; code: string; rule?: string; unavailable?: boolean },
): Verdict {
  return { ...facts, result: detection ? 'would-deny' : 'denied' };
}

/** The sentence and classification of a failed collection update. */
function explainFailure(
  error: unknown,
  server: string,
  gun: string,
): { reason: string; code: string; unavailable?: boolean } {
  if (!isTrustError(error)) {
    const message = error instanceof Error ? error.message : String(error);
    return {
      reason: `internal error while checking notary ${server}: ${sentence(message)}`,
      code: 'INTERNAL',
      unavailable: true,
    };
  }
  const message = sentence(error.message);
  if (isTrustError(error, 'HTTP_STATUS') && error.facts.status === 404) {
    if (error.facts.url.endsWith('/root.json')) {
      return {
        reason: `not signed in notary ${server} (no trust data for ${gun})`,
        code: error.code,
      };
    }
    return { reason: `notary ${server} is missing trust data: ${message}`, code: error.code };
  }
  if (UNAVAILABLE_CODES.has(error.code) || isTrustError(error, 'HTTP_STATUS')) {
    return {
      reason: `notary ${server} failed to serve trust data for ${gun}: ${message}`,
      code: error.code,
      unavailable: true,
    };
  }
  return {
    reason: `trust data for ${gun} from notary ${server} failed verification: ${message}`,
    code: error.code,
  };
}

/** A message as a clause: no trailing period, one line. */
function sentence(message: string): string {
  return message.replace(/\s+/g, ' ').trim().replace(/\.$/, '');
}

/** Maps with at most `limit` calls in flight, keeping order. */
async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
