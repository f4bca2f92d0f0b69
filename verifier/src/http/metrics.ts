/**
 * Prometheus metrics for the verifier (prom-client, one registry per process). Label values all
 * come from small closed sets — results, reason classes, error codes, HTTP routes and the notary
 * servers named in the config — never from image names or reasons as written, so a flood of
 * distinct pods cannot blow up the series count. Notary servers not named in the config (the
 * `https://<registry>` of any host a rule's glob lets through) share one `server` label value,
 * IMPLICIT_SERVER_LABEL.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DecisionObserver } from '../review.js';
import { LabelledHistogram } from './labelled-histogram.js';

/** Metric names share this prefix. */
export const METRIC_PREFIX = 'kpack_trust_verifier_';

/** The `server` label of every notary server not named in the config. */
export const IMPLICIT_SERVER_LABEL = 'implicit';

/** What one image decision reports (the DecisionObserver event). */
export type ImageDecisionEvent = Parameters<DecisionObserver['imageDecided']>[0];

/** Maps a decision to a bounded reason class; the default reads the TrustError code or keywords. */
export type ReasonClassifier = (event: ImageDecisionEvent) => string;

/** Which HTTP route a response belongs to (bounded). */
export type RouteLabel =
  'review' | 'mutate' | 'validate' | 'healthz' | 'readyz' | 'metrics' | 'other';

/** How a whole review ended. */
export type ReviewOutcome = 'allowed' | 'denied' | 'rejected' | 'error';

/**
 * Which load limit refused work: `body_bytes` the shared budget of request body bytes in flight,
 * `requests` the POSTs in flight, `connections` the listener's open connections.
 */
export type OverloadLimit = 'body_bytes' | 'requests' | 'connections';

/** How an AdmissionReview ended: `patched` is allowed with pins; `rejected` is malformed. */
export type AdmissionOutcome = 'allowed' | 'patched' | 'denied' | 'rejected' | 'error';

/** Options of VerifierMetrics. */
export interface VerifierMetricsOptions {
  /** Process/runtime metrics (`process_*`, `nodejs_*`); default true. */
  readonly defaultMetrics?: boolean;
  readonly classifyReason?: ReasonClassifier;
  /** URLs of the notary servers named in the config (see setNotaryServers). */
  readonly notaryServers?: Iterable<string>;
}

/** Distinct label values counted in plain maps before going straight to prom-client. */
const MAX_PENDING_LABEL_VALUES = 64;

// Sub-millisecond cached decisions up to the apiserver's 30 s webhook timeout.
const DECISION_BUCKETS = [
  0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
const FETCH_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

// The engine's outcome codes (ImageDecision.code in policy/engine.ts) and the TrustError codes
// (common/src/errors.ts): the closed set a reason label may take, lowercased.
const KNOWN_CODES = new Set([
  'SIGNED',
  'RULE_ALLOW',
  'NAMESPACE_EXEMPT',
  'BREAK_GLASS',
  'REFERENCE_INVALID',
  'NO_RULE',
  'DIGEST_REQUIRED',
  'RULE_DENY',
  'NOT_SIGNED',
  'DIGEST_MISMATCH',
  'SIGNERS_NOT_MET',
  'INTERNAL',
  'METADATA_MALFORMED',
  'WRONG_ROLE_TYPE',
  'NOT_CANONICALIZABLE',
  'KEY_INVALID',
  'KEY_ID_MISMATCH',
  'SIGNATURE_THRESHOLD',
  'EXPIRED',
  'VERSION_ROLLBACK',
  'HASH_MISMATCH',
  'LENGTH_MISMATCH',
  'LIMIT_EXCEEDED',
  'DOWNLOAD_TOO_LARGE',
  'META_MISSING',
  'WORKFLOW_ORDER',
  'ROOT_NOT_TRUSTED',
  'CERTIFICATE_INVALID',
  'TARGET_INVALID',
  'TARGET_NOT_FOUND',
  'HTTP_STATUS',
  'HTTP_UNREACHABLE',
  'AUTH_FAILED',
  'NO_TRUST_DATA',
]);

/** Each known code's label, made once rather than lower-cased per decision. */
const CODE_LABELS: ReadonlyMap<string, string> = new Map(
  [...KNOWN_CODES].map((code) => [code, code.toLowerCase()]),
);

// When an event carries no code: the engine's wording (policy/engine.ts, policy/resolve-image.ts),
// first match wins, named like the code the engine would have given.
const REASON_PATTERNS: readonly (readonly [string, RegExp])[] = [
  ['reference_invalid', /not a valid image reference/],
  ['no_rule', /no policy rule matches/],
  ['digest_required', /requires a digest reference/],
  ['rule_deny', /^denied by rule/],
  ['digest_mismatch', /is signed for sha256:\S+, not for the referenced/],
  ['signers_not_met', /required signers/],
  ['no_trust_data', /^no trust data for /],
  ['not_signed', /\bnot signed\b/],
  ['notary_unavailable', /^notary \S+ is (?:unavailable|missing trust data)/],
  ['internal', /internal error/],
  ['verification_failed', /failed verification/],
];

/**
 * The default reason classifier: the event's outcome code when it is one of the known codes
 * (read structurally, as `code` or `errorCode`), else a class from the engine's wording, else
 * `other` — a closed set whatever the reason's text.
 */
export function classifyReason(event: ImageDecisionEvent): string {
  const extra = event as { readonly code?: unknown; readonly errorCode?: unknown };
  const label =
    (typeof extra.code === 'string' ? CODE_LABELS.get(extra.code) : undefined) ??
    (typeof extra.errorCode === 'string' ? CODE_LABELS.get(extra.errorCode) : undefined);
  if (label !== undefined) return label;
  switch (event.result) {
    case 'allowed':
      return 'signed';
    case 'break-glass':
      return 'break_glass';
    case 'exempt':
      return /^namespace .* is exempt/.test(event.reason) ? 'namespace_exempt' : 'rule_allow';
    default:
      break;
  }
  for (const [label, pattern] of REASON_PATTERNS) if (pattern.test(event.reason)) return label;
  return 'other';
}

/** Fixed label sets for values that arrive from outside our code. */
const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,40}$/;

