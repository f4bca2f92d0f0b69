/**
 * kpack's mounted key layout (`<id>.key` + `password`): which file is chosen, which passphrase
 * opens it, and the errors for each way a directory can be wrong — one fault at a time.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { KeyObject } from 'node:crypto';
import {
  PublicKey,
  createRootCertificate,
  encodePrivateKeyPem,
  generateSigningKey,
  isTrustError,
} from '@kpack-trust/common';
import { fakeManifest } from '@kpack-trust/common/testing';
import type { KeyStore, RepositoryKeys } from '../src/keys/key-store.js';
import { KeysDirStore } from '../src/keys/keys-dir-store.js';
import { signBuild } from '../src/publish/sign-build.js';
import { MemoryNotary } from './support/memory-notary.js';

const GUN = 'registry.example.com/team/app';
const PASSWORD = 'mounted-Password-1';
const ENV_PASSPHRASE = 'env-Passphrase-2';
const NOW = new Date('2026-03-01T12:00:00Z');

let workDir = '';
let counter = 0;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kpack-keys-dir-'));
});

after(async () => {
  if (workDir !== '') await rm(workDir, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = join(workDir, `d${++counter}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

function idOf(key: KeyObject): string {
  return PublicKey.fromKeyObject(key).canonicalId;
}

/** Writes `<canonical id>.key` (or `name`) encrypted with `passphrase`, with the given headers. */
async function writeKey(
  dir: string,
  headers: { role: string; gun?: string } | undefined,
  passphrase = PASSWORD,
  name?: string,
): Promise<KeyObject> {
  const key = generateSigningKey('ecdsa');
  // A header-less file: notary's format without `role:`/`gun:` (as `openssl pkcs8` would write it).
  let pem = encodePrivateKeyPem(key, passphrase, headers ?? { role: 'x' });
  if (headers === undefined) pem = pem.replace(/^role: x\n/m, '').replace(/\n\n/, '\n');
  await writeFile(join(dir, name ?? `${idOf(key)}.key`), pem, { mode: 0o600 });
  return key;
}

/** Through the KeyStore interface, as the publishing flow calls it. */
function loadKeys(store: KeyStore): Promise<RepositoryKeys> {
  return store.load(GUN, { createIfMissing: false });
}

