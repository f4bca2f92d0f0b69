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
  isTrustError,
  nextTargets,
  parseEnvelope,
  parseRoot,
  parseSnapshot,
  parseTargets,
  updateCollection,
  verifyThreshold,
  withDelegation,
  type FileMeta,
  type RootMetadata,
  type SignedEnvelope,
  type SnapshotMetadata,
  type TargetsMetadata,
  type TrustErrorFacts,
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
  type NewRepositoryInput,
  type PublishPlan,
  type SigningKeys,
  type UpdateInput,
} from '../src/publish/plan.js';

const GUN = 'registry.example:5000/team/app';
const NOW = new Date('2026-03-01T12:00:00Z');
const DAY = 24 * 3600 * 1000;
/** The build every plan signs; a tag that already points to it needs no new signature. */
const BUILD = fakeManifest('build-1');

function tags(...names: string[]): Map<string, FileMeta> {
  return new Map(names.map((n) => [n, imageTarget(BUILD.digestHex, BUILD.length)]));
}

async function collectionOf(repo: FixtureRepository, now = NOW): Promise<TrustedCollection> {
  return updateCollection(new MemoryFetcher(repo), repo.gun, {
    anchor: compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }),
    now,
  });
}

// Situations: the keys we hold, and repositories changed one way.

/** The signing keys a key store would hand over holding these fixture keys' private halves. */
function holding(held: {
  root?: FixtureKey | undefined;
  rootCertificatePem?: string;
  targets?: FixtureKey;
  snapshot?: FixtureKey;
  delegations?: Readonly<Record<string, FixtureKey>>;
}): SigningKeys {
  const { root, rootCertificatePem, targets, snapshot, delegations = {} } = held;
  const certificate =
    rootCertificatePem === undefined ? {} : { certificatePem: rootCertificatePem };
  return {
    ...(root === undefined ? {} : { root: { privateKey: root.privateKey, ...certificate } }),
    ...(targets === undefined ? {} : { targets: targets.privateKey }),
    ...(snapshot === undefined ? {} : { snapshot: snapshot.privateKey }),
    delegations: new Map(Object.entries(delegations).map(([role, key]) => [role, key.privateKey])),
  };
}

/** The root and targets keys the fixture repository signs with, plus `extra`. */
function keysOf(repo: FixtureRepository, extra: { snapshot?: FixtureKey } = {}): SigningKeys {
  return holding({ root: repo.rootKeys[0], targets: repo.targetsKey, ...extra });
}

/** Lists a second targets key in root beside the repository's own, with this threshold. */
async function addTargetsKey(repo: FixtureRepository, threshold: number): Promise<FixtureKey> {
  const second = await fixtureKey();
  repo.root = {
    ...repo.root,
    keys: new Map([...repo.root.keys, [second.publicKey.id, second.publicKey]]),
    roles: {
      ...repo.root.roles,
      targets: { keyIds: [repo.targetsKey.publicKey.id, second.publicKey.id], threshold },
    },
  };
  await repo.republishRoot({});
  return second;
}

/** Republishes root expiring `days` after NOW. */
async function expireRootIn(repo: FixtureRepository, days: number): Promise<void> {
  repo.root = { ...repo.root, expires: new Date(NOW.getTime() + days * DAY) };
  await repo.republishRoot({});
}

/** A repository delegating targets/releases (limited to `paths` when given), and its key. */
async function repositoryWithReleases(
  options: { paths?: string[] } = {},
): Promise<{ repo: FixtureRepository; releases: FixtureKey }> {
  const repo = await FixtureRepository.create(GUN, NOW);
  const [releases] = await repo.addDelegation('targets/releases', options);
  assert.ok(releases);
  return { repo, releases };
}

/** The id of a key as a bare public key, whatever certificate it is published in. */
function bareKeyIdOf(key: FixtureKey): string {
  return PublicKey.fromKeyObject(createPublicKey(key.privateKey)).id;
}

// Actions: plans for GUN at NOW; each case overrides only what it is about.

/** A new GUN's plan, tagging v1 into targets unless the case says otherwise. */
function newRepositoryPlan(
  input: Pick<NewRepositoryInput, 'keys' | 'serverKeys'> & Partial<NewRepositoryInput>,
): Promise<PublishPlan> {
  return planNewRepository({ gun: GUN, role: 'targets', targets: tags('v1'), now: NOW, ...input });
}