/** The verifier's metrics; also the DecisionObserver the engine reports to. */
export class VerifierMetrics implements DecisionObserver {
  /** The registry `/metrics` serves. */
  readonly registry: Registry;
  private readonly decisions: Counter<'result' | 'reason'>;
  private readonly decisionSeconds: LabelledHistogram<'result'>;
  private readonly fetchSeconds: Histogram<'server' | 'outcome'>;
  private readonly fetchErrors: Counter<'server' | 'code'>;
  private readonly staleAnswers: Counter<'server'>;
  private readonly circuitTransitions: Counter<'server' | 'state'>;
  private readonly cacheLookups: Counter<'result'>;
  private readonly reviews: Counter<'outcome'>;
  private readonly reviewSeconds: LabelledHistogram<'outcome'>;
  private readonly httpResponses: Counter<'route' | 'code'>;
  private readonly reloads: Counter<'kind' | 'result'>;
  private readonly admissionReviews: Counter<'webhook' | 'outcome'>;
  private readonly admissionSeconds: LabelledHistogram<'webhook'>;
  private readonly parseMemoLookups: Counter<'result'>;
  private readonly overloadRefusals: Counter<'limit'>;
  /** ImageReview parse memo lookups not yet added to `parseMemoLookups`. */
  private readonly parseMemoCounts = { hit: 0, miss: 0 };
  private readonly admissionCounts: Record<
    'mutate' | 'validate',
    Record<AdmissionOutcome, number>
  > = {
    mutate: { allowed: 0, patched: 0, denied: 0, rejected: 0, error: 0 },
    validate: { allowed: 0, patched: 0, denied: 0, rejected: 0, error: 0 },
  };
  private readonly classify: ReasonClassifier;
  /** URLs of the notary servers named in the config: the only `server` label values but one. */
  private notaryServers: ReadonlySet<string>;
  // Counters bumped on every review are kept in plain numbers and added to their prom-client
  // counters when those are read (their `collect`): an addition instead of a label hash per event.
  private lookupHits = 0;
  private lookupMisses = 0;
  private readonly reviewCounts: Record<ReviewOutcome, number> = {
    allowed: 0,
    denied: 0,
    rejected: 0,
    error: 0,
  };
  private readonly responseCounts = new Map<RouteLabel, Map<number, number>>();
  /** Image decisions not yet added to `decisions`, by result and reason class. */
  private readonly decisionCounts = new Map<string, Map<string, number>>();

