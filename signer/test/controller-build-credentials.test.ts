/**
 * Registry credentials of a Build's service account, as the controller gathers them: which Secrets
 * count and in which order (kpack's), what each kind yields, the caps, the cache, what a missing or
 * forbidden read does — and that no log line or error carries a Secret's contents.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TrustError, type CredentialSource } from '@kpack-trust/common';
import { fakeManifest } from '@kpack-trust/common/testing';
import {
  KPACK_DOCKER_ANNOTATION,
  MAX_SECRET_BYTES,
  MAX_SECRETS_PER_ACCOUNT,
  ServiceAccountCredentials,
  ownCredentials,
  registrySecretNames,
  secretCredentials,
  type RegistryCredentials,
} from '../src/controller/build-credentials.js';
import type { LogFields } from '../src/controller/controller.js';
import { readBuild } from '../src/controller/kpack.js';
import type { SignRequest } from '../src/controller/reconcile.js';
import { controllerSigner } from '../src/controller/signing.js';
import { MemoryKeyStore } from '../src/testing/memory-key-store.js';

const REGISTRY = 'registry.example:5000';
const PASSWORD = 'sa-password-never-logged';

const b64 = (text: string): string => Buffer.from(text).toString('base64');

function dockerConfigJsonSecret(name: string, host: string, user: string, password = PASSWORD) {
  return {
    type: 'kubernetes.io/dockerconfigjson',
    metadata: { name, uid: `uid-${name}`, resourceVersion: '1' },
    data: {
      '.dockerconfigjson': b64(
        JSON.stringify({ auths: { [host]: { auth: b64(`${user}:${password}`) } } }),
      ),
    },
  };
}

function basicAuthSecret(name: string, annotations: Record<string, string>) {
  return {
    type: 'kubernetes.io/basic-auth',
    metadata: { name, annotations },
    data: { username: b64('basic-user'), password: b64(PASSWORD) },
  };
}

const staticSource = (user: string): CredentialSource => ({
  credentialsFor: () => Promise.resolve({ username: user, password: 'own-password' }),
});

describe('registrySecretNames', () => {
  it("lists secrets then imagePullSecrets, each once, as kpack's keychain reads them", () => {
    const { names, dropped } = registrySecretNames({
      secrets: [{ name: 'push' }, { name: 'token-abc' }, { name: 'pull' }],
      imagePullSecrets: [{ name: 'pull' }, { name: 'mirror' }, { notAName: 1 }],
    });
    assert.deepEqual(names, ['push', 'token-abc', 'pull', 'mirror']);
    assert.equal(dropped, 0);
  });

  it('reads at most the cap and counts the rest', () => {
    const secrets = Array.from({ length: MAX_SECRETS_PER_ACCOUNT + 5 }, (_, i) => ({
      name: `s${i}`,
    }));
    const { names, dropped } = registrySecretNames({ secrets });
    assert.equal(names.length, MAX_SECRETS_PER_ACCOUNT);
    assert.equal(dropped, 5);
  });
});

describe('secretCredentials', () => {
  it('a dockerconfigjson Secret answers for its registry only', async () => {
    const read = secretCredentials(dockerConfigJsonSecret('push', REGISTRY, 'sa-user'), 'push');
    assert.equal(read.kind, 'credentials');
    assert.ok(read.kind === 'credentials');
    assert.deepEqual(await read.source.credentialsFor(REGISTRY), {
      username: 'sa-user',
      password: PASSWORD,
    });
    assert.equal(await read.source.credentialsFor('other.example'), undefined);
  });

  it('a dockercfg Secret is the auths map itself', async () => {
    const read = secretCredentials(
      {
        type: 'kubernetes.io/dockercfg',
        data: {
          '.dockercfg': b64(JSON.stringify({ [`https://${REGISTRY}/v1/`]: { auth: b64('u:p') } })),
        },
      },
      'cfg',
    );
    assert.ok(read.kind === 'credentials');
    assert.deepEqual(await read.source.credentialsFor(REGISTRY), { username: 'u', password: 'p' });
  });

  it(`a basic-auth Secret counts only with the ${KPACK_DOCKER_ANNOTATION} annotation, for that registry`, async () => {
    const read = secretCredentials(
      basicAuthSecret('basic', { [KPACK_DOCKER_ANNOTATION]: REGISTRY }),
      'basic',
    );
    assert.ok(read.kind === 'credentials');
    assert.deepEqual(await read.source.credentialsFor(REGISTRY), {
      username: 'basic-user',
      password: PASSWORD,
    });
    const git = secretCredentials(
      basicAuthSecret('git', { 'kpack.io/git': 'https://github.com' }),
      'git',
    );
    assert.deepEqual(git, {
      kind: 'skipped',
      why: `it has no ${KPACK_DOCKER_ANNOTATION} annotation`,
    });
  });

  it('skips an oversized, non-JSON or broken Secret, naming the field and never the value', () => {
    const big = secretCredentials(
      {
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': b64('x'.repeat(MAX_SECRET_BYTES + 1)) },
      },
      'big',
    );
    assert.deepEqual(big, {
      kind: 'skipped',
      why: `its .dockerconfigjson exceeds ${MAX_SECRET_BYTES} bytes`,
    });
    const notJson = secretCredentials(
      { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64(PASSWORD) } },
      'not-json',
    );
    assert.deepEqual(notJson, { kind: 'skipped', why: 'its .dockerconfigjson is not JSON' });
    const broken = secretCredentials(
      {
        type: 'kubernetes.io/dockerconfigjson',
        data: {
          '.dockerconfigjson': b64(JSON.stringify({ auths: { [REGISTRY]: { auth: PASSWORD } } })),
        },
      },
      'broken',
    );
    assert.equal(broken.kind, 'skipped');
    assert.ok(broken.kind === 'skipped' && !broken.why.includes(PASSWORD), broken.kind);
    const opaque = secretCredentials({ type: 'Opaque', data: {} }, 'opaque');
    assert.equal(opaque.kind, 'skipped');
  });
});

interface Reads {
  accounts: string[];
  secrets: string[];
}

function gatherer(
  accounts: Record<string, unknown>,
  secrets: Record<string, unknown>,
  options: {
    own?: CredentialSource;
    forbidden?: boolean;
    ttlMs?: number;
    maxEntries?: number;
  } = {},
) {
  const reads: Reads = { accounts: [], secrets: [] };
  const logs: { message: string; fields: LogFields | undefined }[] = [];
  let now = 1_000;
  const forbidden = (): Error => Object.assign(new Error('403 Forbidden'), { status: 403 });
  const gather = new ServiceAccountCredentials({
    reader: {
      getServiceAccount: (ns, name) => {
        reads.accounts.push(`${ns}/${name}`);
        if (options.forbidden === true) return Promise.reject(forbidden());
        return Promise.resolve(structuredClone(accounts[`${ns}/${name}`]));
      },
      getSecret: (ns, name) => {
        reads.secrets.push(`${ns}/${name}`);
        return Promise.resolve(structuredClone(secrets[`${ns}/${name}`]));
      },
    },
    ...(options.own === undefined ? {} : { own: options.own }),
    log: (_level, message, fields) => logs.push({ message, fields }),
    now: () => now,
    ...(options.ttlMs === undefined ? {} : { ttlMs: options.ttlMs }),
    ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }),
  });
  return {
    gather,
    reads,
    logs,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('ServiceAccountCredentials', () => {
  it("puts the account's Secrets before the controller's own, and skips a missing Secret with a log line", async () => {
    const { gather, logs } = gatherer(
      {
        'team/builder': {
          secrets: [{ name: 'gone' }, { name: 'push' }],
          imagePullSecrets: [{ name: 'pull' }],
        },
      },
      {
        'team/push': dockerConfigJsonSecret('push', REGISTRY, 'sa-user'),
        'team/pull': dockerConfigJsonSecret('pull', REGISTRY, 'pull-user'),
      },
      { own: staticSource('controller-user') },
    );
    const set = await gather.credentialsFor('team', 'builder');
    // The first Secret naming a registry wins (kpack's DockerCreds.Append); the rest fall back to the own.
    assert.equal((await set.source.credentialsFor(REGISTRY))?.username, 'sa-user');
    assert.equal(
      (await set.source.credentialsFor('elsewhere.example'))?.username,
      'controller-user',
    );
    assert.match(set.description, /push, pull of service account team\/builder before/);
    assert.notEqual(set.key, gather.own.key);
    assert.deepEqual(
      logs.map((l) => [l.message, l.fields?.['secret']]),
      [['a Secret the service account lists does not exist; skipped', 'gone']],
    );
    assert.ok(!JSON.stringify(logs).includes(PASSWORD));
  });

  it("falls back to the controller's own when the account is missing or RBAC forbids the read", async () => {
    const missing = gatherer({}, {}, { own: staticSource('controller-user') });
    const set = await missing.gather.credentialsFor('team', 'nobody');
    assert.equal(set.key, 'controller');
    assert.equal(missing.logs.length, 1);

    const forbidden = gatherer({}, {}, { forbidden: true });
    const anonymous = await forbidden.gather.credentialsFor('team', 'builder');
    assert.equal(anonymous.description, 'none (anonymous)');
    assert.equal(await anonymous.source.credentialsFor(REGISTRY), undefined);
    await forbidden.gather.credentialsFor('other', 'builder');
    assert.equal(forbidden.logs.length, 1, 'the missing RBAC is logged once');
  });

  it('caches an account for the TTL, then reads it again', async () => {
    const g = gatherer(
      { 'team/builder': { secrets: [{ name: 'push' }] } },
      { 'team/push': dockerConfigJsonSecret('push', REGISTRY, 'sa-user') },
      { ttlMs: 10_000 },
    );
    const first = await g.gather.credentialsFor('team', 'builder');
    g.advance(9_000);
    assert.equal(await g.gather.credentialsFor('team', 'builder'), first);
    assert.deepEqual(g.reads, { accounts: ['team/builder'], secrets: ['team/push'] });
    g.advance(2_000);
    await g.gather.credentialsFor('team', 'builder');
    assert.equal(g.reads.accounts.length, 2);
  });

  it('keeps at most maxEntries accounts, the oldest evicted first', async () => {
    const g = gatherer({}, {}, { maxEntries: 2 });
    for (const name of ['a', 'b', 'c']) await g.gather.credentialsFor('team', name);
    await g.gather.credentialsFor('team', 'c');
    await g.gather.credentialsFor('team', 'a');
    assert.deepEqual(g.reads.accounts, ['team/a', 'team/b', 'team/c', 'team/a']);
  });

  it('reads no more than the cap of Secrets for one account', async () => {
    const names = Array.from({ length: MAX_SECRETS_PER_ACCOUNT + 3 }, (_, i) => ({
      name: `s${i}`,
    }));
    const g = gatherer({ 'team/many': { secrets: names } }, {});
    await g.gather.credentialsFor('team', 'many');
    assert.equal(g.reads.secrets.length, MAX_SECRETS_PER_ACCOUNT);
  });

  it('does not cache a failed read', async () => {
    let fail = true;
    const gather = new ServiceAccountCredentials({
      reader: {
        getServiceAccount: () =>
          fail ? Promise.reject(new Error('apiserver unavailable')) : Promise.resolve({}),
        getSecret: () => Promise.resolve(undefined),
      },
      log: () => undefined,
      now: () => 0,
    });
    await assert.rejects(gather.credentialsFor('team', 'builder'), /apiserver unavailable/);
    fail = false;
    assert.equal((await gather.credentialsFor('team', 'builder')).key, 'controller');
  });
});

describe("the controller's signing with a Build's credentials", () => {
  const repo = `${REGISTRY}/team/app`;
  const manifest = fakeManifest('build-credentials');
  const build = readBuild({
    apiVersion: 'kpack.io/v1alpha2',
    metadata: { namespace: 'team', name: 'app-build-1' },
    spec: { tags: [`${repo}:v1`], serviceAccountName: 'builder' },
  });
  assert.ok(build);
  const request: SignRequest = {
    image: {
      gun: repo,
      registry: REGISTRY,
      path: 'team/app',
      tags: ['v1'],
      digest: `sha256:${manifest.digestHex}`,
    },
    settings: {
      notaryUrl: 'https://notary.example',
      rootKeySecret: 'team.app-root-key',
      targetsKeySecret: 'team.app-targets-key',
      rootKeyIds: [],
    },
    build,
  };

  it("asks for the Build's service account's set and hands it to the notary and registry clients", async () => {
    const set: RegistryCredentials = {
      source: staticSource('sa-user'),
      key: 'k1',
      description: 'the Secrets push of service account team/builder',
    };
    const asked: string[] = [];
    const handed: (string | undefined)[] = [];
    const sign = controllerSigner({
      keyStoreFor: () => new MemoryKeyStore({ generate: true }),
      credentialsFor: (b) => {
        asked.push(`${b.namespace}/${b.serviceAccountName}`);
        return Promise.resolve(set);
      },
      notaryFor: (_url, credentials) => {
        handed.push(credentials?.key);
        const refused = new TrustError(
          'AUTH_FAILED',
          { url: 'https://notary.example/token', status: 401, problem: 'refused' },
          'The token service rejected the credentials.',
        );
        return {
          fetchMetadata: () => Promise.reject(refused),
          fetchServerKey: () => Promise.reject(refused),
          publish: () => Promise.reject(refused),
        };
      },
      registryFor: (credentials) => {
        handed.push(credentials?.key);
        return { manifestSize: () => Promise.resolve(manifest.length) };
      },
      now: () => new Date('2026-03-01T12:00:00Z'),
    });
    await assert.rejects(sign(request), (err: unknown) => {
      assert.ok(err instanceof TrustError);
      assert.equal(err.code, 'AUTH_FAILED');
      assert.match(
        err.message,
        /credentials; registry credentials: the Secrets push of service account team\/builder\.$/,
      );
      return true;
    });
    assert.deepEqual(asked, ['team/builder']);
    assert.deepEqual([...new Set(handed)], ['k1']);
  });

  it('an error that is not a refused login is left as it was', async () => {
    const sign = controllerSigner({
      keyStoreFor: () => new MemoryKeyStore({ generate: true }),
      credentialsFor: () => Promise.resolve(ownCredentials(undefined)),
      notaryFor: () => {
        const down = new TrustError(
          'HTTP_UNREACHABLE',
          { url: 'https://notary.example', problem: 'ECONNREFUSED' },
          'Cannot reach https://notary.example.',
        );
        return {
          fetchMetadata: () => Promise.reject(down),
          fetchServerKey: () => Promise.reject(down),
          publish: () => Promise.reject(down),
        };
      },
      registryFor: () => ({ manifestSize: () => Promise.resolve(manifest.length) }),
      now: () => new Date('2026-03-01T12:00:00Z'),
    });
    await assert.rejects(sign(request), { message: 'Cannot reach https://notary.example.' });
  });
});

describe('readBuild', () => {
  it("takes the service account from v1alpha2's serviceAccountName, v1alpha1's serviceAccount, else kpack's default", () => {
    const of = (spec: Record<string, unknown>) =>
      readBuild({ metadata: { namespace: 'team', name: 'b' }, spec })?.serviceAccountName;
    assert.equal(of({ serviceAccountName: 'builder' }), 'builder');
    assert.equal(of({ serviceAccount: 'legacy' }), 'legacy');
    assert.equal(of({}), 'default');
  });
});
