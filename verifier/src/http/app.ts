/**
 * The verifier's HTTP surface as a request listener that never listens (server.ts does). It turns
 * ImageReview requests into ImageReviewSpecs for the engine and its status back into the exact
 * reply the apiserver decodes. `/mutate` and `/validate` get the same body checks here and are
 * answered by admission.ts (AdmissionReviews for admission webhooks).
 *
 * Status codes follow what the apiserver does with them: anything but 2xx is a webhook failure
 * that `defaultAllow` settles, so a well-formed review — even one with absurdly many images — is
 * always answered 200 with a decision, and 4xx is kept for bodies no apiserver sends. A throwing
 * reviewer (the engine's `failure: error` mode) gets 500, which the apiserver retries.
 *
 * Reviews are served by Node's own request/response objects; express serves the operational
 * endpoints (health, readiness, metrics) and every other path. Express re-parents `req` and `res`
 * onto its own prototypes per request, which on Node 20 makes each request several times dearer
 * (bench/cached.ts measured it); the review path is the one whose throughput matters.
 */
import express, { type Express } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { ImageReviewSpec, ImageReviewStatus, ImageReviewer, PodDecider } from '../review.js';
import { createAdmission, type Webhook } from './admission.js';
import { ImageReviewParseMemo } from './image-review-memo.js';
import { imageReviewResponse, parseImageReview } from './image-review.js';
import { onceEvery, type Logger } from './logger.js';
import type { RouteLabel, VerifierMetrics } from './metrics.js';

/**
 * Above kube-apiserver's own 3 MiB request limit, so no pod it accepted can produce a review we
 * refuse as too large (which `defaultAllow: true` would turn into an admission).
 */
export const DEFAULT_BODY_LIMIT_BYTES = 4 * 1024 * 1024;
/**
 * Request body bytes held at once by all requests together (16 bodies at the limit above). Past it
 * a request is answered 503 with `Connection: close`, which the apiserver retries: ~130 bodies of
 * 4 MiB at once would otherwise take the pod past the chart's 512 Mi memory limit. Real reviews
 * are kilobytes, so only a flood of huge bodies ever meets it.
 */
export const DEFAULT_BODY_BUDGET_BYTES = 64 * 1024 * 1024;
/** Images reviewed per pod at most; a pod with more is denied (not failed, which could fail open). */
export const DEFAULT_MAX_IMAGES = 1000;

/** Whether the process should receive traffic, and if not, why. */
export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string;
}

/** What createApp needs. */
export interface AppOptions {
  readonly reviewer: ImageReviewer;
  readonly metrics: VerifierMetrics;
  readonly logger: Logger;
  /** Largest accepted request body; default DEFAULT_BODY_LIMIT_BYTES. */
  readonly bodyLimitBytes?: number;
  /** Body bytes all requests may hold at once; default DEFAULT_BODY_BUDGET_BYTES. */
  readonly bodyBudgetBytes?: number;
  /** Most images per review; default DEFAULT_MAX_IMAGES. */
  readonly maxImages?: number;
  /** Consulted by `/readyz`; default always ready. */
  readonly readiness?: () => Readiness;
  /**
   * Decides `/mutate` and `/validate` (admission.ts); default the reviewer when it can (the engine
   * can). Without one those paths are not served.
   */
  readonly decider?: PodDecider;
}

/** The app: a Node request listener (what https.createServer and supertest take). */
export type VerifierApp = (req: IncomingMessage, res: ServerResponse) => void;

/** The paths the ImagePolicyWebhook kubeconfig may point at. */
export const REVIEW_PATHS: readonly string[] = ['/', '/image-policy'];

const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9.+-]+\+)?json$/;
const UTF8 = /^utf-?8$/i;

/** The path of a request URL without its query, and without one trailing slash. */
function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const query = raw.indexOf('?');
  const path = query >= 0 ? raw.slice(0, query) : raw;
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function routeOf(path: string): RouteLabel {
  if (REVIEW_PATHS.includes(path)) return 'review';
  if (path === '/mutate' || path === '/validate') return path.slice(1) as Webhook;
  if (path === '/healthz' || path === '/readyz' || path === '/metrics') {
    return path.slice(1) as RouteLabel;
  }
  return 'other';
}

/** Why a request body cannot be a review (or cannot be read now: 503), as the reply says it. */
interface Refusal {
  readonly status: 400 | 413 | 415 | 503;
  readonly error: string;
  readonly message: string;
}

