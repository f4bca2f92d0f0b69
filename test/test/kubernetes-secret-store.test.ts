/**
 * The signer's Kubernetes Secret store through the official client against the real
 * kube-apiserver (etcd + apiserver on loopback, test/src/kube/control-plane.ts; no controller
 * manager): the RFC's first-build key generation and the documented Secret layout, reuse on later
 * builds, create-if-absent under a real create race, real RBAC (client certificates for users bound
 * to Roles) and authentication failures, and malformed Secrets made with kubectl — each error
 * naming the Secret and never quoting a key or passphrase. Requests are counted in the apiserver's
 * own audit log. One interleaving the real apiserver cannot be made to produce on demand runs
 * against test/src/kube/fake-apiserver.ts, and says why where it does.
 */
import assert from 'node:assert/strict';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  PublicKey,
  createRootCertificate,
  decodePrivateKeyPem,
  encodePrivateKeyPem,
  generateSigningKey,
  isTrustError,
  type TrustErrorCode,
} from '@kpack-trust/common';
import {
  KubernetesSecretStore,
  SECRET_METADATA,
  SERVICE_ACCOUNT_DIR,
  createKeyStore,
  loadKubeConfig,
  type KeyPassphrases,
  type RepositoryKeys,
} from '@kpack-trust/signer/keys';
import {
  startControlPlane,
  startFakeApiserver,
  type AuditEvent,
  type ControlPlane,
} from '../src/index.js';
import { freePort } from '../src/stack/processes.js';

const NAMESPACE = 'builds';
const GUN = 'registry.example.com/team/app';

/** The fields of a Secret the tests read (`kubectl get secret -o json`). */
interface SecretObject {
  readonly type?: string;
  readonly metadata: {
    readonly name: string;
    readonly labels?: Record<string, string>;
    readonly annotations?: Record<string, string>;
  };
  readonly data?: Record<string, string>;
}

let cluster: ControlPlane;
let workDir = '';
/** The admin's kubeconfig, its context's namespace set to NAMESPACE. */
let kubeconfig = '';
let serial = 0;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kpack-secret-store-'));
  cluster = await startControlPlane({ controllerManager: false });
  await kubectl(['create', 'namespace', NAMESPACE]);
  kubeconfig = await cluster.writeKubeconfig(join(workDir, 'kubeconfig'), {
    namespace: NAMESPACE,
  });
});

after(async () => {
  await cluster.stop();
  if (workDir !== '') await rm(workDir, { recursive: true, force: true });
});

/** kubectl as the cluster admin; fails the test when kubectl fails. */
async function kubectl(args: readonly string[], input?: string): Promise<string> {
  const result = await cluster.kubectl(args, input === undefined ? {} : { input });
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** The stored Secret, read with kubectl, or undefined when there is none. */
async function getSecret(name: string): Promise<SecretObject | undefined> {
  const result = await cluster.kubectl(['get', 'secret', name, '-n', NAMESPACE, '-o', 'json']);
  if (result.code !== 0 && result.stderr.includes('NotFound')) return undefined;
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as SecretObject;
}

/** Creates an Opaque Secret with kubectl, as an operator would by hand. */
async function seedSecret(name: string, stringData: Record<string, string>): Promise<void> {
  await kubectl(
    ['create', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: NAMESPACE },
      type: 'Opaque',
      stringData,
    }),
  );
}

let marks = 0;
/**
 * The apiserver's audit events for Secret requests in NAMESPACE matching `filter`. A marker
 * request is made first and awaited in the log, so every request that finished before this call
 * is counted (the log is written as each request completes).
 */
