/**
 * Throw-away key material made with the real `openssl` (P-256 throughout): one CA, the TLS leaves
 * the stack needs, the token issuer's signing certificate, and delegation keys for notary.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';

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

/** TLS leaves only live as long as a test run. */
const TLS_DAYS = 30;
/** notary warns about delegation certificates that expire within months, so these get ten years. */
const DELEGATION_DAYS = 3650;

/** Runs openssl with arguments; rejects with its stderr. */
function openssl(args: readonly string[], cwd: string): Promise<void> {
  const binary = requireBinary('openssl');
  return new Promise((resolve, reject) => {
    execFile(binary, args, { cwd }, (error, _stdout, stderr) => {
      if (error === null) resolve();
      else reject(new Error(`openssl ${args.join(' ')} failed: ${stderr || error.message}`));
    });
  });
}

/** A random positive serial, so parallel signings never share a serial file. */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

/** A fresh P-256 key (PKCS#8, unencrypted) and a CSR for `subject`. */
async function keyAndRequest(dir: string, base: string, subject: string): Promise<void> {
  await openssl(
    [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${base}.key`,
      '-subj',
      subject,
      '-out',
      `${base}.csr`,
    ],
    dir,
  );
}

/** Issues a leaf signed by the CA in `dir` with the given X.509v3 extensions. */
async function issueLeaf(
  dir: string,
  base: string,
  commonName: string,
  extensions: readonly string[],
): Promise<CertificatePair> {
  await keyAndRequest(dir, base, `/CN=${commonName}`);
  await writeFile(join(dir, `${base}.ext`), `${extensions.join('\n')}\n`);
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${base}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-set_serial',
      serial(),
      '-days',
      String(TLS_DAYS),
      '-sha256',
      '-extfile',
      `${base}.ext`,
      '-out',
      `${base}.crt`,
    ],
    dir,
  );
  return { certFile: join(dir, `${base}.crt`), keyFile: join(dir, `${base}.key`) };
}

/** Makes the CA and every leaf the stack needs in `dir` (created if absent). */
export async function createCertificates(dir: string): Promise<StackCertificates> {
  await mkdir(dir, { recursive: true });
  await keyAndRequest(dir, 'ca', '/CN=kpack-trust throw-away test CA');
  await writeFile(
    join(dir, 'ca.ext'),
    'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n',
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      'ca.csr',
      '-signkey',
      'ca.key',
      '-set_serial',
      serial(),
      '-days',
      String(TLS_DAYS),
      '-sha256',
      '-extfile',
      'ca.ext',
      '-out',
      'ca.crt',
    ],
    dir,
  );

  const loopbackSan = 'subjectAltName=IP:127.0.0.1,DNS:localhost';
  const leaf = 'basicConstraints=critical,CA:FALSE';
  const signing = 'keyUsage=critical,digitalSignature';
  const [server, signer, signerClient, tokenSigner] = await Promise.all([
    issueLeaf(dir, 'notary-server', 'notary-server', [
      leaf,
      signing,
      'extendedKeyUsage=serverAuth',
      loopbackSan,
    ]),
    issueLeaf(dir, 'notary-signer', 'notary-signer', [
      leaf,
      signing,
      'extendedKeyUsage=serverAuth',
      `${loopbackSan},DNS:notary-signer`,
    ]),
    issueLeaf(dir, 'notary-server-client', 'notary-server', [
      leaf,
      signing,
      'extendedKeyUsage=clientAuth',
    ]),
    issueLeaf(dir, 'token-signer', 'kpack-trust test token issuer', [leaf, signing]),
  ]);
  const caFile = join(dir, 'ca.crt');
  return {
    dir,
    caFile,
    caKeyFile: join(dir, 'ca.key'),
    caPem: await readFile(caFile, 'utf8'),
    server,
    signer,
    signerClient,
    tokenSigner,
  };
}

/**
 * A P-256 key and a self-signed certificate with CN `name`, as `notary delegation add` and
 * `notary key import` take them. The file names start with `name`, so keep it path-safe.
 */
export async function createDelegationKey(dir: string, name: string): Promise<DelegationKey> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new Error(`delegation key name ${JSON.stringify(name)} must be a plain file name`);
  }
  await mkdir(dir, { recursive: true });
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-subj',
      `/CN=${name}`,
      '-days',
      String(DELEGATION_DAYS),
      '-sha256',
      // Shaped like the certificates notary makes itself: a leaf for code signing.
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'keyUsage=critical,digitalSignature',
      '-addext',
      'extendedKeyUsage=codeSigning',
      '-out',
      certFile,
    ],
    dir,
  );
  return { name, keyFile, certFile };
}
