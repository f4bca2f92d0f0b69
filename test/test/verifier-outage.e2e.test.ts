/**
 * The verifier through a notary outage, on the real stack: notary-server is frozen (SIGSTOP, so
 * connections hang as on a dead host) for longer than the cache TTL while a signed image is reviewed
 * steadily. Reviews keep being admitted from verified data, marked stale, in milliseconds once the
 * circuit is open; an image never verified is denied at once; after SIGCONT the next refresh is
 * fresh. With `staleIfErrorSeconds: 0` the same outage denies. A notary that replays an older
 * timestamp (freeze) is denied whatever stale data the verifier holds. Bounded: a few seconds per
 * phase, loopback only, and the stopped process is always continued.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FixtureRepository, fakeManifest } from '@kpack-trust/common/testing';
import {
  ImagePolicyEngine,
  loadConfig,
  type ImageReviewSpec,
  type PodDecision,
} from '@kpack-trust/verifier';
import { startHostileNotary, type HostileNotary } from '../src/hostile-notary.js';
import {
  addTarget,
  createCertificates,
  initRepo,
  type NotaryStack,
  type PushedImage,
  pushImage,
  rootKeyIds,
  startStack,
} from '../src/index.js';

const TTL_SECONDS = 2;
const TIMEOUT_MS = 1000;

interface Sample {
  readonly at: number;
  readonly ms: number;
  readonly allowed: boolean;
  readonly stale: boolean;
  readonly code: string;
  readonly breaker: string;
}

function pod(image: string): ImageReviewSpec {
  return { containers: [{ image }], annotations: {}, namespace: 'default' };
}

async function decideTimed(
  engine: ImagePolicyEngine,
  image: string,
): Promise<{ decision: PodDecision; ms: number }> {
  const started = performance.now();
  const decision = await engine.decide(pod(image));
  return { decision, ms: performance.now() - started };
}

/** Reviews `image` every `everyMs` for `forMs`, one at a time, as steady traffic would. */
async function steady(
  engine: ImagePolicyEngine,
  image: string,
  server: string,
  forMs: number,
  everyMs = 100,
): Promise<Sample[]> {
  const samples: Sample[] = [];
  const start = performance.now();
  while (performance.now() - start < forMs) {
    const { decision, ms } = await decideTimed(engine, image);
    samples.push({
      at: performance.now() - start,
      ms,
      allowed: decision.status.allowed,
      stale: decision.status.auditAnnotations?.['image-0-stale'] !== undefined,
      code: decision.images[0]?.code ?? '',
      breaker: engine.trustCache.breakerState(server),
    });
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return samples;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

void describe('the verifier through a notary-server outage (real stack)', () => {
  let stack: NotaryStack;
  let app: PushedImage;
  let unseen: PushedImage;
  let notaryPid: number;
  let stopped = false;
  const engines: ImagePolicyEngine[] = [];

  const freeze = (): void => {
    process.kill(notaryPid, 'SIGSTOP');
    stopped = true;
  };
  const thaw = (): void => {
    if (!stopped) return;
    process.kill(notaryPid, 'SIGCONT');
    stopped = false;
  };

  async function engineFor(staleIfErrorSeconds: number): Promise<ImagePolicyEngine> {
    const pin = (await rootKeyIds(stack, app.gun)).canonicalId;
    const file = join(await stack.tempDir('verifier'), 'verifier.yaml');
    await writeFile(
      file,
      `listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - registry: "${stack.registryHost}"
    server: ${stack.notaryUrl}
    ca: ${JSON.stringify(stack.caFile)}
    timeoutMs: ${TIMEOUT_MS}
cache: { ttlSeconds: ${TTL_SECONDS}, staleIfErrorSeconds: ${staleIfErrorSeconds} }
circuitBreaker: { failureThreshold: 2, cooldownSeconds: 1 }
rules:
  - images: "${stack.registryHost}/demo/*"
    trust: { rootKeys: ["${pin}"] }
`,
    );
    const engine = new ImagePolicyEngine({ config: await loadConfig(file) });
    engines.push(engine);
    return engine;
  }

  before(async () => {
    stack = await startStack();
    const trust = await stack.tempDir('trust');
    app = await pushImage(stack, 'demo/app', 'v1');
    unseen = await pushImage(stack, 'demo/unseen', 'v1', { content: 'never reviewed\n' });
    for (const image of [app, unseen]) {
      await initRepo(stack, image.gun, trust);
      await addTarget(stack, image.gun, trust, 'v1', image.size, image.digest.slice(7));
    }
    const server = stack.processes.find((p) => p.name === 'notary-server');
    assert.ok(server);
    notaryPid = server.pid;
  });

  after(async () => {
    thaw();
    await Promise.all(engines.map((e) => e.close()));
    await stack.stop();
  });

  void it('admits from verified data through the outage, fails fast once the circuit is open, and refreshes when notary is back', async () => {
    const engine = await engineFor(3600);
    const image = `${app.gun}:v1`;
    const server = stack.notaryUrl;
    const healthy = await steady(engine, image, server, 1_500);
    assert.ok(healthy.every((s) => s.allowed && !s.stale));

    freeze();
    let outage: Sample[];
    let unseenReview: { decision: PodDecision; ms: number };
    try {
      outage = await steady(engine, image, server, 3 * TTL_SECONDS * 1000);
      unseenReview = await decideTimed(engine, `${unseen.gun}:v1`);
    } finally {
      thaw();
    }
    const thawedAt = performance.now();
    let firstFresh: number | undefined;
    let recovery: Sample[] = [];
    while (performance.now() - thawedAt < 10_000 && firstFresh === undefined) {
      recovery = recovery.concat(await steady(engine, image, server, 1, 50));
      if (recovery.at(-1)?.stale === false) firstFresh = performance.now() - thawedAt;
    }

    // Every review during the outage was admitted from verified data.
    const denied = outage.filter((s) => !s.allowed);
    assert.deepEqual(denied, []);
    const stale = outage.filter((s) => s.stale);
    assert.ok(stale.length > 0, 'the outage outlasted the TTL');
    const openIndex = outage.findIndex((s) => s.breaker !== 'closed');
    assert.ok(openIndex >= 0, 'the circuit opened');
    const afterOpen = outage.slice(openIndex + 1).map((s) => s.ms);
    assert.ok(afterOpen.length > 10);
    assert.ok(
      Math.max(...afterOpen) < 50,
      `slowest review with the circuit open: ${Math.max(...afterOpen)} ms`,
    );
    // An image never verified has nothing to stand in for it: denied, at once.
    assert.equal(unseenReview.decision.status.allowed, false);
    assert.equal(unseenReview.decision.images[0]?.code, 'HTTP_UNREACHABLE');
    assert.ok(unseenReview.ms < 50, `${unseenReview.ms} ms`);
    // Back: the next refresh is fresh, and the circuit closed.
    assert.ok(firstFresh !== undefined, 'a fresh answer within 10 s of notary coming back');
    assert.equal(recovery.at(-1)?.allowed, true);
    assert.equal(engine.trustCache.breakerState(server), 'closed');

    const beforeOpen = outage.slice(0, openIndex + 1).map((s) => s.ms);
    console.log(
      JSON.stringify({
        healthyReviews: healthy.length,
        healthyP50Ms: round(
          percentile(
            healthy.map((s) => s.ms),
            50,
          ),
        ),
        outageReviews: outage.length,
        outageAdmitted: outage.filter((s) => s.allowed).length,
        outageStale: stale.length,
        reviewsBeforeCircuitOpen: openIndex + 1,
        slowestBeforeOpenMs: round(Math.max(...beforeOpen)),
        circuitOpenAtMs: round(outage[openIndex]?.at ?? Number.NaN),
        afterOpenReviews: afterOpen.length,
        afterOpenP50Ms: round(percentile(afterOpen, 50)),
        afterOpenP99Ms: round(percentile(afterOpen, 99)),
        afterOpenMaxMs: round(Math.max(...afterOpen)),
        unseenImageDeniedInMs: round(unseenReview.ms),
        firstFreshAfterThawMs: round(firstFresh),
      }),
    );
  });

  void it('denies through the same outage with staleIfErrorSeconds: 0', async () => {
    const engine = await engineFor(0);
    const image = `${app.gun}:v1`;
    assert.equal((await engine.decide(pod(image))).status.allowed, true);
    freeze();
    let review: { decision: PodDecision; ms: number };
    try {
      await new Promise((r) => setTimeout(r, TTL_SECONDS * 1000 + 200));
      review = await decideTimed(engine, image);
    } finally {
      thaw();
    }
    assert.equal(review.decision.status.allowed, false);
    assert.equal(review.decision.images[0]?.code, 'HTTP_UNREACHABLE');
    assert.equal(review.decision.status.auditAnnotations?.['image-0-stale'], undefined);
    console.log(JSON.stringify({ staleOffDeniedInMs: round(review.ms) }));
  });
});

void describe('a replayed timestamp is denied whatever stale data the verifier holds', () => {
  let dir: string;
  let hostile: HostileNotary;
  let engine: ImagePolicyEngine;
  let repo: FixtureRepository;
  const registry = '127.0.0.1:5000';
  const gun = `${registry}/frozen/app`;
  const manifest = fakeManifest('v1');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpack-trust-freeze-'));
    const [good, wrong] = await Promise.all([
      createCertificates(join(dir, 'good')),
      createCertificates(join(dir, 'wrong')),
    ]);
    const pair = async (p: {
      certFile: string;
      keyFile: string;
    }): Promise<{ cert: string; key: string }> => ({
      cert: await readFile(p.certFile, 'utf8'),
      key: await readFile(p.keyFile, 'utf8'),
    });
    hostile = await startHostileNotary({
      tls: await pair(good.server),
      wrongCaTls: await pair(wrong.server),
    });
    repo = await FixtureRepository.create(gun, new Date());
    await repo.signTag('v1', manifest.digestHex, manifest.length);
    hostile.serve(gun, repo.files);
    const file = join(dir, 'verifier.yaml');
    await writeFile(
      file,
      `listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - { registry: "${registry}", server: "${hostile.url}", ca: ${good.caFile}, timeoutMs: ${TIMEOUT_MS} }
cache: { ttlSeconds: 0, staleIfErrorSeconds: 3600, negativeTtlSeconds: 0 }
rules:
  - images: "${registry}/frozen/*"
    trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.id ?? ''}"] }
`,
    );
    engine = new ImagePolicyEngine({ config: await loadConfig(file) });
  });

  after(async () => {
    await engine.close();
    await hostile.close();
    await rm(dir, { recursive: true, force: true });
  });

  void it('denies VERSION_ROLLBACK, and serves nothing stale afterwards', async () => {
    const image = `${gun}:v1`;
    assert.equal((await engine.decide(pod(image))).status.allowed, true);
    const oldTimestamp = repo.bytesOf('timestamp');
    await repo.signTag('v2', manifest.digestHex, manifest.length);
    assert.equal(
      (await engine.decide(pod(image))).status.allowed,
      true,
      'the newer timestamp is trusted',
    );
    repo.files.set('timestamp.json', oldTimestamp);
    const replayed = await engine.decide(pod(image));
    assert.equal(replayed.status.allowed, false);
    assert.equal(replayed.images[0]?.code, 'VERSION_ROLLBACK');
    assert.equal(replayed.status.auditAnnotations?.['image-0-stale'], undefined);
    // The server then goes away: the collection was dropped with the failed verification.
    await hostile.setFault({ kind: 'down' });
    const down = await engine.decide(pod(image));
    assert.equal(down.status.allowed, false);
    assert.equal(down.images[0]?.code, 'HTTP_UNREACHABLE');
    await hostile.setFault({ kind: 'healthy' });
  });
});
