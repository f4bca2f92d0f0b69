/**
 * A circuit breaker per notary source, so that reviews during an outage answer in milliseconds
 * instead of each waiting out the deadline. The caller names the source by a key of its identity
 * (NotarySource.key in cache.ts), never by URL alone: a pod-chosen source can share a configured
 * server's URL, and its failures must not open that server's circuit.
 *
 * - closed: requests go through; `failureThreshold` consecutive *unavailability* failures (transport
 *   errors, timeouts, 5xx — see isUnavailable) open the circuit. Any answer from the server (a 404, a
 *   too-large body, a success) proves it is up and resets the count.
 * - open: every request fails at once with HTTP_UNREACHABLE, without touching the network, until
 *   `cooldownMs` has passed since it opened.
 * - half-open: exactly one request (the probe) goes through; the others still fail at once. The
 *   probe's success closes the circuit, its failure opens it for another cool-down.
 *
 * - a failure marked by notAsked() (a local limit refused the request before it left the process)
 *   says nothing about the server and counts neither way.
 *
 * Breakers live in an LRU of `maxServers`, so attacker-chosen host names cannot grow the map; an
 * evicted breaker starts closed again, which costs at most `failureThreshold` slow requests.
 */
import { LRUCache } from 'lru-cache';
import { TrustError, isTrustError } from '@kpack-trust/common';

/** The state of one server's breaker. */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** A state change, for metrics and logs. */
export interface BreakerEvent {
  /** The key the breaker was called with: a configured server's URL, or a pod-chosen source's key. */
  readonly server: string;
  readonly state: BreakerState;
  /** Consecutive unavailability failures counted when the change happened. */
  readonly failures: number;
}

/** Settings and clock of the breakers. */
export interface CircuitBreakerOptions {
  /** Consecutive unavailability failures that open a server's circuit; 0 turns breaking off. */
  readonly failureThreshold: number;
  /** How long an open circuit fails fast before one probe may go through. */
  readonly cooldownMs: number;
  /** Most servers with a breaker kept (LRU). */
  readonly maxServers: number;
  /** Milliseconds on the injected clock. */
  readonly now: () => number;
  readonly onStateChange?: (event: BreakerEvent) => void;
}

interface Breaker {
  state: BreakerState;
  failures: number;
  /** Clock time (ms) the circuit last opened. */
  openedAt: number;
  /** In half-open, whether the one probe is under way. */
  probing: boolean;
}

/**
 * True when an error means the notary server could not be asked — transport errors, timeouts
 * (ours or the client's), 5xx — as opposed to an answer (404, a malformed or oversized body) or a
 * verdict on the trust data. Only these open a circuit, and only these may be answered from stale
 * verified data.
 */
export function isUnavailable(error: unknown): boolean {
  if (isTrustError(error, 'HTTP_UNREACHABLE')) return true;
  return isTrustError(error, 'HTTP_STATUS') && error.facts.status >= 500;
}

const refusedLocally = new WeakSet<object>();

/**
 * Marks `error` as raised before the request reached the network (a full request pool, a closed
 * client), so that no breaker counts it: otherwise anyone able to fill a shared limit could open
 * the circuit of a server that never saw a request. Returns `error`.
 */
export function notAsked<E extends Error>(error: E): E {
  refusedLocally.add(error);
  return error;
}

/** The breakers of every notary server; see the module comment. */
export class CircuitBreakers {
  private options: CircuitBreakerOptions;
  private readonly breakers: LRUCache<string, Breaker>;

  constructor(options: CircuitBreakerOptions) {
    this.options = options;
    this.breakers = new LRUCache({ max: options.maxServers });
  }

  /** Applies new thresholds (a reloaded config); states are kept. */
  configure(options: Pick<CircuitBreakerOptions, 'failureThreshold' | 'cooldownMs'>): void {
    this.options = { ...this.options, ...options };
  }

  /** The state of the breaker keyed `server` (closed when it has none). */
  state(server: string): BreakerState {
    return this.breakers.peek(server)?.state ?? 'closed';
  }

  /**
   * Runs one request through the breaker keyed `server` (the source's identity, see above). `cutOff` names the caller's own deadline: a
   * request that it aborted before `afterMs` had passed says nothing about the server (the chain
   * it belonged to was long, not the server slow), so it counts neither way. Otherwise one tenant
   * whose repository takes many requests could open a shared server's circuit for everyone.
   */
  async call<T>(
    server: string,
    request: () => Promise<T>,
    cutOff?: { readonly signal: AbortSignal; readonly afterMs: number },
  ): Promise<T> {
    if (this.options.failureThreshold <= 0) return request();
    const breaker = this.breakers.get(server);
    let probe = false;
    if (breaker !== undefined && breaker.state !== 'closed') {
      const now = this.options.now();
      const waitMs = breaker.openedAt + this.options.cooldownMs - now;
      if (breaker.state === 'open' && waitMs <= 0) {
        this.change(server, breaker, 'half-open');
      }
      if (breaker.state === 'open' || breaker.probing) {
        throw circuitOpen(server, breaker.failures, Math.max(0, waitMs));
      }
      breaker.probing = true;
      probe = true;
    }
    const started = this.options.now();
    try {
      const result = await request();
      this.succeeded(server);
      return result;
    } catch (error) {
      const ours =
        cutOff !== undefined &&
        cutOff.signal.aborted &&
        this.options.now() - started < cutOff.afterMs;
      if (ours || (error instanceof Error && refusedLocally.has(error))) throw error;
      if (isUnavailable(error)) this.failed(server);
      else this.succeeded(server);
      throw error;
    } finally {
      if (probe) {
        const current = this.breakers.peek(server);
        if (current !== undefined) current.probing = false;
      }
    }
  }

  private succeeded(server: string): void {
    const breaker = this.breakers.peek(server);
    if (breaker === undefined) return;
    const wasClosed = breaker.state === 'closed';
    breaker.failures = 0;
    if (!wasClosed) this.change(server, breaker, 'closed');
    // A healthy server needs no entry: the map holds only servers that failed recently.
    this.breakers.delete(server);
  }

  private failed(server: string): void {
    let breaker = this.breakers.get(server);
    if (breaker === undefined) {
      breaker = { state: 'closed', failures: 0, openedAt: 0, probing: false };
      this.breakers.set(server, breaker);
    }
    breaker.failures += 1;
    if (breaker.state === 'half-open' || breaker.failures >= this.options.failureThreshold) {
      breaker.openedAt = this.options.now();
      if (breaker.state !== 'open') this.change(server, breaker, 'open');
    }
  }

  private change(server: string, breaker: Breaker, state: BreakerState): void {
    breaker.state = state;
    this.options.onStateChange?.({ server, state, failures: breaker.failures });
  }
}

/** The fast failure of an open circuit: HTTP_UNREACHABLE, so every caller treats it as an outage. */
function circuitOpen(server: string, failures: number, waitMs: number): TrustError {
  const problem = `circuit open after ${failures} consecutive failures (next probe in ${Math.ceil(waitMs / 1000)} s)`;
  return new TrustError(
    'HTTP_UNREACHABLE',
    { url: server, problem },
    `notary ${server} is not asked: ${problem}`,
  );
}
