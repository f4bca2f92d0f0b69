/**
 * Root certificates as notary makes them (cryptoservice/certificate.go, tuf/utils/x509.go
 * NewCertificate) and the checks the Go client applies to them (trustpinning/certs.go
 * validRootLeafCerts, parseAllCerts; utils.ValidateCertificate).
 */
import { createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { TrustError } from '../errors.js';
import * as der from './der.js';
import type { PublicKey } from './public-key.js';
import { encodePem } from './pem.js';

// notary.Year is 365 days flat, and the client asks for 10 of them (client.rootCertKey).
const DAY_MS = 24 * 60 * 60 * 1000;
const YEAR_MS = 365 * DAY_MS;

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  codeSigning: '1.3.6.1.5.5.7.3.3',
} as const;

// Signature algorithms ValidateCertificate refuses (SHA-1), plus MD5/MD2, which Go 1.19 still parses
// but nobody may trust either.
const WEAK_SIGNATURES: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.1.1.5', 'SHA-1 with RSA'],
  ['1.2.840.10040.4.3', 'DSA with SHA-1'],
  ['1.2.840.10045.4.1', 'ECDSA with SHA-1'],
  ['1.2.840.113549.1.1.4', 'MD5 with RSA'],
  ['1.2.840.113549.1.1.2', 'MD2 with RSA'],
]);

/** Self-signed root certificate exactly as notary makes it: CN=GUN only, P-256 ecdsa-with-SHA256, CA:FALSE, keyUsage digitalSignature+keyEncipherment, EKU codeSigning, 10 years. */
export function createRootCertificate(
  gun: string,
  privateKey: KeyObject,
  options?: { notBefore?: Date; years?: number },
): Promise<string> {
  // The executor turns a synchronous throw into a rejection, as callers of a Promise API expect.
  return new Promise((resolve) => {
    resolve(rootCertificatePem(gun, privateKey, options));
  });
}

function rootCertificatePem(
  gun: string,
  privateKey: KeyObject,
  options?: { notBefore?: Date; years?: number },
): string {
  if (
    privateKey.type !== 'private' ||
    privateKey.asymmetricKeyType !== 'ec' ||
    privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
  ) {
    const problem = 'a root certificate needs a P-256 private key';
    throw new TrustError(
      'KEY_INVALID',
      { keyId: '', keyType: privateKey.asymmetricKeyType ?? '', problem },
      problem,
    );
  }
  const publicKey = createPublicKey(privateKey);
  const notBefore = options?.notBefore ?? new Date();
  const notAfter = new Date(notBefore.getTime() + (options?.years ?? 10) * YEAR_MS);
  const algorithm = der.sequence(der.oid(OID.ecdsaWithSha256));
  const name = der.sequence(
    der.set(der.sequence(der.oid(OID.commonName), der.directoryString(gun))),
  );
  // Extensions in Go's order: keyUsage (critical), extKeyUsage, basicConstraints (critical, CA:FALSE
  // as an empty SEQUENCE because DER omits the default).
  const extensions = der.sequence(
    extension(OID.keyUsage, true, der.bitString(Buffer.from([0xa0]), 5)),
    extension(OID.extKeyUsage, false, der.sequence(der.oid(OID.codeSigning))),
    extension(OID.basicConstraints, true, der.sequence()),
  );
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(serialNumber()),
    algorithm,
    name,
    der.sequence(der.time(notBefore), der.time(notAfter)),
    name,
    publicKey.export({ format: 'der', type: 'spki' }),
    der.explicit(3, extensions),
  );
  const signature = sign('sha256', tbs, privateKey);
  const certificate = der.sequence(tbs, algorithm, der.bitString(signature));
  return encodePem('CERTIFICATE', certificate);
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? der.sequence(der.oid(id), der.boolean(true), der.octetString(value))
    : der.sequence(der.oid(id), der.octetString(value));
}

// Go draws the serial uniformly below 2^128; a zero serial is not allowed by RFC 5280.
function serialNumber(): Buffer {
  for (;;) {
    const bytes = randomBytes(16);
    if (bytes.some((b) => b !== 0)) return bytes;
  }
}

// Parsed bundles per (immutable, shared) key: the checks run on every update of a repository.
const PARSED_BUNDLES = new WeakMap<PublicKey, ParsedCertificate[]>();

