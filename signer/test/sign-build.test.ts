/**
 * The publishing flow against an in-memory notary server that answers as notary-server does:
 * creation, updates, idempotence, retries on concurrent writers, and each refusal with nothing
 * published.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  PublicKey,
  TrustError,
  compileAnchor,
  generateSigningKey,
  nextTargets,
  resolveTarget,
  updateCollection,
  withDelegation,
  NOTARY_ROLE_ORDER,
} from '@kpack-trust/common';
import {
  FixtureRepository,
  fakeManifest,
  fakeTarget,
  fixtureKey,
  type FixtureKey,
} from '@kpack-trust/common/testing';
import type { BuildImage } from '../src/publish/build-image.js';
import { backoff, signBuild, type SignBuildDependencies } from '../src/publish/sign-build.js';
import type { ManifestLookup } from '../src/registry/manifest-client.js';
import { MemoryKeyStore } from '../src/testing/memory-key-store.js';
import { MemoryNotary } from './support/memory-notary.js';

const GUN = 'registry.example:5000/team/app';
const NOW = new Date('2026-03-01T12:00:00Z');

function build(seed: string, tags: string[], size?: number): BuildImage {
  const m = fakeManifest(seed);
  return {
    gun: GUN,
    registry: 'registry.example:5000',
    path: 'team/app',
    tags,
    digest: `sha256:${m.digestHex}`,
    ...(size === undefined ? {} : { size }),
  };
}

function registryFor(sizes: Record<string, number>): ManifestLookup & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    manifestSize(_image, digest) {
      calls.push(digest);
      const size = sizes[digest];
      if (size === undefined) {
        return Promise.reject(
          new TrustError(
            'MANIFEST_UNKNOWN',
            { image: GUN, digest, url: 'memory://', status: 404 },
            'unknown',
          ),
        );
      }
      return Promise.resolve(size);
    },
  };
}

function deps(
  notary: MemoryNotary,
  keyStore: MemoryKeyStore,
  extra: Partial<SignBuildDependencies> = {},
): SignBuildDependencies & { lines: string[]; sleeps: number[] } {
  const lines: string[] = [];
  const sleeps: number[] = [];
  return {
    notary,
    keyStore,
    now: () => NOW,
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
    random: () => 0.5,
    progress: (line) => lines.push(line),
    ...extra,
    lines,
    sleeps,
  };
}

async function lookupTag(notary: MemoryNotary, rootKeyId: string, tag: string): Promise<string> {
  const collection = await updateCollection(notary, GUN, {
    anchor: compileAnchor({ rootKeyIds: [rootKeyId] }),
    now: NOW,
  });
  return resolveTarget(collection, tag, NOTARY_ROLE_ORDER).sha256Hex;
}

/** A SIGNING_KEY_UNUSABLE for targets/releases whose problem starts so and names both pins. */
function refusedUnderTofu(keyId: string, problemStart: string): (err: unknown) => boolean {
  return (err) => {
    const e = err as TrustError<'SIGNING_KEY_UNUSABLE'>;
    assert.equal(e.code, 'SIGNING_KEY_UNUSABLE');
    assert.deepEqual(
      { gun: e.facts.gun, role: e.facts.role, keyId: e.facts.keyId },
      { gun: GUN, role: 'targets/releases', keyId },
    );
    assert.ok(e.facts.problem.startsWith(problemStart), e.facts.problem);
    assert.match(e.message, /--root-key-id or a root keys dir/);
    return true;
  };
}

/**
 * Signs one:v1 into targets/releases of `repo` with our key: under trust on first use it must be
 * refused (SIGNING_KEY_UNUSABLE, problem starting `problemStart`) with nothing published; with the
 * repository's root pinned it must then be signed. Returns the server and the pinned summary.
 */
async function refusedUnderTofuThenSignedPinned(
  repo: FixtureRepository,
  ours: FixtureKey,
  problemStart: string,
) {
  const notary = new MemoryNotary(NOW);
  notary.serveFixture(repo, { serverSnapshot: true });
  const store = new MemoryKeyStore({
    keys: { delegations: new Map([['targets/releases', ours.privateKey]]) },
  });
  const image = build('one', ['v1'], 700);
  await assert.rejects(
    signBuild({ image, role: 'targets/releases' }, deps(notary, store)),
    refusedUnderTofu(ours.publicKey.id, problemStart),
  );
  assert.deepEqual(notary.publishes, []);
  const rootKeyId = repo.rootKeys[0]?.publicKey.id;
  assert.ok(rootKeyId);
  const pinned = await signBuild(
    { image, role: 'targets/releases', rootKeyIds: [rootKeyId] },
    deps(notary, store),
  );
  return { notary, pinned };
}

