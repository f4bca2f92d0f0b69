/**
 * A repository whose root is trusted may still be hostile: a `tofu: true` rule trusts whoever
 * published first, and a tenant holding the targets and snapshot keys of its own GUN under a
 * shared pin signs whatever it likes. One update of such a repository must stay bounded in bytes
 * buffered, in keys imported and in time without a turn of the event loop, and must stop at the
 * caller's deadline. Each test corrupts one thing and asserts the exact error code; work is
 * counted through a WorkMeter, never timed.
 */
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import type { JsonValue } from '../src/canonical/json.js';
import { TrustError, isTrustError } from '../src/errors.js';
import { PublicKey, type PublicKeyJson } from '../src/keys/public-key.js';
import { createRootCertificate } from '../src/keys/root-certificate.js';
import { generateSigningKey } from '../src/keys/signer.js';
import type { MetadataFetcher, MetadataRequest } from '../src/notary/remote.js';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  flipSignatureBit,
} from '../src/testing/index.js';
import { compileAnchor } from '../src/verify/anchor.js';
import {
  DEFAULT_MAX_DELEGATION_CERTIFICATES,
  DEFAULT_MAX_DELEGATION_KEYS,
  type TrustedCollection,
} from '../src/verify/collection-verifier.js';
import {
  DEFAULT_DOWNLOAD_LIMITS,
  updateCollection,
  type DownloadLimits,
} from '../src/verify/updater.js';
import { newWorkMeter, type WorkMeter } from '../src/work.js';
import { rejectsWithTrustError } from './support/trust-errors.js';

const GUN = 'tenant.example.com/team/app';
const NOW = new Date('2026-11-22T12:00:00Z');
const MIB = 1 << 20;

type Signed = Record<string, JsonValue>;

/** A fetcher over `repo` that calls `onRequest` with each role asked for, before answering. */
function watchedFetcher(
  repo: FixtureRepository,
  onRequest: (role: string) => void = () => undefined,
): MetadataFetcher & { roles: string[] } {
  const inner = new MemoryFetcher(repo);
  const roles: string[] = [];
  return {
    roles,
    fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
      roles.push(request.role);
      onRequest(request.role);
      return inner.fetchMetadata(gun, request);
    },
  };
}

function verify(
  repo: FixtureRepository,
  options: {
    fetcher?: MetadataFetcher;
    work?: WorkMeter;
    limits?: Partial<DownloadLimits>;
    signal?: AbortSignal;
    invalidDelegations?: 'record';
  } = {},
): Promise<TrustedCollection> {
  return updateCollection(options.fetcher ?? new MemoryFetcher(repo), repo.gun, {
    anchor: compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }, repo.gun),
    now: NOW,
    ...(options.work ? { work: options.work } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.invalidDelegations ? { invalidDelegations: options.invalidDelegations } : {}),
  });
}

/** A targets override that lists `keys` in delegations.keys besides the role's own (delegated to by no role). */
function listingKeys(keys: readonly PublicKeyJson[]): (signed: Signed) => Signed {
  return (signed) => {
    const delegations = (signed['delegations'] ?? { keys: {}, roles: [] }) as {
      keys: Record<string, JsonValue>;
      roles: JsonValue[];
    };
    for (const key of keys) {
      const id = PublicKey.fromJson(key, { role: 'fixture', field: 'key' }).id;
      delegations.keys[id] = { keytype: key.keytype, keyval: { ...key.keyval } };
    }
    return { ...signed, delegations };
  };
}

/** A snapshot override that states `length` for each of `roles` (hashes untouched). */
function stating(roles: readonly string[], length: number): (signed: Signed) => Signed {
  return (signed) => {
    const meta = signed['meta'] as Record<string, { length: number }>;
    for (const role of roles) {
      const entry = meta[role];
      assert.ok(entry, `snapshot lists ${role}`);
      entry.length = length;
    }
    return signed;
  };
}

let junkKeys: PublicKeyJson[] = [];

before(() => {
  junkKeys = Array.from({ length: DEFAULT_MAX_DELEGATION_KEYS + 1 }, () =>
    PublicKey.fromKeyObject(generateSigningKey('ecdsa')).toJson(),
  );
});

