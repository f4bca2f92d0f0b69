/**
 * The controller's reconcile of one Build, through the real publish flow (signBuild) into an
 * in-memory notary server: what it signs, what it records on the Build and as Events, that it is
 * idempotent, and that each never-signable Build gets a final record and no publish.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PublicKey, TrustError, generateSigningKey } from '@kpack-trust/common';
import { fakeManifest } from '@kpack-trust/common/testing';
import {
  ANNOTATIONS,
  readBuild,
  signingDecision,
  type ImageState,
  type SigningDecision,
} from '../src/controller/kpack.js';
import {
  reconcileBuild,
  type ControllerEvent,
  type ReconcileDependencies,
  type SignRequest,
} from '../src/controller/reconcile.js';
import { parseRepositoryAllowlist } from '../src/controller/repository-allowlist.js';
import { controllerSigner, withImageSettings } from '../src/controller/signing.js';
import { SucceededBuilds, type SucceededBuildIndex } from '../src/controller/succeeded-builds.js';
import type { SignSummary } from '../src/publish/sign-build.js';
import { MemoryKeyStore } from '../src/testing/memory-key-store.js';
import { memoryBuildWrites } from './support/memory-build-writes.js';
import { MemoryNotary } from './support/memory-notary.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const REPO = 'registry.example:5000/team/app';
const MANIFEST = fakeManifest('controller-build');
const DIGEST = `sha256:${MANIFEST.digestHex}`;

interface Cluster {
  builds: Map<string, Record<string, unknown>>;
  images: Map<string, Record<string, unknown>>;
  events: ControllerEvent[];
}

function imageObject(
  annotations: Record<string, string>,
  name = 'app',
  spec: Record<string, unknown> = { tag: `${REPO}:v1` },
): Record<string, unknown> {
  return {
    apiVersion: 'kpack.io/v1alpha2',
    kind: 'Image',
    metadata: { namespace: 'team', name, uid: `uid-image-${name}`, annotations },
    spec,
  };
}

function buildObject(
  name: string,
  options: {
    tags?: string[];
    latestImage?: string;
    succeeded?: string;
    annotations?: Record<string, string>;
    /** creationTimestamp, the apiserver's: the order of an Image's Builds. */
    created?: string;
  } = {},
): Record<string, unknown> {
  return {
    apiVersion: 'kpack.io/v1alpha2',
    kind: 'Build',
    metadata: {
      namespace: 'team',
      name,
      uid: `uid-${name}`,
      creationTimestamp: options.created ?? '2026-03-01T11:00:00Z',
      annotations: options.annotations ?? {},
      labels: { 'image.kpack.io/image': 'app' },
      ownerReferences: [{ kind: 'Image', name: 'app', uid: 'uid-image-app', controller: true }],
    },
    spec: { tags: options.tags ?? [`${REPO}:v1`, `${REPO}:latest`] },
    status: {
      conditions: [{ type: 'Succeeded', status: options.succeeded ?? 'True' }],
      latestImage: options.latestImage ?? `${REPO}@${DIGEST}`,
    },
  };
}

const OPTED_IN = { [ANNOTATIONS.sign]: 'true', [ANNOTATIONS.notaryUrl]: 'https://notary.example' };

function cluster(image: Record<string, unknown>, ...builds: Record<string, unknown>[]): Cluster {
  const byName = (o: Record<string, unknown>): string => (o['metadata'] as { name: string }).name;
  return {
    builds: new Map(builds.map((b) => [byName(b), b])),
    images: new Map([[byName(image), image]]),
    events: [],
  };
}

function annotationsOf(c: Cluster, name: string): Record<string, string> {
  const build = c.builds.get(name);
  assert.ok(build);
  return (build['metadata'] as { annotations: Record<string, string> }).annotations;
}