describe('signBuild', () => {
  it('creates a new repository, asking the server for each key exactly once', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    const image = build('one', ['v1', 'latest'], 700);
    const summary = await signBuild({ image }, deps(notary, store));
    assert.deepEqual(notary.keyRequests, [`${GUN} timestamp`, `${GUN} snapshot`]);
    assert.deepEqual(store.loads, [{ gun: GUN, createIfMissing: true }]);
    assert.equal(summary.created, true);
    assert.equal(summary.keysCreated, true);
    assert.deepEqual(summary.rolesPublished, ['root', 'targets']);
    assert.deepEqual(summary.versions, { root: 1, targets: 2 });
    assert.equal(summary.size, 700);
    assert.deepEqual(summary.tags, ['v1', 'latest']);
    assert.equal(summary.attempts, 1);
    assert.ok(notary.rootOf(GUN).keys.has(summary.rootKeyId));
    for (const tag of ['v1', 'latest']) {
      assert.equal(await lookupTag(notary, summary.rootKeyId, tag), fakeManifest('one').digestHex);
    }
  });

  it('updates the tags on the next build with the same keys and no new server keys', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    const first = await signBuild(
      { image: build('one', ['v1', 'latest'], 700) },
      deps(notary, store),
    );
    const second = await signBuild(
      { image: build('two', ['v2', 'latest'], 701) },
      deps(notary, store),
    );
    assert.equal(second.created, false);
    assert.equal(second.keysCreated, false);
    assert.equal(second.rootKeyId, first.rootKeyId);
    assert.deepEqual(second.rolesPublished, ['targets']);
    assert.deepEqual(second.versions, { root: 1, targets: 3 });
    assert.equal(notary.keyRequests.length, 2);
    assert.deepEqual(store.loads.at(-1), { gun: GUN, createIfMissing: false });
    assert.deepEqual(
      notary.targetsOf(GUN),
      new Map([
        ['v1', fakeManifest('one').digestHex],
        ['latest', fakeManifest('two').digestHex],
        ['v2', fakeManifest('two').digestHex],
      ]),
    );
  });

  it('publishes nothing when the build is already signed', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    await signBuild({ image: build('one', ['v1'], 700) }, deps(notary, store));
    const before = notary.publishes.length;
    const again = await signBuild({ image: build('one', ['v1'], 700) }, deps(notary, store));
    assert.equal(notary.publishes.length, before);
    assert.deepEqual(again.rolesPublished, []);
    assert.deepEqual(again.versions, { root: 1, targets: 2 });
  });

  it('retries on fresh metadata after a concurrent writer wins (400 VERSION), keeping both tags', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    await signBuild({ image: build('base', ['base'], 600) }, deps(notary, store));
    let interfered = false;
    notary.beforePublish = async () => {
      if (interfered) return;
      interfered = true;
      await signBuild({ image: build('theirs', ['theirs'], 601) }, deps(notary, store));
    };
    const d = deps(notary, store);
    const summary = await signBuild({ image: build('ours', ['ours'], 602) }, d);
    assert.equal(summary.attempts, 2);
    assert.deepEqual(summary.versions, { root: 1, targets: 4 });
    assert.deepEqual(d.sleeps, [200]);
    assert.ok(
      d.lines.some((l) => /retrying on fresh metadata in 200 ms \(attempt 2 of 5\)/.test(l)),
    );
    assert.deepEqual([...notary.targetsOf(GUN).keys()].sort(), ['base', 'ours', 'theirs']);
    assert.deepEqual(
      notary.publishes.map((p) => p.accepted),
      [true, true, false, true],
    );
  });

  it('gives up with PUBLISH_CONFLICT after the last attempt, having published nothing of ours', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    await signBuild({ image: build('base', ['base'], 600) }, deps(notary, store));
    let n = 0;
    notary.beforePublish = async () => {
      const hook = notary.beforePublish;
      notary.beforePublish = undefined;
      n++;
      await signBuild({ image: build(`theirs-${n}`, [`theirs-${n}`], 601) }, deps(notary, store));
      notary.beforePublish = hook;
    };
    const d = deps(notary, store, { maxAttempts: 3 });
    await assert.rejects(signBuild({ image: build('ours', ['ours'], 602) }, d), {
      code: 'PUBLISH_CONFLICT',
      facts: { gun: GUN, attempts: 3 },
    });
    assert.equal(notary.targetsOf(GUN).has('ours'), false);
    assert.deepEqual(d.sleeps, [200, 400]);
  });

  it('lets two first builds race to create the repository: one creates, the other updates', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    const [a, b] = await Promise.all([
      signBuild({ image: build('a', ['a'], 600) }, deps(notary, store)),
      signBuild({ image: build('b', ['b'], 601) }, deps(notary, store)),
    ]);
    assert.deepEqual([a.created, b.created].sort(), [false, true]);
    assert.equal(a.rootKeyId, b.rootKeyId);
    assert.deepEqual([...notary.targetsOf(GUN).keys()].sort(), ['a', 'b']);
    assert.equal(Math.max(a.attempts, b.attempts), 2);
  });

  it('reads the size from the registry, and refuses a size the registry contradicts', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    const image = build('one', ['v1']);
    const registry = registryFor({ [image.digest]: 812 });
    const summary = await signBuild({ image }, deps(notary, store, { registry }));
    assert.equal(summary.size, 812);
    assert.deepEqual(registry.calls, [image.digest]);
    await assert.rejects(
      signBuild({ image: { ...image, size: 813 } }, deps(notary, store, { registry })),
      {
        code: 'INPUT_INVALID',
        facts: { source: 'manifest size', problem: 'stated 813, registry serves 812' },
      },
    );
  });

  it('publishes nothing for a digest the registry does not have, nor without any size', async () => {
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    await assert.rejects(
      signBuild(
        { image: build('missing', ['v1']) },
        deps(notary, store, { registry: registryFor({}) }),
      ),
      {
        code: 'MANIFEST_UNKNOWN',
      },
    );
    await assert.rejects(signBuild({ image: build('one', ['v1']) }, deps(notary, store)), {
      code: 'INPUT_INVALID',
      facts: { source: 'manifest size', problem: 'unknown, and the registry check is off' },
    });
    assert.deepEqual(notary.keyRequests, []);
    assert.deepEqual(notary.publishes, []);
    assert.deepEqual(store.loads, []);
  });

  it('refuses to create a repository it cannot create without asking the server for any key', async () => {
    // Each GET <role>.key on a new GUN makes notary-signer generate a key that nothing will list.
    const targetsOnly = new MemoryKeyStore({ keys: { targets: generateSigningKey() } });
    const rootOnly = new MemoryKeyStore({ keys: { root: { privateKey: generateSigningKey() } } });
    const both = new MemoryKeyStore({ generate: true });
    const cases: [string, MemoryKeyStore, string | undefined, string, string][] = [
      [
        'no root key',
        targetsOnly,
        undefined,
        'root',
        'the repository does not exist yet and no root key is available to create it',
      ],
      [
        'no targets key',
        rootOnly,
        undefined,
        'targets',
        'the repository does not exist yet and no targets key is available',
      ],
      [
        'a delegation',
        both,
        'targets/releases',
        'targets/releases',
        'the repository does not exist yet, so it has no delegation targets/releases to sign into',
      ],
    ];
    for (const [name, store, role, refusedRole, problem] of cases) {
      const notary = new MemoryNotary(NOW);
      await assert.rejects(
        signBuild(
          { image: build('one', ['v1'], 700), ...(role === undefined ? {} : { role }) },
          deps(notary, store),
        ),
        {
          code: 'SIGNING_KEY_UNUSABLE',
          facts: { gun: GUN, role: refusedRole, keyId: '', problem },
        },
        name,
      );
      assert.deepEqual(notary.keyRequests, [], name);
      assert.deepEqual(notary.publishes, [], name);
    }
  });

  it('refuses a delegation on a repository that does not exist before the key store creates any key', async () => {
    // A store that generates keys would otherwise keep a root key no repository lists, and the
    // Kubernetes store's leftover root Secret would then anchor (and refuse) every later build.
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ generate: true });
    await assert.rejects(
      signBuild(
        { image: build('one', ['v1'], 700), role: 'targets/releases' },
        deps(notary, store),
      ),
      {
        code: 'SIGNING_KEY_UNUSABLE',
        facts: {
          gun: GUN,
          role: 'targets/releases',
          keyId: '',
          problem:
            'the repository does not exist yet, so it has no delegation targets/releases to sign into',
        },
      },
    );
    assert.equal(store.current, undefined);
    assert.deepEqual(
      store.loads.filter((l) => l.createIfMissing),
      [],
    );
    assert.deepEqual(notary.keyRequests, []);
  });

  it('refuses to create a repository whose root and targets keys are one key', async () => {
    // A header-less key in a directory given as both --keys-dir and --root-keys-dir is read as both.
    const key = generateSigningKey();
    const id = PublicKey.fromKeyObject(key).canonicalId;
    const notary = new MemoryNotary(NOW);
    const store = new MemoryKeyStore({ keys: { root: { privateKey: key }, targets: key } });
    await assert.rejects(signBuild({ image: build('one', ['v1'], 700) }, deps(notary, store)), {
      code: 'KEY_STORE_INVALID',
      facts: {
        store: 'memory',
        problem: `its root key and targets key are the same key (${id})`,
      },
    });
    assert.deepEqual(notary.keyRequests, []);
    assert.deepEqual(notary.publishes, []);
  });

  it('refuses a repository whose root is not signed by our root key', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const notary = new MemoryNotary(NOW);
    notary.serveFixture(repo, { serverSnapshot: true });
    const strangerRoot = await fixtureKey();
    const store = new MemoryKeyStore({
      keys: { root: { privateKey: strangerRoot.privateKey }, targets: repo.targetsKey.privateKey },
    });
    await assert.rejects(signBuild({ image: build('one', ['v1'], 700) }, deps(notary, store)), {
      code: 'SIGNING_KEY_UNUSABLE',
      facts: {
        gun: GUN,
        role: 'root',
        keyId: strangerRoot.publicKey.id,
        problem: 'no root key matches the pinned trust anchor',
      },
    });
    assert.deepEqual(notary.publishes, []);
  });

  it('signs with a targets key alone (root trusted on first use), or pinned by --root-key-id', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const notary = new MemoryNotary(NOW);
    notary.serveFixture(repo, { serverSnapshot: true });
    const store = new MemoryKeyStore({ keys: { targets: repo.targetsKey.privateKey } });
    const tofu = await signBuild({ image: build('one', ['v1'], 700) }, deps(notary, store));
    assert.deepEqual(tofu.rolesPublished, ['targets']);
    assert.equal(tofu.rootKeyId, repo.rootKeys[0]?.publicKey.id);
    const pinned = await signBuild(
      { image: build('two', ['v1'], 700), rootKeyIds: [tofu.rootKeyId] },
      deps(notary, store),
    );
    assert.deepEqual(pinned.rolesPublished, ['targets']);
    const wrongPin = 'ab'.repeat(32);
    await assert.rejects(
      signBuild(
        { image: build('three', ['v1'], 700), rootKeyIds: [wrongPin] },
        deps(notary, store),
      ),
      {
        code: 'SIGNING_KEY_UNUSABLE',
        facts: {
          gun: GUN,
          role: 'root',
          keyId: wrongPin,
          problem: 'no root key matches the pinned trust anchor',
        },
      },
    );
  });

  it("refuses a key that is not the repository's targets key, publishing nothing", async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const notary = new MemoryNotary(NOW);
    notary.serveFixture(repo, { serverSnapshot: true });
    const store = new MemoryKeyStore({ keys: { targets: (await fixtureKey()).privateKey } });
    await assert.rejects(
      signBuild({ image: build('one', ['v1'], 700) }, deps(notary, store)),
      (err: unknown) => {
        const e = err as TrustError<'SIGNING_KEY_UNUSABLE'>;
        return (
          e.code === 'SIGNING_KEY_UNUSABLE' &&
          e.facts.role === 'targets' &&
          /is not the repository's targets key/.test(e.message)
        );
      },
    );
    assert.deepEqual(notary.publishes, []);
  });

  it('explains a client-held snapshot key we do not hold, and signs the snapshot when we do', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const notary = new MemoryNotary(NOW);
    notary.serveFixture(repo);
    const rootKey = repo.rootKeys[0];
    assert.ok(rootKey);
    const withoutSnapshot = new MemoryKeyStore({
      keys: { root: { privateKey: rootKey.privateKey }, targets: repo.targetsKey.privateKey },
    });
    await assert.rejects(
      signBuild({ image: build('one', ['v1'], 700) }, deps(notary, withoutSnapshot)),
      {
        code: 'SIGNING_KEY_UNUSABLE',
        facts: {
          gun: GUN,
          role: 'snapshot',
          keyId: repo.snapshotKey.publicKey.id,
          problem: 'client-held snapshot key',
        },
      },
    );
    const withSnapshot = new MemoryKeyStore({
      keys: {
        root: { privateKey: rootKey.privateKey },
        targets: repo.targetsKey.privateKey,
        snapshot: repo.snapshotKey.privateKey,
      },
    });
    const summary = await signBuild(
      { image: build('one', ['v1'], 700) },
      deps(notary, withSnapshot),
    );
    assert.deepEqual(summary.rolesPublished, ['targets', 'snapshot']);
    assert.equal(await lookupTag(notary, summary.rootKeyId, 'v1'), fakeManifest('one').digestHex);
  });

  it('signs into a delegation the repository grants our key', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const [releases] = await repo.addDelegation('targets/releases');
    assert.ok(releases);
    const notary = new MemoryNotary(NOW);
    notary.serveFixture(repo, { serverSnapshot: true });
    const store = new MemoryKeyStore({
      keys: { delegations: new Map([['targets/releases', releases.privateKey]]) },
    });
    const d = deps(notary, store);
    const summary = await signBuild(
      { image: build('one', ['v1'], 700), role: 'targets/releases' },
      d,
    );
    assert.deepEqual(summary.rolesPublished, ['targets/releases']);
    assert.equal(summary.role, 'targets/releases');
    assert.deepEqual(
      notary.targetsOf(GUN, 'targets/releases'),
      new Map([['v1', fakeManifest('one').digestHex]]),
    );
    assert.ok(!d.lines.some((l) => l.startsWith('note:')));
  });

  it('refuses, with the root trusted on first use, a delegation whose current version our key did not sign (a forged chain)', async () => {
    // The server's own root; its targets delegates targets/releases to our key and the attacker's
    // (threshold 1); the attacker alone signed the current targets/releases, slipping in "evil".
    const ours = await fixtureKey();
    const attacker = await fixtureKey();
    const repo = await FixtureRepository.create(GUN, NOW);
    await repo.addDelegation('targets/releases', { keys: [ours, attacker] });
    await repo.changeTargets(
      'targets/releases',
      { set: new Map([['evil', fakeTarget('evil')]]) },
      { signers: [attacker.signer] },
    );
    const { notary, pinned } = await refusedUnderTofuThenSignedPinned(
      repo,
      ours,
      'the current targets/releases is not signed by our key',
    );
    // With the root pinned, a delegation another signer published last is signed (docker trust's
    // several signers of targets/releases), "evil" and all: the pinned root vouches for them.
    assert.deepEqual(pinned.rolesPublished, ['targets/releases']);
    assert.deepEqual([...notary.targetsOf(GUN, 'targets/releases').keys()].sort(), ['evil', 'v1']);
  });

  it('refuses, with the root trusted on first use, a delegation never published, naming the pin', async () => {
    const ours = await fixtureKey();
    const repo = await FixtureRepository.create(GUN, NOW);
    repo.targets = nextTargets(
      withDelegation(repo.targets, { name: 'targets/releases', keys: [ours.publicKey] }),
      {},
      NOW,
    );
    await repo.publish(['targets']);
    const { pinned } = await refusedUnderTofuThenSignedPinned(
      repo,
      ours,
      'targets/releases has never been published',
    );
    assert.deepEqual(pinned.versions, { root: 1, 'targets/releases': 1 });
  });

  it('signs into another delegation, saying Docker will not trust tags from it alone', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const [ci] = await repo.addDelegation('targets/ci');
    assert.ok(ci);
    const notary = new MemoryNotary(NOW);
    notary.serveFixture(repo, { serverSnapshot: true });
    const store = new MemoryKeyStore({
      keys: { delegations: new Map([['targets/ci', ci.privateKey]]) },
    });
    const d = deps(notary, store);
    const summary = await signBuild({ image: build('one', ['v1'], 700), role: 'targets/ci' }, d);
    assert.deepEqual(summary.rolesPublished, ['targets/ci']);
    assert.ok(
      d.lines.includes(
        'note: Docker and kpack-trust-verifier trust tags from targets/releases or targets only; a tag signed only in targets/ci is refused unless a verifier rule requires targets/ci as a signer',
      ),
    );
  });
});

describe('backoff', () => {
  it('doubles per attempt with ±50 % jitter, capped at five seconds', () => {
    assert.equal(
      backoff(1, () => 0),
      100,
    );
    assert.equal(
      backoff(1, () => 0.999999),
      300,
    );
    assert.equal(
      backoff(3, () => 0.5),
      800,
    );
    assert.equal(
      backoff(20, () => 0.5),
      5000,
    );
  });
});