/** The public keys a notary server makes for a new GUN. */
async function serverMadeKeys(): Promise<{ timestamp: PublicKey; snapshot: PublicKey }> {
  return { timestamp: (await fixtureKey()).publicKey, snapshot: (await fixtureKey()).publicKey };
}

/**
 * An update of `repo`, by default tagging v1 into targets with the repository's root and targets
 * keys, from the collection a client verifies now.
 */
async function updatePlan(
  repo: FixtureRepository,
  overrides: Partial<UpdateInput> = {},
): Promise<PublishPlan> {
  return planUpdate({
    gun: GUN,
    role: 'targets',
    targets: tags('v1'),
    keys: keysOf(repo),
    now: NOW,
    ...overrides,
    collection: overrides.collection ?? (await collectionOf(repo)),
  });
}

/** An update of `repo` signing into targets/releases. */
function releasesPlan(
  repo: FixtureRepository,
  overrides: Partial<UpdateInput> = {},
): Promise<PublishPlan> {
  return updatePlan(repo, { role: 'targets/releases', ...overrides });
}

/** Signing keys holding `key` filed under targets/releases, as key stores file delegation keys. */
function releasesKeys(key: FixtureKey): SigningKeys {
  return holding({ delegations: { 'targets/releases': key } });
}

// Expectations: what the plan publishes, and how it is refused.

function fileOf(plan: PublishPlan, role: string): Buffer {
  const file = plan.files.find((f) => f.role === role);
  assert.ok(file, `the plan publishes ${role}`);
  return Buffer.from(file.bytes);
}

/** The roles the plan publishes, in publish order. */
function rolesOf(plan: PublishPlan): string[] {
  return plan.files.map((f) => f.role);
}

function envelopeOf(plan: PublishPlan, role: string): SignedEnvelope {
  return parseEnvelope(fileOf(plan, role), role);
}

function rootOf(plan: PublishPlan): RootMetadata {
  return parseRoot(envelopeOf(plan, 'root').signed);
}

function targetsOf(plan: PublishPlan, role = 'targets'): TargetsMetadata {
  return parseTargets(envelopeOf(plan, role).signed, role);
}

function snapshotOf(plan: PublishPlan): SnapshotMetadata {
  return parseSnapshot(envelopeOf(plan, 'snapshot').signed);
}

/** Throws unless a client trusting `repo`'s current root accepts the plan's root as a rotation. */
function assertRotatesFrom(repo: FixtureRepository, plan: PublishPlan): void {
  const verifier = new CollectionVerifier({ gun: GUN, now: NOW });
  verifier.resumeRoot(repo.bytesOf('root'));
  verifier.rotateRoot(fileOf(plan, 'root'));
}

/** Throws unless a fresh client pinning `rootKeyId` anchors the plan's root. */
function assertAnchors(plan: PublishPlan, rootKeyId: string): void {
  new CollectionVerifier({ gun: GUN, now: NOW }).anchorRoot(
    fileOf(plan, 'root'),
    compileAnchor({ rootKeyIds: [rootKeyId] }),
  );
}

type UnusableFacts = TrustErrorFacts['SIGNING_KEY_UNUSABLE'];

/** The refusal, with all of its facts, as `assert.rejects` compares it. */
function unusable(
  role: string,
  keyId: string,
  problem: string,
): { code: 'SIGNING_KEY_UNUSABLE'; facts: UnusableFacts } {
  return { code: 'SIGNING_KEY_UNUSABLE', facts: { gun: GUN, role, keyId, problem } };
}

/** A refusal checked by some of its facts: strings exactly, patterns against the text. */
function unusableWith(facts: {
  [K in keyof UnusableFacts]?: string | RegExp;
}): (err: unknown) => boolean {
  return (err) => {
    assert.ok(
      isTrustError(err, 'SIGNING_KEY_UNUSABLE'),
      `not a SIGNING_KEY_UNUSABLE: ${String(err)}`,
    );
    for (const [name, expected] of Object.entries(facts)) {
      const actual: string = err.facts[name as keyof UnusableFacts];
      if (expected instanceof RegExp) assert.match(actual, expected, name);
      else assert.equal(actual, expected, name);
    }
    return true;
  };
}