async function count(filter: {
  verb?: string;
  status?: number;
  name?: string;
  user?: string;
}): Promise<number> {
  const mark = `audit-mark-${++marks}`;
  await cluster.kubectl(['get', '--raw', `/api/v1/namespaces/${NAMESPACE}/secrets/${mark}`]);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const events = (await cluster.auditEvents()).filter(
      (e: AuditEvent) =>
        e.stage === 'ResponseComplete' &&
        e.objectRef?.resource === 'secrets' &&
        e.objectRef.namespace === NAMESPACE,
    );
    if (events.some((e) => e.objectRef?.name === mark)) {
      return events.filter(
        (e) =>
          (filter.verb === undefined || e.verb === filter.verb) &&
          (filter.status === undefined || e.responseStatus?.code === filter.status) &&
          (filter.name === undefined || e.objectRef?.name === filter.name) &&
          (filter.user === undefined || e.user?.username === filter.user),
      ).length;
    }
    if (Date.now() > deadline) throw new Error(`audit marker ${mark} never appeared`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A kubeconfig for the RBAC user `user` (a client certificate from the cluster's CA), bound in
 * NAMESPACE to a Role with `rules`; waits until the apiserver's authorizer has seen the binding.
 */
async function rbacUser(
  user: string,
  rules: readonly { verbs: readonly string[]; resourceNames?: readonly string[] }[],
): Promise<string> {
  if (rules.length > 0) {
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'Role',
            metadata: { name: user, namespace: NAMESPACE },
            rules: rules.map((rule) => ({ apiGroups: [''], resources: ['secrets'], ...rule })),
          },
          {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'RoleBinding',
            metadata: { name: user, namespace: NAMESPACE },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: user },
            subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
          },
        ],
      }),
    );
    // RBAC reads Roles through an informer: wait until the first rule is in force.
    const first = rules[0];
    assert.ok(first);
    const what = `secrets${first.resourceNames?.[0] === undefined ? '' : `/${first.resourceNames[0]}`}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const can = await cluster.kubectl([
        'auth',
        'can-i',
        first.verbs[0] ?? 'get',
        what,
        '-n',
        NAMESPACE,
        '--as',
        user,
      ]);
      if (can.stdout.trim() === 'yes') break;
      if (Date.now() > deadline) throw new Error(`RBAC never granted ${user}: ${can.stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return cluster.writeKubeconfig(join(workDir, `${user}.kubeconfig`), { user });
}

/** Fresh Secret names per test, so tests never see each other's Secrets. */
function names(): { root: string; targets: string } {
  serial++;
  return { root: `app-${serial}-root-key`, targets: `app-${serial}-targets-key` };
}

function storeFor(
  secretNames: { root: string; targets: string },
  options: { passphrases?: KeyPassphrases; file?: string; namespace?: string } = {},
): KubernetesSecretStore {
  return new KubernetesSecretStore({
    kubeConfig: loadKubeConfig({ kubeconfig: options.file ?? kubeconfig }).config,
    namespace: options.namespace ?? NAMESPACE,
    rootKeySecret: secretNames.root,
    targetsKeySecret: secretNames.targets,
    ...(options.passphrases === undefined ? {} : { passphrases: options.passphrases }),
  });
}

function idOf(key: KeyObject | undefined): string {
  assert.ok(key, 'expected a key');
  return PublicKey.fromKeyObject(createPublicKey(key)).canonicalId;
}

function entry(secret: SecretObject | undefined, name: string): string {
  const value = secret?.data?.[name];
  assert.ok(value !== undefined, `Secret has no ${name} entry`);
  return Buffer.from(value, 'base64').toString('utf8');
}

/** Every secret value stored, to prove no error message repeats one. */
function secretValues(secrets: readonly (SecretObject | undefined)[]): string[] {
  return secrets.flatMap((s) =>
    Object.values(s?.data ?? {}).flatMap((v) => {
      const text = Buffer.from(v, 'base64').toString('utf8');
      // The PEM body lines, the whole value, and its base64 form.
      return [v, text, ...text.split('\n').filter((line) => line.length >= 40)];
    }),
  );
}

