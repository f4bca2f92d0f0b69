/**
 * Our key files, key ids, signatures and root certificates against the real notary 0.7.0 CLI and
 * server: what we write, notary must use; what notary writes, we must read to the same ids.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  PublicKey,
  canonicalBytes,
  checkRootCertificate,
  createRootCertificate,
  decodePrivateKeyPem,
  encodePrivateKeyPem,
  generateSigningKey,
  type PublicKeyJson,
} from '@kpack-trust/common';

const PASSPHRASES = {
  NOTARY_ROOT_PASSPHRASE: 'root-Passphrase-1',
  NOTARY_TARGETS_PASSPHRASE: 'targets-Passphrase-2',
  NOTARY_SNAPSHOT_PASSPHRASE: 'snapshot-Passphrase-3',
  NOTARY_DELEGATION_PASSPHRASE: 'delegation-Passphrase-4',
};
// Short: `notary key list` elides the start of GUNs longer than its column.
const GUN = 'example.com/kpack';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  command: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
          const pkg = command === 'openssl' ? 'openssl' : 'notary';
          reject(new Error(`${command} is not installed: apt-get install -y ${pkg}`));
          return;
        }
        resolve({
          code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
          stdout,
          stderr,
        });
      },
    );
  });
}

function notary(
  trustDir: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<Run> {
  return run('notary', ['-d', trustDir, ...args], { ...PASSPHRASES, ...env });
}

async function succeeds(result: Promise<Run>): Promise<Run> {
  const r = await result;
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The `notary key list` row for a key id, split into columns (ROLE [GUN] ID LOCATION). */
async function keyListRow(trustDir: string, id: string): Promise<string[] | undefined> {
  const { stdout } = await succeeds(notary(trustDir, ['key', 'list']));
  const line = stdout.split('\n').find((l) => l.includes(id));
  return line?.trim().split(/\s+/);
}

let workDir = '';

before(async () => {
  const version = await run('notary', ['version']);
  assert.equal(version.code, 0, 'notary CLI broken: apt-get install -y notary');
  workDir = await mkdtemp(join(tmpdir(), 'kpack-keys-interop-'));
});

after(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = join(workDir, name);
  await mkdir(join(dir, 'private'), { recursive: true });
  return dir;
}

