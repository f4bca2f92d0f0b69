/**
 * The cap on key Secrets per source namespace: a first Build past it creates nothing and is
 * recorded as KeyQuotaExceeded (final, with SigningFailed Events); reused keys are never counted;
 * concurrent first Builds cannot both take the last place. The count against the real apiserver
 * (label selector, metadata-only list) is in test/test/signer-controller.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeManifest } from '@kpack-trust/common/testing';
import {
  KeyQuotaError,
  serializer,
  withKeySecretQuota,
  type KeySecretCounter,
} from '../src/controller/key-quota.js';
import { ANNOTATIONS } from '../src/controller/kpack.js';
import { reconcileBuild, type ControllerEvent } from '../src/controller/reconcile.js';
import { controllerSigner } from '../src/controller/signing.js';
import { MemoryKeyStore } from '../src/testing/memory-key-store.js';
import { MemoryNotary } from './support/memory-notary.js';

const GUN = 'registry.example:5000/team/app';

/** A count of Secrets per namespace that the wrapped stores' creations add to, as the apiserver's would. */
function ledger(initial: Record<string, number>): {
  held: Map<string, number>;
  counted: { namespace: string; limit: number }[];
  count: KeySecretCounter;
  store: (namespace: string) => MemoryKeyStore;
} {
  const held = new Map(Object.entries(initial));
  const counted: { namespace: string; limit: number }[] = [];
  return {
    held,
    counted,
    count: async (namespace, limit) => {
      counted.push({ namespace, limit });
      // Read, then a round trip: two unserialized checks would both answer the old count.
      const found = Math.min(held.get(namespace) ?? 0, limit);
      await new Promise((resolve) => setImmediate(resolve));
      return found;
    },
    store: (namespace) => {
      const store = new MemoryKeyStore({ generate: true });
      const load = store.load.bind(store);
      store.load = async (gun, options) => {
        const keys = await load(gun, options);
        if (keys.created) held.set(namespace, (held.get(namespace) ?? 0) + 2);
        return keys;
      };
      return store;
    },
  };
}

describe('withKeySecretQuota', () => {
  it('creates keys while the namespace stays within the cap, counting up to max + 1', async () => {
    const l = ledger({ team: 2 });
    const store = l.store('team');
    const quota = { sourceNamespace: 'team', max: 4, count: l.count, serialize: serializer() };

    const keys = await withKeySecretQuota(store, quota).load(GUN, { createIfMissing: true });

    assert.equal(keys.created, true);
    assert.deepEqual(l.counted, [{ namespace: 'team', limit: 5 }]);
    assert.equal(l.held.get('team'), 4);
  });

  it('refuses to create past the cap and creates nothing', async () => {
    const l = ledger({ team: 3, other: 0 });
    const store = l.store('team');
    const quota = { sourceNamespace: 'team', max: 4, count: l.count, serialize: serializer() };

    await assert.rejects(withKeySecretQuota(store, quota).load(GUN, { createIfMissing: true }), {
      name: 'KeyQuotaError',
      code: 'KEY_QUOTA_EXCEEDED',
      sourceNamespace: 'team',
      found: 3,
      needed: 2,
      max: 4,
    });
    assert.equal(store.current, undefined);
    assert.equal(l.held.get('team'), 3);
    // Another namespace's Images are not held back by this one's.
    const elsewhere = l.store('other');
    const keys = await withKeySecretQuota(elsewhere, { ...quota, sourceNamespace: 'other' }).load(
      GUN,
      { createIfMissing: true },
    );
    assert.equal(keys.created, true);
  });

  it('never counts, nor refuses, keys that already exist', async () => {
    const l = ledger({ team: 1_000 });
    const store = l.store('team');
    await store.load(GUN, { createIfMissing: true });
    const quota = { sourceNamespace: 'team', max: 4, count: l.count, serialize: serializer() };

    const keys = await withKeySecretQuota(store, quota).load(GUN, { createIfMissing: true });

    assert.ok(keys.root !== undefined && keys.targets !== undefined);
    assert.deepEqual(l.counted, []);
  });

  it('lets only one of two concurrent first Builds take the last free place', async () => {
    const l = ledger({ team: 2 });
    const serialize = serializer();
    const quota = { sourceNamespace: 'team', max: 4, count: l.count, serialize };
    const results = await Promise.allSettled(
      ['a', 'b'].map((name) =>
        withKeySecretQuota(l.store('team'), quota).load(`${GUN}-${name}`, {
          createIfMissing: true,
        }),
      ),
    );

    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected'],
    );
    assert.ok(results[1]?.status === 'rejected' && results[1].reason instanceof KeyQuotaError);
    assert.equal(l.held.get('team'), 4);
  });
});