/** Checks the headers that decide whether the body is worth reading at all. */
function refuseByHeaders(req: IncomingMessage, limit: number): Refusal | undefined {
  const contentType = req.headers['content-type'];
  // What the apiserver sends: skip the parsing below.
  if (contentType === 'application/json' && req.headers['content-encoding'] === undefined) {
    return Number(req.headers['content-length'] ?? 0) > limit ? tooLarge(limit) : undefined;
  }
  const [mediaType = '', ...parameters] = (contentType ?? '').split(';');
  if (!JSON_MEDIA_TYPE.test(mediaType.trim().toLowerCase())) {
    return {
      status: 415,
      error: 'UnsupportedMediaType',
      message: 'Content-Type must be application/json',
    };
  }
  for (const parameter of parameters) {
    const [name = '', value = ''] = parameter.split('=');
    if (name.trim().toLowerCase() === 'charset' && !UTF8.test(value.trim().replace(/"/g, ''))) {
      return {
        status: 415,
        error: 'UnsupportedMediaType',
        message: 'the request body must be UTF-8 JSON',
      };
    }
  }
  // The apiserver never compresses requests; refusing it also rules out decompression bombs.
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity') {
    return {
      status: 415,
      error: 'UnsupportedMediaType',
      message: 'compressed request bodies are not accepted',
    };
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) return tooLarge(limit);
  return undefined;
}

function tooLarge(limit: number): Refusal {
  return {
    status: 413,
    error: 'PayloadTooLarge',
    message: `the request body exceeds ${limit} bytes`,
  };
}

const OVERLOADED: Refusal = Object.freeze({
  status: 503,
  error: 'ServiceUnavailable',
  message: 'too many request body bytes in flight; retry',
});

/** The body bytes all requests hold at once (`held`), and the most they may (`limit`). */
interface BodyBudget {
  held: number;
  readonly limit: number;
}

/**
 * Reads the body up to `limit` bytes and calls `done` once with it, with a 413 refusal, or with a
 * 503 one when the shared budget cannot take it. What the headers declare is reserved before a
 * byte is read (the apiserver always declares), a chunked body's bytes as they come; all of it is
 * given back when the response closes, which it does however the request ends. A client that
 * hangs up mid-body gets no call: nobody is left to answer. Listeners and no promise: this runs
 * for every review (and IncomingMessage emits no 'error' without a listener).
 */
function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  limit: number,
  budget: BodyBudget,
  done: (body: Buffer | Refusal) => void,
): void {
  const declared = Number(req.headers['content-length'] ?? 0);
  let reserved = Number.isSafeInteger(declared) && declared > 0 ? declared : 0;
  if (budget.held + reserved > budget.limit) {
    done(OVERLOADED);
    return;
  }
  budget.held += reserved;
  res.once('close', () => {
    budget.held -= reserved;
  });
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  let size = 0;
  let finished = false;
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    size += chunk.length;
    if (size > limit) {
      finished = true;
      done(tooLarge(limit));
      return;
    }
    if (size > reserved) {
      if (budget.held + (size - reserved) > budget.limit) {
        finished = true;
        done(OVERLOADED);
        return;
      }
      budget.held += size - reserved;
      reserved = size;
    }
    if (first === undefined) first = chunk;
    else (chunks ??= [first]).push(chunk);
  });
  req.on('end', () => {
    if (finished) return;
    finished = true;
    done(chunks !== undefined ? Buffer.concat(chunks, size) : (first ?? EMPTY));
  });
}

const EMPTY = Buffer.alloc(0);

/**
 * The reply bytes of a status. A frozen status (the engine's memoised ones) cannot change, so its
 * bytes are kept beside it and reused for as long as the status itself lives.
 */
function replyBytes(status: ImageReviewStatus, kept: WeakMap<ImageReviewStatus, Buffer>): Buffer {
  const immutable =
    Object.isFrozen(status) &&
    (status.auditAnnotations === undefined || Object.isFrozen(status.auditAnnotations));
  if (!immutable) return Buffer.from(JSON.stringify(imageReviewResponse(status)));
  let bytes = kept.get(status);
  if (bytes === undefined) {
    bytes = Buffer.from(JSON.stringify(imageReviewResponse(status)));
    kept.set(status, bytes);
  }
  return bytes;
}

/** Answers `body` as JSON: a value to serialize, or its JSON bytes already made. */
function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  closeConnection = false,
): void {
  if (res.headersSent || res.destroyed) return;
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': payload.length,
    // A refused body may still be arriving; closing beats reading megabytes nobody wants.
    ...(closeConnection ? { Connection: 'close' } : {}),
  });
  res.end(payload);
}

