/**
 * Signing into a repository whose metadata has expired: the signer reads it with `allowExpired`,
 * renews every expired role it holds a key for (the server re-signs timestamp and a server-held
 * snapshot), and the result verifies strictly. Everything but expiry is still checked, and an
 * expired role nobody here can renew — or an expired root — stops the run with nothing published.
 */
import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  compileAnchor,
  isTrustError,
  resolveTarget,
  updateCollection,
  NOTARY_ROLE_ORDER,
  type TrustErrorCode,
  type TrustErrorFacts,
  type TrustedCollection,
} from '@kpack-trust/common';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  fixtureKey,
  flipSignatureBit,
  type FixtureKey,
  type RoleOverride,
} from '@kpack-trust/common/testing';
import type { BuildImage } from '../src/publish/build-image.js';
import { planUpdate } from '../src/publish/plan.js';
import { signBuild, type SignBuildDependencies } from '../src/publish/sign-build.js';
import { MemoryKeyStore, type MemoryKeys } from '../src/testing/memory-key-store.js';
import { MemoryNotary } from './support/memory-notary.js';

const GUN = 'registry.example:5000/team/app';
const NOW = new Date('2026-03-01T12:00:00Z');
const DAY = 24 * 3600 * 1000;
/** Four years on: timestamp, snapshot, targets and delegations have expired; root (10 years) has not. */
const LATER = new Date(NOW.getTime() + 4 * 365 * DAY);

function build(seed: string, tags: string[], role?: string): { image: BuildImage; role?: string } {
  const m = fakeManifest(seed);
  return {
    image: {
      gun: GUN,
      registry: 'registry.example:5000',
      path: 'team/app',
      tags,
      digest: `sha256:${m.digestHex}`,
      size: m.length,
    },
    ...(role === undefined ? {} : { role }),
  };
}

function deps(
  notary: MemoryNotary,
  keys: MemoryKeys,
  now: Date,
): SignBuildDependencies & { lines: string[] } {
  const lines: string[] = [];
  return {
    notary,
    keyStore: new MemoryKeyStore({ keys }),
    now: () => now,
    sleep: () => Promise.resolve(),
    random: () => 0.5,
    progress: (line) => lines.push(line),
    maxAttempts: 2,
    lines,
  };
}

function rootKeyOf(repo: FixtureRepository): FixtureKey {
  const [key] = repo.rootKeys;
  assert.ok(key);
  return key;
}

/** The keys the repository's owner holds: root and targets (and any delegation keys given). */
function ownerKeys(
  repo: FixtureRepository,
  delegations: ReadonlyMap<string, KeyObject> = new Map(),
): MemoryKeys {
  return {
    root: { privateKey: rootKeyOf(repo).privateKey },
    targets: repo.targetsKey.privateKey,
    delegations,
  };
}

/** What a verifier sees: a fresh, strict read (no allowExpired) at `now`. */
function strictRead(
  fetcher: MemoryNotary | MemoryFetcher,
  repo: FixtureRepository,
  now: Date,
): Promise<TrustedCollection> {
  return updateCollection(fetcher, GUN, {
    anchor: compileAnchor({ rootKeyIds: [rootKeyOf(repo).publicKey.id] }),
    now,
  });
}

/** The signer's read before a publish. */
function writerRead(repo: FixtureRepository, now: Date): Promise<TrustedCollection> {
  return updateCollection(new MemoryFetcher(repo), GUN, {
    anchor: compileAnchor({ rootKeyIds: [rootKeyOf(repo).publicKey.id] }),
    now,
    allowExpired: true,
  });
}

function expiringAt(date: Date): RoleOverride {
  return { signed: (s) => ({ ...s, expires: date.toISOString() }) };
}

async function rejectsWith<C extends TrustErrorCode>(
  promise: Promise<unknown>,
  code: C,
  facts: Partial<TrustErrorFacts[C]> = {},
): Promise<TrustErrorFacts[C]> {
  let seen: TrustErrorFacts[C] | undefined;
  await assert.rejects(promise, (err: unknown) => {
    if (!isTrustError(err, code)) {
      assert.fail(
        `expected ${code}, got ${isTrustError(err) ? `${err.code}: ${err.message}` : String(err)}`,
      );
    }
    for (const [k, v] of Object.entries(facts)) {
      assert.deepEqual((err.facts as Record<string, unknown>)[k], v, `fact ${k}`);
    }
    seen = err.facts as TrustErrorFacts[C];
    return true;
  });
  assert.ok(seen);
  return seen;
}

