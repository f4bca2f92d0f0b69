/**
 * Planning publishes against in-memory repositories: every plan is checked by verifying what it
 * would publish with the trust core's own verifier, and every refusal by its exact code and facts.
 */
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  CollectionVerifier,
  PublicKey,
  compileAnchor,
  createRootCertificate,
  fileMetaOf,
  imageTarget,
  nextTargets,
  parseEnvelope,
  parseRoot,
  parseSnapshot,
  parseTargets,
  updateCollection,
  verifyThreshold,
  withDelegation,
  type FileMeta,
  type TrustedCollection,
} from '@kpack-trust/common';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  fixtureKey,
  type FixtureKey,
} from '@kpack-trust/common/testing';
import {
  planNewRepository,
  planUpdate,
  resignHorizon,
  type PublishPlan,
  type SigningKeys,
} from '../src/publish/plan.js';

const GUN = 'registry.example:5000/team/app';
const NOW = new Date('2026-03-01T12:00:00Z');
const DAY = 24 * 3600 * 1000;

function tags(...names: string[]): Map<string, FileMeta> {
  const m = fakeManifest('build-1');
  return new Map(names.map((n) => [n, imageTarget(m.digestHex, m.length)]));
}

async function collectionOf(repo: FixtureRepository, now = NOW): Promise<TrustedCollection> {
  return updateCollection(new MemoryFetcher(repo), repo.gun, {
    anchor: compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }),
    now,
  });
}

function keysOf(repo: FixtureRepository, extra: Partial<SigningKeys> = {}): SigningKeys {
  const [root] = repo.rootKeys;
  return {
    ...(root === undefined ? {} : { root: { privateKey: root.privateKey } }),
    targets: repo.targetsKey.privateKey,
    delegations: new Map(),
    ...extra,
  };
}

function fileOf(plan: PublishPlan, role: string): Buffer {
  const file = plan.files.find((f) => f.role === role);
  assert.ok(file, `the plan publishes ${role}`);
  return Buffer.from(file.bytes);
}

