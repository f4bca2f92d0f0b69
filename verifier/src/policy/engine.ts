/**
 * The decision engine behind the ImagePolicyWebhook: every image of the pod must pass.
 *
 * Per pod, in order: a namespace in `exemptNamespaces` admits everything ('exempt'); an enabled
 * break-glass annotation admits everything and is audited ('break-glass'). Otherwise each distinct
 * image string is decided once (distinct GUNs concurrently):
 *   parse and normalize (registry in its canonical spelling) → the most specific rule (none: denied) → `requireDigest` → `allow` /
 *   `deny` / verify: the collection from the trust cache, then resolveImage.
 * A rule (or the global setting) in detection mode turns its denials into 'would-deny': admitted,
 * reported in the audit annotations and to the observer.
 *
 * Notary failing denies the image — fail closed. Only an outage of a notary server named in the
 * config (unreachable, timing out, 5xx) is "unavailable": under `failure: 'error'` the review then
 * rejects with REVIEW_FAILED, the HTTP layer answers 5xx and the apiserver's `defaultAllow` decides.
 * Everything else is a definite denial, because the pod's author can cause it: a server not named
 * in the config (`https://<registry>` for any host:port a rule's glob lets through) is theirs to
 * make refuse, hang or fail; and on a configured server, answers about one GUN (auth refused for
 * its scope, 4xx, garbled or oversized metadata) are in the hands of whoever publishes that GUN.
 * A definite denial of another image of the pod wins over the error. Failed verification
 * (signatures, hashes, rollback, expiry, untrusted root) is a verdict, never an "error".
 *
 * Denial reasons go back to whoever created the pod, so a failure to get trust data names the
 * image and the class of failure only ("notary … is unavailable for … (timed out)"), never the
 * transport error: naming `ECONNREFUSED 127.0.0.1:2` or an OpenSSL message for any host:port the
 * author writes would make the verifier a port scanner of its own network. For servers not in the
 * config every such failure reads the same, whether refused, timing out, TLS, DNS or an HTTP error
 * (each tells a closed port from an open one, or a TLS service from a plain one). The detail goes
 * to the log (the `detail` of the decision event), never to the reason, audit annotations or
 * metrics labels.
 *
 * Audit annotations (bare keys; the apiserver prefixes `imagepolicywebhook.image-policy.k8s.io/`),
 * for container index i in the order the apiserver sent them, the first 100 images only:
 *   image-<i>-digest      sha256:… the image resolved to (verified images)
 *   image-<i>-role        the role that signed it (or the required signers, comma-separated)
 *   image-<i>-tag         the signed tag a digest-only reference was admitted through
 *   image-<i>-rule        the rule that decided
 *   image-<i>-would-deny  detection mode: why the image would have been denied
 *   break-glass           `<annotation key>=<value>` when break-glass admitted the pod
 *
 * Cached decisions are memoised (see DecisionMemo in memo.ts): per configuration, what an image
 * string means in a namespace (reference, rule, notary source — or a decision that needs no trust
 * data), and per verified collection the verdict resolved from it. A memoised verdict is used only
 * while the trust cache still holds that very collection fresh (so never past its TTL or expiry);
 * reconfigure starts a new memo; failures (notary unavailable, failed verification, bugs) are never
 * memoised, so the next review asks notary again.
 */
import {
  TrustError,
  gunOf,
  isTrustError,
  parseImageReference,
  type DownloadLimits,
  type ImageReference,
  type TrustedCollection,
} from '@kpack-trust/common';
import { canonicalReference } from '../config/registry.js';
import type { PolicyRule, VerifierConfig } from '../config/types.js';
import type {
  DecisionObserver,
  ImageReviewer,
  ImageReviewSpec,
  ImageReviewStatus,
} from '../review.js';
import {
  TrustCache,
  collectionKey,
  trustCacheSettings,
  type CollectionLookup,
  type NotarySource,
} from '../trust/cache.js';
import {
  NotarySources,
  httpFetcherFactory,
  type FetcherFactory,
  type PooledNotarySource,
} from '../trust/notary-clients.js';
import { compileNamespaceGlob } from './glob.js';
import {
  DEFAULT_MEMO_ENTRIES,
  DecisionMemo,
  podMemoKey,
  routeMemoKey,
  sameOutcomes,
  type Outcome,
  type Route,
  type VerifyRoute,
} from './memo.js';
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
  /** Entries of each decision memo (image routes, pod statuses); 0 turns memoising off. */
  readonly memoEntries?: number;
  /** Clients kept for notary servers not named in the config (LRU; see notary-clients.ts). */
  readonly maxImplicitClients?: number;
  /** Requests to notary servers not named in the config under way at once (notary-clients.ts). */
  readonly maxImplicitRequests?: number;
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
  /** True when a configured notary server could not be asked (the `failure` setting applies). */
  readonly unavailable?: boolean;
  /**
   * For the log only, never for the pod's author: the error behind a failure to get trust data
   * (transport errors, HTTP answers, bugs) that `reason` names only by its class.
   */
  readonly detail?: string;
  /**
   * Set when the answer came from trust data past its TTL because notary was unavailable
   * (stale-if-error): when that data was verified, ISO 8601. Also the `image-<i>-stale` annotation.
   */
  readonly stale?: string;
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