describe('renewing expired metadata while signing', () => {
  it('renews expired targets with a new tag, keeping the old ones, and the result verifies strictly', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const old = fakeManifest('old');
    await repo.signTag('old', old.digestHex, old.length);
    const notary = new MemoryNotary(LATER);
    notary.serveFixture(repo, { serverSnapshot: true });
    await rejectsWith(strictRead(notary, repo, LATER), 'EXPIRED', { role: 'timestamp' });

    const d = deps(notary, ownerKeys(repo), LATER);
    const summary = await signBuild(build('new', ['v2']), d);
    assert.deepEqual(summary.rolesPublished, ['targets']);
    assert.deepEqual(summary.versions, { root: 1, targets: 4 });

    const after = await strictRead(notary, repo, LATER);
    assert.equal(
      resolveTarget(after, 'v2', NOTARY_ROLE_ORDER).sha256Hex,
      fakeManifest('new').digestHex,
    );
    assert.equal(resolveTarget(after, 'old', NOTARY_ROLE_ORDER).sha256Hex, old.digestHex);
    const targets = after.targetsRoles.get('targets')?.metadata;
    assert.equal(targets?.expires.toISOString(), '2033-02-28T12:00:00.000Z');
    const expiredAt = repo.targets.expires.toISOString();
    assert.ok(
      d.lines.includes(
        `${GUN}: renewed expired timestamp (expired ${repo.timestamp?.expires.toISOString()}, re-signed by the notary server), ` +
          `snapshot (expired ${repo.snapshot?.expires.toISOString()}, re-signed by the notary server), ` +
          `targets (expired ${expiredAt}, now valid until 2033-02-28T12:00:00.000Z)`,
      ),
      d.lines.join('\n'),
    );
  });

  it('renews expired targets even when every tag already points to the digest', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const m = fakeManifest('same');
    await repo.signTag('v1', m.digestHex, m.length);
    const collection = await writerRead(repo, LATER);
    const plan = await planUpdate({
      gun: GUN,
      role: 'targets',
      targets: new Map([['v1', repo.targets.targets.get('v1') ?? assert.fail()]]),
      collection,
      keys: { ...ownerKeys(repo), delegations: new Map() },
      now: LATER,
    });
    assert.deepEqual(
      plan.files.map((f) => f.role),
      ['targets'],
    );
    assert.deepEqual(plan.versions, { root: 1, targets: 4 });
    assert.deepEqual(
      plan.renewals.map((r) => [r.role, r.expires?.toISOString()]),
      [
        ['timestamp', undefined],
        ['snapshot', undefined],
        ['targets', '2033-02-28T12:00:00.000Z'],
      ],
    );
    // The same build a day before anything expired publishes nothing.
    const fresh = await planUpdate({
      gun: GUN,
      role: 'targets',
      targets: new Map([['v1', repo.targets.targets.get('v1') ?? assert.fail()]]),
      collection: await writerRead(repo, NOW),
      keys: { ...ownerKeys(repo), delegations: new Map() },
      now: NOW,
    });
    assert.deepEqual(fresh.files, []);
    assert.deepEqual(fresh.renewals, []);
  });

  it('re-signs a client-held snapshot that has expired when we hold its key', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const notary = new MemoryNotary(LATER);
    notary.serveFixture(repo);
    const keys = { ...ownerKeys(repo), snapshot: repo.snapshotKey.privateKey };
    const summary = await signBuild(build('one', ['v1']), deps(notary, keys, LATER));
    assert.deepEqual(summary.rolesPublished, ['targets', 'snapshot']);
    const after = await strictRead(notary, repo, LATER);
    assert.equal(after.snapshot.expires.toISOString(), '2033-02-28T12:00:00.000Z');
  });

  it('publishes our role when only the timestamp has expired, so the server signs a new one', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    const m = fakeManifest('one');
    await repo.signTag('v1', m.digestHex, m.length);
    const later = new Date(NOW.getTime() + 15 * DAY);
    const notary = new MemoryNotary(later);
    notary.serveFixture(repo, { serverSnapshot: true });
    const d = deps(notary, ownerKeys(repo), later);
    const summary = await signBuild(build('one', ['v1']), d);
    assert.deepEqual(summary.rolesPublished, ['targets']);
    assert.equal((await strictRead(notary, repo, later)).timestamp.version, 3);
    assert.ok(
      d.lines.some((l) =>
        / renewed expired timestamp \(expired .*, re-signed by the notary server\)$/.test(l),
      ),
    );
  });

  describe('delegations', () => {
    it('renews the expired delegation we sign, and the result verifies strictly', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const [releases] = await repo.addDelegation('targets/releases');
      assert.ok(releases);
      const m = fakeManifest('rel');
      await repo.signTag('v1', m.digestHex, m.length, 'targets/releases');
      await repo.changeTargets(
        'targets/releases',
        {},
        expiringAt(new Date(NOW.getTime() + 10 * DAY)),
      );
      const later = new Date(NOW.getTime() + 11 * DAY);
      const notary = new MemoryNotary(later);
      notary.serveFixture(repo, { serverSnapshot: true });
      await rejectsWith(strictRead(notary, repo, later), 'EXPIRED', { role: 'targets/releases' });

      // Only the delegation key, as a `docker trust` signer holds it; the same digest again.
      const keys = { delegations: new Map([['targets/releases', releases.privateKey]]) };
      const d = deps(notary, keys, later);
      const summary = await signBuild(build('rel', ['v1'], 'targets/releases'), d);
      assert.deepEqual(summary.rolesPublished, ['targets/releases']);
      assert.equal(summary.versions['targets/releases'], 4);
      const after = await strictRead(notary, repo, later);
      assert.equal(resolveTarget(after, 'v1').role, 'targets/releases');
      assert.equal(resolveTarget(after, 'v1').sha256Hex, m.digestHex);
      assert.ok(
        d.lines.some((l) =>
          l.includes(
            'renewed expired targets/releases (expired 2026-03-11T12:00:00.000Z, now valid until 2029-',
          ),
        ),
      );
    });

    it('renews an expired delegation we hold a key for while signing targets, parents first', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const [releases] = await repo.addDelegation('targets/releases');
      assert.ok(releases);
      const notary = new MemoryNotary(LATER);
      notary.serveFixture(repo, { serverSnapshot: true });
      const keys = ownerKeys(repo, new Map([['targets/releases', releases.privateKey]]));
      const summary = await signBuild(build('one', ['v1']), deps(notary, keys, LATER));
      assert.deepEqual(summary.rolesPublished, ['targets', 'targets/releases']);
      assert.deepEqual(summary.versions, { root: 1, targets: 4, 'targets/releases': 2 });
      await strictRead(notary, repo, LATER);
    });
  });

  describe('still refuses, publishing nothing', () => {
    it('a corrupted signature on the expired targets', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await repo.changeTargets('targets', {}, { bytes: (b) => flipSignatureBit(b) });
      const notary = new MemoryNotary(LATER);
      notary.serveFixture(repo, { serverSnapshot: true });
      await rejectsWith(
        signBuild(build('one', ['v1']), deps(notary, ownerKeys(repo), LATER)),
        'SIGNATURE_THRESHOLD',
        { role: 'targets', found: 0, needed: 1 },
      );
      assert.deepEqual(notary.publishes, []);
    });

    it('an expired targets rolled back below a version read before', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const seen = await writerRead(repo, NOW);
      await repo.changeTargets('targets', {}, { signed: (s) => ({ ...s, version: 1 }) });
      await rejectsWith(
        updateCollection(new MemoryFetcher(repo), GUN, {
          anchor: compileAnchor({ rootKeyIds: [rootKeyOf(repo).publicKey.id] }),
          now: LATER,
          allowExpired: true,
          state: { floors: seen.floors },
        }),
        'VERSION_ROLLBACK',
        { role: 'targets', actual: 1, floor: 2 },
      );
    });

    it('a replayed older, expired state: its renewal is never accepted over the newer one', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const stale = new Map(repo.files);
      const m = fakeManifest('newer');
      await repo.signTag('newer', m.digestHex, m.length);
      const notary = new MemoryNotary(LATER);
      notary.serveFixture(repo, { serverSnapshot: true });
      // A mirror or attacker answers reads with the old, consistent chain (targets v2).
      const served = notary.repos.get(GUN)?.files;
      assert.ok(served);
      for (const [name, bytes] of stale) served.set(name, bytes);
      await rejectsWith(
        signBuild(build('one', ['v1']), deps(notary, ownerKeys(repo), LATER)),
        'PUBLISH_CONFLICT',
        { gun: GUN, attempts: 2 },
      );
      assert.deepEqual(notary.targetsOf(GUN), new Map([['newer', m.digestHex]]));
      assert.deepEqual(
        notary.publishes.map((p) => p.accepted),
        [false, false],
      );
    });

    it('expired targets when we hold only a delegation key', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const [releases] = await repo.addDelegation('targets/releases');
      assert.ok(releases);
      const notary = new MemoryNotary(LATER);
      notary.serveFixture(repo, { serverSnapshot: true });
      const keys = { delegations: new Map([['targets/releases', releases.privateKey]]) };
      const facts = await rejectsWith(
        signBuild(build('one', ['v1'], 'targets/releases'), deps(notary, keys, LATER)),
        'SIGNING_KEY_UNUSABLE',
        { gun: GUN, role: 'targets', keyId: releases.publicKey.id },
      );
      assert.match(
        facts.problem,
        new RegExp(
          `^targets expired at ${repo.targets.expires.toISOString()}; key ${releases.publicKey.id} is not the repository's targets key`,
        ),
      );
      assert.deepEqual(notary.publishes, []);
    });

    it('an expired delegation nobody here holds a key for', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      await repo.addDelegation('targets/qa');
      await repo.changeTargets('targets/qa', {}, expiringAt(new Date(NOW.getTime() + DAY)));
      const later = new Date(NOW.getTime() + 2 * DAY);
      const notary = new MemoryNotary(later);
      notary.serveFixture(repo, { serverSnapshot: true });
      await assert.rejects(
        signBuild(build('one', ['v1']), deps(notary, ownerKeys(repo), later)),
        (err: unknown) =>
          isTrustError(err, 'SIGNING_KEY_UNUSABLE') &&
          err.facts.role === 'targets/qa' &&
          err.message.startsWith(
            `Cannot sign ${GUN}: its targets/qa expired at 2026-03-02T12:00:00.000Z and we cannot renew it (`,
          ),
      );
      assert.deepEqual(notary.publishes, []);
    });

    it('under a root trusted on first use, an expired delegation our key did not sign', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      const [releases] = await repo.addDelegation('targets/releases');
      const [ours, theirs] = await repo.addDelegation('targets/qa', {
        keys: [await fixtureKey(), await fixtureKey()],
      });
      assert.ok(releases && ours && theirs);
      await repo.changeTargets('targets/qa', {}, { signers: [theirs.signer] });
      const notary = new MemoryNotary(LATER);
      notary.serveFixture(repo, { serverSnapshot: true });
      // No root key and no pin: the root is trusted on first use. We sign into targets/releases.
      const keys = {
        targets: repo.targetsKey.privateKey,
        delegations: new Map([
          ['targets/releases', releases.privateKey],
          ['targets/qa', ours.privateKey],
        ]),
      };
      const image = build('one', ['v1'], 'targets/releases');
      const facts = await rejectsWith(
        signBuild(image, deps(notary, keys, LATER)),
        'SIGNING_KEY_UNUSABLE',
        { gun: GUN, role: 'targets/qa', keyId: ours.publicKey.id },
      );
      assert.match(
        facts.problem,
        /is not signed by our key, and the root was trusted on first use/,
      );
      assert.deepEqual(notary.publishes, []);
      // Pinned, the same renewal goes ahead.
      const pinned = await signBuild(
        { ...image, rootKeyIds: [rootKeyOf(repo).publicKey.id] },
        deps(notary, keys, LATER),
      );
      assert.deepEqual(pinned.rolesPublished, ['targets', 'targets/qa', 'targets/releases']);
      await strictRead(notary, repo, LATER);
    });

    it('an expired root, even though we hold its key', async () => {
      const repo = await FixtureRepository.create(GUN, NOW);
      repo.root = { ...repo.root, expires: new Date(NOW.getTime() + DAY) };
      await repo.republishRoot({});
      const later = new Date(NOW.getTime() + 2 * DAY);
      const notary = new MemoryNotary(later);
      notary.serveFixture(repo, { serverSnapshot: true });
      await assert.rejects(
        signBuild(build('one', ['v1']), deps(notary, ownerKeys(repo), later)),
        (err: unknown) =>
          isTrustError(err, 'EXPIRED') &&
          err.facts.role === 'root' &&
          err.facts.expires === '2026-03-02T12:00:00.000Z' &&
          /an expired root cannot be renewed/.test(err.message),
      );
      assert.deepEqual(notary.publishes, []);
    });
  });
});