describe('planNewRepository', () => {
  it('makes root v1 with a certificate for the GUN and targets v2 holding the tags', async () => {
    const root = await fixtureKey();
    const targets = await fixtureKey();
    const timestamp = await fixtureKey();
    const snapshot = await fixtureKey();
    const plan = await planNewRepository({
      gun: GUN,
      role: 'targets',
      targets: tags('v1', 'latest'),
      keys: {
        root: { privateKey: root.privateKey },
        targets: targets.privateKey,
        delegations: new Map(),
      },
      serverKeys: { timestamp: timestamp.publicKey, snapshot: snapshot.publicKey },
      now: NOW,
    });
    assert.deepEqual(
      plan.files.map((f) => f.role),
      ['root', 'targets'],
    );
    assert.deepEqual(plan.versions, { root: 1, targets: 2 });
    const rootEnvelope = parseEnvelope(fileOf(plan, 'root'), 'root');
    const rootModel = parseRoot(rootEnvelope.signed);
    assert.equal(rootModel.version, 1);
    const rootKey = rootModel.keys.get(plan.rootKeyId);
    assert.equal(rootKey?.type, 'ecdsa-x509');
    assert.equal(rootKey.canonicalId, root.publicKey.id);
    assert.equal(plan.rootCanonicalKeyId, root.publicKey.id);
    assert.match(rootKey.certificate?.subject ?? '', new RegExp(`CN=${GUN}`));
    assert.deepEqual(rootModel.roles.timestamp.keyIds, [timestamp.publicKey.id]);
    assert.deepEqual(rootModel.roles.snapshot.keyIds, [snapshot.publicKey.id]);
    assert.deepEqual(rootModel.roles.targets.keyIds, [targets.publicKey.id]);
    verifyThreshold('root', rootEnvelope, rootModel.roles.root, rootModel.keys);
    // A fresh verifier anchored on the plan's root key id accepts the root.
    new CollectionVerifier({ gun: GUN, now: NOW }).anchorRoot(
      fileOf(plan, 'root'),
      compileAnchor({ rootKeyIds: [plan.rootKeyId] }),
    );
    const targetsEnvelope = parseEnvelope(fileOf(plan, 'targets'), 'targets');
    verifyThreshold('targets', targetsEnvelope, rootModel.roles.targets, rootModel.keys);
    const targetsModel = parseTargets(targetsEnvelope.signed);
    assert.equal(targetsModel.version, 2);
    assert.deepEqual([...targetsModel.targets.keys()].sort(), ['latest', 'v1']);
  });

  it('signs snapshot v2 itself when it holds a snapshot key', async () => {
    const snapshot = await fixtureKey();
    const plan = await planNewRepository({
      gun: GUN,
      role: 'targets',
      targets: tags('v1'),
      keys: {
        root: { privateKey: (await fixtureKey()).privateKey },
        targets: (await fixtureKey()).privateKey,
        snapshot: snapshot.privateKey,
        delegations: new Map(),
      },
      serverKeys: { timestamp: (await fixtureKey()).publicKey },
      now: NOW,
    });
    assert.deepEqual(
      plan.files.map((f) => f.role),
      ['root', 'targets', 'snapshot'],
    );
    const snap = parseSnapshot(parseEnvelope(fileOf(plan, 'snapshot'), 'snapshot').signed);
    assert.equal(snap.version, 2);
    assert.deepEqual(snap.meta.get('targets'), fileMetaOf(fileOf(plan, 'targets')));
    assert.deepEqual(snap.meta.get('root'), fileMetaOf(fileOf(plan, 'root')));
  });

  it('reuses a stored certificate for this GUN and replaces one made for another GUN', async () => {
    const root = await fixtureKey();
    const input = {
      gun: GUN,
      role: 'targets',
      targets: tags('v1'),
      serverKeys: {
        timestamp: (await fixtureKey()).publicKey,
        snapshot: (await fixtureKey()).publicKey,
      },
      now: NOW,
    };
    const ours = await createRootCertificate(GUN, root.privateKey, { notBefore: NOW });
    const reused = await planNewRepository({
      ...input,
      keys: {
        root: { privateKey: root.privateKey, certificatePem: ours },
        targets: (await fixtureKey()).privateKey,
        delegations: new Map(),
      },
    });
    assert.equal(reused.rootKeyId, PublicKey.fromCertificatePem(ours).id);

    const other = await createRootCertificate('registry.example:5000/other', root.privateKey, {
      notBefore: NOW,
    });
    const fresh = await planNewRepository({
      ...input,
      keys: {
        root: { privateKey: root.privateKey, certificatePem: other },
        targets: (await fixtureKey()).privateKey,
        delegations: new Map(),
      },
    });
    assert.notEqual(fresh.rootKeyId, PublicKey.fromCertificatePem(other).id);
    assert.equal(fresh.rootCanonicalKeyId, root.publicKey.id);
  });

  it('refuses without a root key, without a targets key, and for a delegation', async () => {
    const serverKeys = {
      timestamp: (await fixtureKey()).publicKey,
      snapshot: (await fixtureKey()).publicKey,
    };
    const targets = (await fixtureKey()).privateKey;
    const root = { privateKey: (await fixtureKey()).privateKey };
    const base = { gun: GUN, role: 'targets', targets: tags('v1'), serverKeys, now: NOW };
    await assert.rejects(
      planNewRepository({ ...base, keys: { targets, delegations: new Map() } }),
      {
        code: 'SIGNING_KEY_UNUSABLE',
        facts: {
          gun: GUN,
          role: 'root',
          keyId: '',
          problem: 'the repository does not exist yet and no root key is available to create it',
        },
      },
    );
    await assert.rejects(planNewRepository({ ...base, keys: { root, delegations: new Map() } }), {
      code: 'SIGNING_KEY_UNUSABLE',
      facts: {
        gun: GUN,
        role: 'targets',
        keyId: '',
        problem: 'the repository does not exist yet and no targets key is available',
      },
    });
    await assert.rejects(
      planNewRepository({
        ...base,
        role: 'targets/releases',
        keys: { root, targets, delegations: new Map() },
      }),
      (err: unknown) =>
        (err as { code?: string; facts?: { role?: string } }).code === 'SIGNING_KEY_UNUSABLE' &&
        (err as { facts: { role: string } }).facts.role === 'targets/releases',
    );
  });
});