describe('keys delegated to across one collection', () => {
  let repo: FixtureRepository;

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.addDelegation('targets/releases');
  });

  // targets lists its delegation's key and 200 more; targets/releases lists `more` keys of its own.
  const publishKeys = async (more: number): Promise<void> => {
    await repo.publish(['targets', 'targets/releases'], {
      targets: { signed: listingKeys(junkKeys.slice(0, 200)) },
      'targets/releases': { signed: listingKeys(junkKeys.slice(200, 200 + more)) },
    });
  };

  it(`accepts ${DEFAULT_MAX_DELEGATION_KEYS} distinct keys, and counts a key listed twice once`, async () => {
    await publishKeys(DEFAULT_MAX_DELEGATION_KEYS - 201);
    await verify(repo);
    // The same 200 keys again under targets/releases add nothing.
    await repo.publish(['targets', 'targets/releases'], {
      targets: { signed: listingKeys(junkKeys.slice(0, 200)) },
      'targets/releases': { signed: listingKeys(junkKeys.slice(0, 255)) },
    });
    await verify(repo);
  });

  it('refuses one more key than the cap, summed over roles, before importing that role’s keys', async () => {
    await publishKeys(DEFAULT_MAX_DELEGATION_KEYS - 201);
    const within = newWorkMeter();
    await verify(repo, { work: within });

    await publishKeys(DEFAULT_MAX_DELEGATION_KEYS - 200);
    const beyond = newWorkMeter();
    await rejectsWithTrustError(verify(repo, { work: beyond }), 'LIMIT_EXCEEDED', {
      role: 'targets/releases',
      what: 'delegation keys',
      limit: DEFAULT_MAX_DELEGATION_KEYS,
      actual: DEFAULT_MAX_DELEGATION_KEYS + 1,
    });
    // None of the keys targets/releases lists was imported.
    assert.equal(within.keysParsed - beyond.keysParsed, DEFAULT_MAX_DELEGATION_KEYS - 201);
  });

  it('takes the cap from DownloadLimits.delegationKeys', async () => {
    await rejectsWithTrustError(verify(repo, { limits: { delegationKeys: 0 } }), 'LIMIT_EXCEEDED', {
      role: 'targets',
      what: 'delegation keys',
      limit: 0,
      actual: 1,
    });
  });
});

describe('certificates of the keys delegated to across one collection', () => {
  const PER_KEY = 10;
  // Distinct ten-certificate x509 keys: key i bundles the pool's certificates by the digits of i.
  let bundles: PublicKeyJson[] = [];

  before(async () => {
    const pool: string[] = [];
    for (let i = 0; i < 8; i++) {
      pool.push(await createRootCertificate(`pool-${i}`, generateSigningKey('ecdsa')));
    }
    const count = Math.floor(DEFAULT_MAX_DELEGATION_CERTIFICATES / PER_KEY) + 1;
    bundles = Array.from({ length: count }, (_, i) => {
      const parts: string[] = [];
      for (let c = 0, n = i; c < PER_KEY; c++, n = Math.floor(n / pool.length)) {
        parts.push(pool[n % pool.length] as string);
      }
      return {
        keytype: 'ecdsa-x509',
        keyval: { public: Buffer.from(parts.join(''), 'utf8').toString('base64'), private: null },
      };
    });
  });

  it('refuses one key too many certificates, before importing any of that role’s keys', async () => {
    const repo = await FixtureRepository.create(GUN, NOW);
    await repo.addDelegation('targets/releases');
    const fit = Math.floor(DEFAULT_MAX_DELEGATION_CERTIFICATES / PER_KEY);
    await repo.publish(['targets'], { targets: { signed: listingKeys(bundles.slice(0, fit)) } });
    const within = newWorkMeter();
    await verify(repo, { work: within });

    await repo.publish(['targets'], {
      targets: { signed: listingKeys(bundles.slice(0, fit + 1)) },
    });
    const work = newWorkMeter();
    await rejectsWithTrustError(verify(repo, { work }), 'LIMIT_EXCEEDED', {
      role: 'targets',
      what: 'delegation certificates',
      limit: DEFAULT_MAX_DELEGATION_CERTIFICATES,
      actual: (fit + 1) * PER_KEY,
    });
    // Neither the bundles nor targets/releases' own key was imported.
    assert.equal(within.keysParsed - work.keysParsed, fit + 1);
  });
});

describe('a delegation short of its threshold', () => {
  let repo: FixtureRepository;

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.addDelegation('targets/releases');
    await repo.addDelegation('targets/releases/team');
  });

  it('imports none of the keys it delegates to', async () => {
    const listed = listingKeys(junkKeys.slice(0, 10));
    await repo.publish(['targets/releases'], { 'targets/releases': { signed: listed } });
    const valid = newWorkMeter();
    const trusted = await verify(repo, { work: valid, invalidDelegations: 'record' });
    assert.ok(trusted.targetsRoles.has('targets/releases/team'));

    await repo.publish(['targets/releases'], {
      'targets/releases': { signed: listed, bytes: (b) => flipSignatureBit(b) },
    });
    const invalid = newWorkMeter();
    const collection = await verify(repo, { work: invalid, invalidDelegations: 'record' });
    const error = collection.invalidRoles.get('targets/releases');
    assert.ok(isTrustError(error, 'SIGNATURE_THRESHOLD'), String(error));
    assert.deepEqual([...collection.invalidRoles.keys()].sort(), [
      'targets/releases',
      'targets/releases/team',
    ]);
    // Its own key and the 10 listed: 11 imports fewer.
    assert.equal(valid.keysParsed - invalid.keysParsed, 11);
  });

  it('is recorded invalid even when a key it lists could not be imported', async () => {
    const unusable = { keytype: 'ecdsa', keyval: { public: 'AAAA', private: null } };
    const listed = (signed: Signed): Signed => {
      const delegations = signed['delegations'] as { keys: Record<string, JsonValue> };
      delegations.keys['f'.repeat(64)] = unusable;
      return signed;
    };
    await repo.publish(['targets/releases'], { 'targets/releases': { signed: listed } });
    await rejectsWithTrustError(verify(repo, { invalidDelegations: 'record' }), 'KEY_INVALID');

    await repo.publish(['targets/releases'], {
      'targets/releases': { signed: listed, bytes: (b) => flipSignatureBit(b) },
    });
    const collection = await verify(repo, { invalidDelegations: 'record' });
    assert.ok(isTrustError(collection.invalidRoles.get('targets/releases'), 'SIGNATURE_THRESHOLD'));
  });
});