function deps(
  c: Cluster,
  sign: (request: SignRequest) => Promise<SignSummary>,
): ReconcileDependencies {
  return {
    getBuild: (_ns, name) => Promise.resolve(structuredClone(c.builds.get(name))),
    getImage: (_ns, name) => Promise.resolve(structuredClone(c.images.get(name))),
    ...memoryBuildWrites(c),
    sign,
    succeededBuilds: indexOf(c),
    defaults: { optInNamespaces: [], allowedNotaryUrls: ['https://notary.example'] },
    now: () => NOW,
  };
}

/** The real index, fed with the cluster's Builds as they are at each question (one complete list). */
function indexOf(c: Cluster): SucceededBuildIndex {
  return {
    newerThan: (build) => {
      const index = new SucceededBuilds();
      for (const object of c.builds.values()) {
        const state = readBuild(object);
        if (state !== undefined) index.observe(state, 0);
      }
      index.listed(0);
      index.synced();
      return index.newerThan(build);
    },
    forget: () => undefined,
  };
}

/** The real flow into a memory notary, with one memory key store standing in for the Secrets. */
function realSigning(): {
  notary: MemoryNotary;
  stores: Map<string, MemoryKeyStore>;
  sign: (request: SignRequest) => Promise<SignSummary>;
} {
  const notary = new MemoryNotary(NOW);
  const stores = new Map<string, MemoryKeyStore>();
  const sign = controllerSigner({
    keyStoreFor: (root, targets) => {
      const key = `${root}|${targets}`;
      let store = stores.get(key);
      if (store === undefined) {
        store = new MemoryKeyStore({ generate: true });
        stores.set(key, store);
      }
      return store;
    },
    notaryFor: () => notary,
    registry: { manifestSize: () => Promise.resolve(MANIFEST.length) },
    now: () => NOW,
  });
  return { notary, stores, sign };
}

const FIRST = { attempt: 1, last: false };