async function rejectsWith(
  promise: Promise<unknown>,
  code: TrustErrorCode,
  check: (facts: Record<string, unknown>, message: string) => void,
  secrets: readonly string[] = [],
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isTrustError(err), `expected a TrustError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    check(err.facts, err.message);
    const text = `${err.message} ${JSON.stringify(err.facts)}`;
    for (const value of secrets) {
      assert.equal(text.includes(value), false, 'an error message repeats secret material');
    }
    return true;
  });
}

describe('KubernetesSecretStore: first and later builds', () => {
  it('creates both Secrets in the documented layout on the first build', async () => {
    const secretNames = names();
    const keys = await storeFor(secretNames).load(GUN, { createIfMissing: true });
    assert.equal(keys.created, true);
    assert.equal(keys.delegations.size, 0);
    assert.equal(await count({ verb: 'get', status: 404, name: secretNames.root }), 1);
    assert.equal(await count({ verb: 'create', status: 201, name: secretNames.root }), 1);
    assert.equal(await count({ verb: 'create', status: 201, name: secretNames.targets }), 1);

    const root = await getSecret(secretNames.root);
    const rootId = idOf(keys.root?.privateKey);
    assert.equal(root?.type, 'Opaque');
    assert.deepEqual(Object.keys(root?.data ?? {}).sort(), [
      `${rootId}.key`,
      'password',
      'root.crt',
    ]);
    assert.deepEqual(root?.metadata.labels, {
      [SECRET_METADATA.managedByLabel]: 'kpack-trust-signer',
      [SECRET_METADATA.roleLabel]: 'root',
    });
    const certificatePem = entry(root, 'root.crt');
    assert.equal(keys.root?.certificatePem, certificatePem);
    assert.deepEqual(root?.metadata.annotations, {
      [SECRET_METADATA.gunAnnotation]: GUN,
      [SECRET_METADATA.keyIdAnnotation]: rootId,
      [SECRET_METADATA.rootKeyIdAnnotation]: PublicKey.fromCertificatePem(certificatePem).id,
    });
    const rootFile = decodePrivateKeyPem(
      entry(root, `${rootId}.key`),
      entry(root, 'password'),
      'root Secret',
    );
    assert.equal(idOf(rootFile.privateKey), rootId);
    // Notary's root key files carry no gun: one root key may serve several repositories.
    assert.equal(rootFile.role, 'root');
    assert.equal(rootFile.gun, undefined);
    assert.equal(rootFile.privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

    const targets = await getSecret(secretNames.targets);
    const targetsId = idOf(keys.targets);
    assert.deepEqual(Object.keys(targets?.data ?? {}).sort(), [`${targetsId}.key`, 'password']);
    assert.equal(targets?.metadata.labels?.[SECRET_METADATA.roleLabel], 'targets');
    const targetsFile = decodePrivateKeyPem(
      entry(targets, `${targetsId}.key`),
      entry(targets, 'password'),
      'targets Secret',
    );
    assert.equal(idOf(targetsFile.privateKey), targetsId);
    assert.equal(targetsFile.role, 'targets');
    assert.equal(targetsFile.gun, GUN);
    assert.notEqual(entry(root, 'password'), entry(targets, 'password'));
  });

  it('reads the same keys back on a later build without creating anything', async () => {
    const secretNames = names();
    const first = await storeFor(secretNames).load(GUN, { createIfMissing: true });
    const second = await storeFor(secretNames).load(GUN, { createIfMissing: true });
    assert.equal(second.created, false);
    assert.equal(idOf(second.root?.privateKey), idOf(first.root?.privateKey));
    assert.equal(idOf(second.targets), idOf(first.targets));
    assert.equal(second.root?.certificatePem, first.root?.certificatePem);
    assert.equal(await count({ verb: 'create', name: secretNames.root }), 1);
    assert.equal(await count({ verb: 'create', name: secretNames.targets }), 1);
  });

  it('creates nothing without createIfMissing', async () => {
    const secretNames = names();
    const keys = await storeFor(secretNames).load(GUN, { createIfMissing: false });
    assert.deepEqual(keys, { delegations: new Map(), created: false });
    assert.equal(await count({ verb: 'create', name: secretNames.root }), 0);
  });

  it('keeps an existing root key and creates only the missing targets Secret', async () => {
    const secretNames = names();
    const first = await storeFor(secretNames).load(GUN, { createIfMissing: true });
    await kubectl(['delete', 'secret', secretNames.targets, '-n', NAMESPACE]);
    const second = await storeFor(secretNames).load(GUN, { createIfMissing: true });
    assert.equal(second.created, true);
    assert.equal(idOf(second.root?.privateKey), idOf(first.root?.privateKey));
    assert.notEqual(idOf(second.targets), idOf(first.targets));
    assert.equal(await count({ verb: 'create', name: secretNames.root }), 1);
    assert.equal(await count({ verb: 'create', name: secretNames.targets }), 2);
  });

  it('encrypts with operator passphrases and then stores no password entry', async () => {
    const secretNames = names();
    const passphrases = { root: 'root-Operator-1', targets: 'targets-Operator-2' };
    const keys = await storeFor(secretNames, { passphrases }).load(GUN, { createIfMissing: true });
    const targets = await getSecret(secretNames.targets);
    assert.deepEqual(Object.keys(targets?.data ?? {}), [`${idOf(keys.targets)}.key`]);
    const file = decodePrivateKeyPem(
      entry(targets, `${idOf(keys.targets)}.key`),
      passphrases.targets,
      'targets Secret',
    );
    assert.equal(idOf(file.privateKey), idOf(keys.targets));
    // Without the passphrase the Secret alone cannot be opened.
    await rejectsWith(
      storeFor(secretNames).load(GUN, { createIfMissing: true }),
      'PRIVATE_KEY_INVALID',
      (facts) => {
        assert.match(
          String(facts['problem']),
          /no passphrase was given; add a "password" entry or set KPACK_TRUST_ROOT_PASSPHRASE$/,
        );
      },
      [passphrases.root, passphrases.targets],
    );
    const again = await storeFor(secretNames, { passphrases }).load(GUN, { createIfMissing: true });
    assert.equal(idOf(again.targets), idOf(keys.targets));
    assert.equal(again.created, false);
  });
});

describe('KubernetesSecretStore: racing first builds', () => {
  it('ends two concurrent first builds with one key pair (409 AlreadyExists → read back)', async () => {
    const secretNames = names();
    // Both builds read both Secrets (four GETs in flight at once, all 404) before either has
    // generated and encrypted its keys, so both POST each Secret and etcd decides the winner.
    const [a, b] = await Promise.all([
      storeFor(secretNames).load(GUN, { createIfMissing: true }),
      storeFor(secretNames).load(GUN, { createIfMissing: true }),
    ]);
    assert.equal(await count({ verb: 'get', status: 404, name: secretNames.root }), 2);
    assert.equal(await count({ verb: 'get', status: 404, name: secretNames.targets }), 2);
    for (const name of [secretNames.root, secretNames.targets]) {
      assert.equal(await count({ verb: 'create', status: 201, name }), 1);
      assert.equal(await count({ verb: 'create', status: 409, name }), 1);
      // The loser read the winner's Secret back.
      assert.equal(await count({ verb: 'get', status: 200, name }), 1);
    }
    assert.equal(idOf(a.root?.privateKey), idOf(b.root?.privateKey));
    assert.equal(idOf(a.targets), idOf(b.targets));
    assert.equal(a.root?.certificatePem, b.root?.certificatePem);
    // The stored Secrets hold exactly the keys both builds sign with.
    const storedRoot = await getSecret(secretNames.root);
    assert.ok(storedRoot?.data?.[`${idOf(a.root?.privateKey)}.key`]);
    const storedTargets = await getSecret(secretNames.targets);
    assert.ok(storedTargets?.data?.[`${idOf(a.targets)}.key`]);
    assert.equal(a.created || b.created, true);
  });

  // On the fake apiserver: another writer creating the Secret between our GET and our POST and
  // deleting it again between our 409 and our read-back is an interleaving of three requests that
  // the real apiserver offers no hook to produce on demand (its admission webhooks see our POST
  // but cannot delete the object the POST collides with before answering it).
  it('creates again when the Secret it lost to vanishes before the read-back', async () => {
    const fake = await startFakeApiserver({ namespaces: [NAMESPACE] });
    try {
      const file = await fake.writeKubeconfig(join(workDir, 'fake-kubeconfig'), {
        namespace: NAMESPACE,
      });
      const secretNames = names();
      const intruder = generateSigningKey('ecdsa');
      fake.setResponseHook((request) => {
        if (request.name !== secretNames.root) return undefined;
        // Another writer creates the root Secret right after our GET saw 404 …
        if (
          request.verb === 'get' &&
          request.status === 404 &&
          fake.count({ name: secretNames.root }) === 1
        ) {
          fake.seedSecret(NAMESPACE, {
            name: secretNames.root,
            stringData: {
              [`${idOf(intruder)}.key`]: encodePrivateKeyPem(intruder, 'pw-Intruder', {
                role: 'root',
              }),
              password: 'pw-Intruder',
            },
          });
        }
        // … and deletes it again right after our create got 409.
        if (request.verb === 'create' && request.status === 409) {
          fake.deleteSecret(NAMESPACE, secretNames.root);
        }
        return undefined;
      });
      const keys = await storeFor(secretNames, { file }).load(GUN, { createIfMissing: true });
      assert.equal(keys.created, true);
      assert.notEqual(idOf(keys.root?.privateKey), idOf(intruder));
      assert.equal(fake.count({ verb: 'create', status: 409, name: secretNames.root }), 1);
      assert.equal(fake.count({ verb: 'create', status: 201, name: secretNames.root }), 1);
      const stored = fake.getSecret(NAMESPACE, secretNames.root);
      assert.ok(stored?.data?.[`${idOf(keys.root?.privateKey)}.key`]);
    } finally {
      await fake.close();
    }
  });
});

describe('KubernetesSecretStore: RBAC and authentication', () => {
  it('works with the documented Role: get limited by resourceNames, create unrestricted', async () => {
    const secretNames = names();
    const file = await rbacUser('signer-documented', [
      { verbs: ['get'], resourceNames: [secretNames.root, secretNames.targets] },
      { verbs: ['create'] },
    ]);
    const keys = await storeFor(secretNames, { file }).load(GUN, { createIfMissing: true });
    assert.equal(keys.created, true);
    // Read back as that user: its get is limited to these two names and works for both.
    const again = await storeFor(secretNames, { file }).load(GUN, { createIfMissing: true });
    assert.equal(again.created, false);
    assert.equal(idOf(again.targets), idOf(keys.targets));
  });

  it('turns a 403 on get into an RBAC error naming the verbs needed', async () => {
    const secretNames = names();
    // A user the cluster's CA vouches for, bound to nothing.
    const file = await rbacUser('signer-unbound', []);
    await rejectsWith(
      storeFor(secretNames, { file }).load(GUN, { createIfMissing: true }),
      'AUTH_FAILED',
      (facts, message) => {
        assert.equal(facts['status'], 403);
        assert.match(
          String(facts['url']),
          /\/api\/v1\/namespaces\/builds\/secrets\/app-\d+-(root|targets)-key$/,
        );
        assert.match(
          message,
          /^cannot get Secret "builds\/app-\d+-(root|targets)-key": secrets "app-\d+-(root|targets)-key" is forbidden: User "signer-unbound" cannot get resource "secrets" in API group "" in the namespace "builds"\. /,
        );
        assert.match(message, /needs a Role in namespace "builds" allowing "get" on secrets/);
        assert.match(message, /"create" on secrets \(RBAC cannot limit create by name\)/);
      },
    );
  });

  it('turns a 403 on create (create limited by resourceNames) into the same RBAC error', async () => {
    const secretNames = names();
    const file = await rbacUser('signer-create-by-name', [
      { verbs: ['get', 'create'], resourceNames: [secretNames.root, secretNames.targets] },
    ]);
    await rejectsWith(
      storeFor(secretNames, { file }).load(GUN, { createIfMissing: true }),
      'AUTH_FAILED',
      (facts, message) => {
        assert.equal(facts['status'], 403);
        assert.match(
          message,
          /^cannot create Secret "builds\/app-\d+-root-key": secrets is forbidden: User "signer-create-by-name" cannot create resource "secrets" in API group "" in the namespace "builds"\. /,
        );
      },
    );
    assert.equal(await getSecret(secretNames.root), undefined);
    // RBAC refuses before the body is read, so the audit record names the user, not the Secret.
    assert.equal(await count({ verb: 'create', status: 403, user: 'signer-create-by-name' }), 1);
  });

  it('reports a rejected token as a 401 authentication failure', async () => {
    const file = await cluster.writeKubeconfig(join(workDir, 'bad-token'), {
      token: 'stale-token',
    });
    await rejectsWith(
      storeFor(names(), { file }).load(GUN, { createIfMissing: true }),
      'AUTH_FAILED',
      (facts) => {
        assert.equal(facts['status'], 401);
        assert.match(String(facts['problem']), /did not accept our credentials/);
      },
      ['stale-token'],
    );
  });

  it('reports a client certificate from a CA the apiserver does not trust as a 401', async () => {
    const file = await cluster.writeKubeconfig(join(workDir, 'untrusted-ca'), {
      user: 'signer-untrusted',
      untrustedCa: true,
    });
    await rejectsWith(
      storeFor(names(), { file }).load(GUN, { createIfMissing: true }),
      'AUTH_FAILED',
      (facts) => {
        assert.equal(facts['status'], 401);
      },
    );
  });

  it('reports a namespace that does not exist as the apiserver 404', async () => {
    await rejectsWith(
      storeFor(names(), { namespace: 'missing-ns' }).load(GUN, { createIfMissing: true }),
      'HTTP_STATUS',
      (facts, message) => {
        assert.equal(facts['status'], 404);
        assert.equal(facts['serverCode'], 'NotFound');
        assert.match(message, /namespaces "missing-ns" not found/);
      },
    );
  });

  it('reports a namespace being deleted as that, not as missing RBAC', async () => {
    // Without a controller manager nothing finalizes a deleted namespace: it stays Terminating,
    // and NamespaceLifecycle admission refuses every create in it with a 403.
    await kubectl(['create', 'namespace', 'doomed']);
    await kubectl(['delete', 'namespace', 'doomed', '--wait=false']);
    const secretNames = names();
    await rejectsWith(
      storeFor(secretNames, { namespace: 'doomed' }).load(GUN, { createIfMissing: true }),
      'HTTP_STATUS',
      (facts, message) => {
        assert.equal(facts['status'], 403);
        assert.equal(facts['serverCode'], 'Forbidden');
        assert.equal(
          message,
          `cannot create Secret "doomed/${secretNames.root}": the Kubernetes API answered 403 Forbidden: secrets "${secretNames.root}" is forbidden: unable to create new content in namespace doomed because it is being terminated (no Role can allow it: recreate the namespace once it is gone)`,
        );
      },
    );
  });

  it('reports an apiserver that is not listening as unreachable', async () => {
    // A port nothing listens on, with the cluster's real credentials.
    const file = join(workDir, 'gone');
    await writeFile(
      file,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'gone',
            cluster: {
              server: `https://127.0.0.1:${await freePort()}`,
              'certificate-authority-data': Buffer.from(cluster.caPem).toString('base64'),
            },
          },
        ],
        users: [{ name: 'gone', user: { token: 'unused' } }],
        contexts: [{ name: 'gone', context: { cluster: 'gone', user: 'gone' } }],
        'current-context': 'gone',
      }),
      { mode: 0o600 },
    );
    await rejectsWith(
      storeFor(names(), { file }).load(GUN, { createIfMissing: true }),
      'HTTP_UNREACHABLE',
      (facts) => {
        assert.match(String(facts['problem']), /ECONNREFUSED/);
      },
    );
  });
});

