/**
 * Benchmark (not a test): the engine's cold paths over an in-memory notary (FixtureRepositories
 * behind a MemoryFetcher that adds a fixed delay per request, standing in for the network).
 *
 *   npm run build && node --expose-gc verifier/dist/bench/cold.js [--delay-ms 5] [--repositories 10000]
 *     [--rounds 5] [--only coalescing,pod-fan-out,cached-rss]
 *
 * Output: JSON lines —
 *   coalescing     200 concurrent reviews of one never-seen image: fetches per role (goal: 1 each)
 *   pod-fan-out    a pod of 20 distinct never-seen images vs one image (goal: within 2×): each
 *                  round times both on a fresh engine, after a warm-up so that neither pays for
 *                  the JIT; the median of the rounds' ratios is the result
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
    rounds: { type: 'string', default: '5' },
    only: { type: 'string', default: 'coalescing,pod-fan-out,cached-rss' },
  },
});
const delayMs = Number(values['delay-ms']);
const repositories = Number(values.repositories);
const rounds = Number(values.rounds);
const only = new Set(values.only.split(','));

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
  prefix = '',
): Promise<{ repos: FixtureRepository[]; rootKeyId: string }> {
  const root = await fixtureKey();
  const repos: FixtureRepository[] = [];
  for (let i = 0; i < count; i += 1) {
    const gun = `${REGISTRY}/demo/${prefix}app-${i}`;
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
  const image = (gun: string): string => `${gun}:v1`;
  const median = (xs: readonly number[]): number =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const timed = async (engine: ImagePolicyEngine, guns: readonly string[]): Promise<number> => {
    const started = performance.now();
    const status = await engine.review(pod(guns.map(image)));
    const ms = performance.now() - started;
    if (!status.allowed) throw new Error(`not admitted: ${status.reason ?? ''}`);
    return ms;
  };
  const results: { oneMs: number; twentyMs: number }[] = [];
  // Round 0 warms the JIT up and is not counted.
  for (let round = 0; round <= rounds; round += 1) {
    const { repos, rootKeyId } = await sharedRootRepositories(21, true, `r${round}-`);
    const fetcher = new DelayedFetcher(new MemoryFetcher(...repos), delayMs);
    const guns = repos.map((r) => r.gun);
    // A fresh engine each: cold trust cache, nothing shared but the process.
    const forOne = await engineOver(dir, rootKeyId, fetcher);
    const forTwenty = await engineOver(dir, rootKeyId, fetcher);
    // Alternate the order, so neither always runs right after the fixtures were built.
    let oneMs: number;
    let twentyMs: number;
    if (round % 2 === 0) {
      oneMs = await timed(forOne, guns.slice(0, 1));
      twentyMs = await timed(forTwenty, guns.slice(1));
    } else {
      twentyMs = await timed(forTwenty, guns.slice(1));
      oneMs = await timed(forOne, guns.slice(0, 1));
    }
    await forOne.close();
    await forTwenty.close();
    if (round > 0) results.push({ oneMs, twentyMs });
  }
  const ratios = results.map((r) => r.twentyMs / r.oneMs);
  const ratio = median(ratios);
  emit({
    bench: 'pod-fan-out',
    rounds: results.length,
    oneImageMsMedian: Number(median(results.map((r) => r.oneMs)).toFixed(2)),
    twentyImagesMsMedian: Number(median(results.map((r) => r.twentyMs)).toFixed(2)),
    ratioMedian: Number(ratio.toFixed(2)),
    ratios: ratios.map((r) => Number(r.toFixed(2))),
    goalRatio: 2,
    meetsGoal: ratio <= 2,
    delayMsPerRequest: delayMs,
  });
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
  if (only.has('coalescing')) await coalescing(tls.dir);
  if (only.has('pod-fan-out')) await fanOut(tls.dir);
  if (only.has('cached-rss')) await cachedRss(tls.dir);
} finally {
  await rm(tls.dir, { recursive: true, force: true });
}