describe('planNewRepository', () => {
  it('makes root v1 with a certificate for the GUN and targets v2 holding the tags', async () => {
    const root = await fixtureKey();
    const targetsKey = await fixtureKey();
    const serverKeys = await serverMadeKeys();
    const plan = await newRepositoryPlan({
      keys: holding({ root, targets: targetsKey }),
      serverKeys,
      targets: tags('v1', 'latest'),
    });
    assert.deepEqual(rolesOf(plan), ['root', 'targets']);
    assert.deepEqual(plan.versions, { root: 1, targets: 2 });
    const rootEnvelope = envelopeOf(plan, 'root');
    const rootModel = parseRoot(rootEnvelope.signed);
    assert.equal(rootModel.version, 1);
    const rootKey = rootModel.keys.get(plan.rootKeyId);
    assert.equal(rootKey?.type, 'ecdsa-x509');
    assert.equal(rootKey.canonicalId, root.publicKey.id);
    assert.equal(plan.rootCanonicalKeyId, root.publicKey.id);
    assert.match(rootKey.certificate?.subject ?? '', new RegExp(`CN=${GUN}`));
    assert.deepEqual(rootModel.roles.timestamp.keyIds, [serverKeys.timestamp.id]);
    assert.deepEqual(rootModel.roles.snapshot.keyIds, [serverKeys.snapshot.id]);
    assert.deepEqual(rootModel.roles.targets.keyIds, [targetsKey.publicKey.id]);
    verifyThreshold('root', rootEnvelope, rootModel.roles.root, rootModel.keys);
    // A fresh verifier anchored on the plan's root key id accepts the root.
    assertAnchors(plan, plan.rootKeyId);
    const targetsEnvelope = envelopeOf(plan, 'targets');
    verifyThreshold('targets', targetsEnvelope, rootModel.roles.targets, rootModel.keys);
    const targetsModel = parseTargets(targetsEnvelope.signed);
    assert.equal(targetsModel.version, 2);
    assert.deepEqual([...targetsModel.targets.keys()].sort(), ['latest', 'v1']);
  });

  it('signs snapshot v2 itself when it holds a snapshot key', async () => {
    const plan = await newRepositoryPlan({
      keys: holding({
        root: await fixtureKey(),
        targets: await fixtureKey(),
        snapshot: await fixtureKey(),
      }),
      serverKeys: { timestamp: (await fixtureKey()).publicKey },
    });
    assert.deepEqual(rolesOf(plan), ['root', 'targets', 'snapshot']);
    const snap = snapshotOf(plan);
    assert.equal(snap.version, 2);
    assert.deepEqual(snap.meta.get('targets'), fileMetaOf(fileOf(plan, 'targets')));
    assert.deepEqual(snap.meta.get('root'), fileMetaOf(fileOf(plan, 'root')));
  });

  it('reuses a stored certificate for this GUN and replaces one made for another GUN', async () => {
    const root = await fixtureKey();
    const serverKeys = await serverMadeKeys();
    const ours = await createRootCertificate(GUN, root.privateKey, { notBefore: NOW });
    const reused = await newRepositoryPlan({
      keys: holding({ root, rootCertificatePem: ours, targets: await fixtureKey() }),
      serverKeys,
    });
    assert.equal(reused.rootKeyId, PublicKey.fromCertificatePem(ours).id);

    const other = await createRootCertificate('registry.example:5000/other', root.privateKey, {
      notBefore: NOW,
    });
    const fresh = await newRepositoryPlan({
      keys: holding({ root, rootCertificatePem: other, targets: await fixtureKey() }),
      serverKeys,
    });
    assert.notEqual(fresh.rootKeyId, PublicKey.fromCertificatePem(other).id);
    assert.equal(fresh.rootCanonicalKeyId, root.publicKey.id);
  });

  it('refuses without a root key, without a targets key, and for a delegation', async () => {
    const serverKeys = await serverMadeKeys();
    const root = await fixtureKey();
    const targets = await fixtureKey();
    await assert.rejects(
      newRepositoryPlan({ keys: holding({ targets }), serverKeys }),
      unusable(
        'root',
        '',
        'the repository does not exist yet and no root key is available to create it',
      ),
    );
    await assert.rejects(
      newRepositoryPlan({ keys: holding({ root }), serverKeys }),
      unusable('targets', '', 'the repository does not exist yet and no targets key is available'),
    );
    await assert.rejects(
      newRepositoryPlan({ role: 'targets/releases', keys: holding({ root, targets }), serverKeys }),
      unusableWith({ role: 'targets/releases' }),
    );
  });
});