describe('KubernetesSecretStore: malformed Secrets', () => {
  /** Seeds a valid targets Secret (as the store would write it) and returns its key. */
  async function seedTargets(
    name: string,
    override: Record<string, string> = {},
  ): Promise<KeyObject> {
    const key = generateSigningKey('ecdsa');
    await seedSecret(name, {
      [`${idOf(key)}.key`]: encodePrivateKeyPem(key, 'seeded-Password-1', {
        role: 'targets',
        gun: GUN,
      }),
      password: 'seeded-Password-1',
      ...override,
    });
    return key;
  }

  it('names a Secret without a key entry, and creates nothing else', async () => {
    const secretNames = names();
    await seedSecret(secretNames.targets, { password: 'pw-Only-3' });
    await rejectsWith(
      storeFor(secretNames).load(GUN, { createIfMissing: true }),
      'KEY_STORE_INVALID',
      (facts) => {
        assert.equal(facts['store'], `Kubernetes Secret "builds/${secretNames.targets}"`);
        assert.equal(facts['problem'], 'has no "<key id>.key" entry (entries: password)');
      },
      ['pw-Only-3'],
    );
    assert.equal(await count({ verb: 'create', name: secretNames.root }), 0);
  });

  it('names the Secret and entry when its password does not open the key', async () => {
    const secretNames = names();
    const key = await seedTargets(secretNames.targets, { password: 'wrong-Password-2' });
    const seeded = await getSecret(secretNames.targets);
    await rejectsWith(
      storeFor(secretNames).load(GUN, { createIfMissing: false }),
      'PRIVATE_KEY_INVALID',
      (facts) => {
        assert.equal(
          facts['source'],
          `Kubernetes Secret "builds/${secretNames.targets}" entry "${idOf(key)}.key"`,
        );
        assert.equal(
          facts['problem'],
          'wrong passphrase, or the key file is corrupt (passphrases tried: the "password" entry)',
        );
      },
      [...secretValues([seeded]), 'wrong-Password-2', 'seeded-Password-1'],
    );
  });

  it('refuses an unencrypted key while KPACK_TRUST_TARGETS_PASSPHRASE is set, and reads it without', async () => {
    // With the passphrase set, the Secret alone must not be able to sign (operator guide §3.1).
    const secretNames = names();
    const key = generateSigningKey('ecdsa');
    const entry = `${idOf(key)}.key`;
    await seedSecret(secretNames.targets, {
      [entry]: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
    });
    await rejectsWith(
      storeFor(secretNames, { passphrases: { targets: 'operator-Passphrase-5' } }).load(GUN, {
        createIfMissing: false,
      }),
      'PRIVATE_KEY_INVALID',
      (facts) => {
        assert.equal(
          facts['source'],
          `Kubernetes Secret "builds/${secretNames.targets}" entry "${entry}"`,
        );
        assert.equal(
          facts['problem'],
          'the key is not encrypted, but KPACK_TRUST_TARGETS_PASSPHRASE is set',
        );
      },
      ['operator-Passphrase-5'],
    );
    const keys = await storeFor(secretNames).load(GUN, { createIfMissing: false });
    assert.equal(idOf(keys.targets), idOf(key));
  });

  it('names a key entry that is not a key', async () => {
    const secretNames = names();
    await seedSecret(secretNames.targets, { 'abc.key': 'garbage', password: 'pw' });
    await rejectsWith(
      storeFor(secretNames).load(GUN, { createIfMissing: false }),
      'PRIVATE_KEY_INVALID',
      (facts) => {
        assert.equal(facts['problem'], 'no PEM block found');
      },
      ['garbage'],
    );
  });

  it('names a root Secret whose root.crt certifies another key', async () => {
    const secretNames = names();
    const root = generateSigningKey('ecdsa');
    await seedSecret(secretNames.root, {
      [`${idOf(root)}.key`]: encodePrivateKeyPem(root, 'pw-Root-4', { role: 'root' }),
      password: 'pw-Root-4',
      'root.crt': await createRootCertificate(GUN, generateSigningKey('ecdsa')),
    });
    await rejectsWith(
      storeFor(secretNames).load(GUN, { createIfMissing: true }),
      'KEY_STORE_INVALID',
      (facts) => {
        assert.equal(facts['store'], `Kubernetes Secret "builds/${secretNames.root}"`);
        assert.match(
          String(facts['problem']),
          /^root\.crt certifies key [0-9a-f]{64}, not the stored root key [0-9a-f]{64}$/,
        );
      },
      ['pw-Root-4'],
    );
    assert.equal(await count({ verb: 'create', name: secretNames.targets }), 0);
  });

  it('names a Secret that holds only a key for another role', async () => {
    const secretNames = names();
    const key = generateSigningKey('ecdsa');
    await seedSecret(secretNames.targets, {
      [`${idOf(key)}.key`]: encodePrivateKeyPem(key, 'pw', { role: 'snapshot', gun: GUN }),
      password: 'pw',
    });
    await rejectsWith(
      storeFor(secretNames).load(GUN, { createIfMissing: false }),
      'KEY_STORE_INVALID',
      (facts) => {
        assert.equal(
          facts['problem'],
          `holds no targets key (found: ${idOf(key)}.key (role snapshot))`,
        );
      },
    );
  });

  it('uses a hand-made Secret (kubectl --from-file, trailing newline) as is', async () => {
    const secretNames = names();
    const key = await seedTargets(secretNames.targets, { password: 'seeded-Password-1\n' });
    const keys: RepositoryKeys = await storeFor(secretNames).load(GUN, { createIfMissing: false });
    assert.equal(idOf(keys.targets), idOf(key));
    assert.equal(keys.root, undefined);
  });
});