describe('reconciling a finished Build', () => {
  it('signs every tag at the digest, records annotations and a Signed Event on Build and Image', async () => {
    const c = cluster(imageObject(OPTED_IN), buildObject('app-build-1'));
    const { notary, stores, sign } = realSigning();

    const outcome = await reconcileBuild('team', 'app-build-1', FIRST, deps(c, sign));

    assert.equal(outcome.kind, 'signed', JSON.stringify(outcome));
    const targets = notary.targetsOf(REPO);
    assert.equal(targets.get('v1'), MANIFEST.digestHex);
    assert.equal(targets.get('latest'), MANIFEST.digestHex);
    const annotations = annotationsOf(c, 'app-build-1');
    assert.equal(annotations[ANNOTATIONS.signedDigest], DIGEST);
    assert.equal(annotations[ANNOTATIONS.signedTags], `${REPO}:v1,${REPO}:latest`);
    assert.equal(
      annotations[ANNOTATIONS.signedRootKeyId],
      outcome.kind === 'signed' ? outcome.summary.rootCanonicalKeyId : undefined,
    );
    assert.deepEqual(
      c.events.map((e) => [e.object.kind, e.type, e.reason]),
      [
        ['Build', 'Normal', 'Signed'],
        ['Image', 'Normal', 'Signed'],
      ],
    );
    // The keys are named in the controller's namespace, prefixed by the Image's namespace.
    assert.deepEqual([...stores.keys()], ['team.app-root-key|team.app-targets-key']);
  });

  it('is a no-op for a Build already signed at its digest', async () => {
    const c = cluster(
      imageObject(OPTED_IN),
      buildObject('b', { annotations: { [ANNOTATIONS.signedDigest]: DIGEST } }),
    );
    const { notary, sign } = realSigning();

    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));

    assert.deepEqual(outcome, { kind: 'already-done', digest: DIGEST });
    assert.equal(notary.publishes.length, 0);
    assert.equal(c.events.length, 0);
  });

  it('publishes nothing again when the record was lost after a publish, but writes the record', async () => {
    const c = cluster(imageObject(OPTED_IN), buildObject('b'));
    const { notary, sign } = realSigning();
    await reconcileBuild('team', 'b', FIRST, deps(c, sign));
    Reflect.deleteProperty(annotationsOf(c, 'b'), ANNOTATIONS.signedDigest);

    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));

    assert.equal(outcome.kind, 'signed', JSON.stringify(outcome));
    assert.equal(notary.publishes.filter((p) => p.accepted).length, 1);
    assert.equal(annotationsOf(c, 'b')[ANNOTATIONS.signedDigest], DIGEST);
  });

  it('a second Build of the Image reuses its keys (same root key id)', async () => {
    const second = fakeManifest('controller-build-2');
    const c = cluster(imageObject(OPTED_IN), buildObject('b1'));
    const { sign } = realSigning();
    await reconcileBuild('team', 'b1', FIRST, deps(c, sign));
    // kpack creates the next Build once the last has finished (it is then the newer one).
    c.builds.set(
      'b2',
      buildObject('b2', {
        latestImage: `${REPO}@sha256:${second.digestHex}`,
        created: '2026-03-01T11:30:00Z',
      }),
    );
    await reconcileBuild('team', 'b2', FIRST, deps(c, sign));

    const root1 = annotationsOf(c, 'b1')[ANNOTATIONS.signedRootKeyId];
    assert.ok(root1 !== undefined);
    assert.equal(annotationsOf(c, 'b2')[ANNOTATIONS.signedRootKeyId], root1);
  });

  it('waits for a Build that has not succeeded', async () => {
    const c = cluster(imageObject(OPTED_IN), buildObject('b', { succeeded: 'Unknown' }));
    const { notary, sign } = realSigning();

    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));

    assert.equal(outcome.kind, 'waiting');
    assert.equal(notary.publishes.length, 0);
  });

  it('leaves a Build whose Image has not opted in untouched', async () => {
    const c = cluster(imageObject({}), buildObject('b'));
    const { notary, sign } = realSigning();

    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));

    assert.equal(outcome.kind, 'not-opted-in');
    assert.equal(notary.publishes.length, 0);
    assert.deepEqual(annotationsOf(c, 'b'), {});
  });
});

describe('a Build that claims an Image it does not belong to', () => {
  it('spends none of its keys when the owner reference names the Image but not its uid', async () => {
    const forged = buildObject('b');
    const metadata = forged['metadata'] as Record<string, unknown>;
    metadata['ownerReferences'] = [{ kind: 'Image', name: 'app', uid: 'forged', controller: true }];
    const c = cluster(imageObject(OPTED_IN), forged);
    const { notary, sign } = realSigning();

    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));

    assert.equal(outcome.kind, 'failed');
    assert.equal(notary.publishes.length, 0);
    const annotations = annotationsOf(c, 'b');
    assert.equal(annotations[ANNOTATIONS.signingErrorReason], 'BuildInvalid');
    assert.equal(
      annotations[ANNOTATIONS.signingError],
      `Not signed: its owner reference names Image "app" but not that Image's uid`,
    );
    // Recorded on the Build alone: its creator may not write Events onto someone else's Image.
    assert.deepEqual(
      c.events.map((e) => [e.object.kind, e.reason]),
      [['Build', 'SigningFailed']],
    );
  });

  it('is not ours to sign when only the image.kpack.io/image label names the Image', async () => {
    const labelled = buildObject('b');
    delete (labelled['metadata'] as Record<string, unknown>)['ownerReferences'];
    const c = cluster(imageObject(OPTED_IN), labelled);
    const { notary, sign } = realSigning();

    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));

    assert.equal(outcome.kind, 'not-opted-in');
    assert.equal(notary.publishes.length, 0);
  });
});

