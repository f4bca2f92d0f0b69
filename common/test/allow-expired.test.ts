/**
 * The writers' `allowExpired` option of updateCollection: expired timestamp, snapshot, targets and
 * delegations are tolerated only when asked, root expiry never, and every other check still fails
 * one corruption at a time with its exact code.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { compileAnchor } from '../src/verify/anchor.js';
import type { TrustedCollection } from '../src/verify/collection-verifier.js';
import { resolveTarget } from '../src/verify/resolve.js';
import { updateCollection, type UpdateOptions } from '../src/verify/updater.js';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  fakeTarget,
  fixtureKey,
  flipSignatureBit,
  sha256Hex,
  type RoleOverride,
} from '../src/testing/index.js';
import { rejectsWithTrustError } from './support/trust-errors.js';

const GUN = '127.0.0.1:5000/demo/app';
const NOW = new Date('2026-11-22T12:00:00Z');
const DAY = 24 * 3600 * 1000;
/** Four years on: timestamp (14 days), snapshot and targets (3 years) have expired, root (10 years) has not. */
const LATER = new Date(NOW.getTime() + 4 * 365 * DAY);
const PAST = '2026-11-01T00:00:00Z';

function read(
  repo: FixtureRepository,
  options: Partial<Omit<UpdateOptions, 'anchor'>> = {},
): Promise<TrustedCollection> {
  return updateCollection(new MemoryFetcher(repo), repo.gun, {
    anchor: compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }, repo.gun),
    now: options.now ?? NOW,
    ...(options.state === undefined ? {} : { state: options.state }),
    ...(options.allowExpired === undefined ? {} : { allowExpired: options.allowExpired }),
  });
}

const pastExpiry: RoleOverride = { signed: (s) => ({ ...s, expires: PAST }) };