describe('planUpdate', () => {
  it('adds every tag to targets in one new version, leaving the snapshot to the server', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('old', fakeManifest('old').digestHex, fakeManifest('old').length);
    const collection = await collectionOf(repo);
    const plan = await planUpdate({
      gun: GUN,
      role: 'targets',
      targets: tags('v1', 'latest'),
      collection,
      keys: keysOf(repo),
      now: NOW,
    });
    assert.deepEqual(
      plan.files.map((f) => f.role),
      ['targets'],
    );
    const envelope = parseEnvelope(fileOf(plan, 'targets'), 'targets');
    verifyThreshold('targets', envelope, collection.root.roles.targets, collection.root.keys);
    const model = parseTargets(envelope.signed);
    assert.equal(model.version, repo.targets.version + 1);
    assert.deepEqual([...model.targets.keys()].sort(), ['latest', 'old', 'v1']);
    assert.deepEqual(plan.versions, { root: 1, targets: repo.targets.version + 1 });
    assert.equal(plan.rootResigned, false);
    assert.equal(plan.rootKeyId, repo.rootKeys[0]?.publicKey.id);
  });

  it('also signs the snapshot when root lists a snapshot key we hold', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const collection = await collectionOf(repo);
    const plan = await planUpdate({
      gun: GUN,
      role: 'targets',
      targets: tags('v1'),
      collection,
      keys: keysOf(repo, { snapshot: repo.snapshotKey.privateKey }),
      now: NOW,
    });
    assert.deepEqual(
      plan.files.map((f) => f.role),
      ['targets', 'snapshot'],
    );
    const envelope = parseEnvelope(fileOf(plan, 'snapshot'), 'snapshot');
    verifyThreshold('snapshot', envelope, collection.root.roles.snapshot, collection.root.keys);
    const snap = parseSnapshot(envelope.signed);
    assert.equal(snap.version, collection.snapshot.version + 1);
    assert.deepEqual(snap.meta.get('targets'), fileMetaOf(fileOf(plan, 'targets')));
    // Unchanged roles keep the entries the previous snapshot gave them.
    assert.deepEqual(snap.meta.get('root'), collection.snapshot.meta.get('root'));
  });

  it('publishes nothing when every tag already points to the digest (idempotent)', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const m = fakeManifest('build-1');
    await repo.signTag('v1', m.digestHex, m.length);
    const collection = await collectionOf(repo);
    const plan = await planUpdate({
      gun: GUN,
      role: 'targets',
      targets: tags('v1'),
      collection,
      keys: keysOf(repo),
      now: NOW,
    });
    assert.deepEqual(plan.files, []);
    assert.deepEqual(plan.versions, { root: 1, targets: repo.targets.version });
  });

  it('replaces a tag that points elsewhere', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const old = fakeManifest('old');
    await repo.signTag('v1', old.digestHex, old.length);
    const plan = await planUpdate({
      gun: GUN,
      role: 'targets',
      targets: tags('v1'),
      collection: await collectionOf(repo),
      keys: keysOf(repo),
      now: NOW,
    });
    const model = parseTargets(parseEnvelope(fileOf(plan, 'targets'), 'targets').signed);
    assert.equal(
      model.targets.get('v1')?.hashes['sha256']?.toString('hex'),
      fakeManifest('build-1').digestHex,
    );
  });

  it("refuses a key that is not the repository's targets key", async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const stranger = await fixtureKey();
    await assert.rejects(
      planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection: await collectionOf(repo),
        keys: { targets: stranger.privateKey, delegations: new Map() },
        now: NOW,
      }),
      {
        code: 'SIGNING_KEY_UNUSABLE',
        facts: {
          gun: GUN,
          role: 'targets',
          keyId: stranger.publicKey.id,
          problem: `key ${stranger.publicKey.id} is not the repository's targets key (targets lists ${repo.targetsKey.publicKey.id})`,
        },
      },
    );
  });

  it('refuses when we hold no key at all for the role', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    await assert.rejects(
      planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection: await collectionOf(repo),
        keys: { delegations: new Map() },
        now: NOW,
      }),
      {
        code: 'SIGNING_KEY_UNUSABLE',
        facts: { gun: GUN, role: 'targets', keyId: '', problem: 'no key to sign targets with' },
      },
    );
  });

  it('refuses a targets role that needs more signatures than one signer gives', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const second = await fixtureKey();
    repo.root = {
      ...repo.root,
      keys: new Map([...repo.root.keys, [second.publicKey.id, second.publicKey]]),
      roles: {
        ...repo.root.roles,
        targets: { keyIds: [repo.targetsKey.publicKey.id, second.publicKey.id], threshold: 2 },
      },
    };
    await repo.republishRoot({});
    await repo.publish(['targets'], {
      targets: { signers: [repo.targetsKey.signer, second.signer] },
    });
    await assert.rejects(
      planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection: await collectionOf(repo),
        keys: keysOf(repo),
        now: NOW,
      }),
      {
        code: 'SIGNING_KEY_UNUSABLE',
        facts: {
          gun: GUN,
          role: 'targets',
          keyId: repo.targetsKey.publicKey.id,
          problem: 'targets needs 2 signatures, and one signer can give only one',
        },
      },
    );
  });

  describe('trust on first use (no root key held)', () => {
    async function twoTargetsKeys(): Promise<{ repo: FixtureRepository; other: FixtureKey }> {
      const repo = await FixtureRepository.create(GUN, NOW);
      const other = await fixtureKey();
      repo.root = {
        ...repo.root,
        keys: new Map([...repo.root.keys, [other.publicKey.id, other.publicKey]]),
        roles: {
          ...repo.root.roles,
          targets: { keyIds: [repo.targetsKey.publicKey.id, other.publicKey.id], threshold: 1 },
        },
      };
      await repo.republishRoot({});
      return { repo, other };
    }

    it('accepts when the current targets carries our signature', async () => {
      const { repo } = await twoTargetsKeys();
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection: await collectionOf(repo),
        keys: { targets: repo.targetsKey.privateKey, delegations: new Map() },
        now: NOW,
        requireOwnSignature: true,
      });
      assert.deepEqual(
        plan.files.map((f) => f.role),
        ['targets'],
      );
    });

    it('refuses to re-sign targets last signed by another key', async () => {
      const { repo, other } = await twoTargetsKeys();
      await repo.changeTargets('targets', { set: tags('injected') }, { signers: [other.signer] });
      const collection = await collectionOf(repo);
      await assert.rejects(
        planUpdate({
          gun: GUN,
          role: 'targets',
          targets: tags('v1'),
          collection,
          keys: { targets: repo.targetsKey.privateKey, delegations: new Map() },
          now: NOW,
          requireOwnSignature: true,
        }),
        (err: unknown) => {
          const e = err as { code?: string; facts?: { role?: string; keyId?: string } };
          return (
            e.code === 'SIGNING_KEY_UNUSABLE' &&
            e.facts?.role === 'targets' &&
            e.facts.keyId === repo.targetsKey.publicKey.id
          );
        },
      );
      // The same collection is fine once the root is anchored (the caller pins it).
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection,
        keys: { targets: repo.targetsKey.privateKey, delegations: new Map() },
        now: NOW,
      });
      assert.equal(plan.files.length, 1);
    });
  });

  describe('delegations', () => {
    it('signs into targets/releases with the delegation key, leaving targets alone', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const [releases] = await repo.addDelegation('targets/releases');
      assert.ok(releases);
      const collection = await collectionOf(repo);
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets/releases',
        targets: tags('v1'),
        collection,
        keys: { delegations: new Map([['targets/releases', releases.privateKey]]) },
        now: NOW,
      });
      assert.deepEqual(
        plan.files.map((f) => f.role),
        ['targets/releases'],
      );
      const envelope = parseEnvelope(fileOf(plan, 'targets/releases'), 'targets/releases');
      const entry = collection.targetsRoles.get('targets')?.metadata.delegations.roles[0];
      assert.ok(entry);
      verifyThreshold(
        'targets/releases',
        envelope,
        entry,
        collection.targetsRoles.get('targets')?.metadata.delegations.keys ?? new Map(),
      );
      const model = parseTargets(envelope.signed, 'targets/releases');
      assert.equal(model.version, 2);
      assert.deepEqual([...model.targets.keys()], ['v1']);
      assert.deepEqual(plan.versions, { root: 1, 'targets/releases': 2 });
    });

    it('finds the delegation key among held keys whatever role the store filed it under', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const [releases] = await repo.addDelegation('targets/releases');
      assert.ok(releases);
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets/releases',
        targets: tags('v1'),
        collection: await collectionOf(repo),
        keys: { targets: releases.privateKey, delegations: new Map() },
        now: NOW,
      });
      assert.equal(plan.files.length, 1);
    });

    it('starts a delegation declared but never published at version 1', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const releases = await fixtureKey();
      repo.targets = nextTargets(
        withDelegation(repo.targets, { name: 'targets/releases', keys: [releases.publicKey] }),
        {},
        NOW,
      );
      await repo.publish(['targets']);
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets/releases',
        targets: tags('v1'),
        collection: await collectionOf(repo),
        keys: { delegations: new Map([['targets/releases', releases.privateKey]]) },
        now: NOW,
      });
      const model = parseTargets(
        parseEnvelope(fileOf(plan, 'targets/releases'), 'targets/releases').signed,
        'targets/releases',
      );
      assert.equal(model.version, 1);
    });

    it('refuses a delegation the repository does not have', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await assert.rejects(
        planUpdate({
          gun: GUN,
          role: 'targets/releases',
          targets: tags('v1'),
          collection: await collectionOf(repo),
          keys: keysOf(repo),
          now: NOW,
        }),
        (err: unknown) => {
          const e = err as { code?: string; facts?: { role?: string; problem?: string } };
          return (
            e.code === 'SIGNING_KEY_UNUSABLE' &&
            e.facts?.role === 'targets/releases' &&
            /has no delegation/.test(e.facts.problem ?? '')
          );
        },
      );
    });

    it('refuses a key the delegation does not list', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await repo.addDelegation('targets/releases');
      const stranger = await fixtureKey();
      await assert.rejects(
        planUpdate({
          gun: GUN,
          role: 'targets/releases',
          targets: tags('v1'),
          collection: await collectionOf(repo),
          keys: { delegations: new Map([['targets/releases', stranger.privateKey]]) },
          now: NOW,
        }),
        (err: unknown) => {
          const e = err as { code?: string; facts?: { keyId?: string; problem?: string } };
          return (
            e.code === 'SIGNING_KEY_UNUSABLE' &&
            e.facts?.keyId === stranger.publicKey.id &&
            /is not a key of targets\/releases/.test(e.facts.problem ?? '')
          );
        },
      );
    });

    it('refuses a tag outside the delegated paths', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const [releases] = await repo.addDelegation('targets/releases', { paths: ['release-'] });
      assert.ok(releases);
      const keys = { delegations: new Map([['targets/releases', releases.privateKey]]) };
      const collection = await collectionOf(repo);
      const ok = await planUpdate({
        gun: GUN,
        role: 'targets/releases',
        targets: tags('release-1'),
        collection,
        keys,
        now: NOW,
      });
      assert.equal(ok.files.length, 1);
      await assert.rejects(
        planUpdate({
          gun: GUN,
          role: 'targets/releases',
          targets: tags('release-2', 'latest'),
          collection,
          keys,
          now: NOW,
        }),
        {
          code: 'SIGNING_KEY_UNUSABLE',
          facts: {
            gun: GUN,
            role: 'targets/releases',
            keyId: releases.publicKey.id,
            problem: 'targets/releases may not sign the tag "latest" (outside its delegated paths)',
          },
        },
      );
    });
  });

  describe('root renewal', () => {
    it('re-signs root as the next version when it expires within six months', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      repo.root = { ...repo.root, expires: new Date(NOW.getTime() + 100 * DAY) };
      await repo.republishRoot({});
      const collection = await collectionOf(repo);
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection,
        keys: keysOf(repo),
        now: NOW,
      });
      assert.deepEqual(
        plan.files.map((f) => f.role),
        ['root', 'targets'],
      );
      assert.equal(plan.rootResigned, true);
      const next = parseRoot(parseEnvelope(fileOf(plan, 'root'), 'root').signed);
      assert.equal(next.version, 2);
      assert.equal(next.expires.getUTCFullYear(), NOW.getUTCFullYear() + 10);
      assert.equal(plan.rootKeyId, repo.rootKeys[0]?.publicKey.id);
      // A client that trusts version 1 accepts version 2 as a rotation.
      const verifier = new CollectionVerifier({ gun: GUN, now: NOW });
      verifier.resumeRoot(repo.bytesOf('root'));
      verifier.rotateRoot(fileOf(plan, 'root'));
    });

    it('leaves root alone without the root key, or when it is far from expiry', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      repo.root = { ...repo.root, expires: new Date(NOW.getTime() + 100 * DAY) };
      await repo.republishRoot({});
      const collection = await collectionOf(repo);
      const withoutRoot = await planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection,
        keys: { targets: repo.targetsKey.privateKey, delegations: new Map() },
        now: NOW,
      });
      assert.deepEqual(
        withoutRoot.files.map((f) => f.role),
        ['targets'],
      );
      const fresh = await FixtureRepository.create(GUN, NOW);
      const far = await planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection: await collectionOf(fresh),
        keys: keysOf(fresh),
        now: NOW,
      });
      assert.equal(far.rootResigned, false);
    });

    it('re-signs a root whose only change is its expiry even when no tag changes', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const m = fakeManifest('build-1');
      await repo.signTag('v1', m.digestHex, m.length);
      repo.root = { ...repo.root, expires: new Date(NOW.getTime() + 10 * DAY) };
      await repo.republishRoot({});
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection: await collectionOf(repo),
        keys: keysOf(repo),
        now: NOW,
      });
      assert.deepEqual(
        plan.files.map((f) => f.role),
        ['root'],
      );
    });

    it('renews a root certificate about to expire, signing with the old and the new certificate', async () => {
      const oldCert = await fixtureKey({
        certificateFor: GUN,
        notBefore: new Date(NOW.getTime() - 3600 * DAY),
        years: 10,
      });
      const repo = await FixtureRepository.create(GUN, NOW, { rootKeys: [oldCert] });
      const horizon = resignHorizon(NOW);
      assert.ok(new Date(oldCert.publicKey.certificate?.validTo ?? 0) < horizon);
      const collection = await collectionOf(repo);
      const plan = await planUpdate({
        gun: GUN,
        role: 'targets',
        targets: tags('v1'),
        collection,
        keys: {
          root: { privateKey: oldCert.privateKey },
          targets: repo.targetsKey.privateKey,
          delegations: new Map(),
        },
        now: NOW,
      });
      const next = parseRoot(parseEnvelope(fileOf(plan, 'root'), 'root').signed);
      assert.notEqual(plan.rootKeyId, oldCert.publicKey.id);
      assert.equal(plan.rootCanonicalKeyId, oldCert.publicKey.canonicalId);
      assert.deepEqual(next.roles.root.keyIds, [plan.rootKeyId]);
      assert.equal(next.keys.has(oldCert.publicKey.id), false);
      const renewed = next.keys.get(plan.rootKeyId);
      assert.ok(new Date(renewed?.certificate?.validTo ?? 0) > horizon);
      const verifier = new CollectionVerifier({ gun: GUN, now: NOW });
      verifier.resumeRoot(repo.bytesOf('root'));
      verifier.rotateRoot(fileOf(plan, 'root'));
      // Pinned by the canonical id, a fresh client still anchors the renewed root.
      new CollectionVerifier({ gun: GUN, now: NOW }).anchorRoot(
        fileOf(plan, 'root'),
        compileAnchor({ rootKeyIds: [createPublicKeyId(oldCert)] }),
      );
    });
  });
});

function createPublicKeyId(key: FixtureKey): string {
  return PublicKey.fromKeyObject(createPublicKey(key.privateKey)).id;
}
