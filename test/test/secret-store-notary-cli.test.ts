/**
 * The keys our Kubernetes Secret store writes are the files notary itself keeps: dropped into a
 * trust dir's `private/`, the real `notary` CLI lists them with their role and GUN and decrypts them
 * with the Secret's `password`; and the targets Secret, mounted as kpack mounts it, is a keys dir.
 * The Secrets are written to the real kube-apiserver (test/src/kube/control-plane.ts) and read
 * back with kubectl, as an operator exporting a key would.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PublicKey, decodePrivateKeyPem } from '@kpack-trust/common';
import {
  KeysDirStore,
  KubernetesSecretStore,
  loadKubeConfig,
  type KeyStore,
} from '@kpack-trust/signer/keys';
import { requireBinary, startControlPlane, type ControlPlane } from '../src/index.js';

const NAMESPACE = 'builds';
// Short: `notary key list` elides the start of GUNs longer than its column.
const GUN = 'example.com/kpack';

/** The fields of a Secret the tests read (`kubectl get secret -o json`). */
interface SecretObject {
  readonly metadata: { readonly name: string };
  readonly data?: Record<string, string>;
}

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function notary(
  trustDir: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      requireBinary('notary'),
      ['-d', trustDir, ...args],
      { env: { PATH: process.env['PATH'] ?? '', HOME: trustDir, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(new Error(`notary could not run: ${error.message}`));
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

let cluster: ControlPlane;
let workDir = '';
let root: { id: string; secret: SecretObject; key: KeyObject };
let targets: { id: string; secret: SecretObject; key: KeyObject };

function idOf(key: KeyObject): string {
  return PublicKey.fromKeyObject(createPublicKey(key)).canonicalId;
}

function entry(secret: SecretObject, name: string): string {
  const value = secret.data?.[name];
  assert.ok(value !== undefined, `Secret ${secret.metadata.name} has no ${name}`);
  return Buffer.from(value, 'base64').toString('utf8');
}

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kpack-secret-notary-'));
  cluster = await startControlPlane({ controllerManager: false });
  const made = await cluster.kubectl(['create', 'namespace', NAMESPACE]);
  assert.equal(made.code, 0, made.stderr);
  const kubeconfig = await cluster.writeKubeconfig(join(workDir, 'kubeconfig'));
  const store = new KubernetesSecretStore({
    kubeConfig: loadKubeConfig({ kubeconfig }).config,
    namespace: NAMESPACE,
    rootKeySecret: 'app-root-key',
    targetsKeySecret: 'app-targets-key',
  });
  const keys = await store.load(GUN, { createIfMissing: true });
  assert.ok(keys.root && keys.targets);
  const read = async (name: string): Promise<SecretObject> => {
    const got = await cluster.kubectl(['get', 'secret', name, '-n', NAMESPACE, '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    return JSON.parse(got.stdout) as SecretObject;
  };
  const rootSecret = await read('app-root-key');
  const targetsSecret = await read('app-targets-key');
  root = { id: idOf(keys.root.privateKey), secret: rootSecret, key: keys.root.privateKey };
  targets = { id: idOf(keys.targets), secret: targetsSecret, key: keys.targets };
});

after(async () => {
  await cluster.stop();
  if (workDir !== '') await rm(workDir, { recursive: true, force: true });
});

describe('Secret store keys and the real notary CLI', () => {
  it('notary key list shows both keys with their roles and GUN; key passwd decrypts them', async () => {
    const trustDir = join(workDir, 'trust');
    await mkdir(join(trustDir, 'private'), { recursive: true });
    for (const { id, secret } of [root, targets]) {
      await writeFile(join(trustDir, 'private', `${id}.key`), entry(secret, `${id}.key`), {
        mode: 0o600,
      });
    }
    const passphrases = {
      NOTARY_ROOT_PASSPHRASE: entry(root.secret, 'password'),
      NOTARY_TARGETS_PASSPHRASE: entry(targets.secret, 'password'),
    };
    const list = await notary(trustDir, ['key', 'list'], passphrases);
    assert.equal(list.code, 0, list.stderr);
    const rows = list.stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols.includes(root.id) || cols.includes(targets.id));
    // ROLE GUN KEY-ID LOCATION; a root key has an empty GUN: notary shares it across repositories.
    assert.deepEqual(
      rows.map((cols) => (cols[0] === 'root' ? cols.slice(0, 2) : cols.slice(0, 3))).sort(),
      [
        ['root', root.id],
        ['targets', GUN, targets.id],
      ].sort(),
    );

    // passwd opens each file with the Secret's password (old and new both from the environment)
    // and rewrites it; we then read notary's rewrite to the same key.
    for (const { id, secret } of [root, targets]) {
      const passwd = await notary(trustDir, ['key', 'passwd', id], passphrases);
      assert.equal(passwd.code, 0, `${passwd.stdout}\n${passwd.stderr}`);
      const rewritten = await readFile(join(trustDir, 'private', `${id}.key`), 'utf8');
      assert.notEqual(rewritten, entry(secret, `${id}.key`));
      const reread = decodePrivateKeyPem(rewritten, entry(secret, 'password'), 'rewritten');
      assert.equal(idOf(reread.privateKey), id);
    }
  });

  it('notary refuses the key file with a wrong passphrase (the password entry is what opens it)', async () => {
    const trustDir = join(workDir, 'trust-wrong');
    await mkdir(join(trustDir, 'private'), { recursive: true });
    await writeFile(
      join(trustDir, 'private', `${targets.id}.key`),
      entry(targets.secret, `${targets.id}.key`),
      { mode: 0o600 },
    );
    const passwd = await notary(trustDir, ['key', 'passwd', targets.id], {
      NOTARY_TARGETS_PASSPHRASE: 'not-the-password',
    });
    assert.notEqual(passwd.code, 0);
    assert.match(passwd.stdout + passwd.stderr, /could not retrieve local key for key ID provided/);
  });

  it('the targets Secret mounted as a directory is a kpack keys dir', async () => {
    const dir = join(workDir, 'mounted');
    await mkdir(dir, { recursive: true });
    for (const name of Object.keys(targets.secret.data ?? {})) {
      await writeFile(join(dir, name), entry(targets.secret, name), { mode: 0o600 });
    }
    const rootDir = join(workDir, 'mounted-root');
    await mkdir(rootDir, { recursive: true });
    for (const name of Object.keys(root.secret.data ?? {})) {
      await writeFile(join(rootDir, name), entry(root.secret, name), { mode: 0o600 });
    }
    const mounted: KeyStore = new KeysDirStore({ dir, rootDir });
    const keys = await mounted.load(GUN, { createIfMissing: false });
    assert.equal(idOf(keys.targets ?? root.key), targets.id);
    assert.equal(idOf(keys.root?.privateKey ?? targets.key), root.id);
    assert.equal(keys.root?.certificatePem, entry(root.secret, 'root.crt'));
  });
});
