/**
 * Our key files, key ids, signatures and root certificates against the real notary 0.7.0 CLI and
 * server: what we write, notary must use; what notary writes, we must read to the same ids.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
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
import {
  notaryCli,
  runNotary,
  startStack,
  type CliResult,
  type NotaryStack,
  type Passphrases,
} from '../src/index.js';

// One passphrase per role, so a key encrypted under another role's passphrase cannot pass.
const PASSPHRASES = {
  root: 'root-Passphrase-1',
  targets: 'targets-Passphrase-2',
  snapshot: 'snapshot-Passphrase-3',
  delegation: 'delegation-Passphrase-4',
} as const satisfies Passphrases;
// Short: `notary key list` elides the start of GUNs longer than its column.
const GUN = 'example.com/kpack';

// notaryCli always passes `-s` and `--tlscacert`; the key commands (list, passwd, import,
// generate) never contact the server, so one stack serves the offline suite too.
let stack: NotaryStack;

before(async () => {
  stack = await startStack({ trustService: 'local', registry: false });
});

after(async () => {
  await stack.stop();
});

/** `notary …` on a trust dir with this file's passphrases, whatever its exit code. */
function notary(trustDir: string, args: readonly string[]): Promise<CliResult> {
  return notaryCli(stack, args, { trustDir, passphrases: PASSPHRASES });
}

/** Like {@link notary}, but a non-zero exit fails the test with the CLI's output. */
function succeeds(trustDir: string, args: readonly string[]): Promise<CliResult> {
  return runNotary(stack, args, { trustDir, passphrases: PASSPHRASES });
}

/** The `notary key list` row for a key id, split into columns (ROLE [GUN] ID LOCATION). */
async function keyListRow(trustDir: string, id: string): Promise<string[] | undefined> {
  const { stdout } = await succeeds(trustDir, ['key', 'list']);
  const line = stdout.split('\n').find((l) => l.includes(id));
  return line?.trim().split(/\s+/);
}

/** An empty trust dir (with its `private/` key dir) inside the stack's work dir. */
async function freshDir(name: string): Promise<string> {
  const dir = await stack.tempDir(name);
  await mkdir(join(dir, 'private'));
  return dir;
}

/** A path for a key or certificate file outside every trust dir. */
async function looseFile(name: string): Promise<string> {
  return join(await stack.tempDir('files'), name);
}

describe('private key files and the notary CLI', () => {
  for (const type of ['ecdsa', 'ed25519', 'rsa'] as const) {
    it(`notary lists and decrypts a ${type} key file we wrote (key passwd), and we read its rewrite`, async () => {
      const dir = await freshDir(`ours-${type}`);
      const key = generateSigningKey(type);
      const id = PublicKey.fromKeyObject(key).canonicalId;
      const file = join(dir, 'private', `${id}.key`);
      const pem = encodePrivateKeyPem(key, PASSPHRASES.targets, {
        role: 'targets',
        gun: GUN,
      });
      await writeFile(file, pem, { mode: 0o600 });
      assert.deepEqual((await keyListRow(dir, id))?.slice(0, 3), ['targets', GUN, id]);
      // passwd decrypts with the old passphrase and re-encrypts with a fresh salt and IV.
      await succeeds(dir, ['key', 'passwd', id]);
      const rewritten = await readFile(file, 'utf8');
      assert.notEqual(rewritten, pem);
      const decoded = decodePrivateKeyPem(rewritten, PASSPHRASES.targets, file);
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
        passphrase: PASSPHRASES.targets,
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
    const pem = encodePrivateKeyPem(key, PASSPHRASES.targets, {
      role: 'targets',
      gun: GUN,
    });
    const file = await looseFile('import.pem');
    await writeFile(file, pem.replace('\nrole: targets\n', `\npath: ${id}\nrole: targets\n`));
    await succeeds(dir, ['key', 'import', file]);
    assert.deepEqual((await keyListRow(dir, id))?.slice(0, 3), ['targets', GUN, id]);
    await succeeds(dir, ['key', 'passwd', id]);
  });

  for (const role of ['targets', 'root'] as const) {
    it(`we read the ${role} key notary key generate writes, to the id notary lists`, async () => {
      const dir = await freshDir(`generated-${role}`);
      const { stdout } = await succeeds(dir, ['key', 'generate', 'ecdsa', '--role', role]);
      const id = /keyID: ([0-9a-f]{64})/.exec(stdout)?.[1];
      assert.ok(id, stdout);
      assert.deepEqual(await readdir(join(dir, 'private')), [`${id}.key`]);
      assert.deepEqual((await keyListRow(dir, id))?.slice(0, 2), [role, id]);
      const passphrase = role === 'root' ? PASSPHRASES.root : PASSPHRASES.targets;
      const file = join(dir, 'private', `${id}.key`);
      const decoded = decodePrivateKeyPem(await readFile(file, 'utf8'), passphrase, file);
      assert.equal(PublicKey.fromKeyObject(decoded.privateKey).id, id);
      assert.equal(decoded.role, role);
    });
  }
});

interface SignedFile {
  signed: { keys: Record<string, PublicKeyJson>; roles: Record<string, { keyids: string[] }> };
  signatures: { keyid: string; method: string; sig: string }[];
}

describe('root keys and certificates with notary init against notary-server', () => {
  const metadata = async (dir: string, gun: string, role: string): Promise<SignedFile> =>
    JSON.parse(
      await readFile(join(dir, 'tuf', gun, 'metadata', `${role}.json`), 'utf8'),
    ) as SignedFile;

  it('notary init --rootkey/--rootcert publishes our key and certificate; a fresh client trusts it', async () => {
    const gun = `${GUN}/ours`;
    const rootKey = generateSigningKey();
    const certPem = await createRootCertificate(gun, rootKey);
    const certKey = PublicKey.fromCertificatePem(certPem);
    const keyFile = await looseFile('our-root.key');
    const certFile = await looseFile('our-root.crt');
    await writeFile(keyFile, encodePrivateKeyPem(rootKey, PASSPHRASES.root, { role: 'root' }));
    await writeFile(certFile, certPem);
    const dir = await freshDir('init-ours');
    const init = await succeeds(dir, [
      'init',
      gun,
      '--rootkey',
      keyFile,
      '--rootcert',
      certFile,
      '-p',
    ]);
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
    await succeeds(await freshDir('fresh-client'), ['list', gun]);
  });

  it('control: the notary client refuses our certificate when its CN names another GUN', async () => {
    const gun = `${GUN}/mismatch`;
    const rootKey = generateSigningKey();
    const keyFile = await looseFile('mismatch.key');
    const certFile = await looseFile('mismatch.crt');
    await writeFile(keyFile, encodePrivateKeyPem(rootKey, PASSPHRASES.root, { role: 'root' }));
    await writeFile(certFile, await createRootCertificate(`${GUN}/other`, rootKey));
    const result = await notary(await freshDir('init-mismatch'), [
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
    await succeeds(dir, ['init', gun, '-p']);
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
    const decoded = decodePrivateKeyPem(await readFile(file, 'utf8'), PASSPHRASES.root, file);
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
    await succeeds(fresh, ['list', gun]);
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