/** Longest clause of a reason taken from an error message (attacker-served data can be long). */
const MAX_CLAUSE = 500;

/** An image decision without the image and the time it took. */
export type Verdict = Omit<ImageDecision, 'image' | 'durationMs'>;

type VerifyRule = Extract<PolicyRule, { action: 'verify' }>;
type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** Decides ImageReviews; see the module comment. */
export class ImagePolicyEngine implements ImageReviewer {
  private current: VerifierConfig;
  private rules: RuleSet;
  private exempt: readonly RegExp[];
  private memo: DecisionMemo | undefined;
  private readonly memoEntries: number;
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
    this.memoEntries = options.memoEntries ?? DEFAULT_MEMO_ENTRIES;
    this.memo = DecisionMemo.create(this.memoEntries);
    this.now = options.now ?? (() => new Date());
    this.observer = options.observer;
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    this.sources = new NotarySources(options.fetcherFor ?? httpFetcherFactory, config.notary, {
      ...(options.maxImplicitClients === undefined
        ? {}
        : { maxImplicitClients: options.maxImplicitClients }),
      ...(options.maxImplicitRequests === undefined
        ? {}
        : { maxImplicitRequests: options.maxImplicitRequests }),
    });
    this.cache = new TrustCache({
      ...trustCacheSettings(config),
      now: this.now,
      ...(options.observer === undefined ? {} : { observer: options.observer }),
      ...(options.limits === undefined ? {} : { limits: options.limits }),
    });
  }

  /** The configuration in force. */
  get config(): VerifierConfig {
    return this.current;
  }

  /** The pool of notary clients (for diagnostics and tests). */
  get notarySources(): NotarySources {
    return this.sources;
  }

  /** The trust cache (for diagnostics and tests). */
  get trustCache(): TrustCache {
    return this.cache;
  }

  /**
   * Switches to a new configuration without a restart. Trust states (roots, rollback floors) and
   * cached collections are kept for anchors that did not change; notary clients whose settings
   * changed are closed once the updates using them have settled. Memoised decisions are dropped:
   * they belong to the old rules (reviews under way finish with the memo they started with).
   */
  reconfigure(config: VerifierConfig): void {
    const rules = new RuleSet(config.rules);
    const exempt = config.exemptNamespaces.map(compileNamespaceGlob);
    const retired = this.sources.reconfigure(config.notary);
    this.cache.resize(trustCacheSettings(config));
    this.current = config;
    this.rules = rules;
    this.exempt = exempt;
    this.memo = DecisionMemo.create(this.memoEntries);
    if (retired.length > 0) {
      void this.cache.settled().then(() => {
        for (const fetcher of retired) fetcher.close?.();
      });
    }
  }

  /** The ImageReviewer contract: the status only. */
  async review(spec: ImageReviewSpec): Promise<ImageReviewStatus> {
    const decision = this.start(spec);
    return (decision instanceof Promise ? await decision : decision).status;
  }

  /** Decides a review and reports each image's decision (what `check` prints). */
  async decide(spec: ImageReviewSpec): Promise<PodDecision> {
    return this.start(spec);
  }

  /**
   * Decides at once when no image needs a fetch (the memo or a fresh cached collection has every
   * answer), else returns a promise; throws REVIEW_FAILED under `failure: error` (see above).
   */
  private start(spec: ImageReviewSpec): PodDecision | Promise<PodDecision> {
    const config = this.current;
    const rules = this.rules;
    const memo = this.memo;
    const namespace = spec.namespace;
    const distinct = distinctImages(spec);

    const podWide = this.podWideVerdict(spec, config);
    if (podWide !== undefined) {
      const decisions = distinct.map((image) => ({ image, ...podWide, durationMs: 0 }));
      for (const d of decisions) this.report(transient(d.image, namespace, d), d.durationMs);
      return this.conclude(spec, config, decisions, podWide);
    }

    // Only images whose collection must be fetched wait, under the concurrency limit.
    const outcomes = new Array<Outcome>(distinct.length);
    const decisions = new Array<ImageDecision>(distinct.length);
    let waiting: { index: number; route: VerifyRoute }[] | undefined;
    for (let i = 0; i < distinct.length; i++) {
      const image = distinct[i] as string;
      const started = performance.now();
      const route = this.routeOf(image, namespace, config, rules, memo);
      const outcome = route.kind === 'settled' ? route.outcome : this.cachedOutcome(route);
      if (outcome === undefined) {
        (waiting ??= []).push({ index: i, route: route as VerifyRoute });
        continue;
      }
      outcomes[i] = outcome;
      decisions[i] = decided(image, outcome, performance.now() - started);
    }
    if (waiting === undefined) return this.finish(spec, config, memo, outcomes, decisions);
    return mapConcurrently(waiting, this.concurrency, async ({ index, route }) => {
      const started = performance.now();
      const outcome = await this.fetchedOutcome(route);
      outcomes[index] = outcome;
      decisions[index] = decided(route.image, outcome, performance.now() - started);
    }).then(() => this.finish(spec, config, memo, outcomes, decisions));
  }

  /** Reports each decision and builds the status, reusing a memoised one when it still holds. */
  private finish(
    spec: ImageReviewSpec,
    config: VerifierConfig,
    memo: DecisionMemo | undefined,
    outcomes: Outcome[],
    decisions: ImageDecision[],
  ): PodDecision {
    for (let i = 0; i < decisions.length; i++) {
      this.report(outcomes[i] as Outcome, (decisions[i] as ImageDecision).durationMs);
    }
    if (memo === undefined || !outcomes.every((o) => o.lasting)) {
      return this.conclude(spec, config, decisions, undefined);
    }
    // The status is a function of the outcomes (and the container order): a pod of one container
    // keeps it on the outcome itself, other pods in the pod memo. Frozen, so the HTTP layer may
    // reuse its bytes.
    if (spec.containers.length === 1) {
      const outcome = outcomes[0] as Outcome;
      outcome.solo ??= freezeStatus(this.conclude(spec, config, decisions, undefined).status);
      return { status: outcome.solo, images: decisions };
    }
    const key = podMemoKey(spec);
    if (key === undefined) return this.conclude(spec, config, decisions, undefined);
    const known = memo.pods.get(key);
    if (known !== undefined && sameOutcomes(known.outcomes, outcomes)) {
      return { status: known.status, images: decisions };
    }
    const status = freezeStatus(this.conclude(spec, config, decisions, undefined).status);
    memo.pods.set(key, { outcomes, status });
    return { status, images: decisions };
  }

  /** Stops: waits for updates under way, then closes every notary client. */
  async close(): Promise<void> {
    await this.cache.settled();
    for (const fetcher of this.sources.all()) fetcher.close?.();
  }

  private report(outcome: Outcome, durationMs: number): void {
    if (this.observer === undefined) return;
    const e = outcome.event;
    // Field by field rather than by spreading: this runs for every image of every review.
    const event: Writable<Parameters<DecisionObserver['imageDecided']>[0]> = {
      image: e.image,
      namespace: e.namespace,
      result: e.result,
      reason: e.reason,
      durationMs,
    };
    if (e.digest !== undefined) event.digest = e.digest;
    if (e.role !== undefined) event.role = e.role;
    if (e.rule !== undefined) event.rule = e.rule;
    if (e.code !== undefined) event.code = e.code;
    if (e.detail !== undefined) event.detail = e.detail;
    if (e.stale !== undefined) event.stale = e.stale;
    // Only a memoised outcome is met again; marking the others would only churn observers' caches.
    if (outcome.lasting && this.memoEntries > 0) event.memo = e;
    this.observer.imageDecided(event);
  }

  /** The status from the decisions; throws REVIEW_FAILED under `failure: error` (see above). */
  private conclude(
    spec: ImageReviewSpec,
    config: VerifierConfig,
    decisions: ImageDecision[],
    podWide: Verdict | undefined,
  ): PodDecision {
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
      if (d.stale !== undefined) auditAnnotations[`image-${i}-stale`] = d.stale;
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

  /** The image's route under this configuration: memoised, or worked out (never throws). */
  private routeOf(
    image: string,
    namespace: string,
    config: VerifierConfig,
    rules: RuleSet,
    memo: DecisionMemo | undefined,
  ): Route {
    const key = memo === undefined ? undefined : routeMemoKey(namespace, image);
    if (key !== undefined) {
      const known = memo?.routes.get(key);
      if (known !== undefined) return known;
    }
    let route: Route;
    try {
      route = this.newRoute(image, namespace, config, rules);
    } catch (error) {
      // A bug must not crash the review or admit the image: deny it — definitively, since the
      // image string that hit the bug is the pod author's.
      const message = error instanceof Error ? error.message : String(error);
      const verdict = deny(config.detectionMode, {
        reason: 'internal error while deciding',
        code: 'INTERNAL',
        detail: sentence(message),
      });
      return { kind: 'settled', outcome: transient(image, namespace, verdict) };
    }
    if (key !== undefined) memo?.routes.set(key, route);
    return route;
  }

  /** Parse and normalize → the most specific rule → requireDigest → allow / deny / verify. */
  private newRoute(
    image: string,
    namespace: string,
    config: VerifierConfig,
    rules: RuleSet,
  ): Route {
    const settled = (verdict: Verdict): Route => ({
      kind: 'settled',
      outcome: lasting(image, namespace, verdict),
    });
    let ref: ImageReference;
    try {
      // The registry in its canonical spelling (config/registry.ts): rules, notary entry and GUN
      // then see `REGISTRY.corp.com:443/app` as the registry.corp.com/app the runtime pulls.
      ref = canonicalReference(parseImageReference(image));
    } catch (error) {
      if (!isTrustError(error, 'REFERENCE_INVALID')) throw error;
      return settled(
        deny(config.detectionMode, {
          reason: `not a valid image reference (${error.facts.problem})`,
          code: error.code,
        }),
      );
    }
    const rule = rules.match(ref.name, namespace);
    if (rule === undefined) {
      return settled(
        deny(config.detectionMode, {
          reason: `no policy rule matches ${ref.name} in namespace "${namespace}"`,
          code: 'NO_RULE',
        }),
      );
    }
    const ruleFacts = { rule: rule.name };
    if (rule.requireDigest && ref.digest === undefined) {
      return settled(
        deny(rule.detectionMode, {
          ...ruleFacts,
          reason: `rule "${rule.name}" requires a digest reference (${ref.name}@sha256:…)`,
          code: 'DIGEST_REQUIRED',
        }),
      );
    }
    switch (rule.action) {
      case 'allow':
        return settled({
          ...ruleFacts,
          result: 'exempt',
          code: 'RULE_ALLOW',
          reason: `admitted without verification by rule "${rule.name}"`,
        });
      case 'deny':
        return settled(
          deny(rule.detectionMode, {
            ...ruleFacts,
            reason: `denied by rule "${rule.name}"`,
            code: 'RULE_DENY',
          }),
        );
      case 'verify': {
        const source = this.sources.forRegistry(ref.registry);
        const gun = gunOf(ref);
        return {
          kind: 'verify',
          image,
          namespace,
          ref,
          rule,
          source,
          gun,
          key: collectionKey(source.key, gun, rule.trust.anchor),
          last: undefined,
        };
      }
    }
  }

  /** The outcome from the cached collection while it is fresh; undefined when it must be fetched. */
  private cachedOutcome(route: VerifyRoute): Outcome | undefined {
    const collection = this.cache.freshCollection(
      route.key,
      route.source,
      route.gun,
      route.rule.trust.anchor,
    );
    return collection === undefined ? undefined : this.resolvedOutcome(route, collection);
  }

  /** The outcome after updating the collection (shared with concurrent lookups). */
  private async fetchedOutcome(route: VerifyRoute): Promise<Outcome> {
    let lookup: CollectionLookup;
    try {
      lookup = await this.cache.lookup(route.source, route.gun, route.rule.trust.anchor);
    } catch (error) {
      const verdict = deny(route.rule.detectionMode, {
        rule: route.rule.name,
        ...explainFailure(error, route.source, route.gun),
      });
      return transient(route.image, route.namespace, verdict);
    }
    const outcome = this.resolvedOutcome(route, lookup.collection);
    if (lookup.stale === undefined) return outcome;
    // Verified data standing in for an unavailable notary: said in the log line, the metrics and
    // the audit annotations, and never memoised (the next review asks notary again).
    const stale = lookup.stale.verifiedAt.toISOString();
    return transient(route.image, route.namespace, { ...outcome.verdict, stale });
  }

  /**
   * resolveImage's verdict on a verified collection, memoised on the route for that very
   * collection object: a refreshed collection is a new object, so it is resolved afresh.
   */
  private resolvedOutcome(route: VerifyRoute, collection: TrustedCollection): Outcome {
    const last = route.last;
    if (last !== undefined && last.collection.deref() === collection) return last.outcome;
    let verdict: Verdict;
    try {
      verdict = verifiedVerdict(route.ref, route.rule, route.source, collection);
    } catch (error) {
      verdict = deny(route.rule.detectionMode, {
        rule: route.rule.name,
        ...explainFailure(error, route.source, route.gun),
      });
      return transient(route.image, route.namespace, verdict);
    }
    const outcome = lasting(route.image, route.namespace, verdict);
    route.last = { collection: new WeakRef(collection), outcome };
    return outcome;
  }
}