describe("a Build's tags are held to its Image's spec.tag, as kpack writes them", () => {
  const OTHER = 'registry.example:5000/someone-else/app';

  async function refused(
    build: Record<string, unknown>,
    image = imageObject(OPTED_IN),
  ): Promise<{ error: string | undefined; stores: number }> {
    const c = cluster(image, build);
    const { notary, stores, sign } = realSigning();
    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));
    assert.equal(outcome.kind, 'failed', JSON.stringify(outcome));
    assert.equal(notary.publishes.length, 0);
    const annotations = annotationsOf(c, 'b');
    assert.equal(annotations[ANNOTATIONS.signingErrorReason], 'BuildInvalid');
    assert.equal(annotations[ANNOTATIONS.failedDigest], DIGEST);
    assert.deepEqual(
      c.events.map((e) => [e.object.kind, e.reason]),
      [
        ['Build', 'SigningFailed'],
        ['Image', 'SigningFailed'],
      ],
    );
    return { error: annotations[ANNOTATIONS.signingError], stores: stores.size };
  }

  it("refuses a Build whose tags are all in another Image's repository, before any key is touched", async () => {
    const { error, stores } = await refused(
      buildObject('b', { tags: [`${OTHER}:v1`], latestImage: `${OTHER}@${DIGEST}` }),
    );
    assert.equal(
      error,
      `Not signed: its first tag "${OTHER}:v1" is not its Image's spec.tag "${REPO}:v1", as kpack ` +
        'writes every Build of that Image; nothing was published',
    );
    assert.equal(stores, 0);
  });

  it("refuses spec.tag followed by a tag in another repository (kpack allows any repository of the Image's registry)", async () => {
    const { error } = await refused(buildObject('b', { tags: [`${REPO}:v1`, `${OTHER}:v1`] }));
    assert.equal(
      error,
      `Not signed: its tag "${OTHER}:v1" is not in its Image's repository ${REPO} (spec.tag); nothing was published`,
    );
  });

  it('refuses tags that leave out spec.tag or put another tag first', async () => {
    const { error } = await refused(buildObject('b', { tags: [`${REPO}:latest`, `${REPO}:v1`] }));
    assert.match(error ?? '', /its first tag ".*:latest" is not its Image's spec\.tag/);
  });

  it('refuses a Build of an Image without spec.tag', async () => {
    const { error } = await refused(buildObject('b'), imageObject(OPTED_IN, 'app', {}));
    assert.equal(error, `Not signed: its Image "app" has no spec.tag`);
  });

  it("signs kpack's own tags: spec.tag, the build-number tag and additionalTags of the same repository", async () => {
    const tags = [`${REPO}:v1`, `${REPO}:v1-b7.20261206.211500`, `${REPO}:stable`];
    const c = cluster(imageObject(OPTED_IN), buildObject('b', { tags }));
    const { notary, sign } = realSigning();
    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));
    assert.equal(outcome.kind, 'signed', JSON.stringify(outcome));
    assert.deepEqual([...notary.targetsOf(REPO).keys()].sort(), [
      'stable',
      'v1',
      'v1-b7.20261206.211500',
    ]);
  });
});

