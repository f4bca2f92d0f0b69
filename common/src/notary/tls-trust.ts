/**
 * Which servers a client trusts over TLS: Node's bundled public roots plus a private CA bundle, as
 * the notary CLI's `--tlscacert` adds to Go's system pool, or the bundle alone.
 *
 * On Node 20 every context given a `ca` first copies Node's own root store, and building that store
 * from the 144 bundled roots costs 25-45 ms of CPU: most of what a one-shot signer spends on TLS,
 * and a private notary server never needs it. Started with `--use-openssl-ca` (the signer image
 * does), Node's own store is OpenSSL's instead, which costs next to nothing (it reads the OS's
 * certificates lazily, or has none). The agent here then handshakes trusting the private bundle
 * first, and adds the bundled roots only when that chain does not verify: whatever the narrow store
 * accepts the wide one accepts too, so the answer is the same and only its cost differs. Without
 * the flag Node's store already is the bundled roots, and one context serves every connection.
 */
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import {
  createSecureContext,
  rootCertificates,
  type SecureContext,
  type TLSSocket,
} from 'node:tls';

/**
 * A TLS context trusting Node's bundled public roots plus `ca` (a PEM bundle), or `ca` alone when
 * `exclusive`. Passing `ca: [...rootCertificates, ca]` instead parses every public root twice
 * (once into Node's root store, once more from the PEM strings): 50–100 ms per context on Node 20,
 * against 25–35 ms here, which is what building Node's root store costs. `context.addCACert` is the
 * method Node's own `ca` option calls; when a Node version lacks it, the slow, documented form is
 * used.
 */
export function secureContextTrusting(
  ca: string | Buffer | undefined,
  exclusive = false,
): SecureContext {
  if (ca === undefined) return createSecureContext({});
  if (exclusive) return createSecureContext({ ca });
  const context = createSecureContext({});
  const native = (context as { context?: { addCACert?: (pem: string | Buffer) => void } }).context;
  if (typeof native?.addCACert !== 'function') {
    return createSecureContext({ ca: [...rootCertificates, ca] });
  }
  native.addCACert(ca);
  return context;
}

/** Where Node's own root store comes from in this process. */
export type NodeRootStore = 'bundled' | 'openssl';

/** `openssl` when Node was started with `--use-openssl-ca` (on its command line or in NODE_OPTIONS). */
export function nodeRootStore(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env['NODE_OPTIONS'] ?? '',
): NodeRootStore {
  const flag = '--use-openssl-ca';
  return execArgv.includes(flag) || nodeOptions.split(/\s+/).includes(flag) ? 'openssl' : 'bundled';
}

/** How an {@link agentTrusting} agent's connections are verified. */
export interface AgentTrust {
  /** PEM bundle of private CAs; absent: the public roots alone. */
  readonly ca?: string | Buffer | undefined;
  /**
   * Trust only `ca`, never the bundled public roots. (Node's own store still applies: under
   * `--use-openssl-ca` that is the OS's.)
   */
  readonly exclusive?: boolean;
  /** Default: this process's, from {@link nodeRootStore}. */
  readonly nodeStore?: NodeRootStore;
  /** The wide context (public roots + `ca`); tests inject a stand-in for the public roots. */
  readonly wideContext?: () => SecureContext;
  /**
   * A TLS handshake not done within this fails with ERR_TLS_HANDSHAKE_TIMEOUT; default 10 000 ms,
   * Go's `http.DefaultTransport` TLSHandshakeTimeout. Bounds callers that pass no handshakeSignal;
   * applies where the handshake runs before the request holds the socket (`--use-openssl-ca`).
   */
  readonly handshakeTimeoutMs?: number;
}

/** Request options an {@link agentTrusting} agent reads besides Node's own. */
export interface TrustingRequestOptions {
  /**
   * Abort it when the request gives up (its deadline, its caller's abort): a connection still in
   * its TLS handshake is closed then. Node's `request.destroy()` cannot reach that socket, since
   * the agent hands it to the request only once the handshake is done.
   */
  readonly handshakeSignal?: AbortSignal;
}

/** Go's `http.DefaultTransport` TLSHandshakeTimeout. */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Keep-alive HTTPS agent whose connections trust `trust`; see the module comment for the order. */
export function agentTrusting(trust: AgentTrust): https.Agent {
  const ca = trust.ca;
  const handshakeTimeoutMs = trust.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  if (!Number.isFinite(handshakeTimeoutMs) || handshakeTimeoutMs <= 0) {
    throw new RangeError(`handshakeTimeoutMs must be a positive number, got ${handshakeTimeoutMs}`);
  }
  if (ca !== undefined && trust.exclusive === true) {
    // One context for every connection: an agent given only `ca` parses it again per connection.
    return new https.Agent({ keepAlive: true, secureContext: createSecureContext({ ca }) });
  }
  const store = trust.nodeStore ?? nodeRootStore();
  if (store === 'bundled') {
    // Node's store is the bundled roots: every connection shares it (built on the first handshake).
    if (ca === undefined) return new https.Agent({ keepAlive: true });
    return new https.Agent({ keepAlive: true, secureContext: secureContextTrusting(ca) });
  }
  const wide =
    trust.wideContext ??
    ((): SecureContext =>
      createSecureContext({
        ca: ca === undefined ? [...rootCertificates] : [...rootCertificates, ca],
      }));
  // Node's own store (OpenSSL's: the OS's, read lazily) goes first even without a private CA: a
  // public chain the OS vouches for, or a server that turns out not to speak TLS at all, then
  // never costs the bundled roots.
  return new TrustingAgent(
    ca === undefined ? () => createSecureContext({}) : () => createSecureContext({ ca }),
    wide,
    handshakeTimeoutMs,
  );
}

