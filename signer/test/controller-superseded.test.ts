/**
 * Shared tags go to the newest succeeded Build of an Image: the index's decision (kpack's
 * creationTimestamp order, failed and foreign Builds not counting, ties withholding, its bounds),
 * and reconcile through the real publish flow into an in-memory notary for each way an older Build
 * comes to be signed after a newer one — a re-list in name order, a retry that outlives the newer
 * Build, an operator's re-run — with what is recorded on the Build.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeManifest } from '@kpack-trust/common/testing';
import { ANNOTATIONS, readBuild, type BuildState } from '../src/controller/kpack.js';
import {
  reconcileBuild,
  type ControllerEvent,
  type ReconcileDependencies,
  type SignRequest,
} from '../src/controller/reconcile.js';
import { controllerSigner } from '../src/controller/signing.js';
import {
  SucceededBuilds,
  tagsLeftToNewer,
  type SucceededBuildIndex,
} from '../src/controller/succeeded-builds.js';
import type { SignSummary } from '../src/publish/sign-build.js';
import { MemoryKeyStore } from '../src/testing/memory-key-store.js';
import { memoryBuildWrites } from './support/memory-build-writes.js';
import { MemoryNotary } from './support/memory-notary.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const REPO = 'registry.example:5000/team/app';
const IMAGE_UID = 'uid-image-app';
const OPTED_IN = { [ANNOTATIONS.sign]: 'true', [ANNOTATIONS.notaryUrl]: 'https://notary.example' };
const MANIFESTS = new Map([
  [8, fakeManifest('superseded-build-8')],
  [9, fakeManifest('superseded-build-9')],
  [10, fakeManifest('superseded-build-10')],
]);

function digestOf(n: number): string {
  const manifest = MANIFESTS.get(n);
  assert.ok(manifest);
  return `sha256:${manifest.digestHex}`;
}

/** Build `n` of Image app as kpack v0.17.2 writes it: spec.tag, its own b<N> tag, additionalTags. */
function buildObject(
  n: number,
  options: {
    succeeded?: string;
    created?: string;
    additionalTags?: string[];
    ownTag?: boolean;
    imageUid?: string;
    annotations?: Record<string, string>;
  } = {},
): Record<string, unknown> {
  const own = options.ownTag === false ? [] : [`${REPO}:v1-b${n}.20260301.120000`];
  return {
    apiVersion: 'kpack.io/v1alpha2',
    kind: 'Build',
    metadata: {
      namespace: 'team',
      name: `app-build-${n}`,
      uid: `uid-build-${n}`,
      // kpack creates Build N+1 only after Build N finished: later creationTimestamps.
      creationTimestamp: options.created ?? `2026-03-01T${String(n).padStart(2, '0')}:00:00Z`,
      annotations: options.annotations ?? {},
      labels: { 'image.kpack.io/image': 'app', 'image.kpack.io/buildNumber': String(n) },
      ownerReferences: [
        { kind: 'Image', name: 'app', uid: options.imageUid ?? IMAGE_UID, controller: true },
      ],
    },
    spec: { tags: [`${REPO}:v1`, ...own, ...(options.additionalTags ?? [`${REPO}:stable`])] },
    status: {
      conditions: [{ type: 'Succeeded', status: options.succeeded ?? 'True' }],
      latestImage: `${REPO}@${digestOf(n)}`,
    },
  };
}

function state(object: Record<string, unknown>): BuildState {
  const build = readBuild(object);
  assert.ok(build);
  return build;
}

/** An index that has listed `objects` once, completely. */
function listedIndex(
  objects: readonly Record<string, unknown>[],
  limits: { perImage?: number; perNamespace?: number } = {},
): SucceededBuilds {
  const index = new SucceededBuilds(limits);
  for (const object of objects) index.observe(state(object), 0);
  index.listed(0);
  index.synced();
  return index;
}

async function leftFor(index: SucceededBuilds, object: Record<string, unknown>): Promise<string[]> {
  const answer = await index.newerThan(state(object));
  assert.equal(answer.kind, 'known', JSON.stringify(answer));
  if (answer.kind !== 'known') return [];
  return [...tagsLeftToNewer(state(object), answer.builds).entries()].map(
    ([t, by]) => `${t}<${by}`,
  );
}