describe('private key files and the notary CLI', () => {
  for (const type of ['ecdsa', 'ed25519', 'rsa'] as const) {
    it(`notary lists and decrypts a ${type} key file we wrote (key passwd), and we read its rewrite`, async () => {
      const dir = await freshDir(`ours-${type}`);
      const key = generateSigningKey(type);
      const id = PublicKey.fromKeyObject(key).canonicalId;
      const file = join(dir, 'private', `${id}.key`);
      const pem = encodePrivateKeyPem(key, PASSPHRASES.NOTARY_TARGETS_PASSPHRASE, {
        role: 'targets',
        gun: GUN,
      });
      await writeFile(file, pem, { mode: 0o600 });
      assert.deepEqual((await keyListRow(dir, id))?.slice(0, 3), ['targets', GUN, id]);
      // passwd decrypts with the old passphrase and re-encrypts with a fresh salt and IV.
      await succeeds(notary(dir, ['key', 'passwd', id]));
      const rewritten = await readFile(file, 'utf8');
      assert.notEqual(rewritten, pem);
      const decoded = decodePrivateKeyPem(rewritten, PASSPHRASES.NOTARY_TARGETS_PASSPHRASE, file);
      assert.equal(PublicKey.fromKeyObject(decoded.privateKey).id, id);
      assert.equal(decoded.role, 'targets');
      assert.equal(decoded.gun, GUN);
    });
  }

  it('control: notary cannot decrypt Node’s default PBES2 export (HMAC-SHA256) or a wrong passphrase', async () => {
    const dir = await freshDir('controls');
    const nodeKey = generateSigningKey();
    const nodeId = PublicKey.fromKeyObject(nodeKey).id;
    const exported = nodeKey
      .export({
        format: 'pem',
        type: 'pkcs8',
        cipher: 'aes-256-cbc',
        passphrase: PASSPHRASES.NOTARY_TARGETS_PASSPHRASE,
      })
      .toString()
      .replace('-----\n', `-----\ngun: ${GUN}\nrole: targets\n\n`);
    await writeFile(join(dir, 'private', `${nodeId}.key`), exported);
    assert.notEqual((await notary(dir, ['key', 'passwd', nodeId])).code, 0);

    const ours = generateSigningKey();
    const oursId = PublicKey.fromKeyObject(ours).id;
    const pem = encodePrivateKeyPem(ours, 'some-other-passphrase', { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'private', `${oursId}.key`), pem);
    assert.notEqual((await notary(dir, ['key', 'passwd', oursId])).code, 0);
  });

  it('notary key import takes our encrypted file once a path header names it', async () => {
    // 0.7.0 cannot compute the id of an encrypted key, so import needs `path:` (as key export writes).
    const dir = await freshDir('import');
    const key = generateSigningKey();
    const id = PublicKey.fromKeyObject(key).id;
    const pem = encodePrivateKeyPem(key, PASSPHRASES.NOTARY_TARGETS_PASSPHRASE, {
      role: 'targets',
      gun: GUN,
    });
    const file = join(workDir, 'import.pem');
    await writeFile(file, pem.replace('\nrole: targets\n', `\npath: ${id}\nrole: targets\n`));
    await succeeds(notary(dir, ['key', 'import', file]));
    assert.deepEqual((await keyListRow(dir, id))?.slice(0, 3), ['targets', GUN, id]);
    await succeeds(notary(dir, ['key', 'passwd', id]));
  });

  for (const role of ['targets', 'root'] as const) {
    it(`we read the ${role} key notary key generate writes, to the id notary lists`, async () => {
      const dir = await freshDir(`generated-${role}`);
      const { stdout } = await succeeds(notary(dir, ['key', 'generate', 'ecdsa', '--role', role]));
      const id = /keyID: ([0-9a-f]{64})/.exec(stdout)?.[1];
      assert.ok(id, stdout);
      assert.deepEqual(await readdir(join(dir, 'private')), [`${id}.key`]);
      assert.deepEqual((await keyListRow(dir, id))?.slice(0, 2), [role, id]);
      const passphrase =
        role === 'root'
          ? PASSPHRASES.NOTARY_ROOT_PASSPHRASE
          : PASSPHRASES.NOTARY_TARGETS_PASSPHRASE;
      const file = join(dir, 'private', `${id}.key`);
      const decoded = decodePrivateKeyPem(await readFile(file, 'utf8'), passphrase, file);
      assert.equal(PublicKey.fromKeyObject(decoded.privateKey).id, id);
      assert.equal(decoded.role, role);
    });
  }
});

interface NotaryServer {
  url: string;
  ca: string;
  process: ChildProcess;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  assert.ok(address && typeof address === 'object');
  return address.port;
}

