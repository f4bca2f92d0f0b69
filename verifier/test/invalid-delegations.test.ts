/**
 * The decision engine over collections with an invalid (expired) delegation: an unrelated expired
 * signer role does not deny the repository, a tag whose Docker-order resolution reaches the expired
 * role is denied as expired (no fallback to `targets`), a required signer that expired is named as
 * such, and the trust cache keeps such a collection for its TTL rather than refetching it forever.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  fakeTarget,
  fixtureKey,
  type FixtureKey,
  type RoleOverride,
} from '@kpack-trust/common/testing';
import type { ImagePolicyEngine } from '../src/policy/engine.js';
import {
  GUN,
  IMAGE,
  NOTARY,
  V1,
  engineWith,
  pinnedConfig,
  pod,
  signedRepository,
} from './support/engine.js';

const PAST_ISO = '2026-11-01T00:00:00.000Z';
const pastExpiry: RoleOverride = { signed: (s) => ({ ...s, expires: PAST_ISO }) };
const aliceOnly = fakeManifest('alice-only');

describe('ImagePolicyEngine with an invalid delegation', () => {
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;
  let alice: FixtureKey;

  beforeEach(async () => {
    ({ repo, fetcher } = await signedRepository());
    alice = await fixtureKey();
  });

  describe('an unrelated expired targets/alice', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/alice', { keys: [alice], paths: ['alice-'] });
      await repo.changeTargets(
        'targets/alice',
        { set: new Map([['alice-only', fakeTarget('alice-only')]]) },
        pastExpiry,
      );
    });

    it('admits a tag signed in targets, by tag and by digest', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      for (const image of [IMAGE, `${GUN}@sha256:${V1.digestHex}`]) {
        const decision = await engine.decide(pod([image]));
        assert.equal(decision.status.allowed, true, decision.status.reason);
        assert.equal(decision.images[0]?.code, 'SIGNED');
        assert.equal(decision.images[0]?.role, 'targets');
      }
    });

    it('denies a digest only the expired role signs, naming the role it could not check', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const image = `${GUN}@sha256:${aliceOnly.digestHex}`;
      const decision = await engine.decide(pod([image]));
      assert.equal(decision.images[0]?.code, 'NOT_SIGNED');
      assert.equal(
        decision.status.reason,
        `${image}: not signed in notary ${NOTARY} (no signed tag of ${GUN} points to ` +
          `sha256:${aliceOnly.digestHex}; could not check targets/alice: targets/alice expired at ${PAST_ISO})`,
      );
    });

    it('keeps the collection cached for its TTL: one fetch for reviews 50 s apart', async () => {
      const { engine, observer, clock } = engineWith(pinnedConfig(repo), fetcher);
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
      clock.advance(50_000);
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
      assert.deepEqual(
        observer.fetches.map((f) => f.ok),
        [true],
      );
    });
  });

  describe('a required signer that expired', () => {
    /** An engine whose demo rule requires these signers (and this many of them, when given). */
    function engineRequiring(roles: readonly string[], threshold?: number): ImagePolicyEngine {
      const spec = roles
        .map((role) => `{ role: ${role}, keys: [${JSON.stringify(alice.publicKey.id)}] }`)
        .join(', ');
      const count = threshold === undefined ? '' : `, signersThreshold: ${threshold}`;
      return engineWith(pinnedConfig(repo, { trustExtra: `, signers: [${spec}]${count}` }), fetcher)
        .engine;
    }

    beforeEach(async () => {
      await repo.addDelegation('targets/alice', { keys: [alice] });
      await repo.addDelegation('targets/bob', { keys: [alice] });
      await repo.signTag('v1', V1.digestHex, V1.length, 'targets/bob');
      await repo.changeTargets(
        'targets/alice',
        { set: new Map([['v1', fakeTarget('v1')]]) },
        pastExpiry,
      );
    });

    it('denies with a reason saying the required role expired', async () => {
      const decision = await engineRequiring(['targets/alice']).decide(pod([IMAGE]));
      assert.equal(decision.images[0]?.code, 'SIGNERS_NOT_MET');
      assert.equal(
        decision.status.reason,
        `${IMAGE}: 0 of the required signers signed "v1", 1 needed ` +
          `(targets/alice cannot be trusted: targets/alice expired at ${PAST_ISO})`,
      );
    });

    it('counts it as not signed: another signer can still meet the threshold', async () => {
      const all = await engineRequiring(['targets/alice', 'targets/bob']).decide(pod([IMAGE]));
      assert.equal(
        all.status.reason,
        `${IMAGE}: 1 of the required signers signed "v1", 2 needed ` +
          `(targets/alice cannot be trusted: targets/alice expired at ${PAST_ISO})`,
      );
      const one = await engineRequiring(['targets/alice', 'targets/bob'], 1).decide(pod([IMAGE]));
      assert.equal(one.status.allowed, true, one.status.reason);
      assert.equal(one.images[0]?.role, 'targets/bob');
    });

    it('denies a digest reference through it, naming the expired role', async () => {
      const image = `${GUN}@sha256:${V1.digestHex}`;
      const decision = await engineRequiring(['targets/alice']).decide(pod([image]));
      assert.equal(decision.images[0]?.code, 'NOT_SIGNED');
      assert.match(
        decision.status.reason ?? '',
        /; could not check targets\/alice: targets\/alice expired at 2026-11-01T00:00:00\.000Z\)$/,
      );
    });
  });

  describe('an expired targets/releases', () => {
    beforeEach(async () => {
      await repo.addDelegation('targets/releases', { keys: [alice] });
      await repo.changeTargets(
        'targets/releases',
        { set: new Map([['rel', fakeTarget('release')]]) },
        pastExpiry,
      );
    });

    it('denies a tag of targets as expired: Docker order reaches targets/releases first', async () => {
      const { engine, observer } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(decision.status.allowed, false);
      assert.equal(decision.images[0]?.code, 'EXPIRED');
      assert.equal(
        decision.status.reason,
        `${IMAGE}: trust data for ${GUN} from notary ${NOTARY} failed verification: ` +
          `targets/releases expired at ${PAST_ISO}`,
      );
      // The collection itself verified: the denial is about resolution, not the fetch.
      assert.deepEqual(
        observer.fetches.map((f) => f.ok),
        [true],
      );
    });

    it('denies a digest reference signed in targets the same way', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod([`${GUN}@sha256:${V1.digestHex}`]));
      assert.equal(decision.images[0]?.code, 'EXPIRED');
      assert.match(decision.status.reason ?? '', /targets\/releases expired at /);
    });

    it('admits again once targets/releases is renewed', async () => {
      await repo.changeTargets('targets/releases', {});
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(decision.status.allowed, true, decision.status.reason);
      assert.equal(decision.images[0]?.role, 'targets');
    });
  });
});