describe('a Build that can never be signed gets a final record and no publish', () => {
  async function failed(
    image: Record<string, unknown>,
    build: Record<string, unknown>,
  ): Promise<{
    c: Cluster;
    notary: MemoryNotary;
    stores: Map<string, MemoryKeyStore>;
    reason: string | undefined;
  }> {
    const c = cluster(image, build);
    const { notary, stores, sign } = realSigning();
    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, sign));
    assert.equal(outcome.kind, 'failed');
    assert.equal(notary.publishes.length, 0);
    assert.deepEqual(
      c.events.map((e) => [e.type, e.reason]),
      [
        ['Warning', 'SigningFailed'],
        ['Warning', 'SigningFailed'],
      ],
    );
    const annotations = annotationsOf(c, 'b');
    assert.equal(annotations[ANNOTATIONS.failedDigest], DIGEST);
    return { c, notary, stores, reason: annotations[ANNOTATIONS.signingErrorReason] };
  }

  it('a notary URL that is not https', async () => {
    const { c, reason } = await failed(
      imageObject({ ...OPTED_IN, [ANNOTATIONS.notaryUrl]: 'http://notary.example' }),
      buildObject('b'),
    );
    assert.equal(reason, 'ConfigInvalid');
    assert.match(annotationsOf(c, 'b')[ANNOTATIONS.signingError] ?? '', /is not https/);
  });

  it('tags in two repositories', async () => {
    const { reason } = await failed(
      imageObject(OPTED_IN),
      buildObject('b', { tags: [`${REPO}:v1`, 'registry.example:5000/team/other:v1'] }),
    );
    assert.equal(reason, 'BuildInvalid');
  });

  it('a latestImage in another repository than the tags', async () => {
    const { reason } = await failed(
      imageObject(OPTED_IN),
      buildObject('b', { latestImage: `registry.example:5000/team/other@${DIGEST}` }),
    );
    assert.equal(reason, 'BuildInvalid');
  });

  it('a root pin our root key does not match', async () => {
    const { reason } = await failed(
      imageObject({ ...OPTED_IN, [ANNOTATIONS.rootKeyId]: 'a'.repeat(64) }),
      buildObject('b'),
    );
    assert.equal(reason, 'KeyUnusable');
  });

  it('a root pin or a delegation on a repository that does not exist yet, with no key created', async () => {
    // A generated root key can never be the pinned one, and a new repository has no delegation:
    // a key Secret made before the refusal would be left behind, its root blocking every later Build.
    for (const settings of [
      { [ANNOTATIONS.rootKeyId]: 'a'.repeat(64) },
      { [ANNOTATIONS.delegation]: 'targets/releases' },
    ]) {
      const { stores, reason } = await failed(
        imageObject({ ...OPTED_IN, ...settings }),
        buildObject('b'),
      );
      assert.equal(reason, 'KeyUnusable');
      assert.ok(stores.size > 0);
      for (const store of stores.values()) {
        assert.equal(store.current, undefined);
        assert.deepEqual(
          store.loads.filter((l) => l.createIfMissing),
          [],
        );
      }
    }
  });

  it('a record of the failure stops further attempts at that digest', async () => {
    const { c, notary } = await failed(
      imageObject({ ...OPTED_IN, [ANNOTATIONS.notaryUrl]: 'ftp://x' }),
      buildObject('b'),
    );
    const { sign } = realSigning();
    const again = await reconcileBuild('team', 'b', FIRST, deps(c, sign));
    assert.equal(again.kind, 'already-done');
    assert.equal(notary.publishes.length, 0);
  });
});

