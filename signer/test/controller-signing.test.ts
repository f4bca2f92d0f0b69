/**
 * The controller's sign attempt under its one deadline, through the real publish flow (signBuild)
 * with injected clients: a stalled registry (a fake whose manifest lookup never answers, as a
 * registry host a tenant controls may, until its signal aborts), a stalled notary download (a fake over the in-memory
 * notary that never answers a GET but honours the abort signal), and a slow registry plus slow
 * notary whose round trips are each well within their own deadline but not together.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TrustError, type MetadataFetcher, type MetadataPublisher } from '@kpack-trust/common';
import { fakeManifest } from '@kpack-trust/common/testing';
import type { BuildState } from '../src/controller/kpack.js';
import { reasonFor, type SignRequest } from '../src/controller/reconcile.js';
import {
  controllerSigner,
  DEFAULT_SIGN_TIMEOUT_MS,
  type ControllerSigningDependencies,
} from '../src/controller/signing.js';
import type { ManifestLookup } from '../src/registry/manifest-client.js';
import { MemoryKeyStore } from '../src/testing/memory-key-store.js';
import { MemoryNotary } from './support/memory-notary.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const REPO = 'registry.tenant.example/team/app';
const MANIFEST = fakeManifest('controller-signing-deadline');
const NOTARY_URL = 'https://notary.example';

const BUILD: BuildState = {
  namespace: 'team',
  name: 'app-build-1',
  uid: 'uid-build',
  apiVersion: 'kpack.io/v1alpha2',
  tags: [`${REPO}:v1`],
  succeeded: 'True',
  annotations: {},
  serviceAccountName: 'default',
};

const REQUEST: SignRequest = {
  image: {
    gun: REPO,
    registry: 'registry.tenant.example',
    path: 'team/app',
    tags: ['v1'],
    digest: `sha256:${MANIFEST.digestHex}`,
  },
  settings: {
    notaryUrl: NOTARY_URL,
    rootKeySecret: 'team.app-root-key',
    targetsKeySecret: 'team.app-targets-key',
    rootKeyIds: [],
  },
  build: BUILD,
};

/** A fake registry: each lookup answers after `delayMs`, or never until its signal aborts. */
function fakeRegistry(delayMs: number | 'never'): ManifestLookup & {
  calls: number;
  aborted: number;
} {
  const registry = {
    calls: 0,
    aborted: 0,
    manifestSize: (
      _image: unknown,
      _digest: string,
      options?: { signal?: AbortSignal },
    ): Promise<number> => {
      registry.calls++;
      if (delayMs === 'never') {
        return new Promise<number>((_resolve, reject) => {
          options?.signal?.addEventListener('abort', () => {
            registry.aborted++;
            reject(options.signal?.reason as Error);
          });
        });
      }
      return new Promise<number>((resolve) => {
        setTimeout(() => {
          resolve(MANIFEST.length);
        }, delayMs);
      });
    },
  };
  return registry;
}

/**
 * A fake notary over the in-memory one: every call (GET, key fetch, publish) answers after
 * `delayMs`; with 'never' a GET never answers until its request's signal aborts, which it records.
 */
function slowNotary(
  notary: MemoryNotary,
  delayMs: number | 'never',
): MetadataFetcher & MetadataPublisher & { calls: number; aborted: number } {
  const later = <T>(work: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      setTimeout(
        () => {
          work().then(resolve, reject);
        },
        delayMs === 'never' ? 0 : delayMs,
      );
    });
  const fake = {
    calls: 0,
    aborted: 0,
    fetchMetadata: (
      gun: string,
      request: Parameters<MetadataFetcher['fetchMetadata']>[1],
    ): Promise<Uint8Array> => {
      fake.calls++;
      if (delayMs !== 'never') return later(() => notary.fetchMetadata(gun, request));
      return new Promise<Uint8Array>((_resolve, reject) => {
        request.signal?.addEventListener('abort', () => {
          fake.aborted++;
          reject(request.signal?.reason as Error);
        });
      });
    },
    fetchServerKey: (gun: string, role: 'timestamp' | 'snapshot') => {
      fake.calls++;
      return later(() => notary.fetchServerKey(gun, role));
    },
    publish: (gun: string, files: Parameters<MetadataPublisher['publish']>[1]) => {
      fake.calls++;
      return later(() => notary.publish(gun, files));
    },
  };
  return fake;
}

