/**
 * The server tests' view of the shared in-memory test CA (`@kpack-trust/common/testing`): a P-256
 * CA issuing server certificates (SAN 127.0.0.1 and localhost) and client certificates (the
 * apiserver's, for mTLS), as `{ cert, key }` PEM pairs the way https.createServer takes them.
 */
import { createTestCa, type CertificateValidity } from '@kpack-trust/common/testing';

/** A PEM certificate and its unencrypted private key. */
export interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** A CA that issues leaf certificates. */
export interface TestAuthority extends Pem {
  /** A leaf; `validity` defaults to the shared CA's (valid from an hour ago for 30 days). */
  issue(
    commonName: string,
    usage: 'server' | 'client',
    validity?: CertificateValidity,
  ): Promise<Pem>;
}

/** Creates a CA valid for one day. */
export function createAuthority(name = 'verifier test CA'): Promise<TestAuthority> {
  const ca = createTestCa({
    commonName: name,
    notAfter: new Date(Date.now() + 24 * 60 * 60 * 1000),
  });
  return Promise.resolve({
    cert: ca.certPem,
    key: ca.keyPem,
    issue: (commonName, usage, validity) => {
      const leaf = ca.issue({ commonName, usage, ...validity });
      return Promise.resolve({ cert: leaf.certPem, key: leaf.keyPem });
    },
  });
}