describe('bytes read in one update', () => {
  let repo: FixtureRepository;
  const children = ['targets/a', 'targets/b', 'targets/c', 'targets/d'];

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    for (const child of children) await repo.addDelegation(child);
  });

  const readBytes = (roles: readonly string[]): number =>
    ['timestamp', 'snapshot', 'targets', ...roles].reduce(
      (sum, role) => sum + repo.bytesOf(role).byteLength,
      0,
    );

  it('refuses delegations stated at the per-file cap before fetching any of them', async () => {
    await verify(repo);
    const stated = 20 * MIB;
    assert.ok(stated <= DEFAULT_DOWNLOAD_LIMITS.metadata);
    await repo.publish([], { snapshot: { signed: stating(children, stated) } });
    const fetcher = watchedFetcher(repo);
    await rejectsWithTrustError(verify(repo, { fetcher }), 'LIMIT_EXCEEDED', {
      role: 'targets/d',
      what: 'metadata bytes',
      limit: DEFAULT_DOWNLOAD_LIMITS.totalMetadataBytes,
      actual: readBytes([]) + 4 * stated,
    });
    assert.deepEqual(
      fetcher.roles.filter((role) => role.startsWith('targets/')),
      [],
      'no delegation was fetched',
    );
  });

  it('counts every role against DownloadLimits.totalMetadataBytes', async () => {
    const total = readBytes(children);
    await verify(repo, { limits: { totalMetadataBytes: total } });
    const m = fakeManifest('v2');
    await repo.signTag('v2', m.digestHex, m.length, 'targets/b');
    await rejectsWithTrustError(
      verify(repo, { limits: { totalMetadataBytes: total } }),
      'LIMIT_EXCEEDED',
      {
        what: 'metadata bytes',
        limit: total,
        // Reserved in the parent's order, the last child no longer fits.
        actual: readBytes(children),
        role: 'targets/d',
      },
    );
  });
});

describe('the caller’s deadline', () => {
  let repo: FixtureRepository;
  const deadline = new TrustError(
    'HTTP_UNREACHABLE',
    { url: GUN, problem: 'no answer within the deadline' },
    'deadline',
  );

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.addDelegation('targets/a');
    await repo.addDelegation('targets/b');
    await repo.addDelegation('targets/a/x');
  });

  it('stops an update whose signal has fired before it asks for anything', async () => {
    const controller = new AbortController();
    controller.abort(deadline);
    const fetcher = watchedFetcher(repo);
    await assert.rejects(
      verify(repo, { fetcher, signal: controller.signal }),
      (e) => e === deadline,
    );
    assert.deepEqual(fetcher.roles, []);
  });

  it('names an abort without a TrustError reason HTTP_UNREACHABLE', async () => {
    const controller = new AbortController();
    controller.abort();
    await rejectsWithTrustError(verify(repo, { signal: controller.signal }), 'HTTP_UNREACHABLE', {
      url: GUN,
      problem: 'the update was aborted',
    });
  });

  it('gives a timer its turn between roles, and stops there when it fires', async () => {
    // Every fetch resolves at once, so only a yield between roles lets a macrotask in: the abort
    // scheduled when targets/a is asked for must stop the walk before targets/a/x is fetched.
    const controller = new AbortController();
    const fetcher = watchedFetcher(repo, (role) => {
      if (role === 'targets/a') {
        setImmediate(() => {
          controller.abort(deadline);
        });
      }
    });
    await verify(repo, { fetcher: watchedFetcher(repo) });
    await assert.rejects(
      verify(repo, { fetcher, signal: controller.signal }),
      (e) => e === deadline,
    );
    assert.ok(fetcher.roles.includes('targets/a'));
    assert.ok(!fetcher.roles.includes('targets/a/x'), fetcher.roles.join(' '));
  });
});
