/**
 * One metadata fetcher per configured notary server, reused across reviews (keep-alive, token
 * cache) and replaced only when that server's settings change on reload. Registries without an
 * entry use Docker's mapping (`docker.io` → notary.docker.io, else `https://<registry>`) with the
 * public CA roots and the default deadline.
 *
 * Those implicit servers are chosen by whoever writes the pod (any `host:port` a rule's glob lets
 * through), so their clients — each with its agents, sockets, TLS context and token cache — live in
 * an LRU of `maxImplicitClients`: a flood of distinct hosts costs at most that many clients. An
 * evicted client is closed once the requests under way on it have ended; a source still held by a
 * memoised route asks the pool again, so nothing outside the LRU ever opens a connection. Evicted
 * clients still busy are bounded too: at most `maxImplicitRequests` requests to such servers are
 * under way at once, and one more fails at once (a denial) rather than holding another socket
 * open until the deadline — a host that accepts and never answers costs one slot for `timeoutMs`.
 * That refusal is the verifier's own limit, not the server's failure: no circuit breaker counts it.
 *
 * A source's `key` says who it is: a configured entry's server URL, or for a registry without an
 * entry the registry it was made for. The pod's author can name a configured notary server's host
 * as a registry (`notary.corp.com/x/a1`), whose implicit URL `https://notary.corp.com` equals the
 * entry's; keyed by URL, its failures (public CAs against a private one, a full request pool) would
 * open the configured server's circuit for every image of that registry.
 */
import { LRUCache } from 'lru-cache';
import {
  NotaryHttpClient,
  TrustError,
  notaryServerFor,
  type MetadataFetcher,
} from '@kpack-trust/common';
import { CONFIG_DEFAULTS } from '../config/parse.js';
import { canonicalRegistry } from '../config/registry.js';
import type { NotaryEndpointConfig } from '../config/types.js';
import type { NotarySource } from './cache.js';
import { notAsked } from './circuit-breaker.js';

/** A fetcher the pool can close when its server's settings change. */
export type ClosableFetcher = MetadataFetcher & { close?(): void };

/** Builds the fetcher for one notary server; tests inject in-memory ones. */
export type FetcherFactory = (endpoint: NotaryEndpointConfig) => ClosableFetcher;

/** Clients kept for registries without a notary entry, by default. */
export const DEFAULT_MAX_IMPLICIT_CLIENTS = 64;
/** Requests to servers without a notary entry under way at once, by default. */
export const DEFAULT_MAX_IMPLICIT_REQUESTS = 256;

/** The production factory: NotaryHttpClient, pinned to the entry's CA bundle when one is given. */
export const httpFetcherFactory: FetcherFactory = (endpoint) =>
  new NotaryHttpClient({
    baseUrl: endpoint.server,
    ...(endpoint.caPem === undefined ? {} : { ca: endpoint.caPem, exclusiveCa: true }),
    timeoutMs: endpoint.timeoutMs,
    ...(endpoint.credentials === undefined ? {} : { credentials: endpoint.credentials }),
    userAgent: 'kpack-trust-verifier',
  });

/**
 * A notary source of the pool. `implicit` when no notary entry names its registry: the pod's author
 * chose that server, so its failures are never "notary unavailable" (see policy/engine.ts).
 */
export interface PooledNotarySource extends NotarySource {
  readonly implicit: boolean;
}

interface PooledSource extends PooledNotarySource {
  readonly identity: string;
  readonly fetcher: ClosableFetcher;
}

/** Options of NotarySources. */
export interface NotarySourcesOptions {
  /** Most clients kept for registries without an entry; default DEFAULT_MAX_IMPLICIT_CLIENTS. */
  readonly maxImplicitClients?: number;
  /** Most requests to those servers under way at once; default DEFAULT_MAX_IMPLICIT_REQUESTS. */
  readonly maxImplicitRequests?: number;
}

