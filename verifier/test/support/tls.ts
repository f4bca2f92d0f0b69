/**
 * Throw-away PKI for the server tests, made by the `openssl` binary: a P-256 CA that issues server
 * certificates (SAN 127.0.0.1 and localhost) and client certificates (the apiserver's, for mTLS).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const openssl = (args: readonly string[]) => promisify(execFile)('openssl', args);

/** A PEM certificate and its unencrypted private key. */
export interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** A CA that issues leaf certificates. */
export interface TestAuthority extends Pem {
  issue(commonName: string, usage: 'server' | 'client'): Promise<Pem>;
}

async function withDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'verifier-tls-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Creates a CA valid for one day. */
export async function createAuthority(name = 'verifier test CA'): Promise<TestAuthority> {
  const ca = await withDir(async (dir) => {
    await openssl([
      'req',
      '-x509',
      ...EC,
      '-keyout',
      join(dir, 'k'),
      '-out',
      join(dir, 'c'),
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return {
      cert: await readFile(join(dir, 'c'), 'utf8'),
      key: await readFile(join(dir, 'k'), 'utf8'),
    };
  });
  const issue = (commonName: string, usage: 'server' | 'client'): Promise<Pem> =>
    withDir(async (dir) => {
      const file = (name: string): string => join(dir, name);
      await writeFile(file('ca.crt'), ca.cert);
      await writeFile(file('ca.key'), ca.key);
      await writeFile(
        file('ext'),
        [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature',
          `extendedKeyUsage=${usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
          ...(usage === 'server' ? ['subjectAltName=IP:127.0.0.1,DNS:localhost'] : []),
          '',
        ].join('\n'),
      );
      await openssl([
        'req',
        '-new',
        ...EC,
        '-keyout',
        file('k'),
        '-out',
        file('csr'),
        '-subj',
        `/CN=${commonName}`,
      ]);
      await openssl([
        'x509',
        '-req',
        '-in',
        file('csr'),
        '-CA',
        file('ca.crt'),
        '-CAkey',
        file('ca.key'),
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        file('ext'),
        '-out',
        file('c'),
      ]);
      return { cert: await readFile(file('c'), 'utf8'), key: await readFile(file('k'), 'utf8') };
    });
  return { ...ca, issue };
}