/** What a verified collection says about the reference under the rule. */
function verifiedVerdict(
  ref: ImageReference,
  rule: VerifyRule,
  source: NotarySource,
  collection: TrustedCollection,
): Verdict {
  const resolved = resolveImage(collection, ref, rule.trust, source.server);
  if (!resolved.ok) {
    return deny(rule.detectionMode, { rule: rule.name, reason: resolved.why, code: resolved.code });
  }
  return {
    rule: rule.name,
    result: 'allowed',
    code: 'SIGNED',
    reason: `signed by ${resolved.role} in notary ${source.server}`,
    digest: `sha256:${resolved.digestHex}`,
    role: resolved.role,
    ...(ref.tag === undefined ? { tag: resolved.tag } : {}),
  };
}

/** A memoisable outcome: a verdict that stays true as long as what it was decided from. */
function lasting(image: string, namespace: string, verdict: Verdict): Outcome {
  return { verdict, event: eventOf(image, namespace, verdict), lasting: true, solo: undefined };
}

/** An outcome that must not be memoised: failures, bugs, pod-wide decisions. */
function transient(image: string, namespace: string, verdict: Verdict): Outcome {
  return { verdict, event: eventOf(image, namespace, verdict), lasting: false, solo: undefined };
}

function eventOf(image: string, namespace: string, v: Verdict): Outcome['event'] {
  return {
    image,
    namespace,
    ...(v.digest === undefined ? {} : { digest: v.digest }),
    ...(v.role === undefined ? {} : { role: v.role }),
    ...(v.rule === undefined ? {} : { rule: v.rule }),
    result: v.result,
    reason: v.reason,
    code: v.code,
    ...(v.detail === undefined ? {} : { detail: v.detail }),
    ...(v.stale === undefined ? {} : { stale: v.stale }),
  };
}