/** The notary sources of the current configuration. */
export class NotarySources {
  private readonly factory: FetcherFactory;
  private byRegistry = new Map<string, PooledSource>();
  /** Sources of registries without an entry, created on first use; evicting one retires it. */
  private readonly implicit: LRUCache<string, PooledSource>;
  /** Implicit clients made and not yet closed (evicted ones still busy count), requests under way. */
  private readonly clients: ImplicitClientCounts;

  constructor(
    factory: FetcherFactory,
    endpoints: readonly NotaryEndpointConfig[],
    options: NotarySourcesOptions = {},
  ) {
    this.factory = factory;
    const max = options.maxImplicitClients ?? DEFAULT_MAX_IMPLICIT_CLIENTS;
    const maxRequests = options.maxImplicitRequests ?? DEFAULT_MAX_IMPLICIT_REQUESTS;
    for (const [name, value] of [
      ['maxImplicitClients', max],
      ['maxImplicitRequests', maxRequests],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`${name} must be a positive integer, got ${value}`);
      }
    }
    this.clients = { open: 0, requests: 0, maxRequests };
    this.implicit = new LRUCache<string, PooledSource>({
      max,
      dispose: (source) => {
        source.fetcher.close?.();
      },
    });
    this.reconfigure(endpoints);
  }

  /**
   * Switches to new endpoints; fetchers of unchanged servers are kept. Returns the fetchers no
   * longer used, for the caller to close once updates under way have settled.
   */
  reconfigure(endpoints: readonly NotaryEndpointConfig[]): ClosableFetcher[] {
    const previous = new Map<string, PooledSource>();
    for (const s of this.byRegistry.values()) previous.set(s.identity, s);
    const next = new Map<string, PooledSource>();
    for (const endpoint of endpoints) {
      const identity = identityOf(endpoint);
      const reused = previous.get(identity);
      // Canonical, as forRegistry looks it up (parseConfig already stores it so).
      next.set(canonicalRegistry(endpoint.registry), reused ?? this.create(endpoint, identity));
      previous.delete(identity);
    }
    this.byRegistry = next;
    // Implicit sources stay unless an explicit entry now covers their registry (deleting one
    // retires its client once idle).
    for (const registry of [...this.implicit.keys()]) {
      if (next.has(registry)) this.implicit.delete(registry);
    }
    const kept = new Set([...next.values()].map((s) => s.identity));
    return [...previous.values()].filter((s) => !kept.has(s.identity)).map((s) => s.fetcher);
  }

  /**
   * The source for an image's registry, in any spelling: `REGISTRY.corp.com:443` is the entry of
   * `registry.corp.com` (config/registry.ts), never a server of the pod's choosing.
   */
  forRegistry(written: string): PooledNotarySource {
    const registry = canonicalRegistry(written);
    const configured = this.byRegistry.get(registry);
    if (configured !== undefined) return configured;
    let source = this.implicit.get(registry);
    if (source === undefined) {
      const endpoint: NotaryEndpointConfig = {
        registry,
        server: notaryServerFor(registry),
        timeoutMs: CONFIG_DEFAULTS.notaryTimeoutMs,
      };
      source = {
        identity: identityOf(endpoint),
        key: implicitKey(endpoint),
        server: endpoint.server,
        timeoutMs: endpoint.timeoutMs,
        implicit: true,
        fetcher: new ImplicitFetcher(endpoint, this.factory, this.clients, () =>
          this.forRegistry(registry),
        ),
      };
      this.implicit.set(registry, source);
    }
    return source;
  }

  /** Every fetcher in use, for shutdown. */
  all(): ClosableFetcher[] {
    return [...this.byRegistry.values(), ...this.implicit.values()].map((s) => s.fetcher);
  }

  /** Implicit sources held, their clients not yet closed (evicted ones still busy count). */
  implicitStats(): { readonly sources: number; readonly openClients: number } {
    return { sources: this.implicit.size, openClients: this.clients.open };
  }

  private create(endpoint: NotaryEndpointConfig, identity: string): PooledSource {
    return {
      identity,
      // The URL, so that breaker and trust states survive a reload that changes only the CA,
      // credentials or deadline. Entries sharing a server share its breaker: it is one server.
      key: endpoint.server,
      server: endpoint.server,
      timeoutMs: endpoint.timeoutMs,
      implicit: false,
      fetcher: this.factory(endpoint),
    };
  }
}

