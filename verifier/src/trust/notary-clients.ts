/**
 * One metadata fetcher per configured notary server, reused across reviews (keep-alive, token
 * cache) and replaced only when that server's settings change on reload. Registries without an
 * entry use Docker's mapping (`docker.io` → notary.docker.io, else `https://<registry>`) with the
 * public CA roots and the default deadline.
 */
import { NotaryHttpClient, notaryServerFor, type MetadataFetcher } from '@kpack-trust/common';
import { CONFIG_DEFAULTS } from '../config/parse.js';
import type { NotaryEndpointConfig } from '../config/types.js';
import type { NotarySource } from './cache.js';

/** A fetcher the pool can close when its server's settings change. */
export type ClosableFetcher = MetadataFetcher & { close?(): void };

/** Builds the fetcher for one notary server; tests inject in-memory ones. */
export type FetcherFactory = (endpoint: NotaryEndpointConfig) => ClosableFetcher;

/** The production factory: NotaryHttpClient, pinned to the entry's CA bundle when one is given. */
export const httpFetcherFactory: FetcherFactory = (endpoint) =>
  new NotaryHttpClient({
    baseUrl: endpoint.server,
    ...(endpoint.caPem === undefined ? {} : { ca: endpoint.caPem, exclusiveCa: true }),
    timeoutMs: endpoint.timeoutMs,
    ...(endpoint.credentials === undefined ? {} : { credentials: endpoint.credentials }),
    userAgent: 'kpack-trust-verifier',
  });

interface PooledSource extends NotarySource {
  readonly identity: string;
  readonly fetcher: ClosableFetcher;
}

/** The notary sources of the current configuration. */
export class NotarySources {
  private readonly factory: FetcherFactory;
  private byRegistry = new Map<string, PooledSource>();
  /** Fetchers for registries without an entry, created on first use. */
  private implicit = new Map<string, PooledSource>();

  constructor(factory: FetcherFactory, endpoints: readonly NotaryEndpointConfig[]) {
    this.factory = factory;
    this.reconfigure(endpoints);
  }

  /**
   * Switches to new endpoints; fetchers of unchanged servers are kept. Returns the fetchers no
   * longer used, for the caller to close once updates under way have settled.
   */
  reconfigure(endpoints: readonly NotaryEndpointConfig[]): ClosableFetcher[] {
    const previous = new Map<string, PooledSource>();
    for (const s of [...this.byRegistry.values(), ...this.implicit.values()]) {
      previous.set(s.identity, s);
    }
    const next = new Map<string, PooledSource>();
    for (const endpoint of endpoints) {
      const identity = identityOf(endpoint);
      const reused = previous.get(identity);
      next.set(endpoint.registry, reused ?? this.create(endpoint, identity));
      previous.delete(identity);
    }
    this.byRegistry = next;
    const kept = new Set([...next.values()].map((s) => s.identity));
    // Implicit sources stay unless an explicit entry now covers their registry.
    const implicit = new Map<string, PooledSource>();
    for (const [registry, source] of this.implicit) {
      if (!next.has(registry)) {
        implicit.set(registry, source);
        kept.add(source.identity);
      }
    }
    this.implicit = implicit;
    return [...previous.values()].filter((s) => !kept.has(s.identity)).map((s) => s.fetcher);
  }

  /** The source for an image's registry. */
  forRegistry(registry: string): NotarySource {
    const configured = this.byRegistry.get(registry);
    if (configured !== undefined) return configured;
    let source = this.implicit.get(registry);
    if (source === undefined) {
      const endpoint: NotaryEndpointConfig = {
        registry,
        server: notaryServerFor(registry),
        timeoutMs: CONFIG_DEFAULTS.notaryTimeoutMs,
      };
      source = this.create(endpoint, identityOf(endpoint));
      this.implicit.set(registry, source);
    }
    return source;
  }

  /** Every fetcher in use, for shutdown. */
  all(): ClosableFetcher[] {
    return [...this.byRegistry.values(), ...this.implicit.values()].map((s) => s.fetcher);
  }

  private create(endpoint: NotaryEndpointConfig, identity: string): PooledSource {
    return {
      identity,
      server: endpoint.server,
      timeoutMs: endpoint.timeoutMs,
      fetcher: this.factory(endpoint),
    };
  }
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