describe('planUpdate', () => {
  it('adds every tag to targets in one new version, leaving the snapshot to the server', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('old', fakeManifest('old').digestHex, fakeManifest('old').length);
    const collection = await collectionOf(repo);
    const plan = await updatePlan(repo, { collection, targets: tags('v1', 'latest') });
    assert.deepEqual(rolesOf(plan), ['targets']);
    const envelope = envelopeOf(plan, 'targets');
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
    const plan = await updatePlan(repo, {
      collection,
      keys: keysOf(repo, { snapshot: repo.snapshotKey }),
    });
    assert.deepEqual(rolesOf(plan), ['targets', 'snapshot']);
    const envelope = envelopeOf(plan, 'snapshot');
    verifyThreshold('snapshot', envelope, collection.root.roles.snapshot, collection.root.keys);
    const snap = parseSnapshot(envelope.signed);
    assert.equal(snap.version, collection.snapshot.version + 1);
    assert.deepEqual(snap.meta.get('targets'), fileMetaOf(fileOf(plan, 'targets')));
    // Unchanged roles keep the entries the previous snapshot gave them.
    assert.deepEqual(snap.meta.get('root'), collection.snapshot.meta.get('root'));
  });

  it('publishes nothing when every tag already points to the digest (idempotent)', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', BUILD.digestHex, BUILD.length);
    const plan = await updatePlan(repo);
    assert.deepEqual(plan.files, []);
    assert.deepEqual(plan.versions, { root: 1, targets: repo.targets.version });
  });

  it('replaces a tag that points elsewhere', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const old = fakeManifest('old');
    await repo.signTag('v1', old.digestHex, old.length);
    const model = targetsOf(await updatePlan(repo));
    assert.equal(model.targets.get('v1')?.hashes['sha256']?.toString('hex'), BUILD.digestHex);
  });

  it("refuses a key that is not the repository's targets key", async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const stranger = await fixtureKey();
    const id = stranger.publicKey.id;
    await assert.rejects(
      updatePlan(repo, { keys: holding({ targets: stranger }) }),
      unusable(
        'targets',
        id,
        `key ${id} is not the repository's targets key (targets lists ${repo.targetsKey.publicKey.id})`,
      ),
    );
  });

  it('refuses when we hold no key at all for the role', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    await assert.rejects(
      updatePlan(repo, { keys: holding({}) }),
      unusable('targets', '', 'no key to sign targets with'),
    );
  });

  it('refuses a targets role that needs more signatures than one signer gives', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const second = await addTargetsKey(repo, 2);
    await repo.publish(['targets'], {
      targets: { signers: [repo.targetsKey.signer, second.signer] },
    });
    await assert.rejects(
      updatePlan(repo),
      unusable(
        'targets',
        repo.targetsKey.publicKey.id,
        'targets needs 2 signatures, and one signer can give only one',
      ),
    );
  });

  describe('trust on first use (no root key held)', () => {
    async function twoTargetsKeys(): Promise<{ repo: FixtureRepository; other: FixtureKey }> {
      const repo = await FixtureRepository.create(GUN, NOW);
      return { repo, other: await addTargetsKey(repo, 1) };
    }

    it('accepts when the current targets carries our signature', async () => {
      const { repo } = await twoTargetsKeys();
      const plan = await updatePlan(repo, {
        keys: holding({ targets: repo.targetsKey }),
        requireOwnSignature: true,
      });
      assert.deepEqual(rolesOf(plan), ['targets']);
    });

    it('refuses to re-sign targets last signed by another key', async () => {
      const { repo, other } = await twoTargetsKeys();
      await repo.changeTargets('targets', { set: tags('injected') }, { signers: [other.signer] });
      const collection = await collectionOf(repo);
      const keys = holding({ targets: repo.targetsKey });
      await assert.rejects(
        updatePlan(repo, { collection, keys, requireOwnSignature: true }),
        unusableWith({ role: 'targets', keyId: repo.targetsKey.publicKey.id }),
      );
      // The same collection is fine once the root is anchored (the caller pins it).
      const plan = await updatePlan(repo, { collection, keys });
      assert.equal(plan.files.length, 1);
    });
  });

  describe('delegations', () => {
    it('signs into targets/releases with the delegation key, leaving targets alone', async () => {
      const { repo, releases } = await repositoryWithReleases();
      const collection = await collectionOf(repo);
      const plan = await releasesPlan(repo, { collection, keys: releasesKeys(releases) });
      assert.deepEqual(rolesOf(plan), ['targets/releases']);
      const envelope = envelopeOf(plan, 'targets/releases');
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
      const { repo, releases } = await repositoryWithReleases();
      const plan = await releasesPlan(repo, { keys: holding({ targets: releases }) });
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
      const plan = await releasesPlan(repo, { keys: releasesKeys(releases) });
      assert.equal(targetsOf(plan, 'targets/releases').version, 1);
    });

    it('refuses a delegation the repository does not have', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await assert.rejects(
        releasesPlan(repo),
        unusableWith({ role: 'targets/releases', problem: /has no delegation/ }),
      );
    });

    it('refuses a key the delegation does not list', async () => {
      const { repo } = await repositoryWithReleases();
      const stranger = await fixtureKey();
      await assert.rejects(
        releasesPlan(repo, { keys: releasesKeys(stranger) }),
        unusableWith({
          keyId: stranger.publicKey.id,
          problem: /is not a key of targets\/releases/,
        }),
      );
    });

    it('refuses a tag outside the delegated paths', async () => {
      const { repo, releases } = await repositoryWithReleases({ paths: ['release-'] });
      const keys = releasesKeys(releases);
      const collection = await collectionOf(repo);
      const ok = await releasesPlan(repo, { collection, keys, targets: tags('release-1') });
      assert.equal(ok.files.length, 1);
      await assert.rejects(
        releasesPlan(repo, { collection, keys, targets: tags('release-2', 'latest') }),
        unusable(
          'targets/releases',
          releases.publicKey.id,
          'targets/releases may not sign the tag "latest" (outside its delegated paths)',
        ),
      );
    });
  });

  describe('nested delegation paths', () => {
    it("refuses what a nested delegation's own paths allow but does not extend its parent's, as verifiers narrow them", async () => {
      const { repo } = await repositoryWithReleases({ paths: ['release-'] });
      // The child lists '' (every name), which does not extend the parent's 'release-': Go's Restrict
      // leaves the child no paths, so not even release-1, which both lists admit one by one.
      const [team] = await repo.addDelegation('targets/releases/team', { paths: [''] });
      assert.ok(team);
      const keys = holding({ delegations: { 'targets/releases/team': team } });
      const collection = await collectionOf(repo);
      await assert.rejects(
        updatePlan(repo, {
          role: 'targets/releases/team',
          collection,
          keys,
          targets: tags('release-1'),
        }),
        unusable(
          'targets/releases/team',
          team.publicKey.id,
          'targets/releases/team may not sign the tag "release-1" (outside its delegated paths)',
        ),
      );
    });
  });

  describe('root renewal', () => {
    it('re-signs root as the next version when it expires within six months', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await expireRootIn(repo, 100);
      const plan = await updatePlan(repo);
      assert.deepEqual(rolesOf(plan), ['root', 'targets']);
      assert.equal(plan.rootResigned, true);
      const next = rootOf(plan);
      assert.equal(next.version, 2);
      assert.equal(next.expires.getUTCFullYear(), NOW.getUTCFullYear() + 10);
      assert.equal(plan.rootKeyId, repo.rootKeys[0]?.publicKey.id);
      // A client that trusts version 1 accepts version 2 as a rotation.
      assertRotatesFrom(repo, plan);
    });

    it('leaves root alone without the root key, or when it is far from expiry', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await expireRootIn(repo, 100);
      const withoutRoot = await updatePlan(repo, { keys: holding({ targets: repo.targetsKey }) });
      assert.deepEqual(rolesOf(withoutRoot), ['targets']);
      const far = await updatePlan(await FixtureRepository.create(GUN, NOW));
      assert.equal(far.rootResigned, false);
    });

    it('re-signs a root whose only change is its expiry even when no tag changes', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await repo.signTag('v1', BUILD.digestHex, BUILD.length);
      await expireRootIn(repo, 10);
      assert.deepEqual(rolesOf(await updatePlan(repo)), ['root']);
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
      const plan = await updatePlan(repo, {
        keys: holding({ root: oldCert, targets: repo.targetsKey }),
      });
      const next = rootOf(plan);
      assert.notEqual(plan.rootKeyId, oldCert.publicKey.id);
      assert.equal(plan.rootCanonicalKeyId, oldCert.publicKey.canonicalId);
      assert.deepEqual(next.roles.root.keyIds, [plan.rootKeyId]);
      assert.equal(next.keys.has(oldCert.publicKey.id), false);
      const renewed = next.keys.get(plan.rootKeyId);
      assert.ok(new Date(renewed?.certificate?.validTo ?? 0) > horizon);
      assertRotatesFrom(repo, plan);
      // Pinned by the canonical id, a fresh client still anchors the renewed root.
      assertAnchors(plan, bareKeyIdOf(oldCert));
    });
  });
});
