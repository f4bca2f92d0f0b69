/**
 * Notary's public keys (tuf/data/keys.go) and signature checks (tuf/signed/verifiers.go, v0.7.0).
 *
 * - `keyval.public` is base64 of: DER SubjectPublicKeyInfo (`ecdsa`, `rsa`), the raw 32-byte key
 *   (`ed25519`), or the PEM text of a certificate chain, leaf first (`ecdsa-x509`, `rsa-x509`).
 * - Go decodes that base64 into bytes and re-encodes it to compute the key id, so the id is taken
 *   over the canonical base64 of the decoded bytes, never over the wire string.
 * - A verifier is chosen by the signature's `method` (lower-cased on decode) and then checks the
 *   key's type: ecdsa → ecdsa/ecdsa-x509; eddsa → ed25519; rsapss and rsapkcs1v15 → rsa/rsa-x509.
 */
import {
  X509Certificate,
  constants,
  createHash,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { canonicalBytes } from '../canonical/json.js';
import { TrustError } from '../errors.js';
import { decodeBase64, decodePem, encodePem, PemError } from './pem.js';

/** The key types notary defines. */
export type KeyType = 'ecdsa' | 'ecdsa-x509' | 'ed25519' | 'rsa' | 'rsa-x509';
/** The signature methods notary verifies (`pycrypto-pkcs#1 pss` can never succeed, see verify). */
export type SignatureMethod = 'ecdsa' | 'eddsa' | 'rsapss' | 'rsapkcs1v15';

/** A public key as it appears in root.json / delegations: keyval.private is null on the wire. */
export interface PublicKeyJson {
  keytype: string;
  keyval: { public: string; private: string | null };
}

const KEY_TYPES: readonly string[] = ['ecdsa', 'ecdsa-x509', 'ed25519', 'rsa', 'rsa-x509'];

// Curves Go's crypto/x509 parses that are at least 256 bits; notary itself only makes P-256.
const CURVES: ReadonlyMap<string, number> = new Map([
  ['prime256v1', 32],
  ['secp384r1', 48],
  ['secp521r1', 66],
]);

// verifiers.go: minRSAKeySizeBit; shorter keys and signatures shorter than 256 bytes never verify.
const MIN_RSA_BITS = 2048;
const MIN_RSA_SIGNATURE_BYTES = MIN_RSA_BITS / 8;
// verifiers.go passes rsa.PSSOptions{SaltLength: sha256.Size}: exactly 32, not "auto".
const PSS_SALT_LENGTH = 32;
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
/**
 * Most certificates one x509 key may bundle (leaf and intermediates). Notary's bundles hold one
 * self-signed certificate, a CA-issued one a few; every certificate costs a parse here and
 * signature checks in a chain search, and the bundle comes from the server before anything in it
 * is trusted.
 */
export const MAX_CERTIFICATES_PER_KEY = 10;

/** Hex sha256 of the canonical `{"keytype","keyval":{"private":null,"public"}}` (TUFKey.ID). */
export function keyIdOf(json: PublicKeyJson): string {
  const bytes = canonicalBytes({
    keytype: json.keytype,
    keyval: { private: null, public: json.keyval.public },
  });
  return createHash('sha256').update(bytes).digest('hex');
}

// Bounded memo of parsed keys, oldest evicted first; errors are never memoised.
const PARSED_KEYS = new Map<string, PublicKey>();
const PARSED_KEYS_MAX = 4096;

/** A notary public key with its ids and a signature check that follows notary's verifiers. */
export class PublicKey {
  /** The key type (`keytype`). */
  readonly type: KeyType;
  /** The id root.json and delegations use: hash of the canonical key JSON. */
  readonly id: string;
  /** For x509 types the id of the bare public key (key file name, `notary key list`); else `id`. */
  readonly canonicalId: string;
  /** `keyval.public` in canonical base64. */
  readonly publicValue: string;
  /** The leaf certificate, for x509 types. */
  readonly certificate: X509Certificate | undefined;
  /** The whole chain, leaf first, for x509 types (empty otherwise), parsed once with the key. */
  readonly certificateChain: readonly X509Certificate[];
  readonly #key: KeyObject;
  #spki: string | undefined;

  private constructor(
    type: KeyType,
    publicValue: string,
    key: KeyObject,
    chain: readonly X509Certificate[],
  ) {
    this.type = type;
    this.publicValue = publicValue;
    this.#key = key;
    this.certificate = chain[0];
    this.certificateChain = chain;
    this.id = keyIdOf({ keytype: type, keyval: { public: publicValue, private: null } });
    this.canonicalId = this.certificate ? PublicKey.fromKeyObject(key).id : this.id;
  }

  /** Strict parse; `context` names where it came from for error facts. Throws METADATA_MALFORMED (shape) or KEY_INVALID (content). */
  static fromJson(json: unknown, context: { role: string; field: string }): PublicKey {
    const malformed = (field: string, problem: string): TrustError =>
      new TrustError(
        'METADATA_MALFORMED',
        { role: context.role, field, problem },
        `${context.role}: ${field} ${problem}`,
      );
    if (!isRecord(json)) throw malformed(context.field, 'must be a key object');
    const keytype = json['keytype'];
    if (typeof keytype !== 'string')
      throw malformed(`${context.field}.keytype`, 'must be a string');
    const keyval = json['keyval'];
    if (!isRecord(keyval)) throw malformed(`${context.field}.keyval`, 'must be an object');
    const encoded = keyval['public'];
    if (typeof encoded !== 'string') {
      throw malformed(`${context.field}.keyval.public`, 'must be a base64 string');
    }
    // Go's KeyPair.Private is []byte: absent and null are the same; anything else is a secret
    // that has no business in public metadata.
    if (keyval['private'] !== undefined && keyval['private'] !== null) {
      throw malformed(`${context.field}.keyval.private`, 'must be null in a public key');
    }
    const bytes = decodeBase64(encoded);
    if (!bytes) throw malformed(`${context.field}.keyval.public`, 'is not valid base64');
    return PublicKey.fromBytes(keytype, bytes);
  }

  /** Builds the notary JSON form from a Node KeyObject (ecdsa P-256, ed25519, rsa). */
  static fromKeyObject(key: KeyObject): PublicKey {
    const invalid = (problem: string): TrustError =>
      new TrustError(
        'KEY_INVALID',
        { keyId: '', keyType: '', problem },
        `cannot use this key: ${problem}`,
      );
    if (key.type === 'secret') throw invalid('a secret key is not an asymmetric key');
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    switch (pub.asymmetricKeyType) {
      case 'ec': {
        const curve = pub.asymmetricKeyDetails?.namedCurve ?? '';
        if (!CURVES.has(curve)) throw invalid(`elliptic curve ${curve} is not supported`);
        return new PublicKey('ecdsa', spkiBase64(pub), pub, []);
      }
      case 'ed25519': {
        const raw = pub
          .export({ format: 'der', type: 'spki' })
          .subarray(ED25519_SPKI_PREFIX.length);
        return new PublicKey('ed25519', raw.toString('base64'), pub, []);
      }
      case 'rsa':
        return new PublicKey('rsa', spkiBase64(pub), pub, []);
      default:
        throw invalid(`${pub.asymmetricKeyType ?? 'unknown'} keys are not notary keys`);
    }
  }

  /** An ecdsa-x509 / rsa-x509 key from a PEM certificate (keyval.public = base64 of the PEM text). */
  static fromCertificatePem(pem: string): PublicKey {
    const { certificates, problem } = readCertificates(pem);
    const leaf = certificates[0];
    if (!leaf || problem !== undefined) {
      throw new TrustError(
        'KEY_INVALID',
        { keyId: '', keyType: '', problem: problem ?? 'no certificate found' },
        `cannot use this certificate: ${problem ?? 'no certificate found'}`,
      );
    }
    const keyType = leaf.publicKey.asymmetricKeyType === 'rsa' ? 'rsa-x509' : 'ecdsa-x509';
    // Notary's CertToKey / CertChainToPEM write pem.EncodeToMemory of each DER certificate.
    const text = certificates.map((c) => encodePem('CERTIFICATE', c.raw)).join('');
    return PublicKey.fromBytes(keyType, Buffer.from(text, 'utf8'));
  }

  private static fromBytes(keytype: string, bytes: Buffer): PublicKey {
    const publicValue = bytes.toString('base64');
    // Parsing a key (and its certificate) costs far more than verifying a signature with it, and the
    // same few keys recur in every update of a repository; PublicKey is immutable, so share them.
    const cacheKey = `${keytype}\0${publicValue}`;
    const cached = PARSED_KEYS.get(cacheKey);
    if (cached) return cached;
    const key = PublicKey.parseBytes(keytype, bytes, publicValue);
    if (PARSED_KEYS.size >= PARSED_KEYS_MAX) {
      const oldest = PARSED_KEYS.keys().next().value;
      if (oldest !== undefined) PARSED_KEYS.delete(oldest);
    }
    PARSED_KEYS.set(cacheKey, key);
    return key;
  }

  private static parseBytes(keytype: string, bytes: Buffer, publicValue: string): PublicKey {
    const keyId = keyIdOf({ keytype, keyval: { public: publicValue, private: null } });
    const invalid = (problem: string): TrustError =>
      new TrustError(
        'KEY_INVALID',
        { keyId, keyType: keytype, problem },
        `key ${keyId} (${keytype}): ${problem}`,
      );
    if (!KEY_TYPES.includes(keytype)) throw invalid('unsupported key type');
    const type = keytype as KeyType;
    switch (type) {
      case 'ecdsa':
      case 'rsa': {
        const expected = type === 'ecdsa' ? 'ec' : 'rsa';
        const key = parseSpki(bytes);
        if (!key || key.asymmetricKeyType !== expected) {
          throw invalid(`keyval.public is not a DER SubjectPublicKeyInfo of an ${type} key`);
        }
        checkCurve(key, invalid);
        return new PublicKey(type, publicValue, key, []);
      }
      case 'ed25519': {
        if (bytes.length !== 32) throw invalid('an ed25519 public key is 32 raw bytes');
        const key = parseSpki(Buffer.concat([ED25519_SPKI_PREFIX, bytes]));
        if (!key) throw invalid('not a valid ed25519 public key');
        return new PublicKey(type, publicValue, key, []);
      }
      case 'ecdsa-x509':
      case 'rsa-x509': {
        const { certificates, problem } = readCertificates(
          bytes.toString('utf8'),
          MAX_CERTIFICATES_PER_KEY,
        );
        const leaf = certificates[0];
        if (!leaf || problem !== undefined) throw invalid(problem ?? 'no certificate found');
        const expected = type === 'ecdsa-x509' ? 'ec' : 'rsa';
        if (leaf.publicKey.asymmetricKeyType !== expected) {
          throw invalid(`the certificate holds a ${leaf.publicKey.asymmetricKeyType ?? '?'} key`);
        }
        checkCurve(leaf.publicKey, invalid);
        return new PublicKey(type, publicValue, leaf.publicKey, certificates);
      }
    }
  }

  /** Base64 DER SubjectPublicKeyInfo (of the certificate's key for x509 types): what PEM pins compare. */
  get spkiBase64(): string {
    this.#spki ??= spkiBase64(this.#key);
    return this.#spki;
  }

  /** Always private: null. */
  toJson(): PublicKeyJson {
    return { keytype: this.type, keyval: { public: this.publicValue, private: null } };
  }

  /** True only for a valid signature by this key with a method allowed for its type; never throws on a bad signature. */
  verify(method: string, data: Uint8Array, signature: Uint8Array): boolean {
    try {
      // data.Signature.UnmarshalJSON lower-cases the method before the verifier lookup.
      switch (method.toLowerCase()) {
        case 'ecdsa': {
          if (this.type !== 'ecdsa' && this.type !== 'ecdsa-x509') return false;
          // v0.7.0 accepts only r‖s, each as wide as the curve order (no ASN.1 form).
          const half = CURVES.get(this.#key.asymmetricKeyDetails?.namedCurve ?? '') ?? 0;
          if (half === 0 || signature.length !== 2 * half) return false;
          return cryptoVerify(
            'sha256',
            data,
            { key: this.#key, dsaEncoding: 'ieee-p1363' },
            signature,
          );
        }
        case 'eddsa':
          if (this.type !== 'ed25519' || signature.length !== 64) return false;
          return cryptoVerify(null, data, this.#key, signature);
        case 'rsapss':
        case 'rsapkcs1v15': {
          if (this.type !== 'rsa' && this.type !== 'rsa-x509') return false;
          const bits = this.#key.asymmetricKeyDetails?.modulusLength ?? 0;
          if (bits < MIN_RSA_BITS || signature.length < MIN_RSA_SIGNATURE_BYTES) return false;
          const pss = method.toLowerCase() === 'rsapss';
          return cryptoVerify(
            'sha256',
            data,
            pss
              ? {
                  key: this.#key,
                  padding: constants.RSA_PKCS1_PSS_PADDING,
                  saltLength: PSS_SALT_LENGTH,
                }
              : { key: this.#key, padding: constants.RSA_PKCS1_PADDING },
            signature,
          );
        }
        default:
          // Includes "pycrypto-pkcs#1 pss": notary's verifier wants a PEM public key inside an
          // `rsa` key whose keyval must be DER for every other use, so it never succeeds.
          return false;
      }
    } catch {
      return false;
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function spkiBase64(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

// The DER SubjectPublicKeyInfo of every P-256 key with an uncompressed point starts with these 27
// bytes and is 91 bytes long: such bytes are canonical DER by construction.
const P256_SPKI_PREFIX = Buffer.from(
  '3059301306072a8648ce3d020106082a8648ce3d03010703420004',
  'hex',
);

/** Go's x509.ParsePKIXPublicKey is strict DER; accept only bytes that re-encode identically. */
function parseSpki(bytes: Buffer): KeyObject | undefined {
  try {
    // Fast path for the keys notary makes (P-256): importing the point as a JWK costs about a third
    // of a DER import plus the re-encoding check, and a cold repository parses several keys. The
    // JWK import still rejects a point that is not on the curve.
    if (bytes.length === 91 && bytes.subarray(0, 27).equals(P256_SPKI_PREFIX)) {
      return createPublicKey({
        key: {
          kty: 'EC',
          crv: 'P-256',
          x: bytes.subarray(27, 59).toString('base64url'),
          y: bytes.subarray(59).toString('base64url'),
        },
        format: 'jwk',
      });
    }
    const key = createPublicKey({ key: bytes, format: 'der', type: 'spki' });
    return key.export({ format: 'der', type: 'spki' }).equals(bytes) ? key : undefined;
  } catch {
    return undefined;
  }
}

function checkCurve(key: KeyObject, invalid: (problem: string) => TrustError): void {
  if (key.asymmetricKeyType !== 'ec') return;
  const curve = key.asymmetricKeyDetails?.namedCurve ?? '';
  if (!CURVES.has(curve)) throw invalid(`elliptic curve ${curve} is not supported`);
}

/**
 * Parses a key's certificate bundle (leaf first, then intermediates) the way notary's
 * LoadCertBundleFromPEM does: every block must be a parseable CERTIFICATE. Unlike Go we also refuse
 * text outside the blocks, which notary never writes, and bundles above `maxCertificates`.
 */
export function readCertificates(
  text: string,
  maxCertificates = Number.POSITIVE_INFINITY,
): {
  certificates: X509Certificate[];
  problem: string | undefined;
} {
  try {
    const { blocks, outside } = decodePem(text);
    if (blocks.length === 0) return { certificates: [], problem: 'no PEM certificate found' };
    // Counted before any certificate is parsed: a bundle's size is the sender's choice.
    if (blocks.length > maxCertificates) {
      return {
        certificates: [],
        problem: `bundles ${blocks.length} certificates, more than the ${maxCertificates} accepted`,
      };
    }
    if (outside !== '') return { certificates: [], problem: 'text outside the PEM blocks' };
    const certificates: X509Certificate[] = [];
    for (const block of blocks) {
      if (block.type !== 'CERTIFICATE' || block.headers.size > 0) {
        return { certificates: [], problem: `unexpected PEM block "${block.type}"` };
      }
      let certificate: X509Certificate;
      try {
        certificate = new X509Certificate(block.bytes);
      } catch {
        return { certificates: [], problem: 'a certificate does not parse as X.509' };
      }
      if (!certificate.raw.equals(block.bytes)) {
        return { certificates: [], problem: 'a certificate has bytes after its DER encoding' };
      }
      certificates.push(certificate);
    }
    return { certificates, problem: undefined };
  } catch (err) {
    if (err instanceof PemError) return { certificates: [], problem: err.message };
    throw err;
  }
}