describe('updateCollection with allowExpired (writers only)', () => {
  let repo: FixtureRepository;
  const m = fakeManifest('v1');

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', m.digestHex, m.length);
  });

  for (const role of ['timestamp', 'snapshot', 'targets'] as const) {
    it(`rejects expired ${role} by default and tolerates it only when asked`, async () => {
      const override = { [role]: pastExpiry };
      // Republishing targets re-signs snapshot and timestamp after it: override exactly one.
      await repo.publish(role === 'targets' ? ['targets'] : [], override);
      await rejectsWithTrustError(read(repo), 'EXPIRED', {
        role,
        expires: '2026-11-01T00:00:00.000Z',
      });
      await rejectsWithTrustError(read(repo, { allowExpired: false }), 'EXPIRED', { role });
      const c = await read(repo, { allowExpired: true });
      assert.equal(c.expires.toISOString(), '2026-11-01T00:00:00.000Z');
      assert.equal(resolveTarget(c, 'v1').sha256Hex, m.digestHex);
    });
  }

  it('tolerates an expired delegation only when asked', async () => {
    await repo.addDelegation('targets/releases');
    const rel = fakeManifest('release');
    await repo.changeTargets(
      'targets/releases',
      { set: new Map([['v1', fakeTarget('release')]]) },
      pastExpiry,
    );
    await rejectsWithTrustError(read(repo), 'EXPIRED', { role: 'targets/releases' });
    const c = await read(repo, { allowExpired: true });
    assert.equal(
      c.targetsRoles.get('targets/releases')?.metadata.expires.toISOString(),
      '2026-11-01T00:00:00.000Z',
    );
    assert.equal(resolveTarget(c, 'v1').sha256Hex, rel.digestHex);
  });

  it('reads an expired delegation listing a name outside its paths, without that name', async () => {
    // What a publisher re-signs of it then leaves the name out: no reader could take it from there.
    await repo.addDelegation('targets/releases', { paths: ['release-'] });
    await repo.signTag('release-1', m.digestHex, m.length, 'targets/releases');
    await repo.signTag('latest', m.digestHex, m.length, 'targets/releases');
    const c = await read(repo, { now: LATER, allowExpired: true });
    assert.deepEqual(
      [...(c.targetsRoles.get('targets/releases')?.metadata.targets.keys() ?? [])],
      ['release-1'],
    );
  });

  it('reads a repository untouched for four years: everything but root has expired', async () => {
    await rejectsWithTrustError(read(repo, { now: LATER }), 'EXPIRED', { role: 'timestamp' });
    const c = await read(repo, { now: LATER, allowExpired: true });
    assert.equal(c.targetsRoles.get('targets')?.metadata.version, 3);
    assert.ok(c.expires < LATER);
  });

  it('never waives root expiry', async () => {
    repo.root = { ...repo.root, expires: new Date(NOW.getTime() + DAY) };
    await repo.republishRoot({});
    const later = new Date(NOW.getTime() + 2 * DAY);
    await rejectsWithTrustError(read(repo, { now: later, allowExpired: true }), 'EXPIRED', {
      role: 'root',
    });
  });

  it('never waives an expired root certificate', async () => {
    const old = await fixtureKey({
      certificateFor: GUN,
      notBefore: new Date(NOW.getTime() - 800 * DAY),
      years: 2,
    });
    const bad = await FixtureRepository.create(GUN, NOW, { rootKeys: [old] });
    await rejectsWithTrustError(read(bad, { allowExpired: true }), 'CERTIFICATE_INVALID', {
      gun: GUN,
      keyId: old.publicKey.id,
    });
  });

  describe('still fails every other check, one corruption at a time', () => {
    it('a bad signature on expired targets', async () => {
      await repo.changeTargets('targets', {}, { bytes: (b) => flipSignatureBit(b) });
      await rejectsWithTrustError(
        read(repo, { now: LATER, allowExpired: true }),
        'SIGNATURE_THRESHOLD',
        {
          role: 'targets',
          found: 0,
          needed: 1,
        },
      );
    });

    it('a bad signature on an expired snapshot', async () => {
      await repo.publish([], { snapshot: { bytes: (b) => flipSignatureBit(b) } });
      await rejectsWithTrustError(
        read(repo, { now: LATER, allowExpired: true }),
        'SIGNATURE_THRESHOLD',
        {
          role: 'snapshot',
        },
      );
    });

    it('a bad signature on an expired timestamp', async () => {
      await repo.publish([], { timestamp: { bytes: (b) => flipSignatureBit(b) } });
      await rejectsWithTrustError(
        read(repo, { now: LATER, allowExpired: true }),
        'SIGNATURE_THRESHOLD',
        {
          role: 'timestamp',
        },
      );
    });

    it('expired targets signed by a key targets does not list', async () => {
      const stranger = await fixtureKey();
      await repo.changeTargets('targets', {}, { signers: [stranger.signer] });
      await rejectsWithTrustError(
        read(repo, { now: LATER, allowExpired: true }),
        'SIGNATURE_THRESHOLD',
        {
          role: 'targets',
          found: 0,
        },
      );
    });

    it('expired targets whose bytes do not match the snapshot', async () => {
      const name = `targets.${sha256Hex(repo.bytesOf('targets'))}.json`;
      const bytes = Buffer.from(repo.bytesOf('targets'));
      const i = bytes.length - 3;
      bytes[i] = (bytes[i] ?? 0) ^ 0x01;
      repo.files.set(name, bytes);
      await rejectsWithTrustError(read(repo, { now: LATER, allowExpired: true }), 'HASH_MISMATCH', {
        role: 'targets',
        algorithm: 'sha256',
      });
    });

    it('expired targets shorter than the snapshot says', async () => {
      const name = `targets.${sha256Hex(repo.bytesOf('targets'))}.json`;
      repo.files.set(name, repo.bytesOf('targets').subarray(0, 100));
      await rejectsWithTrustError(
        read(repo, { now: LATER, allowExpired: true }),
        'LENGTH_MISMATCH',
        {
          role: 'targets',
          actual: 100,
        },
      );
    });

    it('an expired targets rolled back below a version seen before', async () => {
      const seen = await read(repo);
      await repo.changeTargets('targets', {}, { signed: (s) => ({ ...s, version: 2 }) });
      await rejectsWithTrustError(
        read(repo, { now: LATER, allowExpired: true, state: { floors: seen.floors } }),
        'VERSION_ROLLBACK',
        { role: 'targets', actual: 2, floor: 3 },
      );
    });

    it('an expired delegation with a bad signature', async () => {
      await repo.addDelegation('targets/releases');
      await repo.changeTargets('targets/releases', {}, { bytes: (b) => flipSignatureBit(b) });
      await rejectsWithTrustError(
        read(repo, { now: LATER, allowExpired: true }),
        'SIGNATURE_THRESHOLD',
        {
          role: 'targets/releases',
        },
      );
    });

    it('a root no pinned key signed', async () => {
      const other = await fixtureKey();
      await rejectsWithTrustError(
        updateCollection(new MemoryFetcher(repo), GUN, {
          anchor: compileAnchor({ rootKeyIds: [other.publicKey.id] }, GUN),
          now: LATER,
          allowExpired: true,
        }),
        'ROOT_NOT_TRUSTED',
        { gun: GUN },
      );
    });
  });
});