async function startNotaryServer(dir: string): Promise<NotaryServer> {
  const ca = join(dir, 'ca.crt');
  const openssl = async (args: string[]): Promise<void> => {
    await succeeds(run('openssl', args));
  };
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    join(dir, 'ca.key'),
    '-out',
    ca,
    '-days',
    '2',
    '-subj',
    '/CN=kpack-trust test CA',
  ]);
  await openssl([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    join(dir, 'server.key'),
    '-out',
    join(dir, 'server.csr'),
    '-subj',
    '/CN=localhost',
  ]);
  await writeFile(
    join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    join(dir, 'server.csr'),
    '-CA',
    ca,
    '-CAkey',
    join(dir, 'ca.key'),
    '-CAcreateserial',
    '-out',
    join(dir, 'server.crt'),
    '-days',
    '2',
    '-extfile',
    join(dir, 'ext.cnf'),
  ]);
  const port = await freePort();
  const config = {
    server: {
      http_addr: `127.0.0.1:${port}`,
      tls_cert_file: join(dir, 'server.crt'),
      tls_key_file: join(dir, 'server.key'),
    },
    trust_service: { type: 'local' },
    storage: { backend: 'memory' },
    logging: { level: 'error' },
  };
  await writeFile(join(dir, 'server.json'), JSON.stringify(config));
  const child = spawn('notary-server', ['-config', join(dir, 'server.json')], { stdio: 'ignore' });
  const caPem = await readFile(ca, 'utf8');
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (err) => {
      reject(new Error(`notary-server did not start (apt-get install -y notary): ${err.message}`));
    });
    child.once('exit', (code) => {
      reject(new Error(`notary-server exited with ${code}`));
    });
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const healthy = await Promise.race([
      exited,
      new Promise<boolean>((resolve) => {
        get({ host: '127.0.0.1', port, path: '/_notary_server/health', ca: caPem }, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        }).on('error', () => {
          resolve(false);
        });
      }),
    ]);
    if (healthy) break;
    if (Date.now() > deadline) throw new Error('notary-server did not become healthy');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { url: `https://127.0.0.1:${port}`, ca, process: child };
}

interface SignedFile {
  signed: { keys: Record<string, PublicKeyJson>; roles: Record<string, { keyids: string[] }> };
  signatures: { keyid: string; method: string; sig: string }[];
}