/** Shared by the implicit fetchers of one pool. */
interface ImplicitClientCounts {
  open: number;
  requests: number;
  readonly maxRequests: number;
}

/**
 * The fetcher of an implicit source: makes its client on first use (an invalid server URL then
 * fails that fetch, not the route), and once retired — evicted from the LRU, or closed — closes the
 * client as soon as no request is under way on it, and sends later requests back to the pool.
 */
class ImplicitFetcher implements ClosableFetcher {
  private client: ClosableFetcher | undefined;
  private busy = 0;
  private retired = false;

  constructor(
    private readonly endpoint: NotaryEndpointConfig,
    private readonly factory: FetcherFactory,
    private readonly clients: ImplicitClientCounts,
    private readonly current: () => { readonly fetcher: MetadataFetcher },
  ) {}

  async fetchMetadata(...args: Parameters<MetadataFetcher['fetchMetadata']>): Promise<Uint8Array> {
    // Through the pool, so that use keeps the client recent in the LRU (memoised routes skip
    // forRegistry); a retired fetcher hands the request to its registry's current one.
    const current = this.current().fetcher;
    if (current !== this) return current.fetchMetadata(...args);
    if (this.retired) {
      // Closed while still pooled: the engine is shutting down.
      throw notAsked(
        new TrustError(
          'HTTP_UNREACHABLE',
          { url: this.endpoint.server, problem: 'the notary client is closed' },
          `notary ${this.endpoint.server}: the notary client is closed.`,
        ),
      );
    }
    if (this.clients.requests >= this.clients.maxRequests) {
      throw notAsked(
        new TrustError(
          'HTTP_UNREACHABLE',
          {
            url: this.endpoint.server,
            problem: `${this.clients.maxRequests} requests to notary servers not named in the config are already under way`,
          },
          `notary ${this.endpoint.server}: ${this.clients.maxRequests} requests to notary servers not named in the config are already under way.`,
        ),
      );
    }
    this.busy += 1;
    this.clients.requests += 1;
    try {
      if (this.client === undefined) {
        this.client = this.factory(this.endpoint);
        this.clients.open += 1;
      }
      return await this.client.fetchMetadata(...args);
    } finally {
      this.busy -= 1;
      this.clients.requests -= 1;
      if (this.retired && this.busy === 0) this.release();
    }
  }

  close(): void {
    this.retired = true;
    if (this.busy === 0) this.release();
  }

  private release(): void {
    const client = this.client;
    if (client === undefined) return;
    this.client = undefined;
    this.clients.open -= 1;
    client.close?.();
  }
}

/**
 * The key of a registry without an entry: never a bare URL, so never a configured source's key
 * (see the module comment); per registry, as each is its own pod-chosen source.
 */
function implicitKey(endpoint: NotaryEndpointConfig): string {
  return `${endpoint.server} (registry ${endpoint.registry}, not in the config)`;
}

const credentialIds = new WeakMap<object, number>();
let nextCredentialId = 1;

/**
 * Settings that make a different client. Credentials are compared by object: every load reads the
 * file afresh, so a reload with credentials always gets a client with the current ones.
 */
function identityOf(endpoint: NotaryEndpointConfig): string {
  let credentials = 0;
  if (endpoint.credentials !== undefined) {
    credentials = credentialIds.get(endpoint.credentials) ?? nextCredentialId++;
    credentialIds.set(endpoint.credentials, credentials);
  }
  return JSON.stringify([
    endpoint.registry,
    endpoint.server,
    endpoint.caPem ?? null,
    endpoint.timeoutMs,
    credentials,
  ]);
}
