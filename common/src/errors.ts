/**
 * One error class for the whole trust core. Each failure has a stable `code` and carries the facts
 * that explain it as typed fields, so callers (the verifier's deny reasons, the signer's exit codes,
 * tests) branch on data, never on message text.
 */

/** The facts each error code carries. */
export interface TrustErrorFacts {
  /** Bytes are not JSON, or not the JSON shape a role requires. */
  METADATA_MALFORMED: { role: string; field: string; problem: string };
  /** `_type` says another role than the one expected at this step. */
  WRONG_ROLE_TYPE: { role: string; expected: string; actual: string };
  /** The canonical encoder was handed something notary can never publish. */
  NOT_CANONICALIZABLE: { path: string; problem: string };
  /** A public key is malformed or of a type we cannot use. */
  KEY_INVALID: { keyId: string; keyType: string; problem: string };
  /** A key's stated id does not match the id computed from its content. */
  KEY_ID_MISMATCH: { role: string; stated: string; computed: string };
  /** Fewer distinct authorised keys signed a role than its threshold requires. */
  SIGNATURE_THRESHOLD: { role: string; found: number; needed: number };
  /** A role's expiry lies in the past. */
  EXPIRED: { role: string; expires: string; now: string };
  /** A role's version is lower than one already trusted (rollback) or than a required floor. */
  VERSION_ROLLBACK: { role: string; actual: number; floor: number };
  /** Bytes do not match the length or hash the parent role states for them. */
  HASH_MISMATCH: { role: string; algorithm: string; expected: string; actual: string };
  LENGTH_MISMATCH: { role: string; expected: number; actual: number };
  /**
   * Metadata asks for more work than this client does for one role: more keys, signatures or
   * certificates than it accepts, or more signature checks than a chain search may spend. A
   * verdict on the data (the same bytes fail the same way), never an outage.
   */
  LIMIT_EXCEEDED: { role: string; what: string; limit: number; actual: number };
  /** A download exceeded the maximum allowed for its role. */
  DOWNLOAD_TOO_LARGE: { role: string; limit: number; url: string };
  /** A parent role does not list a child it should (snapshot without targets, say). */
  META_MISSING: { role: string; parent: string };
  /** A role, root rotation step or delegation was loaded out of order. */
  WORKFLOW_ORDER: { role: string; problem: string };
  /** The root does not match any configured trust anchor for this GUN. */
  ROOT_NOT_TRUSTED: { gun: string; problem: string };
  /** A root certificate fails notary's checks (CN ≠ GUN, CA flag, expired, SHA-1). */
  CERTIFICATE_INVALID: { gun: string; keyId: string; problem: string };
  /** An image reference does not follow the Docker reference grammar. */
  REFERENCE_INVALID: { reference: string; problem: string };
  /**
   * The first role that signs a target name does not give what a pull needs: a 32-byte sha256
   * (docker/cli convertTarget). Resolution stops there rather than asking the next role.
   */
  TARGET_INVALID: { gun: string; role: string; target: string; problem: string };
  /** A tag or digest is not signed in the collection. */
  TARGET_NOT_FOUND: { gun: string; target: string };
  /** The notary server answered with an unexpected HTTP status. */
  HTTP_STATUS: { url: string; status: number; serverCode: string };
  /** The notary server could not be reached or did not answer in time. */
  HTTP_UNREACHABLE: { url: string; problem: string };
  /** Authentication with the notary server or its token service failed. */
  AUTH_FAILED: { url: string; status: number; problem: string };
  /** A private key file could not be read or decrypted. */
  PRIVATE_KEY_INVALID: { source: string; problem: string };
  /** A docker config.json (registry credentials) could not be read or is malformed. */
  CREDENTIALS_INVALID: { source: string; problem: string };
  /** A key store's settings or stored contents cannot be used (a malformed Kubernetes Secret, a keys dir without a key). */
  KEY_STORE_INVALID: { store: string; problem: string };
  /** A configuration file is unreadable or breaks its schema; `path` names the offending key. */
  CONFIG_INVALID: { source: string; path: string; problem: string };
  /** A review could not be decided (notary unavailable or garbled) and policy says answer an error, not a denial. */
  REVIEW_FAILED: { image: string; problem: string };
  /** A command-line flag, a lifecycle report or a build's tags are unusable; `source` names which. */
  INPUT_INVALID: { source: string; problem: string };
  /** A key we hold cannot sign a role of this repository (missing, or not the key the repository lists). */
  SIGNING_KEY_UNUSABLE: { gun: string; role: string; keyId: string; problem: string };
  /** The registry does not have the manifest a build claims to have pushed. */
  MANIFEST_UNKNOWN: { image: string; digest: string; url: string; status: number };
  /** Concurrent writers kept winning: every publish attempt was refused as out of date. */
  PUBLISH_CONFLICT: { gun: string; attempts: number };
}

/** Every failure the trust core reports. */
export type TrustErrorCode = keyof TrustErrorFacts;

/** A failure of the trust core: `code` says what kind, `facts` the particulars. */
export class TrustError<C extends TrustErrorCode = TrustErrorCode> extends Error {
  override readonly name = 'TrustError';
  readonly code: C;
  readonly facts: Readonly<TrustErrorFacts[C]>;

  constructor(code: C, facts: TrustErrorFacts[C], message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.facts = Object.freeze({ ...facts });
  }
}

/** Narrows an unknown thrown value to a TrustError, optionally of one code. */
export function isTrustError<C extends TrustErrorCode>(
  value: unknown,
  code?: C,
): value is TrustError<C> {
  return value instanceof TrustError && (code === undefined || value.code === code);
}

// Verdicts on the bytes a server served, as opposed to failing to get them (HTTP_*, AUTH_FAILED)
// or to local input and configuration: the same bytes fail the same way again.
const REJECTED_TRUST_DATA: ReadonlySet<TrustErrorCode> = new Set<TrustErrorCode>([
  'METADATA_MALFORMED',
  'WRONG_ROLE_TYPE',
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
  'ROOT_NOT_TRUSTED',
  'CERTIFICATE_INVALID',
  'TARGET_INVALID',
]);

/**
 * True when `value` rejects the trust data a notary server served (bad signatures, rollback, an
 * unanchored root, limits exceeded, …) rather than reporting that the server could not be asked.
 * A caller may remember such a failure briefly per server and GUN instead of redoing the work on
 * every request — as a failure, never as a verdict that admits anything.
 */
export function isRejectedTrustData(value: unknown): value is TrustError {
  return isTrustError(value) && REJECTED_TRUST_DATA.has(value.code);
}
