/**
 * Invalid delegations: read with `invalidDelegations: 'record'` (as the verifier does), a delegation
 * that is merely expired or short of its signature threshold is recorded in `invalidRoles` (with
 * every delegation below it) instead of failing the collection,
 * as notary's Go client does (client/tufclient.go downloadTargets: ErrExpired and ErrRoleThreshold
 * of a delegation are skipped; tuf/builder.go loadDelegation: invalidRoles). Resolution that
 * reaches such a role throws its error rather than walking past it. Every other fault of a
 * delegation, and any fault of targets, still fails the whole collection. One corruption at a time.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { compileAnchor } from '../src/verify/anchor.js';
import type { TrustedCollection } from '../src/verify/collection-verifier.js';
import {
  DOCKER_ROLE_ORDER,
  NOTARY_ROLE_ORDER,
  resolveTarget,
  signersOf,
  targetsWithDigest,
} from '../src/verify/resolve.js';
import { updateCollection, type TrustState } from '../src/verify/updater.js';
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
import { assertTrustError, rejectsWithTrustError } from './support/trust-errors.js';

const GUN = '127.0.0.1:5000/demo/app';
const NOW = new Date('2026-11-22T12:00:00Z');
const DAY = 24 * 3600 * 1000;
const PAST = '2026-11-01T00:00:00Z';
const PAST_ISO = '2026-11-01T00:00:00.000Z';

const pastExpiry: RoleOverride = { signed: (s) => ({ ...s, expires: PAST }) };

/** A reader's update that records invalid delegations (what the verifier's trust cache does). */
function read(
  repo: FixtureRepository,
  options: {
    fetcher?: MemoryFetcher;
    state?: TrustState;
    invalidDelegations?: 'fail' | 'record';
    allowExpired?: boolean;
  } = {},
): Promise<TrustedCollection> {
  return updateCollection(options.fetcher ?? new MemoryFetcher(repo), repo.gun, {
    anchor: compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }, repo.gun),
    now: NOW,
    invalidDelegations: options.invalidDelegations ?? 'record',
    ...(options.state === undefined ? {} : { state: options.state }),
    ...(options.allowExpired === undefined ? {} : { allowExpired: options.allowExpired }),
  });
}

/** The error resolving `name` throws (failing when it resolves). */
function resolutionError(
  collection: TrustedCollection,
  name: string,
  order: readonly string[],
): unknown {
  try {
    const found = resolveTarget(collection, name, order);
    return assert.fail(`${name} resolved from ${found.role}`);
  } catch (err) {
    return err;
  }
}

/** Replaces the served file of `role` (by its current hash) with other bytes. */
function serveInstead(repo: FixtureRepository, role: string, bytes: Buffer): void {
  repo.files.set(`${role}.${sha256Hex(repo.bytesOf(role))}.json`, bytes);
}