/** Builds the app. */
export function createApp(options: AppOptions): VerifierApp {
  const { reviewer, metrics, logger } = options;
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const budget: BodyBudget = {
    held: 0,
    limit: options.bodyBudgetBytes ?? DEFAULT_BODY_BUDGET_BYTES,
  };
  const overloadLogDue = onceEvery(10_000);
  /** Counts a 503 for the budget; one log line per 10 s at most, as a flood brings many. */
  const overloaded = (route: RouteLabel): void => {
    metrics.overloaded('body_bytes');
    if (overloadLogDue()) {
      logger.warn('server.overloaded', {
        route,
        limit: 'body_bytes',
        bodyBudgetBytes: budget.limit,
        heldBytes: budget.held,
      });
    }
  };
  const maxImages = options.maxImages ?? DEFAULT_MAX_IMAGES;
  const operations = operationsApp(options, metrics);
  const replies = new WeakMap<ImageReviewStatus, Buffer>();
  const decider =
    options.decider ??
    (typeof (reviewer as Partial<PodDecider>).decide === 'function'
      ? (reviewer as ImageReviewer & PodDecider)
      : undefined);
  const admission =
    decider === undefined ? undefined : createAdmission({ decider, metrics, logger, maxImages });

  const answer = (res: ServerResponse, status: number, body: unknown, close = false): void => {
    sendJson(res, status, body, close);
    metrics.httpResponse('review', status);
  };
  const refuse = (res: ServerResponse, refusal: Refusal, started: number): void => {
    if (refusal.status === 503) {
      overloaded('review');
      answer(res, 503, { error: refusal.error, message: refusal.message }, true);
      return;
    }
    metrics.reviewAnswered('rejected', (performance.now() - started) / 1000);
    logger.warn('review.rejected', { status: refusal.status, problem: refusal.message });
    answer(res, refusal.status, { error: refusal.error, message: refusal.message }, true);
  };

  const failed = (
    res: ServerResponse,
    namespace: string,
    error: unknown,
    started: number,
  ): void => {
    metrics.reviewAnswered('error', (performance.now() - started) / 1000);
    logger.error('review.failed', { namespace, error });
    answer(res, 500, {
      error: 'InternalError',
      message:
        'the image policy engine could not decide; the apiserver retries, then applies defaultAllow',
    });
  };

  /** Everything after the body arrived; throws only on a bug. */
  // The apiserver sends the same ImageReview again for each pod of a ReplicaSet and on every
  // retry: identical bytes are parsed once (ImageReviewParseMemo).
  const parsedReviews = new ImageReviewParseMemo();
  /**
   * Parses a body not seen before and keeps its spec under `key`; answers 400 and gives undefined
   * when it is no ImageReview.
   */
  const parseBody = (
    res: ServerResponse,
    body: Buffer,
    key: string | undefined,
    started: number,
  ): ImageReviewSpec | undefined => {
    let document: unknown;
    try {
      document = body.length === 0 ? undefined : JSON.parse(body.toString('utf8'));
    } catch {
      refuse(
        res,
        { status: 400, error: 'BadRequest', message: 'the request body is not valid JSON' },
        started,
      );
      return undefined;
    }
    const parsed = parseImageReview(document);
    if (!parsed.ok) {
      refuse(
        res,
        { status: 400, error: 'BadRequest', message: `not a valid ImageReview: ${parsed.problem}` },
        started,
      );
      return undefined;
    }
    return parsedReviews.remember(key, parsed.spec);
  };

  const decide = (res: ServerResponse, body: Buffer | Refusal, started: number): void => {
    if (!Buffer.isBuffer(body)) {
      refuse(res, body, started);
      return;
    }
    const key = parsedReviews.keyOf(body);
    const known = parsedReviews.specOf(key);
    metrics.imageReviewParseMemoLookup(known !== undefined);
    const spec = known ?? parseBody(res, body, key, started);
    if (spec === undefined) return;
    if (spec.containers.length > maxImages) {
      const reason =
        `the pod has ${spec.containers.length} images and at most ${maxImages} are reviewed ` +
        `per pod, so it is denied`;
      metrics.reviewAnswered('denied', (performance.now() - started) / 1000);
      logger.warn('review.too-many-images', {
        namespace: spec.namespace,
        images: spec.containers.length,
        maxImages,
      });
      answer(res, 200, imageReviewResponse({ allowed: false, reason }));
      return;
    }
    let pending: Promise<ImageReviewStatus>;
    try {
      pending = reviewer.review(spec);
    } catch (error) {
      failed(res, spec.namespace, error, started);
      return;
    }
    pending.then(
      (status) => {
        try {
          metrics.reviewAnswered(
            status.allowed ? 'allowed' : 'denied',
            (performance.now() - started) / 1000,
          );
          answer(res, 200, replyBytes(status, replies));
        } catch (error) {
          bug(res, error);
        }
      },
      (error: unknown) => {
        try {
          failed(res, spec.namespace, error, started);
        } catch (bugged) {
          bug(res, bugged);
        }
      },
    );
  };

  const bug = (res: ServerResponse, error: unknown): void => {
    // Only a bug gets here; the request still gets an answer and the process lives on.
    logger.error('http.error', { route: 'review', error });
    answer(res, 500, { error: 'InternalError', message: 'internal error' });
  };

  // Callbacks rather than async functions: the review path runs once per pod admission.
  const review = (req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now();
    const byHeaders = refuseByHeaders(req, bodyLimit);
    if (byHeaders) {
      refuse(res, byHeaders, started);
      return;
    }
    readBody(req, res, bodyLimit, budget, (body) => {
      try {
        decide(res, body, started);
      } catch (error) {
        bug(res, error);
      }
    });
  };

  // The admission webhooks: the same body checks, then admission.ts answers.
  const admit = (webhook: Webhook, req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now();
    const send = (status: number, body: unknown, close = false): void => {
      sendJson(res, status, body, close);
      metrics.httpResponse(webhook, status);
    };
    const failed = (error: unknown): void => {
      logger.error('http.error', { route: webhook, error });
      send(500, { error: 'InternalError', message: 'internal error' });
    };
    const refused = (refusal: Refusal): void => {
      if (refusal.status === 503) {
        overloaded(webhook);
        send(503, { error: refusal.error, message: refusal.message }, true);
        return;
      }
      metrics.admissionAnswered(webhook, 'rejected', (performance.now() - started) / 1000);
      logger.warn('admission.rejected', {
        webhook,
        status: refusal.status,
        problem: refusal.message,
      });
      send(refusal.status, { error: refusal.error, message: refusal.message }, true);
    };
    const byHeaders = refuseByHeaders(req, bodyLimit);
    if (byHeaders) {
      refused(byHeaders);
      return;
    }
    readBody(req, res, bodyLimit, budget, (body) => {
      try {
        if (!Buffer.isBuffer(body)) {
          refused(body);
          return;
        }
        const handler = admission as NonNullable<typeof admission>;
        let document: unknown;
        try {
          document = body.length === 0 ? undefined : JSON.parse(body.toString('utf8'));
        } catch {
          refused({
            status: 400,
            error: 'BadRequest',
            message: 'the request body is not valid JSON',
          });
          return;
        }
        const answer = handler.answer(webhook, document, started);
        if (!(answer instanceof Promise)) {
          send(answer.httpStatus, answer.body);
          return;
        }
        answer.then((a) => {
          send(a.httpStatus, a.body);
        }, failed);
      } catch (error) {
        failed(error);
      }
    });
  };

  return (req, res) => {
    if (req.method === 'POST') {
      const route = routeOf(pathOf(req.url));
      if (route === 'review' || ((route === 'mutate' || route === 'validate') && admission)) {
        try {
          if (route === 'review') review(req, res);
          else admit(route, req, res);
        } catch (error) {
          bug(res, error);
        }
        return;
      }
    }
    operations(req, res);
  };
}