describe('which tags a newer succeeded Build holds', () => {
  it('the newest Build keeps every tag; an older one keeps only its own b<N> tag', async () => {
    const b9 = buildObject(9);
    const b10 = buildObject(10);
    const index = listedIndex([b10, b9]);

    assert.deepEqual(await leftFor(index, b10), []);
    assert.deepEqual(await leftFor(index, b9), [
      `${REPO}:v1<app-build-10`,
      `${REPO}:stable<app-build-10`,
    ]);
  });

  it('a newer Build that failed does not count', async () => {
    const b9 = buildObject(9);
    const index = listedIndex([b9, buildObject(10, { succeeded: 'False' })]);

    assert.deepEqual(await leftFor(index, b9), []);
  });

  it('a newer Build of another Image (another owner uid) does not count, whatever its label says', async () => {
    const b9 = buildObject(9);
    const index = listedIndex([b9, buildObject(10, { imageUid: 'uid-image-other' })]);

    assert.deepEqual(await leftFor(index, b9), []);
  });

  it('a tag newer Builds dropped (additionalTags edited) stays with the newest Build that has it', async () => {
    const b9 = buildObject(9);
    const index = listedIndex([b9, buildObject(10, { additionalTags: [] })]);

    assert.deepEqual(await leftFor(index, b9), [`${REPO}:v1<app-build-10`]);
  });

  it('two Builds created in the same second each leave the shared tags to the other', async () => {
    const created = '2026-03-01T10:00:00Z';
    const b9 = buildObject(9, { created });
    const b10 = buildObject(10, { created });
    const index = listedIndex([b9, b10]);

    assert.deepEqual(await leftFor(index, b9), [
      `${REPO}:v1<app-build-10`,
      `${REPO}:stable<app-build-10`,
    ]);
    assert.deepEqual(await leftFor(index, b10), [
      `${REPO}:v1<app-build-9`,
      `${REPO}:stable<app-build-9`,
    ]);
  });

  it('answers only after the first complete list, and "stopped" when the controller stops first', async () => {
    const index = new SucceededBuilds();
    index.observe(state(buildObject(10)), 0);
    let answered = false;
    const pending = index.newerThan(state(buildObject(9))).then((answer) => {
      answered = true;
      return answer;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(answered, false);
    index.listed(0);
    index.synced();
    assert.equal((await pending).kind, 'known');

    const stopped = new SucceededBuilds();
    const waiting = stopped.newerThan(state(buildObject(9)));
    stopped.stop();
    assert.deepEqual(await waiting, { kind: 'stopped' });
  });

  it('drops a Build the next complete list no longer returns (the informer passes no deletions)', async () => {
    const b9 = buildObject(9);
    const index = listedIndex([b9, buildObject(10)]);
    assert.equal(index.size, 2);

    index.observe(state(b9), 0);
    index.listed(0);

    assert.equal(index.size, 1);
    assert.deepEqual(await leftFor(index, b9), []);
  });

  it('past its per-Image bound, a Build older than an evicted one gets "unknown"', async () => {
    const objects = [8, 9, 10].map((n) => buildObject(n));
    const index = listedIndex(objects, { perImage: 2 });

    const answer = await index.newerThan(state(buildObject(8)));
    assert.equal(answer.kind, 'unknown');
    assert.deepEqual(await leftFor(index, buildObject(9)), [
      `${REPO}:v1<app-build-10`,
      `${REPO}:stable<app-build-10`,
    ]);
  });

  it('past its per-namespace bound the namespace gets "unknown" until a complete list fits', async () => {
    const index = listedIndex([buildObject(9), buildObject(10)], { perNamespace: 1 });
    assert.equal((await index.newerThan(state(buildObject(10)))).kind, 'unknown');

    // app-build-9 was deleted: the next list drops it, but it still held the place when 10 came;
    // the list after that fits.
    for (let list = 0; list < 2; list++) {
      index.observe(state(buildObject(10)), 0);
      index.listed(0);
    }

    assert.equal((await index.newerThan(state(buildObject(10)))).kind, 'known');
  });
});

interface Cluster {
  readonly builds: Map<string, Record<string, unknown>>;
  readonly events: ControllerEvent[];
  readonly notary: MemoryNotary;
  /** The Image's key Secrets, kept across reconciles as the controller's namespace keeps them. */
  readonly keys: MemoryKeyStore;
}

function annotationsOf(c: Cluster, n: number): Record<string, string> {
  const build = c.builds.get(`app-build-${n}`);
  assert.ok(build);
  return (build['metadata'] as { annotations: Record<string, string> }).annotations;
}

function clusterOf(...builds: Record<string, unknown>[]): Cluster {
  return {
    builds: new Map(builds.map((b) => [(b['metadata'] as { name: string }).name, b])),
    events: [],
    notary: new MemoryNotary(NOW),
    keys: new MemoryKeyStore({ generate: true }),
  };
}

/** The cluster's Builds as a complete list gives them to the index, at each question. */
function freshIndex(c: Cluster): SucceededBuildIndex {
  return {
    newerThan: (build) => listedIndex([...c.builds.values()]).newerThan(build),
    forget: () => undefined,
  };
}

function deps(
  c: Cluster,
  index: SucceededBuildIndex = freshIndex(c),
  sign?: (request: SignRequest) => Promise<SignSummary>,
): ReconcileDependencies {
  const real = controllerSigner({
    keyStoreFor: () => c.keys,
    notaryFor: () => c.notary,
    registry: { manifestSize: () => Promise.resolve(100) },
    now: () => NOW,
  });
  return {
    getBuild: (_ns, name) => Promise.resolve(structuredClone(c.builds.get(name))),
    getImage: () =>
      Promise.resolve({
        apiVersion: 'kpack.io/v1alpha2',
        kind: 'Image',
        metadata: { namespace: 'team', name: 'app', uid: IMAGE_UID, annotations: OPTED_IN },
        spec: { tag: `${REPO}:v1` },
      }),
    ...memoryBuildWrites(c),
    sign: sign ?? real,
    succeededBuilds: index,
    defaults: { optInNamespaces: [], allowedNotaryUrls: ['https://notary.example'] },
    now: () => NOW,
  };
}

const FIRST = { attempt: 1, last: false };

/** notary's tags of the repository, each as the build number whose digest it names. */
function signedTags(c: Cluster): Record<string, number> {
  const byDigest = new Map([...MANIFESTS].map(([n, m]) => [m.digestHex, n]));
  const out: Record<string, number> = {};
  for (const [tag, hex] of c.notary.targetsOf(REPO)) {
    const n = byDigest.get(hex);
    assert.ok(n !== undefined, `tag ${tag} names an unknown digest`);
    out[tag] = n;
  }
  return out;
}

const AFTER_BOTH = {
  v1: 10,
  stable: 10,
  'v1-b9.20260301.120000': 9,
  'v1-b10.20260301.120000': 10,
};

describe('an older Build signed after a newer one', () => {
  it('a re-list queues app-build-10 before app-build-9: 9 signs only its own tag and says why', async () => {
    const c = clusterOf(buildObject(9), buildObject(10));

    assert.equal((await reconcileBuild('team', 'app-build-10', FIRST, deps(c))).kind, 'signed');
    const outcome = await reconcileBuild('team', 'app-build-9', FIRST, deps(c));

    assert.equal(outcome.kind, 'signed', JSON.stringify(outcome));
    assert.deepEqual(signedTags(c), AFTER_BOTH);
    const a = annotationsOf(c, 9);
    assert.equal(a[ANNOTATIONS.signedDigest], digestOf(9));
    assert.equal(a[ANNOTATIONS.signedTags], `${REPO}:v1-b9.20260301.120000`);
    assert.equal(a[ANNOTATIONS.supersededTags], `${REPO}:v1,${REPO}:stable`);
    assert.equal(a[ANNOTATIONS.supersededBy], 'app-build-10');
    const event = c.events.find((e) => e.object.name === 'app-build-9');
    assert.match(
      event?.message ?? '',
      new RegExp(`; left ${REPO}:v1, ${REPO}:stable to the newer Build app-build-10$`),
    );
    // The newest Build's record names nothing superseded.
    assert.equal(annotationsOf(c, 10)[ANNOTATIONS.supersededTags], undefined);
  });

  it('notary answers 503 for 9, 10 is signed, then 9s retry succeeds: the shared tags stay at 10', async () => {
    const c = clusterOf(buildObject(9), buildObject(10));
    const real = deps(c).sign;
    let failed = false;
    const flaky = (request: SignRequest): Promise<SignSummary> => {
      if (request.build.name === 'app-build-9' && !failed) {
        failed = true;
        return Promise.reject(new Error('notary answered 503'));
      }
      return real(request);
    };

    const first = await reconcileBuild('team', 'app-build-9', FIRST, deps(c, undefined, flaky));
    assert.equal(first.kind, 'retry');
    await reconcileBuild('team', 'app-build-10', FIRST, deps(c, undefined, flaky));
    const retried = await reconcileBuild(
      'team',
      'app-build-9',
      { attempt: 2, last: false },
      deps(c, undefined, flaky),
    );

    assert.equal(retried.kind, 'signed', JSON.stringify(retried));
    assert.deepEqual(signedTags(c), AFTER_BOTH);
  });

  it("an operator removes 9's record to re-run it after 10 was signed: the shared tags stay at 10", async () => {
    const c = clusterOf(buildObject(9), buildObject(10, { succeeded: 'Unknown' }));
    await reconcileBuild('team', 'app-build-9', FIRST, deps(c));
    assert.equal(signedTags(c)['v1'], 9, 'while 10 runs, 9 is the newest and signs v1');
    const status = c.builds.get('app-build-10')?.['status'] as Record<string, unknown>;
    status['conditions'] = [{ type: 'Succeeded', status: 'True' }];
    await reconcileBuild('team', 'app-build-10', FIRST, deps(c));
    const before = c.notary.publishes.filter((p) => p.accepted).length;

    Reflect.deleteProperty(annotationsOf(c, 9), ANNOTATIONS.signedDigest);
    const outcome = await reconcileBuild('team', 'app-build-9', FIRST, deps(c));

    assert.equal(outcome.kind, 'signed', JSON.stringify(outcome));
    assert.deepEqual(signedTags(c), AFTER_BOTH);
    // Its own tag was already at its digest: nothing to publish.
    assert.equal(c.notary.publishes.filter((p) => p.accepted).length, before);
    assert.equal(annotationsOf(c, 9)[ANNOTATIONS.supersededBy], 'app-build-10');
  });

  it('under imageTaggingStrategy None an older Build has nothing of its own: nothing published, SigningSuperseded', async () => {
    const c = clusterOf(buildObject(9, { ownTag: false }), buildObject(10, { ownTag: false }));
    await reconcileBuild('team', 'app-build-10', FIRST, deps(c));
    const before = c.notary.publishes.length;

    const outcome = await reconcileBuild('team', 'app-build-9', FIRST, deps(c));

    assert.deepEqual(outcome, { kind: 'superseded', digest: digestOf(9), by: ['app-build-10'] });
    assert.equal(c.notary.publishes.length, before);
    assert.deepEqual(signedTags(c), { v1: 10, stable: 10 });
    const a = annotationsOf(c, 9);
    assert.equal(a[ANNOTATIONS.supersededDigest], digestOf(9));
    assert.equal(a[ANNOTATIONS.signedDigest], undefined);
    assert.deepEqual(
      c.events.filter((e) => e.object.name === 'app-build-9').map((e) => [e.type, e.reason]),
      [['Normal', 'SigningSuperseded']],
    );
    // The record is final for that digest.
    const again = await reconcileBuild('team', 'app-build-9', FIRST, deps(c));
    assert.deepEqual(again, { kind: 'already-done', digest: digestOf(9) });
  });

  it('a newer Build the index still holds but the apiserver no longer has does not count', async () => {
    const c = clusterOf(buildObject(9), buildObject(10));
    const stale = listedIndex([...c.builds.values()]);
    c.builds.delete('app-build-10');

    const outcome = await reconcileBuild('team', 'app-build-9', FIRST, deps(c, stale));

    assert.equal(outcome.kind, 'signed', JSON.stringify(outcome));
    assert.deepEqual(signedTags(c), { v1: 9, stable: 9, 'v1-b9.20260301.120000': 9 });
    assert.equal(stale.size, 1, 'the deleted Build is forgotten');
  });

  it('when the index cannot tell, nothing is signed (fail closed) and the record says why', async () => {
    const c = clusterOf(buildObject(9));
    const unknown: SucceededBuildIndex = {
      newerThan: () => Promise.resolve({ kind: 'unknown', why: 'a bound was reached' }),
      forget: () => undefined,
    };

    const outcome = await reconcileBuild('team', 'app-build-9', FIRST, deps(c, unknown));

    assert.deepEqual(outcome, { kind: 'superseded', digest: digestOf(9), by: [] });
    assert.equal(c.notary.publishes.length, 0);
    assert.equal(annotationsOf(c, 9)[ANNOTATIONS.supersededBy], 'unknown: a bound was reached');
  });
});
