/**
 * The controller's Kubernetes API calls over plain HTTPS, with credentials from the kubeconfig (or
 * the pod's service account) applied by @kubernetes/client-node's `KubeConfig.applyToHTTPSOptions`
 * — client certificates, bearer tokens re-read from their file, exec plugins all keep working.
 *
 * Why not the client's generated APIs and its `ListWatch` informer (1.3.0, the last line for Node
 * 20): its informer never asks for bookmarks, stops for good on any watch error instead of backing
 * off, and its `Watch` drops undecodable lines silently with no bound on a line's size; merge
 * patches on custom resources need per-call middleware to set the content type. The calls here are
 * few (list, watch, get, merge-patch, create Event, get/create/update Lease, count Secrets by
 * label), each bounded in time
 * and in bytes, and answer with the apiserver's own Status reason.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import {
  GoneError,
  PageTooLargeError,
  type ListPage,
  type ListWatchClient,
  type WatchEvent,
} from './informer.js';
import {
  LeaseConflictError,
  type LeaseClient,
  type LeaseRecord,
  type LeaseWrite,
} from './leader-election.js';
import type { ControllerEvent } from './reconcile.js';

const REQUEST_TIMEOUT_MS = 30_000;
const MAX_RESPONSE_BYTES = 32 << 20;
const MAX_WATCH_LINE = 4 << 20;

/** Limits of one {@link KubeHttp}; the defaults are what the controller runs with. */
export interface KubeHttpOptions {
  /** Largest answer read, in bytes (default 32 MiB); a larger one fails unread. */
  readonly maxResponseBytes?: number;
  /**
   * Time for a whole request, headers and body (default 30 s); for a watch, for its headers. A
   * server that sends headers and then stalls the body must not hold a call past it.
   */
  readonly requestTimeoutMs?: number;
}

/** An answer larger than the client reads ({@link KubeHttpOptions.maxResponseBytes}). */
export class ResponseTooLargeError extends Error {
  override readonly name = 'ResponseTooLargeError';
  constructor(readonly maxBytes: number) {
    super(`the apiserver's answer exceeds ${maxBytes} bytes`);
  }
}

/** What a call sends besides method and path. */
export interface KubeCallOptions {
  readonly body?: { value: unknown; contentType?: string };
  readonly accept?: string;
  /** Aborts the call (request and body read); it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** A failed API call: HTTP status and the Status object's reason. */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** JSON over HTTPS to one apiserver. */
export class KubeHttp {
  readonly server: URL;
  readonly #config: KubeConfig;
  readonly #maxResponseBytes: number;
  readonly #timeoutMs: number;