  constructor(options: VerifierMetricsOptions = {}) {
    this.registry = new Registry();
    this.classify = options.classifyReason ?? classifyReason;
    this.notaryServers = new Set(options.notaryServers ?? []);
    const registers = [this.registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.decisions = new Counter({
      name: `${METRIC_PREFIX}image_decisions_total`,
      help: 'Image decisions by result (allowed, denied, would-deny, break-glass, exempt) and reason class.',
      labelNames: ['result', 'reason'],
      registers,
      collect: () => {
        this.flushDecisions();
      },
    });
    this.decisionSeconds = new LabelledHistogram({
      name: `${METRIC_PREFIX}image_decision_duration_seconds`,
      help: 'Time to decide one image, including any notary fetch.',
      label: 'result',
      buckets: DECISION_BUCKETS,
      registry: this.registry,
    });
    this.fetchSeconds = new Histogram({
      name: `${METRIC_PREFIX}notary_fetch_duration_seconds`,
      help: 'Time to update one repository collection from its notary server.',
      labelNames: ['server', 'outcome'],
      buckets: FETCH_BUCKETS,
      registers,
    });
    this.fetchErrors = new Counter({
      name: `${METRIC_PREFIX}notary_fetch_errors_total`,
      help: 'Failed notary collection updates by notary server and error code.',
      labelNames: ['server', 'code'],
      registers,
    });
    this.staleAnswers = new Counter({
      name: `${METRIC_PREFIX}stale_answers_total`,
      help: 'Lookups answered from verified trust data past its TTL because notary was unavailable (cache.staleIfErrorSeconds).',
      labelNames: ['server'],
      registers,
    });
    this.circuitTransitions = new Counter({
      name: `${METRIC_PREFIX}notary_circuit_transitions_total`,
      help: "Changes of a notary server's circuit breaker, by the state entered (open, half-open, closed).",
      labelNames: ['server', 'state'],
      registers,
    });
    this.cacheLookups = new Counter({
      name: `${METRIC_PREFIX}cache_lookups_total`,
      help: 'Lookups of verified repository collections in the cache, by hit or miss.',
      labelNames: ['result'],
      registers,
      collect: () => {
        this.flushLookups();
      },
    });
    this.reviews = new Counter({
      name: `${METRIC_PREFIX}reviews_total`,
      help: 'ImageReview requests by outcome (allowed, denied, rejected as malformed, error).',
      labelNames: ['outcome'],
      registers,
      collect: () => {
        this.flushReviews();
      },
    });
    this.reviewSeconds = new LabelledHistogram({
      name: `${METRIC_PREFIX}review_duration_seconds`,
      help: 'Time to answer one ImageReview (all images of the pod).',
      label: 'outcome',
      buckets: DECISION_BUCKETS,
      registry: this.registry,
    });
    this.httpResponses = new Counter({
      name: `${METRIC_PREFIX}http_responses_total`,
      help: 'HTTP responses by route and status code.',
      labelNames: ['route', 'code'],
      registers,
      collect: () => {
        this.flushResponses();
      },
    });
    this.reloads = new Counter({
      name: `${METRIC_PREFIX}reloads_total`,
      help: 'Hot reloads of the config file and the TLS certificate, by result.',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.admissionReviews = new Counter({
      name: `${METRIC_PREFIX}admission_reviews_total`,
      help: 'AdmissionReview requests by webhook (mutate, validate) and outcome (allowed, patched, denied, rejected as malformed, error).',
      labelNames: ['webhook', 'outcome'],
      registers,
      collect: () => {
        this.flushAdmissions();
      },
    });
    this.admissionSeconds = new LabelledHistogram({
      name: `${METRIC_PREFIX}admission_review_duration_seconds`,
      help: 'Time to answer one AdmissionReview, by webhook.',
      label: 'webhook',
      buckets: DECISION_BUCKETS,
      registry: this.registry,
    });
    this.overloadRefusals = new Counter({
      name: `${METRIC_PREFIX}overload_refusals_total`,
      help: 'Requests answered 503 and connections dropped because a load limit was reached, by limit (body_bytes, requests, connections).',
      labelNames: ['limit'],
      registers,
    });
    this.parseMemoLookups = new Counter({
      name: `${METRIC_PREFIX}image_review_parse_memo_lookups_total`,
      help: 'ImageReview bodies looked up in the parse memo, by result (hit: the same bytes were parsed before; miss).',
      labelNames: ['result'],
      registers,
      collect: () => {
        for (const result of ['hit', 'miss'] as const) {
          const count = this.parseMemoCounts[result];
          if (count > 0) this.parseMemoLookups.inc({ result }, count);
          this.parseMemoCounts[result] = 0;
        }
      },
    });
  }

  /** One ImageReview body looked up in the parse memo: `hit` when its bytes were parsed before. */
  imageReviewParseMemoLookup(hit: boolean): void {
    this.parseMemoCounts[hit ? 'hit' : 'miss'] += 1;
  }

  /** One answered AdmissionReview. */
  admissionAnswered(
    webhook: 'mutate' | 'validate',
    outcome: AdmissionOutcome,
    seconds: number,
  ): void {
    this.admissionCounts[webhook][outcome] += 1;
    this.admissionSeconds.observe(webhook, seconds);
  }

  private flushAdmissions(): void {
    for (const [webhook, counts] of Object.entries(this.admissionCounts)) {
      for (const outcome of Object.keys(counts) as AdmissionOutcome[]) {
        if (counts[outcome] > 0) this.admissionReviews.inc({ webhook, outcome }, counts[outcome]);
        counts[outcome] = 0;
      }
    }
  }

  /** DecisionObserver: counts and times one image decision. */
  imageDecided(event: ImageDecisionEvent): void {
    const reason = this.classify(event);
    let byReason = this.decisionCounts.get(event.result);
    if (byReason === undefined && this.decisionCounts.size < MAX_PENDING_LABEL_VALUES) {
      byReason = new Map();
      this.decisionCounts.set(event.result, byReason);
    }
    if (
      byReason !== undefined &&
      (byReason.has(reason) || byReason.size < MAX_PENDING_LABEL_VALUES)
    ) {
      byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
    } else {
      this.decisions.inc({ result: event.result, reason });
    }
    this.decisionSeconds.observe(event.result, event.durationMs / 1000);
  }

  /** DecisionObserver: times one collection update and counts its failure code. */
  notaryFetched(event: Parameters<DecisionObserver['notaryFetched']>[0]): void {
    const server = this.serverLabel(event.server);
    this.fetchSeconds.observe(
      { server, outcome: event.ok ? 'ok' : 'error' },
      event.durationMs / 1000,
    );
    if (!event.ok) {
      const code =
        event.errorCode !== undefined && ERROR_CODE.test(event.errorCode)
          ? event.errorCode
          : 'OTHER';
      this.fetchErrors.inc({ server, code });
    }
  }

  /** DecisionObserver: one answer from stale trust data. */
  staleServed(event: Parameters<NonNullable<DecisionObserver['staleServed']>>[0]): void {
    this.staleAnswers.inc({ server: this.serverLabel(event.server) });
  }

  /** DecisionObserver: a circuit breaker changed state. */
  breakerChanged(event: Parameters<NonNullable<DecisionObserver['breakerChanged']>>[0]): void {
    this.circuitTransitions.inc({ server: this.serverLabel(event.server), state: event.state });
  }

  /**
   * The notary servers named in the config, whose URLs are `server` label values; call on every
   * config load. Series of servers no longer named stay until the process restarts (bounded by the
   * servers ever configured).
   */
  setNotaryServers(servers: Iterable<string>): void {
    this.notaryServers = new Set(servers);
  }

  /** The `server` label of a notary server URL: itself when configured, else IMPLICIT_SERVER_LABEL. */
  serverLabel(server: string): string {
    return this.notaryServers.has(server) ? server : IMPLICIT_SERVER_LABEL;
  }

  /** DecisionObserver: one cache hit or miss. */
  cacheLookup(event: { readonly hit: boolean }): void {
    if (event.hit) this.lookupHits += 1;
    else this.lookupMisses += 1;
  }

  /** One answered ImageReview. */
  reviewAnswered(outcome: ReviewOutcome, seconds: number): void {
    this.reviewCounts[outcome] += 1;
    this.reviewSeconds.observe(outcome, seconds);
  }

  /** One HTTP response. */
  httpResponse(route: RouteLabel, statusCode: number): void {
    let codes = this.responseCounts.get(route);
    if (codes === undefined) {
      codes = new Map();
      this.responseCounts.set(route, codes);
    }
    codes.set(statusCode, (codes.get(statusCode) ?? 0) + 1);
  }

  /** One request refused (503) or connection dropped because `limit` was reached. */
  overloaded(limit: OverloadLimit): void {
    this.overloadRefusals.inc({ limit });
  }

  /** One config or certificate reload attempt. */
  reloaded(kind: 'config' | 'tls', ok: boolean): void {
    this.reloads.inc({ kind, result: ok ? 'success' : 'failure' });
  }

  private flushDecisions(): void {
    for (const [result, byReason] of this.decisionCounts) {
      for (const [reason, count] of byReason) {
        if (count > 0) this.decisions.inc({ result, reason }, count);
      }
      byReason.clear();
    }
  }

  private flushLookups(): void {
    if (this.lookupHits > 0) this.cacheLookups.inc({ result: 'hit' }, this.lookupHits);
    if (this.lookupMisses > 0) this.cacheLookups.inc({ result: 'miss' }, this.lookupMisses);
    this.lookupHits = 0;
    this.lookupMisses = 0;
  }

  private flushReviews(): void {
    for (const outcome of Object.keys(this.reviewCounts) as ReviewOutcome[]) {
      const count = this.reviewCounts[outcome];
      if (count > 0) this.reviews.inc({ outcome }, count);
      this.reviewCounts[outcome] = 0;
    }
  }

  private flushResponses(): void {
    for (const [route, codes] of this.responseCounts) {
      for (const [code, count] of codes)
        this.httpResponses.inc({ route, code: String(code) }, count);
      codes.clear();
    }
  }

  /** The text exposition format, and its content type. */
  async exposition(): Promise<{ readonly contentType: string; readonly body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
