/**
 * Builds X.509 certificates with one property changed at a time (CA flag, hash, CN, validity, key),
 * for negative tests of notary's root certificate checks. Test-only: production certificates come
 * from createRootCertificate.
 */
import { createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import * as der from '../../src/keys/der.js';
import { encodePem } from '../../src/keys/pem.js';

/** What a test may vary. */
export interface CertificateSpec {
  /** Signs the certificate; its public key is the subject key unless `subjectKey` is given. */
  readonly signingKey: KeyObject;
  readonly subjectKey?: KeyObject;
  readonly commonNames?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly ca?: boolean;
  readonly hash?: 'sha1' | 'sha256';
}

const SIGNATURE_OIDS = {
  ec: { sha1: '1.2.840.10045.4.1', sha256: '1.2.840.10045.4.3.2' },
  rsa: { sha1: '1.2.840.113549.1.1.5', sha256: '1.2.840.113549.1.1.11' },
} as const;

/** A PEM certificate shaped like notary's unless the spec says otherwise. */
export function buildCertificate(spec: CertificateSpec): string {
  const hash = spec.hash ?? 'sha256';
  const keyType = spec.signingKey.asymmetricKeyType === 'rsa' ? 'rsa' : 'ec';
  const algorithm =
    keyType === 'rsa'
      ? der.sequence(der.oid(SIGNATURE_OIDS.rsa[hash]), der.tlv(der.Tag.NULL, Buffer.alloc(0)))
      : der.sequence(der.oid(SIGNATURE_OIDS.ec[hash]));
  const name = der.sequence(
    ...(spec.commonNames ?? ['example.com/x']).map((cn) =>
      der.set(der.sequence(der.oid('2.5.4.3'), der.directoryString(cn))),
    ),
  );
  const notBefore = spec.notBefore ?? new Date(Date.UTC(2024, 0, 1));
  const notAfter = spec.notAfter ?? new Date(Date.UTC(2034, 0, 1));
  const basicConstraints = spec.ca ? der.sequence(der.boolean(true)) : der.sequence();
  const extensions = der.sequence(
    der.sequence(
      der.oid('2.5.29.15'),
      der.boolean(true),
      der.octetString(der.bitString(Buffer.from([0xa0]), 5)),
    ),
    der.sequence(der.oid('2.5.29.19'), der.boolean(true), der.octetString(basicConstraints)),
  );
  const subjectKey = spec.subjectKey ?? createPublicKey(spec.signingKey);
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(randomBytes(8)),
    algorithm,
    name,
    der.sequence(der.time(notBefore), der.time(notAfter)),
    name,
    (subjectKey.type === 'public' ? subjectKey : createPublicKey(subjectKey)).export({
      format: 'der',
      type: 'spki',
    }),
    der.explicit(3, extensions),
  );
  const signature = sign(hash, tbs, spec.signingKey);
  return encodePem('CERTIFICATE', der.sequence(tbs, algorithm, der.bitString(signature)));
}
