/**
 * Throw-away key material for the stack, written to files because notary-server, notary-signer,
 * docker-registry and the notary CLI take file paths: one CA and the TLS leaves the stack needs
 * (from `@kpack-trust/common/testing`), the token issuer's signing certificate, and delegation keys
 * shaped like the ones notary makes. P-256 throughout.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRootCertificate, generateSigningKey } from '@kpack-trust/common';
import { createTestCa, type TestCertificate } from '@kpack-trust/common/testing';

/** A certificate file and the unencrypted PKCS#8 private key it belongs to (both PEM). */
export interface CertificatePair {
  readonly certFile: string;
  readonly keyFile: string;
}

/** Everything the stack's TLS and token auth need, all signed by one CA. */
export interface StackCertificates {
  /** Directory holding every file below. */
  readonly dir: string;
  /** The CA certificate (PEM): the `--tlscacert` for clients and the token `rootcertbundle`. */
  readonly caFile: string;
  /** The CA's private key, kept so tests can mint more leaves. */
  readonly caKeyFile: string;
  /** The CA certificate's PEM text. */
  readonly caPem: string;
  /** notary-server's HTTPS certificate (also the token issuer's), SAN `IP:127.0.0.1,DNS:localhost`. */
  readonly server: CertificatePair;
  /** notary-signer's gRPC certificate (serverAuth; the server dials it as `127.0.0.1`). */
  readonly signer: CertificatePair;
  /** The client certificate notary-server presents to notary-signer (mutual TLS). */
  readonly signerClient: CertificatePair;
  /** Signs the token issuer's JWTs; its DER goes into each token's `x5c` header. */
  readonly tokenSigner: CertificatePair;
}

/** A delegation (or other notary signing) key with its self-signed certificate. */
export interface DelegationKey extends CertificatePair {
  /** The certificate's CN — `docker trust signer add` uses the signer's name. */
  readonly name: string;
}

/** notary warns about delegation certificates that expire within months, so these get ten years. */
const DELEGATION_YEARS = 10;

/** Writes `base.crt` and `base.key` (owner-only, like any private key file) in `dir`. */
async function writePair(
  dir: string,
  base: string,
  pem: TestCertificate,
): Promise<CertificatePair> {
  const certFile = join(dir, `${base}.crt`);
  const keyFile = join(dir, `${base}.key`);
  await Promise.all([
    writeFile(certFile, pem.certPem),
    writeFile(keyFile, pem.keyPem, { mode: 0o600 }),
  ]);
  return { certFile, keyFile };
}

/** Makes the CA and every leaf the stack needs in `dir` (created if absent). */
export async function createCertificates(dir: string): Promise<StackCertificates> {
  await mkdir(dir, { recursive: true });
  const ca = createTestCa({ commonName: 'kpack-trust throw-away test CA' });
  const [authority, server, signer, signerClient, tokenSigner] = await Promise.all([
    writePair(dir, 'ca', ca),
    writePair(dir, 'notary-server', ca.issue({ commonName: 'notary-server' })),
    writePair(
      dir,
      'notary-signer',
      ca.issue({
        commonName: 'notary-signer',
        subjectAltNames: ['IP:127.0.0.1', 'DNS:localhost', 'DNS:notary-signer'],
      }),
    ),
    // Go's notary-signer requires clientAuth of the certificate notary-server presents.
    writePair(
      dir,
      'notary-server-client',
      ca.issue({ commonName: 'notary-server', usage: 'client' }),
    ),
    // No extendedKeyUsage: the registry verifies the x5c chain with Go's default (serverAuth),
    // which a certificate without the extension satisfies.
    writePair(
      dir,
      'token-signer',
      ca.issue({ commonName: 'kpack-trust test token issuer', usage: 'none' }),
    ),
  ]);
  return {
    dir,
    caFile: authority.certFile,
    caKeyFile: authority.keyFile,
    caPem: ca.certPem,
    server,
    signer,
    signerClient,
    tokenSigner,
  };
}

/**
 * A P-256 key and a self-signed certificate with CN `name`, as `notary delegation add` and
 * `notary key import` take them; the certificate is the one notary itself would make (CA:FALSE,
 * codeSigning). The file names start with `name`, so keep it path-safe.
 */
export async function createDelegationKey(dir: string, name: string): Promise<DelegationKey> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new Error(`delegation key name ${JSON.stringify(name)} must be a plain file name`);
  }
  await mkdir(dir, { recursive: true });
  const key = generateSigningKey('ecdsa');
  const certPem = await createRootCertificate(name, key, { years: DELEGATION_YEARS });
  const keyPem = key.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { name, ...(await writePair(dir, name, { certPem, keyPem })) };
}