  constructor(config: KubeConfig, options: KubeHttpOptions = {}) {
    const cluster = config.getCurrentCluster();
    if (cluster === null) throw new Error('the kubeconfig names no current cluster');
    this.server = new URL(cluster.server);
    this.#config = config;
    this.#maxResponseBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
    this.#timeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  /**
   * One request; resolves with the status and parsed JSON body (undefined for an empty body). The
   * deadline covers the whole answer: Node's request timeout and a header timer stop at the
   * headers, and a body that stalls would otherwise hold the call — and a Lease renewal — forever.
   */
  async call(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH',
    path: string,
    options: KubeCallOptions = {},
  ): Promise<{ status: number; json: unknown }> {
    const exchange = deadline(
      options.signal,
      this.#timeoutMs,
      `${method} ${path}: no complete answer from ${this.server.origin} within ${this.#timeoutMs / 1000} s`,
    );
    let text: string;
    let response: IncomingMessage;
    try {
      response = await this.#open(method, path, options.body, exchange.signal, options.accept);
      text = await readBounded(response, this.#maxResponseBytes, exchange.signal);
    } finally {
      exchange.done();
    }
    let json: unknown;
    if (text !== '') {
      try {
        json = JSON.parse(text);
      } catch {
        throw new KubeApiError(
          response.statusCode ?? 0,
          '',
          `${method} ${path}: the answer is not JSON`,
        );
      }
    }
    return { status: response.statusCode ?? 0, json };
  }

  /** Like call, but a non-2xx answer throws a KubeApiError naming the Status reason. */
  async expectOk(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH',
    path: string,
    body?: { value: unknown; contentType?: string },
  ): Promise<unknown> {
    const { status, json } = await this.call(method, path, body === undefined ? {} : { body });
    if (status >= 200 && status < 300) return json;
    throw apiError(method, path, status, json);
  }

  /** A watch stream: calls `onLine` per line until the server ends it or `signal` aborts. */
  async stream(path: string, onLine: (line: string) => void, signal: AbortSignal): Promise<void> {
    const response = await this.#open('GET', path, undefined, signal, undefined, this.#timeoutMs);
    const status = response.statusCode ?? 0;
    if (status !== 200) {
      // The refusal's body is read under the same deadline as a call's: a stalled one must not
      // keep the informer from backing off and trying again.
      const refusal = deadline(signal, this.#timeoutMs, 'aborted');
      const text = await readBounded(response, 1 << 20, refusal.signal)
        .catch(() => '')
        .finally(refusal.done);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (status === 410) throw new GoneError(apiError('GET', path, status, json).message);
      throw apiError('GET', path, status, json);
    }
    await new Promise<void>((resolve, reject) => {
      let pending = '';
      const abort = (): void => {
        response.destroy();
        resolve();
      };
      signal.addEventListener('abort', abort, { once: true });
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        pending += chunk;
        let newline: number;
        try {
          while ((newline = pending.indexOf('\n')) !== -1) {
            const line = pending.slice(0, newline);
            pending = pending.slice(newline + 1);
            if (line.trim() !== '') onLine(line);
          }
        } catch (err) {
          response.destroy();
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        if (pending.length > MAX_WATCH_LINE) {
          response.destroy();
          reject(new Error(`a watch event exceeds ${MAX_WATCH_LINE} bytes`));
        }
      });
      response.on('end', () => {
        signal.removeEventListener('abort', abort);
        resolve();
      });
      response.on('error', (err) => {
        signal.removeEventListener('abort', abort);
        if (signal.aborted) resolve();
        else reject(err);
      });
    });
  }

  /**
   * Sends a request and resolves with the response once its headers arrive. `signal` aborts it (the
   * rejection is the signal's reason); `headerTimeoutMs`, for watches, bounds the wait for headers.
   */
  async #open(
    method: string,
    path: string,
    body: { value: unknown; contentType?: string } | undefined,
    signal: AbortSignal,
    accept = 'application/json',
    headerTimeoutMs?: number,
  ): Promise<IncomingMessage> {
    const url = new URL(path, this.server);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body.value));
    const options: RequestOptions = {
      method,
      hostname: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      headers:
        payload === undefined
          ? { Accept: accept }
          : {
              Accept: accept,
              'Content-Type': body?.contentType ?? 'application/json',
              'Content-Length': String(payload.length),
            },
    };
    // Applies the CA, client certificate, token (re-read each time) and exec plugins.
    await this.#config.applyToHTTPSOptions(options);
    if (signal.aborted) throw abortReason(signal);
    const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(options, (res) => {
        clearTimeout(timer);
        // One listener per request on a long-lived signal: drop it when the response is over.
        res.on('close', () => {
          signal.removeEventListener('abort', onAbort);
        });
        resolve(res);
      });
      // Deadline for a watch's headers; its body then streams as long as the server keeps it.
      const timer =
        headerTimeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              req.destroy(
                new Error(
                  `no answer from ${this.server.origin} within ${headerTimeoutMs / 1000} s`,
                ),
              );
            }, headerTimeoutMs);
      const onAbort = (): void => {
        req.destroy(abortReason(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(err);
      });
      req.end(payload);
    });
  }
}

/** Reads a whole body of at most `max` bytes, until `signal` aborts (rejecting with its reason). */
function readBounded(response: IncomingMessage, max: number, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = (): void => {
      response.destroy();
      reject(abortReason(signal));
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    const settle = (): void => {
      signal.removeEventListener('abort', onAbort);
    };
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        settle();
        response.destroy();
        reject(new ResponseTooLargeError(max));
        return;
      }
      chunks.push(chunk);
    });
    response.on('end', () => {
      settle();
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    response.on('error', (err) => {
      settle();
      reject(err);
    });
  });
}

/**
 * A signal that aborts after `ms` (reason: an Error saying `message`) or when `outer` aborts (its
 * reason); `done` clears the timer and the listener on `outer`, which may outlive many calls.
 */
function deadline(
  outer: AbortSignal | undefined,
  ms: number,
  message: string,
): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    controller.abort(new Error(message));
  }, ms);
  const forward = (): void => {
    controller.abort(outer?.reason);
  };
  if (outer?.aborted) forward();
  else outer?.addEventListener('abort', forward, { once: true });
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      outer?.removeEventListener('abort', forward);
    },
  };
}

