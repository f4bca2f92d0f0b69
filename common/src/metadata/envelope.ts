/**
 * The signed envelope every metadata file travels in, `{"signed":…,"signatures":[…]}`, and signature
 * thresholds over it. Signatures are checked over the canonical re-serialisation of `signed`, never
 * over the wire bytes (which Go writes HTML-escaped).
 */
import { canonicalBytes, parseJson, type JsonValue } from '../canonical/json.js';
import { TrustError } from '../errors.js';
import type { PublicKey } from '../keys/public-key.js';
import { FieldReader } from './fields.js';
import type { RoleKeys } from './models.js';
import type { WorkMeter } from '../work.js';

/**
 * Most signatures one envelope may carry. Notary writes one per signing key (a root rotation: the
 * old and the new root keys); the list is parsed before any of it is trusted.
 */
export const MAX_SIGNATURES = 100;

/** One entry of `signatures`. */
export interface MetadataSignature {
  readonly keyId: string;
  readonly method: string;
  readonly sig: Buffer;
}

/** A parsed envelope: the `signed` value, its canonical bytes and the signatures over them. */
export interface SignedEnvelope {
  readonly signed: JsonValue;
  /** Computed on first use: a root refused before any signature check never pays for it. */
  readonly canonical: Buffer;
  readonly signatures: readonly MetadataSignature[];
}

/** Parses wire bytes into an envelope; `role` names the file for error facts. */
export function parseEnvelope(bytes: Uint8Array, role: string): SignedEnvelope {
  const root = new FieldReader(role, '$', parseJson(bytes, role));
  const signedReader = root.field('signed');
  signedReader.object();
  const signed = signedReader.value as JsonValue;
  const entries = root.field('signatures').array();
  if (entries.length > MAX_SIGNATURES) {
    throw new TrustError(
      'LIMIT_EXCEEDED',
      { role, what: 'signatures', limit: MAX_SIGNATURES, actual: entries.length },
      `${role} carries ${entries.length} signatures, more than the ${MAX_SIGNATURES} accepted`,
    );
  }
  const signatures = entries.map((s) => ({
    keyId: s.field('keyid').string(),
    method: s.field('method').string(),
    sig: s.field('sig').base64(),
  }));
  let canonical: Buffer | undefined;
  return {
    signed,
    signatures,
    get canonical(): Buffer {
      canonical ??= canonicalBytes(signed);
      return canonical;
    },
  };
}

/**
 * Counts distinct authorised keys with a valid signature and enforces the threshold. A signature
 * whose key id is not authorised for the role, or whose key is unknown, never counts; one key
 * signing twice counts once (TUF 5.x: thresholds are over distinct keys). Each authorised key is
 * tried once, on its first signature: signature checks are bounded by the role's keys, not by how
 * many signatures the sender lists (notary writes one per key). Returns the canonical ids of the
 * keys that signed.
 */
export function verifyThreshold(
  role: string,
  envelope: SignedEnvelope,
  roleKeys: RoleKeys,
  keys: ReadonlyMap<string, PublicKey>,
  work?: WorkMeter,
): ReadonlySet<string> {
  const authorised = new Set(roleKeys.keyIds);
  // Keyed by the bare public key's id: a certificate and its bare key (or two certificates for one
  // key pair) have different ids but are one signer and must count once.
  const valid = new Set<string>();
  const tried = new Set<string>();
  for (const s of envelope.signatures) {
    if (!authorised.has(s.keyId) || tried.has(s.keyId)) continue;
    const key = keys.get(s.keyId);
    if (!key || valid.has(key.canonicalId)) continue;
    tried.add(s.keyId);
    if (work) work.metadataSignatureChecks++;
    if (key.verify(s.method, envelope.canonical, s.sig)) valid.add(key.canonicalId);
  }
  if (valid.size < roleKeys.threshold) {
    throw new TrustError(
      'SIGNATURE_THRESHOLD',
      { role, found: valid.size, needed: roleKeys.threshold },
      `${role} has ${valid.size} valid signature(s) from its keys, needs ${roleKeys.threshold}`,
    );
  }
  return valid;
}