function decided(image: string, outcome: Outcome, durationMs: number): ImageDecision {
  return { image, ...outcome.verdict, durationMs };
}

/** The distinct image strings of the pod in order of first appearance. */
function distinctImages(spec: ImageReviewSpec): string[] {
  const containers = spec.containers;
  if (containers.length === 1) return [(containers[0] as { image: string }).image];
  return [...new Set(containers.map((c) => c.image))];
}

/** A status nobody can change, so it can be shared between reviews and its bytes reused. */
function freezeStatus(status: ImageReviewStatus): ImageReviewStatus {
  if (status.auditAnnotations !== undefined) Object.freeze(status.auditAnnotations);
  return Object.freeze(status);
}

/** A denial, or in detection mode a would-deny that admits. */
function deny(
  detection: boolean,
  facts: { reason: string; code: string; rule?: string; unavailable?: boolean; detail?: string },
): Verdict {
  return { ...facts, result: detection ? 'would-deny' : 'denied' };
}

/** Why a failed collection update denies, as the pod's author reads it; see the module comment. */
interface FailureExplanation {
  reason: string;
  code: string;
  unavailable?: boolean;
  detail?: string;
}

/** The outcome code of every failure to get trust data from a server not named in the config. */
export const NO_TRUST_DATA = 'NO_TRUST_DATA';