describe('createKeyStore and credentials', () => {
  it('builds the store from a kubeconfig whose context names the namespace', async () => {
    const secretNames = names();
    const store = createKeyStore({
      kind: 'kubernetes',
      rootKeySecret: secretNames.root,
      targetsKeySecret: secretNames.targets,
      kubeconfig,
      passphrases: {},
    });
    assert.match(store.description, /in namespace "builds" at https:\/\/127\.0\.0\.1:\d+$/);
    const keys = await store.load(GUN, { createIfMissing: true });
    assert.equal(keys.created, true);
    assert.ok(await getSecret(secretNames.targets));
  });

  it('runs in-cluster from the service account token, CA and namespace files', async () => {
    // A real ServiceAccount with a Role as the chart grants it, and a token from the TokenRequest
    // API, mounted where the kubelet would put them.
    await kubectl(['create', 'serviceaccount', 'signer', '-n', NAMESPACE]);
    await kubectl([
      'create',
      'role',
      'signer',
      '--verb=get,create',
      '--resource=secrets',
      '-n',
      NAMESPACE,
    ]);
    await kubectl([
      'create',
      'rolebinding',
      'signer',
      '--role=signer',
      `--serviceaccount=${NAMESPACE}:signer`,
      '-n',
      NAMESPACE,
    ]);
    const token = (await kubectl(['create', 'token', 'signer', '-n', NAMESPACE])).trim();
    const prefix = join(workDir, 'pod');
    const mount = `${prefix}${SERVICE_ACCOUNT_DIR}`;
    await mkdir(mount, { recursive: true });
    await writeFile(join(mount, 'token'), token, { mode: 0o600 });
    await writeFile(join(mount, 'ca.crt'), cluster.caPem);
    await writeFile(join(mount, 'namespace'), NAMESPACE);
    const saved = { ...process.env };
    try {
      delete process.env['KUBECONFIG'];
      process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
      process.env['KUBERNETES_SERVICE_PORT'] = new URL(cluster.server).port;
      const loaded = loadKubeConfig({ serviceAccountPrefix: prefix });
      assert.equal(loaded.source, 'in-cluster service account');
      assert.equal(loaded.namespace, NAMESPACE);
      const secretNames = names();
      const store = new KubernetesSecretStore({
        kubeConfig: loaded.config,
        namespace: NAMESPACE,
        rootKeySecret: secretNames.root,
        targetsKeySecret: secretNames.targets,
      });
      const keys = await store.load(GUN, { createIfMissing: true });
      assert.equal(keys.created, true);
      await count({});
      const creates = (await cluster.auditEvents()).filter(
        (e) => e.verb === 'create' && e.objectRef?.name === secretNames.targets,
      );
      assert.deepEqual(
        creates.map((e) => [e.user?.username, e.responseStatus?.code]),
        [[`system:serviceaccount:${NAMESPACE}:signer`, 201]],
      );
    } finally {
      delete process.env['KUBERNETES_SERVICE_HOST'];
      delete process.env['KUBERNETES_SERVICE_PORT'];
      Object.assign(process.env, saved);
    }
  });

  it('refuses invalid Secret names before calling the apiserver', () => {
    for (const [root, targets, flag] of [
      ['Root_Key', 'targets', '--root-key-secret'],
      ['root', 'targets/x', '--targets-key-secret'],
      ['same', 'same', '--targets-key-secret'],
    ] as const) {
      assert.throws(
        () => storeFor({ root, targets }),
        (err: unknown) => isTrustError(err, 'INPUT_INVALID') && err.facts.source === flag,
      );
    }
  });

  it('refuses a kubeconfig that does not exist', () => {
    assert.throws(
      () => loadKubeConfig({ kubeconfig: join(workDir, 'nope') }),
      (err: unknown) =>
        isTrustError(err, 'CREDENTIALS_INVALID') &&
        err.facts.problem === `${join(workDir, 'nope')} cannot be read (ENOENT)`,
    );
  });
});