describe('a first Build past the cap', () => {
  it('is recorded as KeyQuotaExceeded at once (not retried), with SigningFailed Events, and publishes nothing', async () => {
    const manifest = fakeManifest('quota');
    const digest = `sha256:${manifest.digestHex}`;
    const notary = new MemoryNotary(new Date('2026-03-01T12:00:00Z'));
    const l = ledger({ team: 200 });
    const serialize = serializer();
    const sign = controllerSigner({
      keyStoreFor: (_root, _targets, sourceNamespace) =>
        withKeySecretQuota(l.store(sourceNamespace), {
          sourceNamespace,
          max: 200,
          count: l.count,
          serialize,
        }),
      notaryFor: () => notary,
      registry: { manifestSize: () => Promise.resolve(manifest.length) },
      now: () => new Date('2026-03-01T12:00:00Z'),
    });
    const annotations: Record<string, string> = {};
    const events: ControllerEvent[] = [];
    const build = {
      apiVersion: 'kpack.io/v1alpha2',
      kind: 'Build',
      metadata: {
        namespace: 'team',
        name: 'b',
        uid: 'uid-b',
        annotations,
        ownerReferences: [{ kind: 'Image', name: 'app', uid: 'uid-app', controller: true }],
      },
      spec: { tags: [`${GUN}:v1`] },
      status: {
        conditions: [{ type: 'Succeeded', status: 'True' }],
        latestImage: `${GUN}@${digest}`,
      },
    };
    const image = {
      apiVersion: 'kpack.io/v1alpha2',
      kind: 'Image',
      metadata: {
        namespace: 'team',
        name: 'app',
        uid: 'uid-app',
        annotations: {
          [ANNOTATIONS.sign]: 'true',
          [ANNOTATIONS.notaryUrl]: 'https://notary.example',
        },
      },
      spec: { tag: `${GUN}:v1` },
    };

    const outcome = await reconcileBuild(
      'team',
      'b',
      { attempt: 1, last: false },
      {
        getBuild: () => Promise.resolve(structuredClone(build)),
        getImage: () => Promise.resolve(structuredClone(image)),
        annotateBuild: (_build, patch) => {
          for (const [k, v] of Object.entries(patch)) if (v !== null) annotations[k] = v;
          return Promise.resolve();
        },
        recordEvent: (event) => {
          events.push(event);
          return Promise.resolve();
        },
        sign,
        // The only Build of its Image: no newer Build holds any of its tags.
        succeededBuilds: {
          newerThan: () => Promise.resolve({ kind: 'known', builds: [] }),
          forget: () => undefined,
        },
        defaults: { optInNamespaces: [], allowedNotaryUrls: ['https://notary.example'] },
        now: () => new Date('2026-03-01T12:00:00Z'),
      },
    );

    assert.equal(outcome.kind, 'failed', JSON.stringify(outcome));
    assert.equal(annotations[ANNOTATIONS.signingErrorReason], 'KeyQuotaExceeded');
    assert.equal(annotations[ANNOTATIONS.failedDigest], digest);
    assert.match(
      annotations[ANNOTATIONS.signingError] ?? '',
      /^Not signed: the controller already holds 200 or more key Secrets for namespace "team", and this Image's first Build needs 2 more; its operator allows 200 \(--max-key-secrets-per-namespace\)\./,
    );
    assert.deepEqual(
      events.map((e) => [e.object.kind, e.type, e.reason]),
      [
        ['Build', 'Warning', 'SigningFailed'],
        ['Image', 'Warning', 'SigningFailed'],
      ],
    );
    assert.equal(notary.publishes.length, 0);
    assert.equal(l.held.get('team'), 200);
  });
});