/** Health, readiness, metrics, and JSON answers for every other method and path. */
function operationsApp(options: AppOptions, metrics: VerifierMetrics): Express {
  const readiness = options.readiness ?? (() => ({ ready: true }));
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', false);

  app.use((req, res, next) => {
    res.on('finish', () => {
      metrics.httpResponse(routeOf(pathOf(req.url)), res.statusCode);
    });
    next();
  });
  app.all(REVIEW_PATHS as string[], (_req, res) => {
    res.setHeader('Allow', 'POST');
    res.status(405).json({ error: 'MethodNotAllowed', message: 'ImageReviews are POSTed' });
  });
  app.get('/healthz', (_req, res) => {
    res.status(200).json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const state = readiness();
    if (state.ready) res.status(200).json({ status: 'ready' });
    else res.status(503).json({ status: 'not ready', reason: state.reason ?? 'not ready' });
  });
  app.get('/metrics', async (_req, res) => {
    const { contentType, body } = await metrics.exposition();
    res.status(200).type(contentType).send(body);
  });
  app.use((_req, res) => {
    res.status(404).json({ error: 'NotFound', message: 'no such endpoint' });
  });
  app.use(
    (error: unknown, _req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (res.headersSent) {
        next(error);
        return;
      }
      options.logger.error('http.error', { error });
      res.status(500).json({ error: 'InternalError', message: 'internal error' });
    },
  );
  return app;
}
