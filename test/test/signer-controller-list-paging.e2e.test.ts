/**
 * The controller's Build informer against the real kube-apiserver + etcd serving kpack v0.17.2's
 * own Build CRD, when one tenant's Builds make a list page larger than the client's response cap.
 * Kubernetes allows 256 KiB of annotations per object, so ~130 Builds in one namespace fill a page
 * of the default 500 past the controller's 32 MiB cap; before the fix that failed every list, the
 * watch never started and no Build in the watched scope was signed. Here the cap is 64 KiB (the
 * KubeHttp option the tests may set; the program has no flag for it) and the Builds carry 16 KiB
 * annotations, so the same happens at a size the test can afford. The informer, KubeHttp and the
 * list/watch calls are the controller's own, run in this process.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  KubeHttp,
  PageTooLargeError,
  buildListWatch,
  discoverKpack,
  runInformer,
  type KpackApi,
  type ListWatchClient,
} from '@kpack-trust/signer/controller';
import { loadKubeConfig } from '@kpack-trust/signer/keys';
import { type ControlPlane, eventually, kpackModuleDir, startControlPlane } from '../src/index.js';

const CAP = 64 << 10;
const ANNOTATION_BYTES = 16 << 10;
const BIG_TEAM = 'tenant-large';
const SMALL_TEAM = 'tenant-small';
const ODD_TEAM = 'tenant-oversized';

const buildObject = (namespace: string, name: string, annotationBytes: number): unknown => ({
  apiVersion: 'kpack.io/v1alpha2',
  kind: 'Build',
  metadata: {
    name,
    namespace,
    // A tenant may put anything here; kpack copies nothing of it. Distinct per Build, so no
    // compression or caching along the way could make pages smaller than they are.
    annotations: { 'example.com/blob': `${name}:`.padEnd(annotationBytes, 'x') },
  },
  spec: { tags: [`registry.example.com/${namespace}/app:v1`] },
});

const nameOf = (object: unknown): string => {
  const metadata = (object as { metadata?: { namespace?: string; name?: string } }).metadata;
  return `${metadata?.namespace ?? ''}/${metadata?.name ?? ''}`;
};

describe('controller Build informer: list pages larger than the response cap, real apiserver', () => {
  let cp: ControlPlane;
  let http: KubeHttp;
  let kpack: KpackApi;
  const big = Array.from({ length: 10 }, (_, i) => `${BIG_TEAM}/big-${String(i).padStart(2, '0')}`);
  const small = [`${SMALL_TEAM}/app-1`, `${SMALL_TEAM}/app-2`];

  const kubectl = async (args: readonly string[], input?: string): Promise<string> => {
    const result = await cp.kubectl(args, input === undefined ? {} : { input });
    assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  /** `kubectl create`, not apply: apply would double each Build with its last-applied copy. */
  const create = (objects: readonly unknown[]): Promise<string> =>
    kubectl(
      ['create', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
    );

  before(async () => {
    cp = await startControlPlane({ controllerManager: false });
    const dir = await kpackModuleDir();
    await kubectl(['apply', '-f', join(dir, 'config', 'build.yaml')]);
    await kubectl(['wait', '--for=condition=Established', 'crd/builds.kpack.io', '--timeout=60s']);
    for (const ns of [BIG_TEAM, SMALL_TEAM, ODD_TEAM]) await kubectl(['create', 'namespace', ns]);
    const split = (key: string): [string, string] => key.split('/') as [string, string];
    await create(big.map((key) => buildObject(...split(key), ANNOTATION_BYTES)));
    await create(small.map((key) => buildObject(...split(key), 100)));
    http = new KubeHttp(loadKubeConfig({ kubeconfig: cp.kubeconfigPath }).config, {
      maxResponseBytes: CAP,
    });
    kpack = await discoverKpack(http);
  });

  after(async () => {
    await cp?.stop();
  });

  it('a page of the default size is refused by the cap, yet the informer lists every Build and its watch then starts', async () => {
    const source = buildListWatch(http, kpack);
    // The fault is real: one page of 500 is over the cap (what failed every list before).
    const refused = await source.list({ limit: 500 }).catch((err: unknown) => err);
    assert.ok(refused instanceof PageTooLargeError, `a 500-page: ${String(refused)}`);
    assert.equal(refused.maxBytes, CAP);

    const stop = new AbortController();
    const listed: string[] = [];
    const watched: string[] = [];
    const shrunk: string[] = [];
    const failures: string[] = [];
    let synced = false;
    const started = performance.now();
    let listMs = 0;
    const informer = runInformer(
      {
        client: source,
        onObject: (object) => {
          (synced ? watched : listed).push(nameOf(object));
        },
        onSynced: () => {
          synced = true;
          listMs = performance.now() - started;
        },
        onEvent: (what, detail) => {
          if (what === 'page-shrunk') shrunk.push(detail ?? '');
          if (what === 'watch-error') failures.push(detail ?? '');
        },
      },
      stop.signal,
    );
    try {
      await eventually('the informer to list', () => Promise.resolve(synced ? true : undefined));
      assert.deepEqual(failures, []);
      assert.deepEqual(listed.sort(), [...big, ...small].sort());
      assert.equal(
        shrunk[0],
        `a page of 500 exceeds the ${CAP}-byte response cap after 0 objects; asking for 250`,
      );
      console.log(
        `listed ${listed.length} Builds (${big.length} × ${ANNOTATION_BYTES} B annotations) under a ${CAP}-byte cap in ${listMs.toFixed(0)} ms, after ${shrunk.length} smaller pages asked for`,
      );
      // The watch runs from the list's version: a Build created now arrives through it.
      await create([buildObject(SMALL_TEAM, 'app-3', 100)]);
      await eventually('the new Build through the watch', () =>
        Promise.resolve(watched.includes(`${SMALL_TEAM}/app-3`) ? true : undefined),
      );
    } finally {
      stop.abort();
      await informer;
    }
  });

  it('a Build larger than the cap alone fails the list by name of the count, instead of being skipped', async () => {
    // 100 KiB of annotations: within Kubernetes' 256 KiB, over this client's 64 KiB cap.
    await create([
      buildObject(ODD_TEAM, 'a-small', 100),
      buildObject(ODD_TEAM, 'b-huge', 100 << 10),
    ]);
    const source: ListWatchClient = buildListWatch(http, kpack, ODD_TEAM);
    const stop = new AbortController();
    const listed: string[] = [];
    let failure: string | undefined;
    let watches = 0;
    await runInformer(
      {
        client: {
          list: (options) => source.list(options),
          watch: (...args) => {
            watches++;
            return source.watch(...args);
          },
        },
        onObject: (object) => listed.push(nameOf(object)),
        onEvent: (what, detail) => {
          if (what === 'watch-error') {
            failure = detail;
            stop.abort();
          }
        },
      },
      stop.signal,
    );
    assert.equal(
      failure,
      `list failed after 1 objects: the next object alone exceeds the ${CAP}-byte response cap (page limit 1); not skipped, as that would hide it`,
    );
    assert.deepEqual(listed, [`${ODD_TEAM}/a-small`]);
    assert.equal(watches, 0, 'no watch from an incomplete list');
  });
});
