/**
 * Throw-away certificate authorities for tests, made with the `openssl` binary: a P-256 CA and leaf
 * certificates it issues for servers (SAN `IP:127.0.0.1`, `DNS:localhost` by default) and clients.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A PEM certificate and its unencrypted PKCS#8 private key. */
export interface TestCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/** What a leaf certificate is for. */
export interface LeafOptions {
  readonly commonName: string;
  /** subjectAltName entries, e.g. `IP:127.0.0.1`, `DNS:localhost`; default those two. */
  readonly subjectAltNames?: readonly string[];
  /** Extended key usage; default `server`. */
  readonly usage?: 'server' | 'client' | 'both';
}

/** A test CA that issues leaf certificates. */
export interface TestCa extends TestCertificate {
  issue(options: LeafOptions): Promise<TestCertificate>;
}

/** Creates a self-signed P-256 CA valid for two days. */
export async function createTestCa(commonName = 'kpack-trust test CA'): Promise<TestCa> {
  const ca = await inTempDir(async (dir) => {
    const key = join(dir, 'ca.key');
    const cert = join(dir, 'ca.crt');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${commonName}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return { certPem: await readFile(cert, 'utf8'), keyPem: await readFile(key, 'utf8') };
  });
  return {
    ...ca,
    issue: (options) => issue(ca, options),
  };
}

async function issue(ca: TestCertificate, options: LeafOptions): Promise<TestCertificate> {
  const sans = options.subjectAltNames ?? ['IP:127.0.0.1', 'DNS:localhost'];
  const usage = options.usage ?? 'server';
  const eku =
    usage === 'server' ? 'serverAuth' : usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth';
  return inTempDir(async (dir) => {
    const caCert = join(dir, 'ca.crt');
    const caKey = join(dir, 'ca.key');
    const key = join(dir, 'leaf.key');
    const csr = join(dir, 'leaf.csr');
    const cert = join(dir, 'leaf.crt');
    const ext = join(dir, 'leaf.ext');
    await writeFile(caCert, ca.certPem);
    await writeFile(caKey, ca.keyPem);
    await writeFile(
      ext,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${eku}`,
        ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
        '',
      ].join('\n'),
    );
    await run('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      csr,
      '-subj',
      `/CN=${options.commonName}`,
    ]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-days',
      '2',
      '-extfile',
      ext,
      '-out',
      cert,
    ]);
    return { certPem: await readFile(cert, 'utf8'), keyPem: await readFile(key, 'utf8') };
  });
}

async function inTempDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'kpack-trust-tls-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