/** Notary's checks on a root/leaf cert: CN == GUN (or a `prefix*` CN), not a CA, not expired at `now`, not SHA-1 signed, key ≥ 256-bit ecdsa / 2048-bit rsa. Throws CERTIFICATE_INVALID with a clear `problem`. */
export function checkRootCertificate(key: PublicKey, gun: string, now: Date): void {
  const fail = (problem: string): TrustError =>
    new TrustError(
      'CERTIFICATE_INVALID',
      { gun, keyId: key.id, problem },
      `root certificate of key ${key.id} for ${gun}: ${problem}`,
    );
  if (key.type !== 'ecdsa-x509' && key.type !== 'rsa-x509') {
    throw fail(`a ${key.type} key carries no certificate`);
  }
  let parsed = PARSED_BUNDLES.get(key);
  if (!parsed) {
    try {
      parsed = key.certificateChain.map((c) => parseCertificate(c.raw));
    } catch (err) {
      if (err instanceof der.DerError) throw fail(`certificate does not parse: ${err.message}`);
      throw err;
    }
    PARSED_BUNDLES.set(key, parsed);
  }
  const [leaf] = parsed;
  if (!leaf) throw fail('no certificate found');
  // parseAllCerts: the bundle must start with the one and only non-CA certificate.
  if (leaf.isCa) throw fail('the certificate is a CA (basicConstraints CA:TRUE)');
  if (parsed.filter((c) => !c.isCa).length !== 1) {
    throw fail('the bundle holds more than one leaf certificate');
  }
  if (!matchCommonName(leaf.commonName, gun)) {
    throw fail(`the certificate's CN "${leaf.commonName}" does not match the GUN`);
  }
  // ValidateCertificate, in its order.
  if (leaf.notBefore > leaf.notAfter) throw fail('the validity window ends before it starts');
  const weak = WEAK_SIGNATURES.get(leaf.signatureAlgorithm);
  if (weak !== undefined) throw fail(`the certificate is signed with ${weak}`);
  // ECDSA keys below 256 bits (P-224) never get this far: PublicKey refuses the curve.
  const details = key.certificate?.publicKey.asymmetricKeyDetails;
  if (key.type === 'rsa-x509' && (details?.modulusLength ?? 0) < 2048) {
    throw fail(`RSA key of ${details?.modulusLength ?? 0} bits is shorter than 2048`);
  }
  // One day of leeway on notBefore for clock skew; none on notAfter.
  if (leaf.notBefore.getTime() > now.getTime() + DAY_MS) {
    throw fail(`the certificate is not valid until ${leaf.notBefore.toISOString()}`);
  }
  if (now > leaf.notAfter) throw fail(`the certificate expired at ${leaf.notAfter.toISOString()}`);
}

// trustpinning.MatchCNToGun: a CN ending in `*` is a prefix (all trailing `*` trimmed).
function matchCommonName(commonName: string, gun: string): boolean {
  if (commonName.endsWith('*')) return gun.startsWith(commonName.replace(/\*+$/, ''));
  return commonName === gun;
}

interface ParsedCertificate {
  readonly signatureAlgorithm: string;
  readonly commonName: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly isCa: boolean;
}

/** The fields Go's x509.Certificate exposes that Node's X509Certificate does not. */
function parseCertificate(bytes: Buffer): ParsedCertificate {
  const [tbsElement, outerAlgorithm] = der.children(
    der.expectTag(der.readElement(bytes), der.Tag.SEQUENCE, 'certificate'),
  );
  const tbs = der.children(der.expectTag(tbsElement, der.Tag.SEQUENCE, 'tbsCertificate'));
  let index = tbs[0]?.tag === 0xa0 ? 1 : 0; // optional [0] version
  index++; // serialNumber
  const innerAlgorithm = tbs[index++];
  index++; // issuer
  const validity = der.children(der.expectTag(tbs[index++], der.Tag.SEQUENCE, 'validity'));
  const subject = der.expectTag(tbs[index++], der.Tag.SEQUENCE, 'subject');
  index++; // subjectPublicKeyInfo
  const algorithm = algorithmOid(outerAlgorithm);
  if (algorithm !== algorithmOid(innerAlgorithm)) {
    throw new der.DerError('the two signature algorithm fields disagree');
  }
  const [notBefore, notAfter] = validity;
  if (!notBefore || !notAfter) throw new der.DerError('validity is incomplete');
  const extensions = tbs.slice(index).find((e) => e.tag === 0xa3);
  return {
    signatureAlgorithm: algorithm,
    commonName: commonNameOf(subject),
    notBefore: der.readTime(notBefore),
    notAfter: der.readTime(notAfter),
    isCa: extensions ? basicConstraintsCa(extensions) : false,
  };
}

function algorithmOid(element: der.DerElement | undefined): string {
  const [id] = der.children(der.expectTag(element, der.Tag.SEQUENCE, 'algorithm identifier'));
  return der.readOid(der.expectTag(id, der.Tag.OID, 'algorithm'));
}

// pkix.Name.FillFromRDNSequence: every CN attribute overwrites the previous one, so the last wins.
function commonNameOf(name: der.DerElement): string {
  let commonName = '';
  for (const rdn of der.children(name)) {
    for (const attribute of der.children(der.expectTag(rdn, der.Tag.SET, 'RDN'))) {
      const [type, value] = der.children(der.expectTag(attribute, der.Tag.SEQUENCE, 'attribute'));
      if (der.readOid(der.expectTag(type, der.Tag.OID, 'attribute type')) === OID.commonName) {
        if (!value) throw new der.DerError('common name has no value');
        commonName = der.readString(value);
      }
    }
  }
  return commonName;
}

function basicConstraintsCa(wrapper: der.DerElement): boolean {
  const [list] = der.children(wrapper);
  for (const ext of der.children(der.expectTag(list, der.Tag.SEQUENCE, 'extensions'))) {
    const parts = der.children(der.expectTag(ext, der.Tag.SEQUENCE, 'extension'));
    if (parts[0] && der.readOid(parts[0]) === OID.basicConstraints) {
      const value = der.expectTag(parts.at(-1), der.Tag.OCTET_STRING, 'extension value');
      const [first] = der.children(
        der.expectTag(der.readElement(value.content), der.Tag.SEQUENCE, 'basicConstraints'),
      );
      return first?.tag === der.Tag.BOOLEAN && first.content[0] !== 0;
    }
  }
  return false;
}