async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  check: (facts: Record<string, unknown>, message: string) => void = () => undefined,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isTrustError(err), `expected a TrustError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    check(err.facts, err.message);
    return true;
  });
}

describe('KeysDirStore: the kpack layout', () => {
  it('reads <id>.key with the password file and returns it as the targets key', async () => {
    const dir = await freshDir();
    const key = await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), PASSWORD);
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.ok(keys.targets);
    assert.equal(idOf(keys.targets), idOf(key));
    assert.equal(keys.root, undefined);
    assert.equal(keys.delegations.size, 0);
    assert.equal(keys.created, false);
  });

  it('accepts a password file that ends with a newline', async () => {
    const dir = await freshDir();
    const key = await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), `${PASSWORD}\n`);
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(key));
  });

  it('falls back to KPACK_TRUST_TARGETS_PASSPHRASE when there is no password file', async () => {
    const dir = await freshDir();
    const key = await writeKey(dir, { role: 'targets', gun: GUN }, ENV_PASSPHRASE);
    const keys = await loadKeys(
      new KeysDirStore({ dir, passphrases: { targets: ENV_PASSPHRASE } }),
    );
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(key));
  });

  it('refuses an unencrypted key while KPACK_TRUST_TARGETS_PASSPHRASE is set, and reads it without', async () => {
    // With the passphrase set, the mounted Secret alone must not be able to sign (guide §3.1).
    const dir = await freshDir();
    const key = generateSigningKey('ecdsa');
    const name = `${idOf(key)}.key`;
    const pem = key.export({ format: 'pem', type: 'pkcs8' }).toString();
    await writeFile(join(dir, name), pem, { mode: 0o600 });
    await rejectsWith(
      loadKeys(new KeysDirStore({ dir, passphrases: { targets: ENV_PASSPHRASE } })),
      'PRIVATE_KEY_INVALID',
      (facts, message) => {
        assert.equal(facts['source'], `key file ${join(dir, name)}`);
        assert.equal(
          facts['problem'],
          'the key is not encrypted, but KPACK_TRUST_TARGETS_PASSPHRASE is set',
        );
        assert.ok(!message.includes(ENV_PASSPHRASE));
      },
    );
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(key));
  });

  it('refuses an unencrypted root key while KPACK_TRUST_ROOT_PASSPHRASE is set', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), PASSWORD);
    const rootDir = await freshDir();
    const root = generateSigningKey('ecdsa');
    const name = `${idOf(root)}.key`;
    await writeFile(join(rootDir, name), root.export({ format: 'pem', type: 'pkcs8' }).toString());
    await rejectsWith(
      loadKeys(new KeysDirStore({ dir, rootDir, passphrases: { root: ENV_PASSPHRASE } })),
      'PRIVATE_KEY_INVALID',
      (facts) => {
        assert.equal(facts['source'], `key file ${join(rootDir, name)}`);
        assert.equal(
          facts['problem'],
          'the key is not encrypted, but KPACK_TRUST_ROOT_PASSPHRASE is set',
        );
      },
    );
  });

  it('tries the environment passphrase after a password file that does not open the key', async () => {
    const dir = await freshDir();
    const key = await writeKey(dir, { role: 'targets', gun: GUN }, ENV_PASSPHRASE);
    await writeFile(join(dir, 'password'), 'stale-password');
    const keys = await loadKeys(
      new KeysDirStore({ dir, passphrases: { targets: ENV_PASSPHRASE } }),
    );
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(key));
  });

  it('reads a Secret as the kubelet mounts it (symlinks into ..data)', async () => {
    const dir = await freshDir();
    const dataDir = join(dir, '..2024_01_01_00_00_00.000000001');
    await mkdir(dataDir);
    const key = await writeKey(dataDir, { role: 'targets', gun: GUN });
    await writeFile(join(dataDir, 'password'), PASSWORD);
    await symlink('..2024_01_01_00_00_00.000000001', join(dir, '..data'));
    await symlink(`..data/${idOf(key)}.key`, join(dir, `${idOf(key)}.key`));
    await symlink('..data/password', join(dir, 'password'));
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(key));
  });
});

describe('KeysDirStore: choosing among several key files', () => {
  it('uses the first header-less *.key when none says targets, as kpack does', async () => {
    const dir = await freshDir();
    const first = await writeKey(dir, undefined, PASSWORD, 'a.key');
    await writeKey(dir, undefined, PASSWORD, 'b.key');
    await writeFile(join(dir, 'password'), PASSWORD);
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(first));
  });

  it('prefers the file whose role header says targets over an earlier header-less one', async () => {
    const dir = await freshDir();
    await writeKey(dir, undefined, PASSWORD, 'a.key');
    const targets = await writeKey(dir, { role: 'targets', gun: GUN }, PASSWORD, 'b.key');
    await writeFile(join(dir, 'password'), PASSWORD);
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(targets));
  });

  it('prefers the targets key of this GUN over one for another repository', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'targets', gun: 'other.example.com/app' }, PASSWORD, 'a.key');
    const ours = await writeKey(dir, { role: 'targets', gun: GUN }, PASSWORD, 'b.key');
    await writeFile(join(dir, 'password'), PASSWORD);
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(ours));
  });

  it('returns a key whose role header names a delegation under that role', async () => {
    const dir = await freshDir();
    const releases = await writeKey(dir, { role: 'targets/releases', gun: GUN });
    await writeFile(join(dir, 'password'), PASSWORD);
    const keys = await loadKeys(new KeysDirStore({ dir }));
    assert.equal(keys.targets, undefined);
    assert.deepEqual([...keys.delegations.keys()], ['targets/releases']);
    assert.equal(
      idOf(keys.delegations.get('targets/releases') ?? generateSigningKey()),
      idOf(releases),
    );
  });

  it('gives the requested delegation the docker-trust signer key (role: <name>)', async () => {
    const dir = await freshDir();
    const targets = await writeKey(dir, { role: 'targets', gun: GUN }, PASSWORD, 'a.key');
    const alice = await writeKey(dir, { role: 'releases' }, PASSWORD, 'b.key');
    await writeFile(join(dir, 'password'), PASSWORD);
    const keys = await loadKeys(new KeysDirStore({ dir, delegation: 'targets/releases' }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(targets));
    assert.equal(
      idOf(keys.delegations.get('targets/releases') ?? generateSigningKey()),
      idOf(alice),
    );
  });

  it('offers a single header-less key both as targets and as the requested delegation', async () => {
    const dir = await freshDir();
    const only = await writeKey(dir, undefined);
    await writeFile(join(dir, 'password'), PASSWORD);
    const keys = await loadKeys(new KeysDirStore({ dir, delegation: 'targets/ci' }));
    assert.equal(idOf(keys.targets ?? generateSigningKey()), idOf(only));
    assert.equal(idOf(keys.delegations.get('targets/ci') ?? generateSigningKey()), idOf(only));
  });
});

describe('KeysDirStore: the root key directory', () => {
  it('one header-less key given as both directories cannot create a repository (root = targets)', async () => {
    const dir = await freshDir();
    const only = await writeKey(dir, undefined);
    await writeFile(join(dir, 'password'), PASSWORD);
    const store = new KeysDirStore({ dir, rootDir: dir });
    const keys = await loadKeys(store);
    assert.equal(idOf(keys.root?.privateKey ?? generateSigningKey()), idOf(only));
    const notary = new MemoryNotary(NOW);
    const manifest = fakeManifest('same-key');
    const image = {
      gun: GUN,
      registry: 'registry.example.com',
      path: 'team/app',
      tags: ['v1'],
      digest: `sha256:${manifest.digestHex}`,
      size: manifest.length,
    };
    await rejectsWith(
      signBuild({ image }, { notary, keyStore: store, now: () => NOW }),
      'KEY_STORE_INVALID',
      (facts) => {
        assert.equal(facts['store'], store.description);
        assert.equal(
          facts['problem'],
          `its root key and targets key are the same key (${idOf(only)})`,
        );
      },
    );
    assert.deepEqual(notary.keyRequests, []);
    assert.deepEqual(notary.publishes, []);
  });

  it('returns the root key and a root.crt issued for this GUN', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), PASSWORD);
    const rootDir = await freshDir();
    const root = await writeKey(rootDir, { role: 'root' }, ENV_PASSPHRASE);
    const pem = await createRootCertificate(GUN, root);
    await writeFile(join(rootDir, 'root.crt'), pem);
    const keys = await loadKeys(
      new KeysDirStore({ dir, rootDir, passphrases: { root: ENV_PASSPHRASE } }),
    );
    assert.equal(idOf(keys.root?.privateKey ?? generateSigningKey()), idOf(root));
    assert.equal(keys.root?.certificatePem, pem);
  });

  it('leaves out a root.crt issued for another GUN (a shared root key)', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), PASSWORD);
    const rootDir = await freshDir();
    const root = await writeKey(rootDir, { role: 'root' });
    await writeFile(join(rootDir, 'password'), PASSWORD);
    await writeFile(join(rootDir, 'root.crt'), await createRootCertificate('other.io/x', root));
    const keys = await loadKeys(new KeysDirStore({ dir, rootDir }));
    assert.equal(idOf(keys.root?.privateKey ?? generateSigningKey()), idOf(root));
    assert.equal(keys.root?.certificatePem, undefined);
  });

  it('rejects a root.crt that certifies a different key', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), PASSWORD);
    const rootDir = await freshDir();
    await writeKey(rootDir, { role: 'root' });
    await writeFile(join(rootDir, 'password'), PASSWORD);
    await writeFile(
      join(rootDir, 'root.crt'),
      await createRootCertificate(GUN, generateSigningKey('ecdsa')),
    );
    await rejectsWith(loadKeys(new KeysDirStore({ dir, rootDir })), 'KEY_STORE_INVALID', (f) => {
      assert.equal(f['store'], `root keys dir ${rootDir}`);
      assert.match(
        String(f['problem']),
        /root\.crt certifies key [0-9a-f]{64}, not the stored root key/,
      );
    });
  });

  it('rejects a root directory without a key', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), PASSWORD);
    const rootDir = await freshDir();
    await writeFile(join(rootDir, 'password'), PASSWORD);
    await rejectsWith(loadKeys(new KeysDirStore({ dir, rootDir })), 'KEY_STORE_INVALID', (f) => {
      assert.equal(f['problem'], 'holds no root key (found: no *.key entries)');
    });
  });
});

describe('KeysDirStore: errors', () => {
  it('names the file and the passphrases tried for a wrong passphrase, never the passphrase', async () => {
    const dir = await freshDir();
    const key = await writeKey(dir, { role: 'targets', gun: GUN });
    await writeFile(join(dir, 'password'), 'wrong-Password-9');
    const store = new KeysDirStore({ dir, passphrases: { targets: 'also-Wrong-8' } });
    await rejectsWith(loadKeys(store), 'PRIVATE_KEY_INVALID', (facts, message) => {
      assert.equal(facts['source'], `key file ${join(dir, `${idOf(key)}.key`)}`);
      assert.equal(
        facts['problem'],
        `wrong passphrase, or the key file is corrupt (passphrases tried: the password file in ${dir}, KPACK_TRUST_TARGETS_PASSPHRASE)`,
      );
      assert.doesNotMatch(message, /wrong-Password-9|also-Wrong-8/);
    });
  });

  it('says how to supply a passphrase when there is none', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'targets', gun: GUN });
    await rejectsWith(loadKeys(new KeysDirStore({ dir })), 'PRIVATE_KEY_INVALID', (facts) => {
      assert.match(
        String(facts['problem']),
        /no passphrase was given; put a "password" file beside it or set KPACK_TRUST_TARGETS_PASSPHRASE$/,
      );
    });
  });

  it('rejects a directory with no key files', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'password'), PASSWORD);
    await rejectsWith(loadKeys(new KeysDirStore({ dir })), 'KEY_STORE_INVALID', (facts) => {
      assert.equal(facts['store'], `keys dir ${dir}`);
      assert.equal(
        facts['problem'],
        'holds no targets or delegation key (found: no *.key entries)',
      );
    });
  });

  it('rejects a directory holding only a key for another base role', async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'snapshot', gun: GUN }, PASSWORD, 'snap.key');
    await writeFile(join(dir, 'password'), PASSWORD);
    await rejectsWith(loadKeys(new KeysDirStore({ dir })), 'KEY_STORE_INVALID', (facts) => {
      assert.equal(
        facts['problem'],
        'holds no targets or delegation key (found: snap.key (role snapshot))',
      );
    });
  });

  it("names --delegation when the only key is a docker trust signer's (role: my-key)", async () => {
    const dir = await freshDir();
    await writeKey(dir, { role: 'my-key' }, PASSWORD, 'signer.key');
    await writeFile(join(dir, 'password'), PASSWORD);
    await rejectsWith(loadKeys(new KeysDirStore({ dir })), 'KEY_STORE_INVALID', (facts) => {
      assert.match(
        String(facts['problem']),
        /^holds no targets or delegation key \(found: signer\.key \(role my-key\)\); signer\.key looks like a docker trust signer's key: give --delegation/,
      );
    });
    const keys = await loadKeys(new KeysDirStore({ dir, delegation: 'targets/releases' }));
    assert.ok(keys.delegations.has('targets/releases'));
  });

  it('rejects a directory that does not exist', async () => {
    const dir = join(workDir, 'missing');
    await rejectsWith(loadKeys(new KeysDirStore({ dir })), 'KEY_STORE_INVALID', (facts) => {
      assert.equal(facts['problem'], 'cannot be read (ENOENT)');
    });
  });

  it('rejects a key file that is not a key', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'garbage.key'), 'not a PEM file at all');
    await writeFile(join(dir, 'password'), PASSWORD);
    await rejectsWith(loadKeys(new KeysDirStore({ dir })), 'PRIVATE_KEY_INVALID', (facts) => {
      assert.equal(facts['source'], `key file ${join(dir, 'garbage.key')}`);
      assert.equal(facts['problem'], 'no PEM block found');
    });
  });
});