type ConnectionCallback = (err: Error | null, stream: Duplex) => void;
type ConnectionOptions = https.RequestOptions &
  TrustingRequestOptions & { secureContext?: SecureContext };

/** The error a connection is destroyed with when it is given up on mid-handshake. */
function handshakeAbandoned(code: string, problem: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`TLS handshake abandoned: ${problem}`), { code });
}

/**
 * Connects trusting the narrow context (the private CA, or Node's own store); a chain that does not
 * verify against it (and only that: a wrong host name or a refused connection fails as it would
 * anyway) is tried again once, on a new connection, with the wide context, which every later
 * connection then uses. Both contexts are built on first use, so a client that never connects
 * costs nothing.
 *
 * Node's Agent neither sees nor tracks a connection until createConnection answers, and this one
 * answers only after the handshake: so every connection still handshaking is kept here, and closed
 * by the request's handshakeSignal, by the handshake deadline and by destroy(). Otherwise a server
 * that accepts TCP and never answers the handshake keeps the socket, and the process, alive forever.
 */
class TrustingAgent extends https.Agent {
  private narrow: SecureContext | undefined;
  private wide: SecureContext | undefined;
  private readonly makeNarrow: () => SecureContext;
  private readonly makeWide: () => SecureContext;
  private readonly handshakeTimeoutMs: number;
  /** Connections whose handshake has not finished; at most one per request in flight. */
  private readonly handshaking = new Set<TLSSocket>();

  constructor(
    makeNarrow: () => SecureContext,
    makeWide: () => SecureContext,
    handshakeTimeoutMs: number,
  ) {
    super({ keepAlive: true });
    this.makeNarrow = makeNarrow;
    this.makeWide = makeWide;
    this.handshakeTimeoutMs = handshakeTimeoutMs;
  }

  /** Also closes connections still handshaking, which Node's Agent does not know of yet. */
  override destroy(): void {
    for (const socket of this.handshaking) {
      socket.destroy(handshakeAbandoned('ABORT_ERR', 'the agent was destroyed'));
    }
    this.handshaking.clear();
    super.destroy();
  }

  /** Node's Agent accepts an asynchronous createConnection that answers through `callback`. */
  override createConnection(
    options: ConnectionOptions,
    callback?: ConnectionCallback,
  ): Duplex | undefined {
    const { handshakeSignal, ...connectOptions } = options;
    const connect = (secureContext: SecureContext): TLSSocket =>
      this.bounded(
        (super.createConnection as (o: ConnectionOptions) => TLSSocket)({
          ...connectOptions,
          secureContext,
        }),
        handshakeSignal,
      );
    if (this.wide !== undefined || callback === undefined) {
      this.wide ??= this.makeWide();
      return connect(this.wide);
    }
    this.narrow ??= this.makeNarrow();
    const first = connect(this.narrow);
    const onSecure = (): void => {
      first.off('error', onError);
      callback(null, first);
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      first.off('secureConnect', onSecure);
      // Node records why it refused the peer's certificate (null until it verified one); a
      // host-name mismatch stays refused, and so does a connection given up on.
      const refusedFor = (first as { authorizationError?: unknown }).authorizationError;
      const chainRefused =
        typeof refusedFor === 'string' &&
        refusedFor !== 'ERR_TLS_CERT_ALTNAME_INVALID' &&
        error.code !== 'ERR_TLS_CERT_ALTNAME_INVALID';
      if (!chainRefused || handshakeSignal?.aborted === true) {
        // Node's Agent takes (error) alone here; its type insists on a stream argument.
        (callback as (err: Error) => void)(error);
        return;
      }
      this.wide ??= this.makeWide();
      callback(null, connect(this.wide));
    };
    first.once('secureConnect', onSecure);
    first.once('error', onError);
    return undefined;
  }

  /**
   * Keeps `socket` in `handshaking` until its handshake is done or it closes, and closes it when
   * `signal` fires or the handshake deadline passes, whoever holds it by then.
   */
  private bounded(socket: TLSSocket, signal: AbortSignal | undefined): TLSSocket {
    const timer = setTimeout(() => {
      socket.destroy(
        handshakeAbandoned(
          'ERR_TLS_HANDSHAKE_TIMEOUT',
          `no TLS handshake within ${this.handshakeTimeoutMs} ms`,
        ),
      );
    }, this.handshakeTimeoutMs);
    // The socket keeps the process alive while it lives; the timer need not.
    timer.unref();
    const onAbort = (): void => {
      socket.destroy(handshakeAbandoned('ABORT_ERR', 'the request gave up'));
    };
    const release = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      this.handshaking.delete(socket);
      socket.off('secureConnect', release);
      socket.off('close', release);
    };
    this.handshaking.add(socket);
    socket.once('secureConnect', release);
    socket.once('close', release);
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    return socket;
  }
}
