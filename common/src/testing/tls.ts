/**
 * Throw-away TLS certificate authorities for tests and benchmarks, built in memory with node:crypto
 * and the project's DER writer (no openssl, no files): a P-256 CA (basicConstraints CA:TRUE,
 * keyUsage keyCertSign+cRLSign) and the leaves it issues for servers and mutual-TLS clients.
 * Go's crypto/tls is the strictest consumer (notary-server, notary-signer, docker-registry): it
 * checks extendedKeyUsage — serverAuth for a server, clientAuth for a client — and verifies a
 * token's x5c chain as if for serverAuth, which a leaf without any extendedKeyUsage also passes.
 */
import { createHash, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import * as der from '../keys/der.js';
import { encodePem } from '../keys/pem.js';
import { generateSigningKey } from '../keys/signer.js';

/** A PEM certificate and its unencrypted PKCS#8 P-256 private key (PEM), as TLS servers take them. */
export interface TestCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/** When a certificate is valid; both ends default so that a fresh certificate just works. */
export interface CertificateValidity {
  /** Default: one hour ago, so a peer whose clock runs a little behind still accepts it. */
  readonly notBefore?: Date;
  /** Default: 30 days after now — longer than any test run. */
  readonly notAfter?: Date;
}

/** The extendedKeyUsage of a leaf; `none` omits the extension (any usage, e.g. a JWT signer). */
export type LeafUsage = 'server' | 'client' | 'both' | 'none';

/** What a leaf certificate is for. */
export interface LeafOptions extends CertificateValidity {
  readonly commonName: string;
  /** The subject's O, which Kubernetes reads as the user's group (`system:masters`); none by default. */
  readonly organization?: string;
  /**
   * subjectAltName entries as `IP:a.b.c.d` or `DNS:name`. Default `IP:127.0.0.1`, `DNS:localhost`
   * for server usage, none for `client` and `none`; an empty list omits the extension.
   */
  readonly subjectAltNames?: readonly string[];
  /** Default `server`. */
  readonly usage?: LeafUsage;
}

/** What the CA certificate says about itself. */
export interface CaOptions extends CertificateValidity {
  /** Default `kpack-trust test CA`. */
  readonly commonName?: string;
}

/** A test CA: its own certificate and key, and a way to issue leaves under it. */
export interface TestCa extends TestCertificate {
  /** Issues a leaf with a fresh P-256 key, signed by this CA. */
  issue(options: LeafOptions): TestCertificate;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const CLOCK_SKEW_MS = 60 * 60 * 1000;
const DEFAULT_DAYS = 30;
const LOOPBACK_NAMES = ['IP:127.0.0.1', 'DNS:localhost'] as const;

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

// RFC 5280 §4.2.1.3 bit numbers.
const KeyUsageBit = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

// Implicit [n] tags of the GeneralName choices used here (RFC 5280 §4.2.1.6).
const GENERAL_NAME_DNS = 0x82;
const GENERAL_NAME_IP = 0x87;
const GENERAL_NAME_KEY_ID = 0x80;

/** Creates a self-signed P-256 CA that issues leaves. */
export function createTestCa(options: CaOptions = {}): TestCa {
  const key = generateSigningKey('ecdsa');
  const name = distinguishedName(options.commonName ?? 'kpack-trust test CA');
  const keyId = keyIdentifier(key);
  const certPem = signCertificate({
    subject: name,
    issuer: name,
    subjectKey: key,
    issuerKey: key,
    validity: options,
    extensions: [
      extension(OID.basicConstraints, true, der.sequence(der.boolean(true))),
      extension(OID.keyUsage, true, keyUsage(KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign)),
      extension(OID.subjectKeyIdentifier, false, der.octetString(keyId)),
    ],
  });
  return {
    certPem,
    keyPem: privateKeyPem(key),
    issue: (leaf) => issueLeaf({ name, key, keyId }, leaf),
  };
}

function issueLeaf(
  ca: { name: Buffer; key: KeyObject; keyId: Buffer },
  options: LeafOptions,
): TestCertificate {
  const usage = options.usage ?? 'server';
  const altNames =
    options.subjectAltNames ?? (usage === 'server' || usage === 'both' ? LOOPBACK_NAMES : []);
  const purposes = {
    server: [OID.serverAuth],
    client: [OID.clientAuth],
    both: [OID.serverAuth, OID.clientAuth],
    none: [],
  }[usage];
  const key = generateSigningKey('ecdsa');
  const certPem = signCertificate({
    subject: distinguishedName(options.commonName, options.organization),
    issuer: ca.name,
    subjectKey: key,
    issuerKey: ca.key,
    validity: options,
    extensions: [
      // CA:FALSE is the DEFAULT, which DER leaves out: an empty SEQUENCE.
      extension(OID.basicConstraints, true, der.sequence()),
      extension(OID.keyUsage, true, keyUsage(KeyUsageBit.digitalSignature)),
      ...(purposes.length > 0
        ? [extension(OID.extKeyUsage, false, der.sequence(...purposes.map((p) => der.oid(p))))]
        : []),
      ...(altNames.length > 0
        ? [extension(OID.subjectAltName, false, der.sequence(...altNames.map(generalName)))]
        : []),
      extension(
        OID.authorityKeyIdentifier,
        false,
        der.sequence(der.tlv(GENERAL_NAME_KEY_ID, ca.keyId)),
      ),
    ],
  });
  return { certPem, keyPem: privateKeyPem(key) };
}

/** An X.509 v3 certificate (RFC 5280 §4.1) signed ecdsa-with-SHA256 by `issuerKey`, as PEM. */
function signCertificate(fields: {
  subject: Buffer;
  issuer: Buffer;
  subjectKey: KeyObject;
  issuerKey: KeyObject;
  validity: CertificateValidity;
  extensions: Buffer[];
}): string {
  const now = Date.now();
  const notBefore = fields.validity.notBefore ?? new Date(now - CLOCK_SKEW_MS);
  const notAfter = fields.validity.notAfter ?? new Date(now + DEFAULT_DAYS * DAY_MS);
  const algorithm = der.sequence(der.oid(OID.ecdsaWithSha256));
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(serialNumber()),
    algorithm,
    fields.issuer,
    der.sequence(der.time(notBefore), der.time(notAfter)),
    fields.subject,
    createPublicKey(fields.subjectKey).export({ format: 'der', type: 'spki' }),
    der.explicit(3, der.sequence(...fields.extensions)),
  );
  const signature = sign('sha256', tbs, fields.issuerKey);
  return encodePem('CERTIFICATE', der.sequence(tbs, algorithm, der.bitString(signature)));
}

function distinguishedName(commonName: string, organization?: string): Buffer {
  // RFC 5280 order, most significant first: O before CN, as openssl's -subj /O=…/CN=… writes it.
  return der.sequence(
    ...(organization === undefined
      ? []
      : [der.set(der.sequence(der.oid(OID.organization), der.directoryString(organization)))]),
    der.set(der.sequence(der.oid(OID.commonName), der.directoryString(commonName))),
  );
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return der.sequence(
    der.oid(id),
    ...(critical ? [der.boolean(true)] : []),
    der.octetString(value),
  );
}

// A named BIT STRING: DER drops trailing zero bits, and says how many it dropped.
function keyUsage(...bits: number[]): Buffer {
  let value = 0;
  for (const bit of bits) value |= 0x80 >> bit;
  const highest = Math.max(...bits);
  return der.bitString(Buffer.from([value]), 7 - highest);
}

// RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bits.
function keyIdentifier(key: KeyObject): Buffer {
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  const [, publicKeyBits] = der.children(der.readElement(spki));
  if (!publicKeyBits) throw new Error('SubjectPublicKeyInfo has no key');
  return createHash('sha1').update(publicKeyBits.content.subarray(1)).digest();
}

function generalName(entry: string): Buffer {
  const separator = entry.indexOf(':');
  const kind = entry.slice(0, separator);
  const value = entry.slice(separator + 1);
  if (kind === 'DNS' && /^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(value)) {
    return der.tlv(GENERAL_NAME_DNS, Buffer.from(value, 'ascii'));
  }
  const octets = value.split('.').map(Number);
  if (
    kind === 'IP' &&
    /^\d{1,3}(\.\d{1,3}){3}$/.test(value) &&
    octets.every((n) => n >= 0 && n <= 255)
  ) {
    return der.tlv(GENERAL_NAME_IP, Buffer.from(octets));
  }
  throw new Error(`subjectAltName ${JSON.stringify(entry)} is not IP:<IPv4> or DNS:<name>`);
}

// Positive and non-zero, at most 16 bytes (RFC 5280 allows 20), drawn afresh for every certificate.
function serialNumber(): Buffer {
  for (;;) {
    const bytes = randomBytes(16);
    if (bytes.some((b) => b !== 0)) return bytes;
  }
}

function privateKeyPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}