/** The reason a signal aborted with, as an Error (what a caller's own deadline put there). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('aborted');
}

function apiError(method: string, path: string, status: number, json: unknown): KubeApiError {
  const record = (json ?? {}) as { reason?: unknown; message?: unknown };
  const reason = typeof record.reason === 'string' ? record.reason : '';
  const said = typeof record.message === 'string' ? `: ${record.message.slice(0, 400)}` : '';
  return new KubeApiError(
    status,
    reason,
    `${method} ${path}: ${status}${reason === '' ? '' : ` ${reason}`}${said}`,
  );
}

/** Where kpack serves Builds and Images. */
export interface KpackApi {
  /** `kpack.io/v1alpha2`, or `kpack.io/v1alpha1` where only that is served. */
  readonly groupVersion: string;
}

/** Picks the kpack API version the cluster serves: v1alpha2, else v1alpha1. */
export async function discoverKpack(http: KubeHttp): Promise<KpackApi> {
  const group = (await http.expectOk('GET', '/apis/kpack.io')) as {
    versions?: { groupVersion?: string }[];
  };
  const served = (group.versions ?? []).map((v) => v.groupVersion);
  for (const version of ['kpack.io/v1alpha2', 'kpack.io/v1alpha1']) {
    if (served.includes(version)) return { groupVersion: version };
  }
  throw new Error(
    `the cluster serves no kpack.io version this controller reads (served: ${served.join(', ')})`,
  );
}

function collection(api: KpackApi, resource: string, namespace?: string): string {
  return namespace === undefined
    ? `/apis/${api.groupVersion}/${resource}`
    : `/apis/${api.groupVersion}/namespaces/${encodeURIComponent(namespace)}/${resource}`;
}

/** list + watch of Builds, cluster-wide or in one namespace. */
export function buildListWatch(http: KubeHttp, api: KpackApi, namespace?: string): ListWatchClient {
  const base = collection(api, 'builds', namespace);
  return {
    async list({ limit, continueToken }): Promise<ListPage> {
      const query = new URLSearchParams({ limit: String(limit) });
      if (continueToken !== undefined) query.set('continue', continueToken);
      let answer: { status: number; json: unknown };
      try {
        answer = await http.call('GET', `${base}?${query.toString()}`);
      } catch (err) {
        // The informer asks again with a smaller limit: one tenant's large Builds must not make
        // every list (and so every Build in the scope) fail.
        if (err instanceof ResponseTooLargeError) {
          throw new PageTooLargeError(err.maxBytes, `GET ${base} (limit ${limit}): ${err.message}`);
        }
        throw err;
      }
      const { status, json } = answer;
      if (status === 410) throw new GoneError('the list continue token expired');
      if (status !== 200) throw apiError('GET', base, status, json);
      const list = json as {
        items?: unknown[];
        metadata?: { resourceVersion?: string; continue?: string };
      };
      return {
        items: list.items ?? [],
        resourceVersion: list.metadata?.resourceVersion ?? '',
        ...(list.metadata?.continue === undefined ? {} : { continueToken: list.metadata.continue }),
      };
    },
    watch({ resourceVersion, timeoutSeconds }, onEvent, signal): Promise<void> {
      const query = new URLSearchParams({
        watch: 'true',
        resourceVersion,
        allowWatchBookmarks: 'true',
        timeoutSeconds: String(timeoutSeconds),
      });
      return http.stream(
        `${base}?${query.toString()}`,
        (line) => {
          onEvent(JSON.parse(line) as WatchEvent);
        },
        signal,
      );
    },
  };
}

/** GET of a namespaced kpack object; undefined on 404. */
export async function getKpackObject(
  http: KubeHttp,
  api: KpackApi,
  resource: 'builds' | 'images',
  namespace: string,
  name: string,
): Promise<unknown> {
  return getObject(http, `${collection(api, resource, namespace)}/${encodeURIComponent(name)}`);
}

/**
 * GET of a core/v1 ServiceAccount or Secret in a build namespace (registry credentials of the
 * Build's service account); undefined on 404, a KubeApiError (status 403 without RBAC) otherwise.
 */