describe('invalid delegations', () => {
  let repo: FixtureRepository;
  const v1 = fakeManifest('v1');
  const aliceOnly = fakeManifest('alice-only');
  const rel = fakeManifest('release');

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', v1.digestHex, v1.length);
  });

  /**
   * Rolls targets/alice (at version 2) back to version 1 with `fault` on top, for a reader that has
   * seen version 2: the collection must fail with VERSION_ROLLBACK, not record the other fault.
   */
  async function rejectsRollbackOfAlice(fault: RoleOverride): Promise<void> {
    const seen = await read(repo);
    await repo.changeTargets(
      'targets/alice',
      {},
      { ...fault, signed: (s) => ({ ...(fault.signed?.(s) ?? s), version: 1 }) },
    );
    await rejectsWithTrustError(
      read(repo, { state: { floors: seen.floors } }),
      'VERSION_ROLLBACK',
      { role: 'targets/alice', actual: 1, floor: 2 },
    );
  }

  describe('an expired targets/alice (a signer nobody has used for years)', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/alice');
      await repo.changeTargets(
        'targets/alice',
        { set: new Map([['alice-only', fakeTarget('alice-only')]]) },
        pastExpiry,
      );
    });

    it('loads the collection and lists targets/alice as invalid with its EXPIRED error', async () => {
      const c = await read(repo);
      assert.deepEqual([...c.invalidRoles.keys()], ['targets/alice']);
      assertTrustError(c.invalidRoles.get('targets/alice'), 'EXPIRED', {
        role: 'targets/alice',
        expires: PAST_ISO,
        now: NOW.toISOString(),
      });
      assert.deepEqual([...c.targetsRoles.keys()], ['targets']);
    });

    it('resolves a tag signed in targets, in Docker and notary order', async () => {
      const c = await read(repo);
      for (const order of [DOCKER_ROLE_ORDER, NOTARY_ROLE_ORDER]) {
        const t = resolveTarget(c, 'v1', order);
        assert.deepEqual([t.role, t.sha256Hex], ['targets', v1.digestHex]);
      }
    });

    it('throws EXPIRED naming targets/alice for a tag the walk looks for in it', async () => {
      const c = await read(repo);
      for (const order of [NOTARY_ROLE_ORDER, DOCKER_ROLE_ORDER]) {
        const err = resolutionError(c, 'alice-only', order);
        assertTrustError(err, 'EXPIRED', { role: 'targets/alice', expires: PAST_ISO });
        assert.equal(err, c.invalidRoles.get('targets/alice'));
      }
    });

    it('never counts targets/alice as a signer, nor searches it for digests', async () => {
      const c = await read(repo);
      assert.deepEqual(signersOf(c, 'alice-only'), []);
      assert.deepEqual(targetsWithDigest(c, aliceOnly.digestHex), []);
      assert.deepEqual(
        targetsWithDigest(c, v1.digestHex).map((t) => `${t.role}:${t.name}`),
        ['targets:v1'],
      );
    });

    it('keeps its expiry out of the collection expiry (a cache would refresh forever)', async () => {
      const c = await read(repo);
      assert.ok(c.expires > NOW, c.expires.toISOString());
      assert.equal(c.expires.getTime(), repo.timestamp?.expires.getTime());
    });

    it('still raises the version floor of the validly signed expired role', async () => {
      const c = await read(repo);
      assert.equal(c.floors['targets/alice'], 2);
    });

    it('still fails on a rollback of the expired role', async () => {
      await rejectsRollbackOfAlice(pastExpiry);
    });

    it('is recorded EXPIRED when it also lists a name outside its paths (no fault in notary)', async () => {
      await repo.addDelegation('targets/paths', { paths: ['release-'] });
      await repo.changeTargets(
        'targets/paths',
        { set: new Map([['latest', fakeTarget('latest')]]) },
        pastExpiry,
      );
      const c = await read(repo);
      assertTrustError(c.invalidRoles.get('targets/paths'), 'EXPIRED', { role: 'targets/paths' });
      // Its paths keep the walk away from it for that name: targets' answer stands.
      await repo.signTag('latest', v1.digestHex, v1.length);
      const t = resolveTarget(await read(repo), 'latest', NOTARY_ROLE_ORDER);
      assert.deepEqual([t.role, t.sha256Hex], ['targets', v1.digestHex]);
    });
  });

  describe('an expired targets/releases', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/releases');
      await repo.changeTargets(
        'targets/releases',
        { set: new Map([['rel', fakeTarget('release')]]) },
        pastExpiry,
      );
    });

    it('fails Docker resolution of every tag with EXPIRED, with no fallback to targets', async () => {
      const c = await read(repo);
      for (const tag of ['v1', 'rel', 'unsigned']) {
        assertTrustError(resolutionError(c, tag, DOCKER_ROLE_ORDER), 'EXPIRED', {
          role: 'targets/releases',
          expires: PAST_ISO,
        });
      }
    });

    it('resolves a tag of targets in notary order, as `notary lookup` does', async () => {
      const c = await read(repo);
      assert.equal(resolveTarget(c, 'v1', NOTARY_ROLE_ORDER).role, 'targets');
      assertTrustError(resolutionError(c, 'rel', NOTARY_ROLE_ORDER), 'EXPIRED', {
        role: 'targets/releases',
      });
      assert.deepEqual(targetsWithDigest(c, rel.digestHex), []);
    });

    it('is not consulted for a tag outside the paths targets delegated to it', async () => {
      const fresh = await FixtureRepository.create(GUN, NOW);
      await fresh.signTag('v1', v1.digestHex, v1.length);
      await fresh.addDelegation('targets/releases', { paths: ['release-'] });
      await fresh.changeTargets(
        'targets/releases',
        { set: new Map([['release-1', fakeTarget('release')]]) },
        pastExpiry,
      );
      const c = await read(fresh);
      assert.equal(resolveTarget(c, 'v1', DOCKER_ROLE_ORDER).role, 'targets');
      assertTrustError(resolutionError(c, 'release-1', DOCKER_ROLE_ORDER), 'EXPIRED', {
        role: 'targets/releases',
      });
    });
  });

  it('still fails the whole collection on expired top-level targets', async () => {
    await repo.addDelegation('targets/releases');
    await repo.changeTargets('targets', {}, pastExpiry);
    await rejectsWithTrustError(read(repo), 'EXPIRED', { role: 'targets', expires: PAST_ISO });
  });

  describe('only when asked, and never for writers', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/alice');
    });

    it('fails the collection by default and with invalidDelegations: fail', async () => {
      await repo.changeTargets('targets/alice', {}, pastExpiry);
      const byDefault = updateCollection(new MemoryFetcher(repo), GUN, {
        anchor: compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }, GUN),
        now: NOW,
      });
      await rejectsWithTrustError(byDefault, 'EXPIRED', {
        role: 'targets/alice',
        expires: PAST_ISO,
      });
      await rejectsWithTrustError(read(repo, { invalidDelegations: 'fail' }), 'EXPIRED', {
        role: 'targets/alice',
      });
      await repo.changeTargets('targets/alice', {}, { bytes: (b) => flipSignatureBit(b) });
      await rejectsWithTrustError(
        read(repo, { invalidDelegations: 'fail' }),
        'SIGNATURE_THRESHOLD',
        {
          role: 'targets/alice',
        },
      );
    });

    it('reads an expired delegation as valid for a writer (allowExpired)', async () => {
      await repo.changeTargets('targets/alice', {}, pastExpiry);
      const c = await read(repo, { allowExpired: true });
      assert.equal(c.invalidRoles.size, 0);
      assert.ok(c.targetsRoles.has('targets/alice'));
    });

    it('keeps a bad signature fatal for a writer (allowExpired)', async () => {
      await repo.changeTargets('targets/alice', {}, { bytes: (b) => flipSignatureBit(b) });
      await rejectsWithTrustError(read(repo, { allowExpired: true }), 'SIGNATURE_THRESHOLD', {
        role: 'targets/alice',
        found: 0,
      });
    });
  });

  describe('signatures (Go: ErrRoleThreshold → invalid role, ErrNoSignatures → fatal)', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/alice');
      await repo.signTag('alice-only', aliceOnly.digestHex, aliceOnly.length, 'targets/alice');
    });

    it('records a delegation with a bad signature as invalid: SIGNATURE_THRESHOLD', async () => {
      await repo.changeTargets('targets/alice', {}, { bytes: (b) => flipSignatureBit(b) });
      const c = await read(repo);
      assertTrustError(c.invalidRoles.get('targets/alice'), 'SIGNATURE_THRESHOLD', {
        role: 'targets/alice',
        found: 0,
        needed: 1,
      });
      assert.equal(resolveTarget(c, 'v1').role, 'targets');
      assertTrustError(resolutionError(c, 'alice-only', NOTARY_ROLE_ORDER), 'SIGNATURE_THRESHOLD', {
        role: 'targets/alice',
      });
    });

    it('records a delegation signed by a key it does not list as invalid', async () => {
      const stranger = await fixtureKey();
      await repo.changeTargets('targets/alice', {}, { signers: [stranger.signer] });
      const c = await read(repo);
      assertTrustError(c.invalidRoles.get('targets/alice'), 'SIGNATURE_THRESHOLD', {
        role: 'targets/alice',
        found: 0,
      });
    });

    it('does not raise the floor to the version of an unverified role', async () => {
      const seen = await read(repo);
      assert.equal(seen.floors['targets/alice'], 2);
      await repo.changeTargets('targets/alice', {}, { bytes: (b) => flipSignatureBit(b) });
      const c = await read(repo, { state: { floors: seen.floors } });
      assert.ok(c.invalidRoles.has('targets/alice'));
      assert.equal(c.floors['targets/alice'], 2);
    });

    it('fails on a rollback even when the rolled-back role is badly signed (Go checks the version first)', async () => {
      await rejectsRollbackOfAlice({ bytes: (b) => flipSignatureBit(b) });
    });

    it('fails the collection on a delegation with no signature at all', async () => {
      await repo.changeTargets('targets/alice', {}, { signers: [] });
      await rejectsWithTrustError(read(repo), 'SIGNATURE_THRESHOLD', {
        role: 'targets/alice',
        found: 0,
        needed: 1,
      });
    });
  });

  describe('bytes the snapshot does not vouch for stay fatal', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/alice');
    });

    it('HASH_MISMATCH', async () => {
      const bytes = Buffer.from(repo.bytesOf('targets/alice'));
      const i = bytes.length - 3;
      bytes[i] = (bytes[i] ?? 0) ^ 0x01;
      serveInstead(repo, 'targets/alice', bytes);
      await rejectsWithTrustError(read(repo), 'HASH_MISMATCH', {
        role: 'targets/alice',
        algorithm: 'sha256',
      });
    });

    it('LENGTH_MISMATCH', async () => {
      serveInstead(repo, 'targets/alice', repo.bytesOf('targets/alice').subarray(0, 50));
      await rejectsWithTrustError(read(repo), 'LENGTH_MISMATCH', {
        role: 'targets/alice',
        actual: 50,
      });
    });

    it('HASH_MISMATCH of an expired delegation', async () => {
      await repo.changeTargets('targets/alice', {}, pastExpiry);
      const bytes = Buffer.from(repo.bytesOf('targets/alice'));
      bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0x01;
      serveInstead(repo, 'targets/alice', bytes);
      await rejectsWithTrustError(read(repo), 'HASH_MISMATCH', { role: 'targets/alice' });
    });
  });

  describe('below an invalid delegation', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/alice');
      await repo.addDelegation('targets/alice/bob');
      await repo.signTag('bob-only', rel.digestHex, rel.length, 'targets/alice/bob');
      await repo.changeTargets('targets/alice', {}, pastExpiry);
    });

    it('marks the child invalid with its parent error, and never fetches it', async () => {
      const fetcher = new MemoryFetcher(repo);
      const c = await read(repo, { fetcher });
      assert.deepEqual([...c.invalidRoles.keys()].sort(), ['targets/alice', 'targets/alice/bob']);
      const parentError = c.invalidRoles.get('targets/alice');
      assertTrustError(parentError, 'EXPIRED', { role: 'targets/alice' });
      assert.equal(c.invalidRoles.get('targets/alice/bob'), parentError);
      assert.ok(!fetcher.requests.some((r) => r.includes('targets/alice/bob')), 'bob not fetched');
      assert.ok(!c.targetsRoles.has('targets/alice/bob'));
      assert.deepEqual(signersOf(c, 'bob-only'), []);
    });

    it('throws the parent error for a tag of the child, from any starting role', async () => {
      const c = await read(repo);
      for (const order of [NOTARY_ROLE_ORDER, ['targets/alice/bob']]) {
        assertTrustError(resolutionError(c, 'bob-only', order), 'EXPIRED', {
          role: 'targets/alice',
        });
      }
    });

    it('makes the child valid again once the parent is renewed', async () => {
      await repo.changeTargets(
        'targets/alice',
        {},
        {
          signed: (s) => ({ ...s, expires: new Date(NOW.getTime() + DAY).toISOString() }),
        },
      );
      const c = await read(repo);
      assert.equal(c.invalidRoles.size, 0);
      assert.equal(resolveTarget(c, 'bob-only').role, 'targets/alice/bob');
    });
  });
});
