/**
 * The decision engine over in-memory repositories: every decision path, one condition changed at a
 * time, asserting the result, the outcome code, the exact reason and the audit annotations.
 */
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';
import { TrustError, isTrustError } from '@kpack-trust/common';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  fixtureKey,
  type FixtureKey,
} from '@kpack-trust/common/testing';
import { ImagePolicyEngine } from '../src/policy/engine.js';
import {
  ControlledFetcher,
  DAY,
  GUN,
  IMAGE,
  NOTARY,
  NOW,
  PREAMBLE,
  REGISTRY,
  V1,
  V2,
  configFrom,
  engineWith,
  pinnedConfig,
  pod,
  repositoryWithSameRootKey,
  signedRepository,
  unreachable,
} from './support/engine.js';

const rel = fakeManifest('release');

describe('ImagePolicyEngine', () => {
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;

  beforeEach(async () => {
    ({ repo, fetcher } = await signedRepository());
  });

  describe('tags, digests and tag@digest', () => {
    it('admits a signed tag with its digest, role and rule audited', async () => {
      const { engine, observer } = engineWith(pinnedConfig(repo), fetcher);
      const status = await engine.review(pod([IMAGE]));
      assert.deepEqual(status, {
        allowed: true,
        auditAnnotations: {
          'image-0-digest': `sha256:${V1.digestHex}`,
          'image-0-role': 'targets',
          'image-0-rule': 'demo',
        },
      });
      assert.equal(observer.images.length, 1);
      // A memoised decision: its event carries the memo identity observers may cache work by.
      const { memo, ...event } = observer.images[0] ?? { memo: undefined };
      assert.equal(typeof memo, 'object');
      assert.deepEqual(
        { ...event, durationMs: 0 },
        {
          image: IMAGE,
          namespace: 'default',
          digest: `sha256:${V1.digestHex}`,
          role: 'targets',
          rule: 'demo',
          result: 'allowed',
          reason: `signed by targets in notary ${NOTARY}`,
          code: 'SIGNED',
          durationMs: 0,
        },
      );
      assert.deepEqual(
        observer.fetches.map((f) => [f.server, f.gun, f.ok]),
        [[NOTARY, GUN, true]],
      );
    });

    it('resolves targets/releases before targets, as Docker does', async () => {
      await repo.addDelegation('targets/releases');
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/releases');
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const status = await engine.review(pod([IMAGE]));
      assert.equal(status.allowed, true);
      assert.equal(status.auditAnnotations?.['image-0-digest'], `sha256:${rel.digestHex}`);
      assert.equal(status.auditAnnotations?.['image-0-role'], 'targets/releases');
    });

    it('denies an unsigned tag, naming the image, the notary and the roles searched', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod([`${GUN}:v2`]));
      assert.deepEqual(decision.status, {
        allowed: false,
        reason: `${GUN}:v2: not signed in notary ${NOTARY} (no target "v2" in targets/releases or targets)`,
        auditAnnotations: { 'image-0-rule': 'demo' },
      });
      assert.equal(decision.images[0]?.code, 'NOT_SIGNED');
    });

    it('denies a tag first found in a delegation other than targets/releases, as docker/cli does', async () => {
      // Walking from targets/releases reaches targets/releases/qa before targets; Docker's pull
      // then refuses the tag ("No trust data") rather than looking further.
      await repo.addDelegation('targets/releases');
      await repo.addDelegation('targets/releases/qa');
      await repo.addDelegation('targets/ci');
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/releases/qa');
      await repo.signTag('ci-only', V2.digestHex, V2.length, 'targets/ci');
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      for (const [tag, role] of [
        ['v1', 'targets/releases/qa'],
        ['ci-only', 'targets/ci'],
      ] as const) {
        const decision = await engine.decide(pod([`${GUN}:${tag}`]));
        assert.equal(
          decision.status.reason,
          `${GUN}:${tag}: not signed in notary ${NOTARY} ("${tag}" is signed only by ${role}, and Docker trusts tags from targets/releases or targets alone)`,
        );
        assert.equal(decision.images[0]?.code, 'NOT_SIGNED');
      }
      // The same digest under a tag of targets itself is admitted.
      await repo.signTag('v2', V2.digestHex, V2.length);
      const byDigest = await engineWith(pinnedConfig(repo), fetcher).engine.decide(
        pod([`${GUN}@sha256:${V2.digestHex}`]),
      );
      assert.equal(byDigest.status.allowed, true);
      assert.equal(byDigest.images[0]?.role, 'targets');
    });

    it('admits a digest reference signed for some tag, and audits that tag', async () => {
      await repo.signTag('v2', V2.digestHex, V2.length);
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const status = await engine.review(pod([`${GUN}@sha256:${V2.digestHex}`]));
      assert.equal(status.allowed, true);
      assert.equal(status.auditAnnotations?.['image-0-tag'], 'v2');
      assert.equal(status.auditAnnotations?.['image-0-digest'], `sha256:${V2.digestHex}`);
    });

    it('denies a digest no tag points to', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod([`${GUN}@sha256:${V2.digestHex}`]));
      assert.equal(
        decision.status.reason,
        `${GUN}@sha256:${V2.digestHex}: not signed in notary ${NOTARY} (no signed tag of ${GUN} points to sha256:${V2.digestHex})`,
      );
      assert.equal(decision.images[0]?.code, 'NOT_SIGNED');
    });

    it('denies a digest that only a role Docker would not consult for its tag signs', async () => {
      // targets says v1 → v1 digest, but targets/releases (consulted first) says v1 → release digest.
      await repo.addDelegation('targets/releases');
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/releases');
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const stale = await engine.decide(pod([`${GUN}@sha256:${V1.digestHex}`]));
      assert.equal(stale.status.allowed, false);
      assert.equal(stale.images[0]?.code, 'NOT_SIGNED');
      const current = await engine.decide(pod([`${GUN}@sha256:${rel.digestHex}`]));
      assert.equal(current.status.allowed, true);
      assert.equal(current.images[0]?.role, 'targets/releases');
    });

    it('admits tag@digest only when the tag is signed for that digest', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      assert.equal((await engine.review(pod([`${IMAGE}@sha256:${V1.digestHex}`]))).allowed, true);
      const wrong = await engine.decide(pod([`${IMAGE}@sha256:${V2.digestHex}`]));
      assert.equal(
        wrong.status.reason,
        `${IMAGE}@sha256:${V2.digestHex}: tag "v1" is signed for sha256:${V1.digestHex}, not for the referenced sha256:${V2.digestHex}`,
      );
      assert.equal(wrong.images[0]?.code, 'DIGEST_MISMATCH');
    });

    it('requireDigest denies tag-only references and admits signed digests', async () => {
      const { engine } = engineWith(
        pinnedConfig(repo, { ruleExtra: '    requireDigest: true' }),
        fetcher,
      );
      const tagOnly = await engine.decide(pod([IMAGE]));
      assert.equal(
        tagOnly.status.reason,
        `${IMAGE}: rule "demo" requires a digest reference (${GUN}@sha256:…)`,
      );
      assert.equal(tagOnly.images[0]?.code, 'DIGEST_REQUIRED');
      assert.equal(fetcher.requests.length, 0, 'denied before asking notary');
      assert.equal((await engine.review(pod([`${GUN}@sha256:${V1.digestHex}`]))).allowed, true);
    });
  });

  describe('rules', () => {
    it('denies images no rule matches, and unparseable images, naming them', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod(['alpine', 'Not/Valid:', IMAGE]));
      assert.equal(
        decision.status.reason,
        'alpine: no policy rule matches docker.io/library/alpine in namespace "default"; ' +
          'Not/Valid:: not a valid image reference (repository path "Valid" must be lowercase)',
      );
      assert.deepEqual(
        decision.images.map((d) => [d.result, d.code]),
        [
          ['denied', 'NO_RULE'],
          ['denied', 'REFERENCE_INVALID'],
          ['allowed', 'SIGNED'],
        ],
      );
    });

    it('allow rules admit without asking notary; deny rules deny', async () => {
      const { engine, observer } = engineWith(
        pinnedConfig(repo, {
          rules: `  - { name: hub, images: "docker.io/library/*", allow: true }
  - { name: blocked, images: "${REGISTRY}/demo/blocked", deny: true }`,
        }),
        fetcher,
      );
      const ok = await engine.decide(pod(['alpine:3.20']));
      assert.deepEqual(ok.status, { allowed: true, auditAnnotations: { 'image-0-rule': 'hub' } });
      assert.equal(ok.images[0]?.result, 'exempt');
      assert.equal(ok.images[0]?.code, 'RULE_ALLOW');
      const blocked = await engine.decide(pod([`${REGISTRY}/demo/blocked:v1`]));
      assert.equal(blocked.status.reason, `${REGISTRY}/demo/blocked:v1: denied by rule "blocked"`);
      assert.equal(fetcher.requests.length, 0);
      assert.deepEqual(
        observer.images.map((e) => e.result),
        ['exempt', 'denied'],
      );
    });

    it('the most specific rule decides', async () => {
      const { engine } = engineWith(
        pinnedConfig(repo, {
          rules: `  - { name: app-only, images: "${GUN}", deny: true }`,
        }),
        fetcher,
      );
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(decision.images[0]?.rule, 'app-only');
      assert.equal(decision.status.allowed, false);
    });

    it('namespace-limited and namespace-excluding rules', async () => {
      const { engine } = engineWith(
        pinnedConfig(repo, {
          ruleExtra: '    excludeNamespaces: ["dev-*"]',
          rules: `  - { name: dev, images: "${REGISTRY}/**", namespaces: ["dev-*"], allow: true }`,
        }),
        fetcher,
      );
      const dev = await engine.decide(pod([`${GUN}:unsigned`], { namespace: 'dev-1' }));
      assert.equal(dev.images[0]?.rule, 'dev');
      assert.equal(dev.status.allowed, true);
      const prod = await engine.decide(pod([`${GUN}:unsigned`], { namespace: 'prod' }));
      assert.equal(prod.images[0]?.rule, 'demo');
      assert.equal(prod.status.allowed, false);
    });

    it('exempt namespaces admit every image without checks', async () => {
      const { engine, observer } = engineWith(
        pinnedConfig(repo, { top: 'exemptNamespaces: [kube-system]' }),
        fetcher,
      );
      const decision = await engine.decide(
        pod(['alpine', `${GUN}:unsigned`], { namespace: 'kube-system' }),
      );
      assert.deepEqual(decision.status, { allowed: true });
      assert.deepEqual(
        decision.images.map((d) => [d.result, d.code]),
        [
          ['exempt', 'NAMESPACE_EXEMPT'],
          ['exempt', 'NAMESPACE_EXEMPT'],
        ],
      );
      assert.equal(fetcher.requests.length, 0);
      assert.equal(observer.images.length, 2);
    });
  });

  describe('break-glass and detection mode', () => {
    const annotation = 'kpack-trust.image-policy.k8s.io/break-glass';

    it('break-glass admits the pod and records an audit annotation', async () => {
      const { engine, observer } = engineWith(
        pinnedConfig(repo, { top: 'breakGlass: {}' }),
        fetcher,
      );
      const decision = await engine.decide(
        pod([`${GUN}:unsigned`, 'alpine'], { annotations: { [annotation]: 'INC-1234' } }),
      );
      assert.deepEqual(decision.status, {
        allowed: true,
        auditAnnotations: { 'break-glass': `${annotation}=INC-1234` },
      });
      assert.deepEqual(
        observer.images.map((e) => e.result),
        ['break-glass', 'break-glass'],
      );
      assert.equal(fetcher.requests.length, 0);
    });

    it('break-glass is off unless configured, and can be disabled', async () => {
      for (const top of ['', 'breakGlass: { enabled: false }']) {
        const { engine } = engineWith(pinnedConfig(repo, { top }), fetcher);
        const status = await engine.review(
          pod([`${GUN}:unsigned`], { annotations: { [annotation]: 'INC-1234' } }),
        );
        assert.equal(status.allowed, false, top);
      }
    });

    it('break-glass needs its own annotation with a value', async () => {
      const { engine } = engineWith(pinnedConfig(repo, { top: 'breakGlass: {}' }), fetcher);
      for (const annotations of [{ [annotation]: '' }, { 'other.image-policy.k8s.io/x': 'y' }]) {
        assert.equal(
          (await engine.review(pod([`${GUN}:unsigned`], { annotations }))).allowed,
          false,
        );
      }
    });

    it('global detection mode admits but reports what it would deny', async () => {
      const { engine, observer } = engineWith(
        pinnedConfig(repo, { top: 'detectionMode: true' }),
        fetcher,
      );
      const decision = await engine.decide(pod([IMAGE, `${GUN}:v2`, 'quay.io/x/y']));
      assert.deepEqual(decision.status, {
        allowed: true,
        auditAnnotations: {
          'image-0-digest': `sha256:${V1.digestHex}`,
          'image-0-role': 'targets',
          'image-0-rule': 'demo',
          'image-1-rule': 'demo',
          'image-1-would-deny': `not signed in notary ${NOTARY} (no target "v2" in targets/releases or targets)`,
          'image-2-would-deny': 'no policy rule matches quay.io/x/y in namespace "default"',
        },
      });
      assert.deepEqual(
        observer.images.map((e) => e.result),
        ['allowed', 'would-deny', 'would-deny'],
      );
    });

    it('a rule in detection mode reports while other rules enforce', async () => {
      const { engine } = engineWith(
        pinnedConfig(repo, {
          ruleExtra: '    detectionMode: true',
          rules: `  - { name: hard, images: "${REGISTRY}/hard/*", deny: true }`,
        }),
        fetcher,
      );
      const decision = await engine.decide(pod([`${GUN}:v2`, `${REGISTRY}/hard/x`]));
      assert.equal(decision.status.allowed, false);
      assert.equal(decision.status.reason, `${REGISTRY}/hard/x: denied by rule "hard"`);
      assert.equal(decision.images[0]?.result, 'would-deny');
    });
  });

  describe('pods', () => {
    it('every image must pass; reasons are joined with "; "', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod([IMAGE, `${GUN}:v2`, `${GUN}:v3`]));
      assert.equal(decision.status.allowed, false);
      assert.equal(
        decision.status.reason,
        [
          `${GUN}:v2: not signed in notary ${NOTARY} (no target "v2" in targets/releases or targets)`,
          `${GUN}:v3: not signed in notary ${NOTARY} (no target "v3" in targets/releases or targets)`,
        ].join('; '),
      );
    });

    it('decides a repeated image once and annotates every index', async () => {
      const { engine, observer } = engineWith(pinnedConfig(repo), fetcher);
      const status = await engine.review(pod([IMAGE, 'quay.io/x/y', IMAGE]));
      assert.equal(observer.images.length, 2);
      assert.equal(status.auditAnnotations?.['image-0-digest'], `sha256:${V1.digestHex}`);
      assert.equal(status.auditAnnotations?.['image-2-digest'], `sha256:${V1.digestHex}`);
      assert.equal(status.auditAnnotations?.['image-1-digest'], undefined);
    });

    it('verifies distinct repositories concurrently', async () => {
      const repos = [repo];
      for (const name of ['b', 'c', 'd']) {
        const r = await repositoryWithSameRootKey(repo, `${REGISTRY}/demo/${name}`);
        await r.signTag('v1', V1.digestHex, V1.length);
        repos.push(r);
      }
      const slow = new ControlledFetcher(new MemoryFetcher(...repos));
      slow.delayMs = 20;
      const { engine } = engineWith(pinnedConfig(repo, { canonical: true }), slow);
      const status = await engine.review(pod(repos.map((r) => `${r.gun}:v1`)));
      assert.equal(status.allowed, true, status.reason);
      assert.equal(slow.maxInFlight, 4);
    });

    it('bounds the reason and the audit annotations of huge pods', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const images = Array.from({ length: 500 }, (_, i) => `quay.io/x/y${i}`);
      const status = await engine.review(pod(images));
      assert.equal(status.allowed, false);
      assert.equal(status.reason?.split('; ').length, 21);
      assert.match(status.reason ?? '', /; and 480 more images denied$/);
      assert.equal(status.auditAnnotations, undefined);
    });
  });

  describe('trust', () => {
    it('denies a repository whose root is not signed by the pinned key', async () => {
      const other = await fixtureKey();
      const config = configFrom(`${PREAMBLE}
rules:
  - { images: "${REGISTRY}/demo/*", trust: { rootKeys: ["${other.publicKey.id}"] } }`);
      const { engine } = engineWith(config, fetcher);
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(decision.images[0]?.code, 'ROOT_NOT_TRUSTED');
      assert.equal(
        decision.status.reason,
        `${IMAGE}: trust data for ${GUN} from notary ${NOTARY} failed verification: ` +
          `root of ${GUN} (version 1) is not signed by a pinned root key`,
      );
    });

    it('admits under TOFU only when the rule says so', async () => {
      const config = configFrom(`${PREAMBLE}
rules:
  - { images: "${REGISTRY}/demo/*", tofu: true }`);
      const { engine } = engineWith(config, fetcher);
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    });

    it('denies when the repository has no trust data at all', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      const decision = await engine.decide(pod([`${REGISTRY}/demo/unknown:v1`]));
      assert.equal(
        decision.status.reason,
        `${REGISTRY}/demo/unknown:v1: not signed in notary ${NOTARY} (no trust data for ${REGISTRY}/demo/unknown)`,
      );
      assert.equal(decision.images[0]?.code, 'HTTP_STATUS');
      assert.equal(decision.images[0]?.unavailable, undefined);
    });

    it('denies expired trust data, judged by the injected clock', async () => {
      const { engine, clock } = engineWith(pinnedConfig(repo), fetcher);
      clock.advance(15 * DAY);
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(decision.images[0]?.code, 'EXPIRED');
      assert.match(
        decision.status.reason ?? '',
        /failed verification: timestamp expired at 2026-12-06T12:00:00\.000Z$/,
      );
    });

    it('uses the notary server the config names for each registry', async () => {
      const other = await repositoryWithSameRootKey(repo, 'quay.io/team/app');
      await other.signTag('v1', V1.digestHex, V1.length);
      const servers: string[] = [];
      const config = configFrom(`${PREAMBLE}  - registry: quay.io
    server: https://notary.quay.example:8443/
rules:
  - { images: "**", trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.canonicalId ?? ''}"] } }`);
      const both = new MemoryFetcher(repo, other);
      const engine = new ImagePolicyEngine({
        config,
        fetcherFor: (endpoint) => {
          servers.push(endpoint.server);
          return both;
        },
        now: () => NOW,
      });
      const decision = await engine.decide(pod([IMAGE, 'quay.io/team/app:v1', 'ghcr.io/x/y:v1']));
      assert.deepEqual(servers.sort(), [
        'https://127.0.0.1:4443',
        'https://ghcr.io',
        'https://notary.quay.example:8443',
      ]);
      assert.deepEqual(
        decision.images.map((d) => d.result),
        ['allowed', 'allowed', 'denied'],
      );
      // ghcr.io has no entry: whoever wrote the pod chose its server, so the reason says no more.
      assert.equal(
        decision.status.reason,
        'ghcr.io/x/y:v1: no trust data for ghcr.io/x/y from notary https://ghcr.io (not signed there, or the server did not serve it)',
      );
    });
  });

  describe('required signers', () => {
    let alice: FixtureKey;
    let bob: FixtureKey;

    beforeEach(async () => {
      alice = await fixtureKey({ certificateFor: 'alice' });
      bob = await fixtureKey();
      await repo.addDelegation('targets/releases', { keys: [alice] });
      await repo.addDelegation('targets/alice', { keys: [alice] });
      await repo.addDelegation('targets/bob', { keys: [bob] });
    });

    /** One entry of a rule's `signers` list, as YAML flow text. */
    function signer(role: string, key: string): string {
      return `{ role: ${role}, keys: [${JSON.stringify(key)}] }`;
    }

    /** An engine whose demo rule requires these signers (and this many of them, when given). */
    function engineRequiring(spec: string, threshold?: number): ImagePolicyEngine {
      const count = threshold === undefined ? '' : `, signersThreshold: ${threshold}`;
      return engineWith(pinnedConfig(repo, { trustExtra: `, signers: [${spec}]${count}` }), fetcher)
        .engine;
    }

    it('admits when the named role signs with its pinned key (pinned by canonical id)', async () => {
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/releases');
      const engine = engineRequiring(signer('targets/releases', alice.publicKey.canonicalId));
      const status = await engine.review(pod([IMAGE]));
      assert.equal(status.allowed, true, status.reason);
      assert.equal(status.auditAnnotations?.['image-0-role'], 'targets/releases');
      assert.equal(status.auditAnnotations?.['image-0-digest'], `sha256:${rel.digestHex}`);
    });

    it('accepts pins by the listed x509 id and by PEM', async () => {
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/releases');
      const pem = createPublicKey(alice.privateKey)
        .export({ type: 'spki', format: 'pem' })
        .toString();
      for (const key of [alice.publicKey.id, pem, alice.publicKey.certificate?.toString() ?? '']) {
        const engine = engineRequiring(signer('targets/releases', key));
        assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
      }
    });

    it('denies a role signed by another key than the pinned one', async () => {
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/releases');
      const engine = engineRequiring(signer('targets/releases', bob.publicKey.id));
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(decision.images[0]?.code, 'SIGNERS_NOT_MET');
      assert.equal(
        decision.status.reason,
        `${IMAGE}: 0 of the required signers signed "v1", 1 needed (targets/releases is not signed by its pinned key)`,
      );
    });

    it('denies when the required role did not sign the tag, even if targets did', async () => {
      const engine = engineRequiring(signer('targets/releases', alice.publicKey.id));
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(
        decision.status.reason,
        `${IMAGE}: 0 of the required signers signed "v1", 1 needed (targets/releases did not sign "v1")`,
      );
    });

    it('needs the threshold of signers, and their agreement on one digest', async () => {
      const both = `${signer('targets/alice', alice.publicKey.id)}, ${signer('targets/bob', bob.publicKey.id)}`;
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/alice');
      const all = engineRequiring(both);
      const one = engineRequiring(both, 1);

      const missing = await all.decide(pod([IMAGE]));
      assert.equal(
        missing.status.reason,
        `${IMAGE}: 1 of the required signers signed "v1", 2 needed (targets/bob did not sign "v1")`,
      );
      const single = await one.decide(pod([IMAGE]));
      assert.equal(single.status.allowed, true);
      assert.equal(single.images[0]?.role, 'targets/alice');

      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/bob');
      const fresh = engineRequiring(both);
      const agreed = await fresh.decide(pod([IMAGE]));
      assert.equal(agreed.status.allowed, true);
      assert.equal(agreed.images[0]?.role, 'targets/alice,targets/bob');

      await repo.signTag('v1', V2.digestHex, V2.length, 'targets/bob');
      const disagreeing = engineRequiring(both);
      const split = await disagreeing.decide(pod([IMAGE]));
      assert.equal(
        split.status.reason,
        `${IMAGE}: the required signers disagree on "v1" (targets/alice: sha256:${rel.digestHex}, targets/bob: sha256:${V2.digestHex})`,
      );
      const splitOne = engineRequiring(both, 1);
      assert.equal((await splitOne.review(pod([IMAGE]))).allowed, false);
    });

    it('checks digests and tag@digest against the signers, not Docker order', async () => {
      await repo.signTag('v1', rel.digestHex, rel.length, 'targets/alice');
      const engine = engineRequiring(signer('targets/alice', alice.publicKey.id));
      assert.equal((await engine.review(pod([`${GUN}@sha256:${rel.digestHex}`]))).allowed, true);
      assert.equal((await engine.review(pod([`${IMAGE}@sha256:${rel.digestHex}`]))).allowed, true);
      // targets signs v1 → v1's digest, but targets/alice is the required signer.
      assert.equal((await engine.review(pod([`${GUN}@sha256:${V1.digestHex}`]))).allowed, false);
      assert.equal((await engine.review(pod([`${IMAGE}@sha256:${V1.digestHex}`]))).allowed, false);
    });

    it('denies when a required role is absent from the trust data', async () => {
      const engine = engineRequiring(signer('targets/carol', bob.publicKey.id));
      assert.match(
        (await engine.review(pod([IMAGE]))).reason ?? '',
        /\(targets\/carol is not in the trust data\)$/,
      );
    });
  });

  describe('failures', () => {
    it('denies with the class of failure when notary is unreachable (fail closed)', async () => {
      const down = new ControlledFetcher(fetcher);
      down.failWith = unreachable();
      const { engine, observer } = engineWith(pinnedConfig(repo), down);
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(
        decision.status.reason,
        `${IMAGE}: notary ${NOTARY} is unavailable for ${GUN} (connection failed)`,
      );
      assert.equal(decision.images[0]?.code, 'HTTP_UNREACHABLE');
      assert.equal(decision.images[0]?.unavailable, true);
      // The socket error is for the log only.
      assert.equal(
        observer.images[0]?.detail,
        `GET ${NOTARY}/v2/${GUN}/_trust/tuf/root.json failed: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:4443`,
      );
      assert.deepEqual(
        observer.fetches.map((f) => [f.ok, f.errorCode]),
        [[false, 'HTTP_UNREACHABLE']],
      );
    });

    it('denies, never crashes, when the fetcher fails with something unexpected', async () => {
      const { engine, observer } = engineWith(pinnedConfig(repo), {
        fetchMetadata: () => Promise.reject(new RangeError('boom')),
      });
      const decision = await engine.decide(pod([IMAGE]));
      assert.equal(
        decision.status.reason,
        `${IMAGE}: internal error while checking notary ${NOTARY} for ${GUN}`,
      );
      assert.equal(decision.images[0]?.code, 'INTERNAL');
      assert.equal(decision.images[0]?.detail, 'boom');
      assert.deepEqual(
        observer.fetches.map((f) => f.errorCode),
        ['INTERNAL'],
      );
      assert.equal((observer.images[0] as { code?: string } | undefined)?.code, 'INTERNAL');
    });

    it('treats 5xx and unreachable configured servers as unavailability', async () => {
      const cases: TrustError[] = [
        new TrustError(
          'HTTP_STATUS',
          { url: 'u', status: 503, serverCode: '' },
          'GET u answered HTTP 503.',
        ),
        unreachable(),
      ];
      for (const error of cases) {
        const broken = new ControlledFetcher(fetcher);
        broken.failWith = error;
        const { engine } = engineWith(pinnedConfig(repo, { top: 'failure: error' }), broken);
        await assert.rejects(engine.review(pod([IMAGE])), (e: unknown) => {
          assert.ok(isTrustError(e, 'REVIEW_FAILED'), String(e));
          assert.equal(e.facts.image, IMAGE);
          return true;
        });
      }
    });

    it('failure: error answers an error only when nothing else denies the pod', async () => {
      const down = new ControlledFetcher(fetcher);
      down.failWith = unreachable();
      const { engine } = engineWith(pinnedConfig(repo, { top: 'failure: error' }), down);
      const mixed = await engine.decide(pod([IMAGE, 'quay.io/x/y']));
      assert.equal(mixed.status.allowed, false);
      assert.match(mixed.status.reason ?? '', /quay\.io\/x\/y: no policy rule matches/);
      await assert.rejects(engine.review(pod([IMAGE])), (e: unknown) =>
        isTrustError(e, 'REVIEW_FAILED'),
      );
    });

    it('verification failures are verdicts even under failure: error', async () => {
      const { engine, clock } = engineWith(pinnedConfig(repo, { top: 'failure: error' }), fetcher);
      clock.advance(15 * DAY);
      const status = await engine.review(pod([IMAGE]));
      assert.equal(status.allowed, false);
    });

    it('detection mode never turns a failure into an error', async () => {
      const down = new ControlledFetcher(fetcher);
      down.failWith = unreachable();
      const { engine } = engineWith(
        pinnedConfig(repo, { top: 'failure: error\ndetectionMode: true' }),
        down,
      );
      const status = await engine.review(pod([IMAGE]));
      assert.equal(status.allowed, true);
      assert.equal(
        status.auditAnnotations?.['image-0-would-deny'],
        `notary ${NOTARY} is unavailable for ${GUN} (connection failed)`,
      );
    });
  });

  describe('reconfigure', () => {
    it('applies new rules without a restart', async () => {
      const { engine } = engineWith(pinnedConfig(repo), fetcher);
      assert.equal((await engine.review(pod(['alpine']))).allowed, false);
      engine.reconfigure(
        pinnedConfig(repo, { rules: '  - { images: "docker.io/library/*", allow: true }' }),
      );
      assert.equal((await engine.review(pod(['alpine']))).allowed, true);
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
    });

    it('closes notary clients whose settings changed, keeps the others', async () => {
      const closed: string[] = [];
      const made: string[] = [];
      const config = pinnedConfig(repo);
      const engine = new ImagePolicyEngine({
        config,
        now: () => NOW,
        fetcherFor: (endpoint) => {
          made.push(`${endpoint.server}#${endpoint.timeoutMs}`);
          return {
            fetchMetadata: (gun, request) => fetcher.fetchMetadata(gun, request),
            close: () => closed.push(`${endpoint.server}#${endpoint.timeoutMs}`),
          };
        },
      });
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
      engine.reconfigure(
        pinnedConfig(repo, { rules: '  - { images: "docker.io/library/*", allow: true }' }),
      );
      await engine.trustCache.settled();
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(closed, []);
      const slower = configFrom(
        `${PREAMBLE}    timeoutMs: 3000\nrules:\n  - { images: "${REGISTRY}/demo/*", trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.id ?? ''}"] } }`,
      );
      engine.reconfigure(slower);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(closed, [`${NOTARY}#10000`]);
      assert.equal((await engine.review(pod([IMAGE]))).allowed, true);
      assert.deepEqual(made, [`${NOTARY}#10000`, `${NOTARY}#3000`]);
      await engine.close();
      assert.deepEqual(closed, [`${NOTARY}#10000`, `${NOTARY}#3000`]);
    });
  });
});