function signer(
  notary: MetadataFetcher & MetadataPublisher,
  registry: ManifestLookup,
  signTimeoutMs?: number,
): (request: SignRequest) => Promise<unknown> {
  const deps: ControllerSigningDependencies = {
    keyStoreFor: () => new MemoryKeyStore({ generate: true }),
    notaryFor: () => notary,
    registry,
    now: () => NOW,
    ...(signTimeoutMs === undefined ? {} : { signTimeoutMs }),
  };
  return controllerSigner(deps);
}

async function failure(
  work: Promise<unknown>,
): Promise<{ error: TrustError<'HTTP_UNREACHABLE'>; ms: number }> {
  const started = Date.now();
  try {
    await work;
  } catch (err) {
    assert.ok(err instanceof TrustError && err.code === 'HTTP_UNREACHABLE', String(err));
    return { error: err as TrustError<'HTTP_UNREACHABLE'>, ms: Date.now() - started };
  }
  assert.fail('the attempt succeeded');
}

describe('a sign attempt under its deadline', () => {
  it('a registry that never answers is aborted at the deadline, failing the attempt as Unavailable; notary is never asked', async () => {
    const memory = new MemoryNotary(NOW);
    const notary = slowNotary(memory, 0);
    const registry = fakeRegistry('never');

    const { error, ms } = await failure(signer(notary, registry, 150)(REQUEST));

    assert.equal(error.code, 'HTTP_UNREACHABLE');
    assert.equal(reasonFor(error), 'Unavailable', 'retried with backoff, then recorded');
    assert.match(error.message, /deadline of 150 ms passed during the manifest lookup/);
    assert.ok(ms >= 140 && ms < 2_000, `failed after ${ms} ms`);
    assert.equal(registry.calls, 1);
    assert.equal(registry.aborted, 1, 'the lookup in flight saw its signal abort');
    assert.equal(notary.calls, 0);
    assert.equal(memory.publishes.length, 0);
  });

  it('a notary download that never answers is aborted at the deadline, not left running', async () => {
    const memory = new MemoryNotary(NOW);
    const notary = slowNotary(memory, 'never');

    const { error } = await failure(signer(notary, fakeRegistry(0), 150)(REQUEST));

    assert.equal(error.code, 'HTTP_UNREACHABLE');
    assert.match(error.message, /during the GET root of .* from notary/);
    assert.equal(notary.calls, 1);
    assert.equal(notary.aborted, 1, 'the download saw its signal abort');
    assert.equal(memory.publishes.length, 0);
  });

  it('round trips each within their own deadline but slow together pass the attempt’s deadline', async () => {
    const memory = new MemoryNotary(NOW);
    // 120 ms for the registry and per notary call: no single one near 300 ms, all together are.
    const notary = slowNotary(memory, 120);

    const { error, ms } = await failure(signer(notary, fakeRegistry(120), 300)(REQUEST));

    assert.equal(error.code, 'HTTP_UNREACHABLE');
    assert.ok(ms < 1_000, `failed after ${ms} ms`);
    assert.ok(notary.calls >= 1 && notary.calls <= 3, `${notary.calls} notary calls`);
    assert.equal(memory.publishes.length, 0);
    // Nothing more is started after the deadline: the count stays where it was.
    const calls = notary.calls;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(notary.calls, calls);
  });

  it('signs as before when the attempt finishes within the deadline', async () => {
    const memory = new MemoryNotary(NOW);
    const summary = await signer(memory, fakeRegistry(0))(REQUEST);
    assert.equal((summary as { digest: string }).digest, REQUEST.image.digest);
    assert.equal(memory.publishes.filter((p) => p.accepted).length, 1);
    assert.equal(DEFAULT_SIGN_TIMEOUT_MS, 60_000);
  });

  it('refuses a deadline that is not a positive number', async () => {
    await assert.rejects(signer(new MemoryNotary(NOW), fakeRegistry(0), 0)(REQUEST), RangeError);
  });
});