/** The reason and classification of a failed collection update (see the module comment). */
function explainFailure(
  error: unknown,
  source: PooledNotarySource,
  gun: string,
): FailureExplanation {
  const server = source.server;
  const detail = sentence(error instanceof Error ? error.message : String(error));
  const unverified = !isTrustError(error) || NOT_SERVED_CODES.has(error.code);
  if (unverified && source.implicit) {
    // One sentence for refused, timed out, TLS, DNS, any HTTP status and garbage alike.
    return {
      reason: `no trust data for ${gun} from notary ${server} (not signed there, or the server did not serve it)`,
      code: NO_TRUST_DATA,
      detail,
    };
  }
  if (!isTrustError(error)) {
    return {
      reason: `internal error while checking notary ${server} for ${gun}`,
      code: 'INTERNAL',
      detail,
    };
  }
  if (isTrustError(error, 'HTTP_UNREACHABLE')) {
    return {
      reason: `notary ${server} is unavailable for ${gun} (${transportClass(error)})`,
      code: error.code,
      unavailable: true,
      detail,
    };
  }
  if (isTrustError(error, 'HTTP_STATUS')) {
    const status = error.facts.status;
    if (status === 404 && error.facts.url.endsWith('/root.json')) {
      return {
        reason: `not signed in notary ${server} (no trust data for ${gun})`,
        code: error.code,
      };
    }
    if (status === 404) {
      return {
        reason: `notary ${server} is missing trust data for ${gun} (HTTP 404)`,
        code: error.code,
        detail,
      };
    }
    if (status >= 500) {
      return {
        reason: `notary ${server} is unavailable for ${gun} (HTTP ${status})`,
        code: error.code,
        unavailable: true,
        detail,
      };
    }
    return {
      reason: `notary ${server} refused trust data for ${gun} (HTTP ${status})`,
      code: error.code,
      detail,
    };
  }
  if (isTrustError(error, 'AUTH_FAILED')) {
    return {
      reason: `notary ${server} refused the verifier access to ${gun} (authentication failed)`,
      code: error.code,
      detail,
    };
  }
  return {
    reason: `trust data for ${gun} from notary ${server} failed verification: ${clause(error.message)}`,
    code: error.code,
  };
}