describe("a namespace's repository allowlist (--allow-repository)", () => {
  /** Reconciles `b` (namespace team, tags in REPO) under the given allowlist entries. */
  async function underAllowlist(
    entries: string[],
    required = false,
  ): Promise<{
    c: Cluster;
    outcome: Awaited<ReturnType<typeof reconcileBuild>>;
    publishes: number;
    stores: number;
  }> {
    const c = cluster(imageObject(OPTED_IN), buildObject('b'));
    const { notary, stores, sign } = realSigning();
    const d = deps(c, sign);
    const outcome = await reconcileBuild('team', 'b', FIRST, {
      ...d,
      defaults: { ...d.defaults, repositoryAllowlist: parseRepositoryAllowlist(entries, required) },
    });
    return { c, outcome, publishes: notary.publishes.length, stores: stores.size };
  }

  it("refuses another namespace's repository: RepositoryNotAllowed, no key touched, nothing published", async () => {
    const { c, outcome, publishes, stores } = await underAllowlist([
      'team=registry.example:5000/team-b',
      'team-b=registry.example:5000/team',
    ]);
    assert.equal(outcome.kind, 'failed', JSON.stringify(outcome));
    assert.equal(publishes, 0);
    assert.equal(stores, 0);
    const annotations = annotationsOf(c, 'b');
    assert.equal(annotations[ANNOTATIONS.signingErrorReason], 'RepositoryNotAllowed');
    assert.equal(annotations[ANNOTATIONS.failedDigest], DIGEST);
    assert.equal(annotations[ANNOTATIONS.signedDigest], undefined);
    assert.equal(
      annotations[ANNOTATIONS.signingError],
      `Not signed: repository ${REPO} is not under one the operator allows namespace "team" ` +
        '(registry.example:5000/team-b; --allow-repository); nothing was published',
    );
    assert.deepEqual(
      c.events.map((e) => [e.object.kind, e.type, e.reason]),
      [
        ['Build', 'Warning', 'SigningFailed'],
        ['Image', 'Warning', 'SigningFailed'],
      ],
    );
  });

  it('refuses a prefix that shares only the start of a path segment', async () => {
    const { outcome, publishes } = await underAllowlist(['team=registry.example:5000/te']);
    assert.equal(outcome.kind === 'failed' ? outcome.reason : outcome.kind, 'RepositoryNotAllowed');
    assert.equal(publishes, 0);
  });

  it("signs a repository under the namespace's prefix, the host compared without case", async () => {
    const { outcome, publishes } = await underAllowlist(['team=REGISTRY.example:5000/team']);
    assert.equal(outcome.kind, 'signed', JSON.stringify(outcome));
    assert.equal(publishes, 1);
  });

  it('signs for a namespace without an entry, unless entries are required', async () => {
    const open = await underAllowlist(['other=registry.example:5000/other']);
    assert.equal(open.outcome.kind, 'signed', JSON.stringify(open.outcome));
    const required = await underAllowlist(['other=registry.example:5000/other'], true);
    assert.equal(
      required.outcome.kind === 'failed' ? required.outcome.reason : required.outcome.kind,
      'RepositoryNotAllowed',
    );
    assert.equal(required.publishes, 0);
    assert.equal(required.stores, 0);
  });
});

describe('transient failures', () => {
  const unreachable = (): Promise<SignSummary> =>
    Promise.reject(
      new TrustError(
        'HTTP_UNREACHABLE',
        { url: 'https://notary.example', problem: 'ECONNREFUSED' },
        'notary unreachable',
      ),
    );

  it('are retried without a record while attempts remain', async () => {
    const c = cluster(imageObject(OPTED_IN), buildObject('b'));

    const outcome = await reconcileBuild('team', 'b', FIRST, deps(c, unreachable));

    assert.equal(outcome.kind, 'retry');
    assert.deepEqual(annotationsOf(c, 'b'), {});
    assert.equal(c.events.length, 0);
  });

  it('are recorded as Unavailable on the last attempt', async () => {
    const c = cluster(imageObject(OPTED_IN), buildObject('b'));

    const outcome = await reconcileBuild(
      'team',
      'b',
      { attempt: 5, last: true },
      deps(c, unreachable),
    );

    assert.equal(outcome.kind, 'failed');
    assert.equal(annotationsOf(c, 'b')[ANNOTATIONS.signingErrorReason], 'Unavailable');
    assert.match(annotationsOf(c, 'b')[ANNOTATIONS.signingError] ?? '', /gave up after 5 attempts/);
  });
});