export async function getCoreObject(
  http: KubeHttp,
  resource: 'serviceaccounts' | 'secrets',
  namespace: string,
  name: string,
): Promise<unknown> {
  // The Status of a failed Secret read names the Secret, never its data.
  return getObject(
    http,
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/${resource}/${encodeURIComponent(name)}`,
  );
}

/** GET of one object: its JSON, undefined on 404, a KubeApiError for any other status. */
async function getObject(http: KubeHttp, path: string): Promise<unknown> {
  const { status, json } = await http.call('GET', path);
  if (status === 404) return undefined;
  if (status !== 200) throw apiError('GET', path, status, json);
  return json;
}

/**
 * How many Secrets in `namespace` carry all of `labels`, counting at most `limit`: one list, as
 * metadata only (PartialObjectMetadataList, so no key material crosses the wire; an apiserver
 * without it answers the full list, which is counted the same), stopped at `limit` items.
 */
export async function countSecrets(
  http: KubeHttp,
  namespace: string,
  labels: Readonly<Record<string, string>>,
  limit: number,
): Promise<number> {
  const query = new URLSearchParams({
    labelSelector: Object.entries(labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    limit: String(limit),
  });
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets?${query.toString()}`;
  const { status, json } = await http.call('GET', path, {
    accept: 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json',
  });
  if (status !== 200) throw apiError('GET', path, status, json);
  const items = (json as { items?: unknown }).items;
  return Math.min(Array.isArray(items) ? items.length : 0, limit);
}

/** Merge-patches a Build's annotations (null deletes one). */
export async function annotateBuild(
  http: KubeHttp,
  api: KpackApi,
  namespace: string,
  name: string,
  annotations: Readonly<Record<string, string | null>>,
): Promise<void> {
  const path = `${collection(api, 'builds', namespace)}/${encodeURIComponent(name)}`;
  await http.expectOk('PATCH', path, {
    value: { metadata: { annotations } },
    contentType: 'application/merge-patch+json',
  });
}

/** Creates a core/v1 Event about a Build or Image. */
export async function createEvent(
  http: KubeHttp,
  event: ControllerEvent,
  reporter: { component: string; host: string },
  now: Date,
): Promise<void> {
  const { object } = event;
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  await http.expectOk('POST', `/api/v1/namespaces/${encodeURIComponent(object.namespace)}/events`, {
    value: {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${object.name}.`, namespace: object.namespace },
      involvedObject: {
        apiVersion: object.apiVersion,
        kind: object.kind,
        namespace: object.namespace,
        name: object.name,
        uid: object.uid,
      },
      reason: event.reason,
      message: event.message.slice(0, 1024),
      type: event.type,
      source: reporter,
      firstTimestamp: stamp,
      lastTimestamp: stamp,
      count: 1,
    },
  });
}

/** The election's Lease as a coordination.k8s.io/v1 object. */
export function leaseClient(http: KubeHttp, namespace: string, name: string): LeaseClient {
  const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  const path = `${base}/${encodeURIComponent(name)}`;
  const toRecord = (json: unknown): LeaseRecord => {
    const lease = json as { metadata?: { resourceVersion?: string }; spec?: Partial<LeaseWrite> };
    const spec = lease.spec ?? {};
    return {
      resourceVersion: lease.metadata?.resourceVersion ?? '',
      ...(spec.holderIdentity === undefined ? {} : { holderIdentity: spec.holderIdentity }),
      ...(spec.leaseDurationSeconds === undefined
        ? {}
        : { leaseDurationSeconds: spec.leaseDurationSeconds }),
      ...(spec.acquireTime === undefined ? {} : { acquireTime: spec.acquireTime }),
      ...(spec.renewTime === undefined ? {} : { renewTime: spec.renewTime }),
      ...(spec.leaseTransitions === undefined ? {} : { leaseTransitions: spec.leaseTransitions }),
    };
  };
  const write = async (
    method: 'POST' | 'PUT',
    url: string,
    resourceVersion: string | undefined,
    spec: LeaseWrite,
    signal: AbortSignal | undefined,
  ): Promise<LeaseRecord> => {
    const { status, json } = await http.call(method, url, {
      body: {
        value: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: {
            name,
            namespace,
            ...(resourceVersion === undefined ? {} : { resourceVersion }),
          },
          spec,
        },
      },
      ...(signal === undefined ? {} : { signal }),
    });
    if (status === 409) throw new LeaseConflictError(apiError(method, url, status, json).message);
    if (status < 200 || status >= 300) throw apiError(method, url, status, json);
    return toRecord(json);
  };
  return {
    async get(signal) {
      const { status, json } = await http.call('GET', path, signal === undefined ? {} : { signal });
      if (status === 404) return undefined;
      if (status !== 200) throw apiError('GET', path, status, json);
      return toRecord(json);
    },
    create: (spec, signal) => write('POST', base, undefined, spec, signal),
    update: (resourceVersion, spec, signal) => write('PUT', path, resourceVersion, spec, signal),
  };
}