describe('root keys and certificates with notary init against notary-server', () => {
  let server: NotaryServer | undefined;
  const client = (dir: string, args: string[]): Promise<Run> =>
    notary(dir, ['-s', server?.url ?? '', '--tlscacert', server?.ca ?? '', ...args]);
  const metadata = async (dir: string, gun: string, role: string): Promise<SignedFile> =>
    JSON.parse(
      await readFile(join(dir, 'tuf', gun, 'metadata', `${role}.json`), 'utf8'),
    ) as SignedFile;

  before(async () => {
    const dir = join(workDir, 'server');
    await mkdir(dir, { recursive: true });
    server = await startNotaryServer(dir);
  });

  after(() => {
    server?.process.kill();
  });

  it('notary init --rootkey/--rootcert publishes our key and certificate; a fresh client trusts it', async () => {
    const gun = `${GUN}/ours`;
    const rootKey = generateSigningKey();
    const certPem = await createRootCertificate(gun, rootKey);
    const certKey = PublicKey.fromCertificatePem(certPem);
    const keyFile = join(workDir, 'our-root.key');
    const certFile = join(workDir, 'our-root.crt');
    await writeFile(
      keyFile,
      encodePrivateKeyPem(rootKey, PASSPHRASES.NOTARY_ROOT_PASSPHRASE, { role: 'root' }),
    );
    await writeFile(certFile, certPem);
    const dir = await freshDir('init-ours');
    const init = await succeeds(
      client(dir, ['init', gun, '--rootkey', keyFile, '--rootcert', certFile, '-p']),
    );
    assert.match(init.stdout, new RegExp(`Root key found, using: ${certKey.canonicalId}`));

    const root = await metadata(dir, gun, 'root');
    assert.deepEqual(root.signed.roles['root']?.keyids, [certKey.id]);
    assert.deepEqual(root.signed.keys[certKey.id], certKey.toJson());
    assert.deepEqual((await keyListRow(dir, certKey.canonicalId))?.slice(0, 2), [
      'root',
      certKey.canonicalId,
    ]);
    const [signature] = root.signatures;
    assert.ok(signature);
    assert.equal(signature.keyid, certKey.id);
    assert.equal(
      certKey.verify(
        signature.method,
        canonicalBytes(root.signed),
        Buffer.from(signature.sig, 'base64'),
      ),
      true,
    );
    // A second client with no cached trust downloads root.json and validates our certificate.
    await succeeds(client(await freshDir('fresh-client'), ['list', gun]));
  });

  it('control: the notary client refuses our certificate when its CN names another GUN', async () => {
    const gun = `${GUN}/mismatch`;
    const rootKey = generateSigningKey();
    const keyFile = join(workDir, 'mismatch.key');
    const certFile = join(workDir, 'mismatch.crt');
    await writeFile(
      keyFile,
      encodePrivateKeyPem(rootKey, PASSPHRASES.NOTARY_ROOT_PASSPHRASE, { role: 'root' }),
    );
    await writeFile(certFile, await createRootCertificate(`${GUN}/other`, rootKey));
    const result = await client(await freshDir('init-mismatch'), [
      'init',
      gun,
      '--rootkey',
      keyFile,
      '--rootcert',
      certFile,
      '-p',
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.stdout + result.stderr, /valid leaf certificates/);
  });

  it('notary init’s own root: ids, key file, signatures and certificate shape match ours', async () => {
    const gun = `${GUN}/theirs`;
    const dir = await freshDir('init-theirs');
    await succeeds(client(dir, ['init', gun, '-p']));
    const root = await metadata(dir, gun, 'root');
    const [rootId] = root.signed.roles['root']?.keyids ?? [];
    assert.ok(rootId);
    const rootKey = PublicKey.fromJson(root.signed.keys[rootId], {
      role: 'root',
      field: `keys.${rootId}`,
    });
    assert.equal(rootKey.id, rootId);
    assert.equal(rootKey.type, 'ecdsa-x509');
    checkRootCertificate(rootKey, gun, new Date());
    // notary names the root key file by the canonical id, and it decrypts to that key.
    const file = join(dir, 'private', `${rootKey.canonicalId}.key`);
    const decoded = decodePrivateKeyPem(
      await readFile(file, 'utf8'),
      PASSPHRASES.NOTARY_ROOT_PASSPHRASE,
      file,
    );
    assert.equal(PublicKey.fromKeyObject(decoded.privateKey).id, rootKey.canonicalId);
    for (const [id, json] of Object.entries(root.signed.keys)) {
      assert.equal(PublicKey.fromJson(json, { role: 'root', field: `keys.${id}` }).id, id);
    }

    // Our certificate for the same key and GUN differs only in serial, dates and signature.
    const ours = PublicKey.fromCertificatePem(await createRootCertificate(gun, decoded.privateKey));
    assert.equal(ours.canonicalId, rootKey.canonicalId);
    const theirs = rootKey.certificate;
    assert.ok(theirs && ours.certificate);
    for (const field of ['subject', 'issuer', 'ca', 'keyUsage', 'publicKey'] as const) {
      assert.deepEqual(
        field === 'publicKey'
          ? ours.certificate.publicKey.export({ format: 'jwk' })
          : ours.certificate[field],
        field === 'publicKey' ? theirs.publicKey.export({ format: 'jwk' }) : theirs[field],
        field,
      );
    }
    const span = (c: { validFrom: string; validTo: string }): number =>
      Date.parse(c.validTo) - Date.parse(c.validFrom);
    assert.equal(span(ours.certificate), span(theirs));

    // Signatures notary made: root (ecdsa, our key type ecdsa-x509) and the server's timestamp.
    const fresh = await freshDir('fresh-theirs');
    await succeeds(client(fresh, ['list', gun]));
    for (const role of ['root', 'targets', 'snapshot', 'timestamp']) {
      const signedFile = await metadata(fresh, gun, role);
      const [sig] = signedFile.signatures;
      assert.ok(sig, role);
      const json = root.signed.keys[sig.keyid];
      const key = PublicKey.fromJson(json, { role: 'root', field: `keys.${sig.keyid}` });
      assert.equal(
        key.verify(sig.method, canonicalBytes(signedFile.signed), Buffer.from(sig.sig, 'base64')),
        true,
        `${role} signed with ${sig.method} by ${key.type}`,
      );
    }
  });
});