/** Failures to get trust data at all, as opposed to verdicts on trust data that was served. */
const NOT_SERVED_CODES = new Set<string>([
  'HTTP_UNREACHABLE',
  'HTTP_STATUS',
  'AUTH_FAILED',
  'METADATA_MALFORMED',
  'DOWNLOAD_TOO_LARGE',
]);

// Node's TLS and OpenSSL error codes: certificate checks and handshake failures.
const TLS_CODE =
  /^(?:EPROTO|ERR_SSL_|ERR_TLS_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|HOSTNAME_)/;
const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME']);

/**
 * The class of a transport failure of a configured server — its operator's own — for the reason:
 * the error's cause (the socket error NotaryHttpClient keeps) or its deadline wording.
 */
function transportClass(error: TrustError<'HTTP_UNREACHABLE'>): string {
  let cause: unknown = error.cause;
  // A retried stale keep-alive socket wraps the socket error once more.
  for (let depth = 0; depth < 3 && cause instanceof Error; depth++) {
    const code = (cause as NodeJS.ErrnoException).code ?? '';
    if (TLS_CODE.test(code)) return 'TLS handshake failed';
    if (DNS_CODES.has(code)) return 'host name not resolved';
    if (cause.name === 'TimeoutError') return 'timed out';
    if (code !== '') return 'connection failed';
    cause = cause.cause;
  }
  const problem = error.facts.problem;
  if (/within \d+ ms|timed? ?out/i.test(problem)) return 'timed out';
  if (/^TLS\b/.test(problem)) return 'TLS handshake failed';
  return 'connection failed';
}

/** A message as a clause: no trailing period, one line. */
function sentence(message: string): string {
  return message.replace(/\s+/g, ' ').trim().replace(/\.$/, '');
}

/** A message as a bounded clause of a reason. */
function clause(message: string): string {
  const text = sentence(message);
  return text.length > MAX_CLAUSE ? `${text.slice(0, MAX_CLAUSE)}…` : text;
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