describe('Image settings', () => {
  const image = (annotations: Record<string, string>, namespace = 'team'): ImageState => ({
    namespace,
    name: 'app',
    uid: 'u',
    apiVersion: 'kpack.io/v1alpha2',
    annotations,
  });

  it('a namespace opted in by the policy signs Images without the annotation, with the default notary', () => {
    const decision = signingDecision(image({}), {
      notaryUrl: 'https://notary.example',
      optInNamespaces: ['team'],
      allowedNotaryUrls: [],
    });
    assert.equal(decision.kind, 'sign');
  });

  it('kpack-trust.io/sign=false opts an Image out of an opted-in namespace', () => {
    const decision = signingDecision(image({ [ANNOTATIONS.sign]: 'false' }), {
      notaryUrl: 'https://notary.example',
      optInNamespaces: ['*'],
      allowedNotaryUrls: [],
    });
    assert.equal(decision.kind, 'not-opted-in');
  });

  it('an Image may name only the default notary server or one the operator allows', () => {
    const named = (url: string): SigningDecision =>
      signingDecision(image({ ...OPTED_IN, [ANNOTATIONS.notaryUrl]: url }), {
        notaryUrl: 'https://notary.example',
        optInNamespaces: [],
        allowedNotaryUrls: ['https://second.example/'],
      });
    assert.equal(named('https://notary.example/').kind, 'sign');
    assert.equal(named('https://second.example').kind, 'sign');
    assert.deepEqual(named('https://attacker.example'), {
      kind: 'invalid',
      problem:
        'kpack-trust.io/notary-url names a notary server the controller is not allowed to sign on ' +
        '(its operator lists them with --allow-notary-url)',
    });
  });

  it('Secret names an Image gives are confined to its namespace', () => {
    const decision = signingDecision(
      image({ ...OPTED_IN, [ANNOTATIONS.rootKeySecret]: 'shared-root' }, 'other'),
      { optInNamespaces: [], allowedNotaryUrls: ['https://notary.example'] },
    );
    assert.ok(decision.kind === 'sign');
    assert.equal(decision.settings.rootKeySecret, 'other.shared-root');
  });

  it("an Image can never name another namespace's key Secret, whatever it writes", () => {
    // What an Image in "team" gets by default, and a hostile Image in "evil" aiming at it.
    const victim = signingDecision(image(OPTED_IN, 'team'), {
      optInNamespaces: [],
      allowedNotaryUrls: ['https://notary.example'],
    });
    assert.ok(victim.kind === 'sign');
    for (const aim of [
      victim.settings.rootKeySecret,
      victim.settings.targetsKeySecret,
      'team',
      'app-root-key',
      '../team.app-root-key',
      'team/app-root-key',
      '.team.app-root-key',
    ]) {
      const decision = signingDecision(
        image({ ...OPTED_IN, [ANNOTATIONS.rootKeySecret]: aim }, 'evil'),
        { optInNamespaces: [], allowedNotaryUrls: ['https://notary.example'] },
      );
      if (decision.kind === 'invalid') {
        assert.match(decision.problem, /is not a valid Secret name/, aim);
        continue;
      }
      assert.ok(decision.kind === 'sign', aim);
      // Namespaces hold no dot, so "evil." can only ever be read back as namespace "evil".
      assert.equal(decision.settings.rootKeySecret, `evil.${aim}`);
      assert.notEqual(decision.settings.rootKeySecret, victim.settings.rootKeySecret);
      assert.notEqual(decision.settings.rootKeySecret, victim.settings.targetsKeySecret);
    }
  });

  it('a root pin looks before creating, and then loads as asked when the pinned root key is stored', async () => {
    const root = generateSigningKey();
    const pin = PublicKey.fromKeyObject(root).canonicalId;
    const store = new MemoryKeyStore({ keys: { root: { privateKey: root } } });
    const keys = await withImageSettings(store, undefined, [pin]).load(REPO, {
      createIfMissing: true,
    });
    assert.equal(keys.root?.privateKey, root);
    assert.deepEqual(
      store.loads.map((l) => l.createIfMissing),
      [false, true],
    );
  });

  it('a delegation is signed with the targets Secret key', async () => {
    const store = new MemoryKeyStore({ generate: true });
    const keys = await withImageSettings(store, 'targets/releases', []).load(REPO, {
      createIfMissing: true,
    });
    assert.equal(keys.delegations.get('targets/releases'), keys.targets);
  });
});
