/**
 * The verifier's configuration after validation: every relative path resolved against the config
 * file's directory, CA files and pinned keys read, trust anchors compiled once, defaults applied,
 * and the whole object frozen. Nothing downstream re-validates or touches the file system for it.
 */
import type { CompiledAnchor, CredentialSource } from '@kpack-trust/common';

/**
 * What to do when a notary server named in the config cannot be asked (unreachable, timing out,
 * 5xx). Servers the config does not name always deny: the pod's author chose them.
 */
export type FailureMode = 'deny' | 'error';

/** TLS material of the HTTPS listener, as absolute paths (re-read by the server when they rotate). */
export interface ListenTlsConfig {
  readonly cert: string;
  readonly key: string;
  /** When set, the apiserver must present a client certificate issued by this CA bundle. */
  readonly clientCA?: string;
}

/** Where the webhook listens. */
export interface ListenConfig {
  readonly port: number;
  /** Bind address; the server's default when absent. */
  readonly host?: string;
  readonly tls: ListenTlsConfig;
}

/** One registry's notary server. */
export interface NotaryEndpointConfig {
  /** Registry host[:port] in canonical spelling (registry.ts), as in normalized image names (`127.0.0.1:5000`, `docker.io`). */
  readonly registry: string;
  /** `https://host[:port][/prefix]`, without a trailing slash. */
  readonly server: string;
  /** The CA bundle file; when given, only this bundle is trusted for the server's certificate. */
  readonly caFile?: string;
  readonly caPem?: string;
  /** The most one collection update from this server may take (each request is also held to it). */
  readonly timeoutMs: number;
  /** A docker config.json whose credentials answer the server's auth challenges. */
  readonly credentialsFile?: string;
  readonly credentials?: CredentialSource;
}

/** A delegation role that must sign the image, with the keys it must sign with. */
export interface SignerRequirement {
  /** `targets/releases`, `targets/<name>`, or `targets` itself. */
  readonly role: string;
  /** Key ids as given: a delegation's listed id (x509) or notary's canonical (bare key) id. */
  readonly keyIds: readonly string[];
  /** Canonical ids of keys given as PEM public keys or certificates. */
  readonly canonicalIds: readonly string[];
  /** How many distinct pinned keys must have signed the role's metadata (default 1). */
  readonly threshold: number;
}

/** How a verifying rule trusts a repository. */
export interface RuleTrust {
  /** The root trust anchor, compiled once per configuration. */
  readonly anchor: CompiledAnchor;
  /** Required signers; empty means Docker Content Trust resolution alone decides. */
  readonly signers: readonly SignerRequirement[];
  /** How many of `signers` must sign and agree (default: all of them). */
  readonly signersThreshold: number;
}

/** Fields every rule has. */
interface RuleBase {
  /** The rule's name in logs and audit annotations (default: its image patterns). */
  readonly name: string;
  /** Position in the file, the last tie-breaker between equally specific rules. */
  readonly index: number;
  /** Globs over normalized `registry/path` names, the registry segment in canonical spelling (registry.ts). */
  readonly images: readonly string[];
  /** When set, the rule applies only in namespaces matching one of these globs. */
  readonly namespaces?: readonly string[];
  /** The rule never applies in namespaces matching these globs. */
  readonly excludeNamespaces: readonly string[];
  /** Deny references without a digest, closing the tag re-pointing race. */
  readonly requireDigest: boolean;
  /** Answer allowed but report what would be denied (the rule's own setting, else the global one). */
  readonly detectionMode: boolean;
}

/** A rule: admit without verification, deny, or verify through notary. */
export type PolicyRule =
  | (RuleBase & { readonly action: 'allow' })
  | (RuleBase & { readonly action: 'deny' })
  | (RuleBase & { readonly action: 'verify'; readonly trust: RuleTrust });

/** The break-glass annotation: when present on a pod, it is admitted and the bypass audited. */
export interface BreakGlassConfig {
  readonly enabled: boolean;
  /** The annotation key; it must contain `.image-policy.k8s.io/` or the apiserver never forwards it. */
  readonly annotation: string;
}

/** Bounds of the trust cache. */
export interface CacheConfig {
  /** Verified collections kept (one per notary server, GUN and trust anchor). */
  readonly maxRepositories: number;
  /** A cached collection is re-fetched after this long (and never used past its own expiry). */
  readonly ttlSeconds: number;
  /** Trusted roots and rollback floors kept; larger than maxRepositories so evictions keep them. */
  readonly maxTrustStates: number;
  /**
   * While notary is unavailable (transport errors, timeouts, 5xx, open circuit), the last verified
   * collection answers for up to this long past its TTL, never past its own expiry; 0 turns it off.
   */
  readonly staleIfErrorSeconds: number;
  /** A failed update that is a verdict on the data (not signed, failed verification) is remembered this long; 0 turns it off. */
  readonly negativeTtlSeconds: number;
  /** A collection in use is refreshed in the background this long before its TTL ends (at most half the TTL); 0 turns it off. */
  readonly refreshAheadSeconds: number;
}

/** The circuit breaker kept per notary server. */
export interface CircuitBreakerConfig {
  /** Consecutive unavailability failures that open a server's circuit; 0 turns breaking off. */
  readonly failureThreshold: number;
  /** How long an open circuit fails at once before one probe request may go through. */
  readonly cooldownSeconds: number;
}

/** The whole validated configuration. */
export interface VerifierConfig {
  /** The file it came from (or a label), for messages. */
  readonly source: string;
  readonly listen: ListenConfig;
  readonly notary: readonly NotaryEndpointConfig[];
  readonly rules: readonly PolicyRule[];
  /** Pods in these namespaces (globs) are admitted without checks — a lockout escape for system namespaces. */
  readonly exemptNamespaces: readonly string[];
  /** Global detection mode: rules without their own setting only report. */
  readonly detectionMode: boolean;
  readonly failure: FailureMode;
  readonly breakGlass: BreakGlassConfig;
  readonly cache: CacheConfig;
  readonly circuitBreaker: CircuitBreakerConfig;
  /**
   * What is valid but almost certainly not meant: image patterns that can match no normalized
   * name (config/pattern-warnings.ts). Logged at load and reload, shown by check and check-config.
   */
  readonly warnings: readonly string[];
}
