/**
 * Test support for the decision engine: configs from YAML text with in-memory files, an observer
 * that records every event, a movable clock, and fetchers that fail or stall on demand.
 */
import { TrustError, type MetadataFetcher, type MetadataRequest } from '@kpack-trust/common';
import { PublicKey, createRootCertificate, localSigner } from '@kpack-trust/common';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  type FixtureKey,
} from '@kpack-trust/common/testing';
import { parseConfig } from '../../src/config/parse.js';
import type { VerifierConfig } from '../../src/config/types.js';
import { ImagePolicyEngine, type ImagePolicyEngineOptions } from '../../src/policy/engine.js';
import type { DecisionObserver, ImageReviewSpec } from '../../src/review.js';

/** The instant every fixture is made at. */
export const NOW = new Date('2026-11-22T12:00:00Z');
export const HOUR = 3600 * 1000;
export const DAY = 24 * HOUR;
export const REGISTRY = '127.0.0.1:5000';
export const NOTARY = 'https://127.0.0.1:4443';
export const GUN = `${REGISTRY}/demo/app`;
/** The manifest `signedRepository` signs as tag v1. */
export const V1 = fakeManifest('v1');
/** A second manifest, for tags signed later or digests no tag points to. */
export const V2 = fakeManifest('v2');
/** The signed tag of `signedRepository`. */
export const IMAGE = `${GUN}:v1`;
/** Where test configs pretend to live; files are looked up under it. */
export const CONFIG_DIR = '/etc/kpack-trust';

/** The listen and notary sections every test config starts with. */
export const PREAMBLE = `
listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - registry: ${REGISTRY}
    server: ${NOTARY}
`;

/**
 * The repository most engine tests start from: GUN with v1 signed for V1, and a fetcher serving it
 * that records every request.
 */
export async function signedRepository(): Promise<{
  repo: FixtureRepository;
  fetcher: MemoryFetcher;
}> {
  const repo = await FixtureRepository.create(GUN, NOW);
  await repo.signTag('v1', V1.digestHex, V1.length);
  return { repo, fetcher: new MemoryFetcher(repo) };
}

/** Re-signs `repo`'s timestamp to expire `ms` after NOW, every other role unchanged. */
export async function expireTimestampAfter(repo: FixtureRepository, ms: number): Promise<void> {
  const expires = new Date(NOW.getTime() + ms).toISOString();
  await repo.publish([], { timestamp: { signed: (s) => ({ ...s, expires }) } });
}

/** Parses YAML config text; `files` maps absolute paths to contents. */
export function configFrom(
  text: string,
  files: Readonly<Record<string, string>> = {},
): VerifierConfig {
  return parseConfig(text, CONFIG_DIR, (path) => {
    const content = files[path];
    if (content === undefined) {
      throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    }
    return content;
  });
}

/** A config pinning `repo`'s root key for `127.0.0.1:5000/demo/*`, plus extra rules/settings. */
export function pinnedConfig(
  repo: FixtureRepository,
  options: {
    trustExtra?: string;
    ruleExtra?: string;
    rules?: string;
    top?: string;
    /** Pin the bare key's (canonical) id, which covers every GUN the key has a certificate for. */
    canonical?: boolean;
  } = {},
): VerifierConfig {
  const key = repo.rootKeys[0]?.publicKey;
  const id = (options.canonical === true ? key?.canonicalId : key?.id) ?? '';
  return configFrom(`${PREAMBLE}
${options.top ?? ''}
rules:
  - images: "${REGISTRY}/demo/*"
    name: demo
    trust: { rootKeys: ["${id}"] ${options.trustExtra ?? ''} }
${options.ruleExtra ?? ''}
${options.rules ?? ''}
`);
}

/** A pod spec of images in a namespace. */
export function pod(
  images: readonly string[],
  options: { namespace?: string; annotations?: Record<string, string> } = {},
): ImageReviewSpec {
  return {
    containers: images.map((image) => ({ image })),
    annotations: options.annotations ?? {},
    namespace: options.namespace ?? 'default',
  };
}

type ImageEvent = Parameters<DecisionObserver['imageDecided']>[0];
type FetchEvent = Parameters<DecisionObserver['notaryFetched']>[0];

/** Records every observer event. */
export class RecordingObserver implements DecisionObserver {
  readonly images: ImageEvent[] = [];
  readonly fetches: FetchEvent[] = [];
  readonly lookups: boolean[] = [];

  imageDecided(event: ImageEvent): void {
    this.images.push(event);
  }
  notaryFetched(event: FetchEvent): void {
    this.fetches.push(event);
  }
  cacheLookup(event: { readonly hit: boolean }): void {
    this.lookups.push(event.hit);
  }
}

/** A clock tests move by hand. */
export class TestClock {
  current: Date;
  constructor(start = NOW) {
    this.current = start;
  }
  readonly now = (): Date => this.current;
  advance(ms: number): void {
    this.current = new Date(this.current.getTime() + ms);
  }
}

/** An engine over one fetcher for every notary server, with a recording observer. */
export function engineWith(
  config: VerifierConfig,
  fetcher: MetadataFetcher,
  options: Partial<Omit<ImagePolicyEngineOptions, 'config' | 'fetcherFor'>> = {},
): { engine: ImagePolicyEngine; observer: RecordingObserver; clock: TestClock } {
  const observer = new RecordingObserver();
  const clock = new TestClock();
  const engine = new ImagePolicyEngine({
    config,
    fetcherFor: () => fetcher,
    now: clock.now,
    observer,
    ...options,
  });
  return { engine, observer, clock };
}

/** Wraps a fetcher: `failWith` makes every request fail; `delayMs` delays each; counts concurrency. */
export class ControlledFetcher implements MetadataFetcher {
  failWith: TrustError | undefined;
  delayMs = 0;
  inFlight = 0;
  maxInFlight = 0;
  private readonly inner: MetadataFetcher;

  constructor(inner: MetadataFetcher) {
    this.inner = inner;
  }

  async fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.failWith !== undefined) throw this.failWith;
      return await this.inner.fetchMetadata(gun, request);
    } finally {
      this.inFlight--;
    }
  }
}

/** The error NotaryHttpClient raises when a server does not answer. */
export function unreachable(url = `${NOTARY}/v2/${GUN}/_trust/tuf/root.json`): TrustError {
  return new TrustError(
    'HTTP_UNREACHABLE',
    { url, problem: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:4443' },
    `GET ${url} failed: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:4443.`,
  );
}

/**
 * A repository for `gun` whose root key is `like`'s, wrapped in a certificate for the new GUN —
 * as the notary CLI reuses one root key for every GUN it initializes. Pin it by canonical id.
 */
export async function repositoryWithSameRootKey(
  like: FixtureRepository,
  gun: string,
): Promise<FixtureRepository> {
  const key = like.rootKeys[0];
  if (key === undefined) throw new Error('fixture has no root key');
  const publicKey = PublicKey.fromCertificatePem(
    await createRootCertificate(gun, key.privateKey, { notBefore: new Date(NOW.getTime() - HOUR) }),
  );
  const rootKey: FixtureKey = {
    privateKey: key.privateKey,
    publicKey,
    signer: localSigner(key.privateKey, publicKey),
  };
  return FixtureRepository.create(gun, NOW, { rootKeys: [rootKey] });
}
