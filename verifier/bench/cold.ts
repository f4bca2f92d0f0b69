/**
 * Benchmark (not a test): the engine's cold paths over an in-memory notary (FixtureRepositories
 * behind a MemoryFetcher that adds a fixed delay per request, standing in for the network).
 *
 *   npm run build && node --expose-gc verifier/dist/bench/cold.js [--delay-ms 5] [--repositories 10000]
 *
 * Output: JSON lines —
 *   coalescing     200 concurrent reviews of one never-seen image: fetches per role (goal: 1 each)
 *   pod-fan-out    a pod of 20 distinct never-seen images vs one image (goal: within 2×)
 *   cached-rss     RSS and heap with N repositories in the trust cache
 * The cold decision against the real notary-server beside `notary lookup` needs the loopback
 * stack, which lives in the test workspace: see test/bench/verifier-cold-stack.ts.
 */
import { parseArgs } from 'node:util';
import {
  PublicKey,
  createRootCertificate,
  imageTarget,
  localSigner,
  type MetadataFetcher,
  type MetadataRequest,
} from '@kpack-trust/common';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  fixtureKey,
  type FixtureKey,
} from '@kpack-trust/common/testing';
import { rm } from 'node:fs/promises';
import { loadConfig } from '../src/config/load.js';
import { ImagePolicyEngine } from '../src/policy/engine.js';
import type { ImageReviewSpec } from '../src/review.js';
import { REGISTRY, benchTls, signedRepository, writeBenchConfig } from './fixture.js';

const { values } = parseArgs({
  options: {
    'delay-ms': { type: 'string', default: '5' },
    repositories: { type: 'string', default: '10000' },
  },
});
const delayMs = Number(values['delay-ms']);
const repositories = Number(values.repositories);

function emit(record: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

/** The MemoryFetcher, `delayMs` slower per request, counting requests per role. */
class DelayedFetcher implements MetadataFetcher {
  readonly perRole = new Map<string, number>();
  constructor(
    private readonly inner: MetadataFetcher,
    private readonly delay: number,
  ) {}
  async fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
    this.perRole.set(request.role, (this.perRole.get(request.role) ?? 0) + 1);
    if (this.delay > 0) await new Promise((resolve) => setTimeout(resolve, this.delay));
    return this.inner.fetchMetadata(gun, request);
  }
}

const pod = (images: readonly string[]): ImageReviewSpec => ({
  containers: images.map((image) => ({ image })),
  annotations: {},
  namespace: 'default',
});

/** Repositories under `127.0.0.1:5000/demo/` sharing one root key (pinned by canonical id). */
async function sharedRootRepositories(
  count: number,
  tagged: boolean,
): Promise<{ repos: FixtureRepository[]; rootKeyId: string }> {
  const root = await fixtureKey();
  const repos: FixtureRepository[] = [];
  for (let i = 0; i < count; i += 1) {
    const gun = `${REGISTRY}/demo/app-${i}`;
    const publicKey = PublicKey.fromCertificatePem(
      await createRootCertificate(gun, root.privateKey, {
        notBefore: new Date(Date.now() - 3600_000),
      }),
    );
    const rootKey: FixtureKey = {
      privateKey: root.privateKey,
      publicKey,
      signer: localSigner(root.privateKey, publicKey),
    };
    const repo = tagged
      ? await signedRepositoryWith(gun, rootKey)
      : await FixtureRepository.create(gun, new Date(), { rootKeys: [rootKey] });
    repos.push(repo);
  }
  return { repos, rootKeyId: root.publicKey.canonicalId };
}

async function signedRepositoryWith(gun: string, rootKey: FixtureKey): Promise<FixtureRepository> {
  const repo = await FixtureRepository.create(gun, new Date(), { rootKeys: [rootKey] });
  const manifest = fakeManifest(`${gun}:v1`);
  await repo.changeTargets('targets', {
    set: new Map([['v1', imageTarget(manifest.digestHex, manifest.length)]]),
  });
  return repo;
}

