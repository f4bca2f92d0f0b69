/**
 * Which servers a client trusts over TLS: Node's bundled public roots plus a private CA bundle, as
 * the notary CLI's `--tlscacert` adds to Go's system pool, or the bundle alone.
 *
 * Building Node's root store costs 25–45 ms of CPU on Node 20 (it parses every bundled root), which
 * is most of what a one-shot signer spends on TLS. A server with its own CA does not need it, so the
 * agent here first handshakes trusting the bundle alone, and only when that chain does not verify
 * builds the wide store and connects again: whatever the narrow store accepts, the wide one accepts
 * too, so the answer is the same and only its cost differs.
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

/** How an {@link agentTrusting} agent's connections are verified. */
export interface AgentTrust {
  /** PEM bundle of private CAs; absent: the public roots alone. */
  readonly ca?: string | Buffer | undefined;
  /** Trust only `ca`, never the public roots. */
  readonly exclusive?: boolean;
  /** The wide context (public roots + `ca`); tests inject a stand-in for the public roots. */
  readonly wideContext?: () => SecureContext;
}

/** Keep-alive HTTPS agent whose connections trust `trust`; see the module comment for the order. */
export function agentTrusting(trust: AgentTrust): https.Agent {
  // Without a bundle every connection shares Node's root store, built on the first handshake.
  if (trust.ca === undefined) return new https.Agent({ keepAlive: true });
  // One context for every connection: an agent given only `ca` parses it again per connection.
  const narrow = createSecureContext({ ca: trust.ca });
  if (trust.exclusive === true) return new https.Agent({ keepAlive: true, secureContext: narrow });
  const ca = trust.ca;
  return new NarrowFirstAgent(narrow, trust.wideContext ?? (() => secureContextTrusting(ca)));
}

type ConnectionCallback = (err: Error | null, stream: Duplex) => void;
type ConnectionOptions = https.RequestOptions & { secureContext?: SecureContext };

/**
 * Connects trusting the private CA alone; a chain that does not verify against it (and only that:
 * a wrong host name or a refused connection fails as it would anyway) is tried again once, on a new
 * connection, with the wide context, which every later connection then uses.
 */
class NarrowFirstAgent extends https.Agent {
  private wide: SecureContext | undefined;
  private readonly makeWide: () => SecureContext;

  constructor(narrow: SecureContext, makeWide: () => SecureContext) {
    super({ keepAlive: true, secureContext: narrow });
    this.makeWide = makeWide;
  }

  /** Node's Agent accepts an asynchronous createConnection that answers through `callback`. */
  override createConnection(
    options: ConnectionOptions,
    callback?: ConnectionCallback,
  ): Duplex | undefined {
    const connect = (opts: ConnectionOptions): TLSSocket =>
      (super.createConnection as (o: ConnectionOptions) => TLSSocket)(opts);
    if (this.wide !== undefined || callback === undefined) {
      return connect(this.wide === undefined ? options : { ...options, secureContext: this.wide });
    }
    const first = connect(options);
    const onSecure = (): void => {
      first.off('error', onError);
      callback(null, first);
    };
    const onError = (error: NodeJS.ErrnoException): void => {
      first.off('secureConnect', onSecure);
      // Node records why it refused the peer's certificate; a host-name mismatch stays refused.
      const refusedFor = (first as { authorizationError?: unknown }).authorizationError;
      const chainRefused =
        refusedFor !== undefined &&
        refusedFor !== 'ERR_TLS_CERT_ALTNAME_INVALID' &&
        error.code !== 'ERR_TLS_CERT_ALTNAME_INVALID';
      if (!chainRefused) {
        // Node's Agent takes (error) alone here; its type insists on a stream argument.
        (callback as (err: Error) => void)(error);
        return;
      }
      this.wide ??= this.makeWide();
      callback(null, connect({ ...options, secureContext: this.wide }));
    };
    first.once('secureConnect', onSecure);
    first.once('error', onError);
    return undefined;
  }
}