async function engineOver(
  dir: string,
  rootKeyId: string,
  fetcher: MetadataFetcher,
): Promise<ImagePolicyEngine> {
  const config = await loadConfig(await writeBenchConfig(dir, rootKeyId));
  return new ImagePolicyEngine({ config, fetcherFor: () => fetcher });
}

async function coalescing(dir: string): Promise<void> {
  const repo = await signedRepository(`${REGISTRY}/demo/app`);
  const fetcher = new DelayedFetcher(new MemoryFetcher(repo), delayMs);
  const engine = await engineOver(dir, repo.rootKeys[0]?.publicKey.id ?? '', fetcher);
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 200 }, () => engine.review(pod([`${REGISTRY}/demo/app:v1`]))),
  );
  const ms = performance.now() - started;
  const fetches = Object.fromEntries(fetcher.perRole);
  emit({
    bench: 'coalescing',
    concurrentReviews: 200,
    allAllowed: results.every((r) => r.allowed),
    fetchesPerRole: fetches,
    goalOneFetchPerRole: Object.values(fetches).every((n) => n === 1),
    totalMs: Number(ms.toFixed(2)),
    delayMsPerRequest: delayMs,
  });
  await engine.close();
}

async function fanOut(dir: string): Promise<void> {
  const { repos, rootKeyId } = await sharedRootRepositories(21, true);
  const fetcher = new DelayedFetcher(new MemoryFetcher(...repos), delayMs);
  const engine = await engineOver(dir, rootKeyId, fetcher);
  const image = (i: number): string => `${REGISTRY}/demo/app-${i}:v1`;
  let started = performance.now();
  const one = await engine.review(pod([image(0)]));
  const oneMs = performance.now() - started;
  started = performance.now();
  const twenty = await engine.review(pod(Array.from({ length: 20 }, (_, i) => image(i + 1))));
  const twentyMs = performance.now() - started;
  emit({
    bench: 'pod-fan-out',
    oneImageMs: Number(oneMs.toFixed(2)),
    twentyImagesMs: Number(twentyMs.toFixed(2)),
    ratio: Number((twentyMs / oneMs).toFixed(2)),
    goalRatio: 2,
    meetsGoal: twentyMs <= 2 * oneMs,
    allowed: one.allowed && twenty.allowed,
    delayMsPerRequest: delayMs,
  });
  await engine.close();
}

async function cachedRss(dir: string): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const baseline = process.memoryUsage();
  let fixtures: { repos: FixtureRepository[]; rootKeyId: string } | undefined =
    await sharedRootRepositories(repositories, true);
  let fetcher: MemoryFetcher | undefined = new MemoryFetcher(...fixtures.repos);
  // Detachable, so the fixtures (every key and file of every repository) can be dropped before
  // measuring: they are this benchmark's data, not the verifier's.
  const detachable: MetadataFetcher = {
    fetchMetadata: (gun, request) =>
      fetcher ? fetcher.fetchMetadata(gun, request) : Promise.reject(new Error('detached')),
  };
  const engine = await engineOver(dir, fixtures.rootKeyId, detachable);
  const started = performance.now();
  for (let i = 0; i < repositories; i += 100) {
    const count = Math.min(100, repositories - i);
    await engine.review(
      pod(Array.from({ length: count }, (_, j) => `${REGISTRY}/demo/app-${i + j}:v1`)),
    );
  }
  const warmMs = performance.now() - started;
  fixtures = undefined;
  fetcher = undefined;
  gc?.();
  const after = process.memoryUsage();
  emit({
    bench: 'cached-rss',
    repositories,
    cache: engine.trustCache.stats(),
    fillSeconds: Number((warmMs / 1000).toFixed(1)),
    rssMiB: Number((after.rss / 2 ** 20).toFixed(1)),
    heapUsedMiB: Number((after.heapUsed / 2 ** 20).toFixed(1)),
    heapGrowthMiB: Number(((after.heapUsed - baseline.heapUsed) / 2 ** 20).toFixed(1)),
    gcExposed: gc !== undefined,
  });
  await engine.close();
}

const tls = await benchTls();
try {
  await coalescing(tls.dir);
  await fanOut(tls.dir);
  await cachedRss(tls.dir);
} finally {
  await rm(tls.dir, { recursive: true, force: true });
}
