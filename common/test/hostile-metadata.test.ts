/**
 * Issue 11, trust core: metadata an attacker-run notary server serves may ask for any amount of
 * work before anything in it is trusted, and a server holding the snapshot key may hide a
 * delegation. Each test builds the hostile input, asserts the exact error code, and — through a
 * WorkMeter, which counts where timing would only guess — that the work stayed bounded.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { canonicalString, goHtmlEscape, parseJson, type JsonValue } from '../src/canonical/json.js';
import { isTrustError } from '../src/errors.js';
import { PublicKey } from '../src/keys/public-key.js';
import { localSigner } from '../src/keys/signer.js';
import { MAX_SIGNATURES } from '../src/metadata/envelope.js';
import { MAX_ROOT_KEYS } from '../src/metadata/models.js';
import type { MetadataFetcher, MetadataRequest } from '../src/notary/remote.js';
import { TrustError } from '../src/errors.js';
import {
  FixtureRepository,
  MemoryFetcher,
  buildHostileRoot,
  caIssuedRootCertificate,
  fakeManifest,
  fixtureKey,
  flipSignatureBit,
  type FixtureKey,
  type HostileRoot,
} from '../src/testing/index.js';
import {
  MAX_CHAIN_SIGNATURE_CHECKS,
  compileAnchor,
  type TrustAnchor,
} from '../src/verify/anchor.js';
import type { TrustedCollection } from '../src/verify/collection-verifier.js';
import { resolveTarget, signersOf, targetsWithDigest } from '../src/verify/resolve.js';
import {
  DEFAULT_DOWNLOAD_LIMITS,
  MAX_ROOT_SEARCH_SIGNATURE_CHECKS,
  updateCollection,
  type TrustState,
} from '../src/verify/updater.js';
import { newWorkMeter, type WorkMeter } from '../src/work.js';
import { rejectsWithTrustError } from './support/trust-errors.js';

const GUN = 'evil.example.com/team/app';
const NOW = new Date('2026-11-22T12:00:00Z');
const DAY = 24 * 3600 * 1000;
const MIB = 1 << 20;

/** Serves a hostile root's files the way notary-server names them. */
function hostileFetcher(hostile: HostileRoot): MetadataFetcher & { requests: string[] } {
  const requests: string[] = [];
  return {
    requests,
    fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
      const file =
        request.version === undefined ? `${request.role}.json` : `${request.version}.root.json`;
      requests.push(file);
      const url = `memory://${gun}/${file}`;
      const bytes = gun === hostile.gun ? hostile.files.get(file) : undefined;
      if (bytes === undefined) {
        return Promise.reject(
          new TrustError('HTTP_STATUS', { url, status: 404, serverCode: 'NOT_FOUND' }, url),
        );
      }
      if (bytes.byteLength > request.maxBytes) {
        return Promise.reject(
          new TrustError(
            'DOWNLOAD_TOO_LARGE',
            { role: request.role, limit: request.maxBytes, url },
            url,
          ),
        );
      }
      return Promise.resolve(bytes);
    },
  };
}

function decide(
  hostile: HostileRoot,
  work: WorkMeter,
  anchor: TrustAnchor = { caPem: [hostile.pinnedCaPem] },
): Promise<TrustedCollection> {
  return updateCollection(hostileFetcher(hostile), hostile.gun, {
    anchor: compileAnchor(anchor, hostile.gun),
    now: NOW,
    work,
  });
}

describe('a hostile root.json is decided with bounded work', () => {
  it('refuses the 1 MiB root of issue 11 (junk CAs, junk keys, version 1000) before parsing a key', async () => {
    const hostile = buildHostileRoot({ gun: GUN, now: NOW, olderVersions: 2 });
    const rootBytes = hostile.files.get('root.json')?.byteLength ?? 0;
    assert.ok(rootBytes > MIB - 64 * 1024 && rootBytes <= MIB, `root.json is ${rootBytes} bytes`);
    const work = newWorkMeter();
    await rejectsWithTrustError(decide(hostile, work), 'LIMIT_EXCEEDED', {
      role: 'root',
      what: 'keys',
      limit: MAX_ROOT_KEYS,
    });
    assert.deepEqual(work, {
      metadataSignatureChecks: 0,
      certificateSignatureChecks: 0,
      keysParsed: 0,
      rootsRead: 1,
    });
  });

  it('refuses a 1 MiB root within every cap, searching back through a bounded number of older roots', async () => {
    // 60 root certificates (under the 64-key cap), padded to 1 MiB, version 1000 with 64 older
    // versions served, each signed by the one before: only the pin can refuse it.
    const hostile = buildHostileRoot({
      gun: GUN,
      now: NOW,
      rootKeys: 60,
      junkCas: 0,
      junkKeys: 0,
      olderVersions: 64,
    });
    const work = newWorkMeter();
    await rejectsWithTrustError(decide(hostile, work), 'ROOT_NOT_TRUSTED', { gun: GUN });
    const rootBytes = hostile.files.get('root.json')?.byteLength ?? MIB;
    // root.json, then older roots until the search's byte budget is spent.
    assert.ok(
      work.rootsRead <= 1 + Math.ceil(DEFAULT_DOWNLOAD_LIMITS.rootSearchBytes / rootBytes),
      `read ${work.rootsRead} roots`,
    );
    assert.ok(work.rootsRead > 1, 'the search back ran');
    assert.ok(work.certificateSignatureChecks <= MAX_CHAIN_SIGNATURE_CHECKS);
    assert.ok(work.metadataSignatureChecks <= 1 + MAX_ROOT_SEARCH_SIGNATURE_CHECKS);
    // Each root key is parsed for the pin once, then only the signers of each successor again.
    assert.ok(work.keysParsed <= 2 * 60 + work.rootsRead * 2, `parsed ${work.keysParsed} keys`);
  });

  it('stops a CA chain search after Go’s 100 signature checks', async () => {
    // Ten root certificates, each issued through nine junk CAs that carry the pinned CA's name;
    // each junk CA is found only after every earlier one in the bundle was tried.
    const hostile = buildHostileRoot({
      gun: GUN,
      now: NOW,
      bytes: 0,
      rootKeys: 10,
      junkCas: 9,
      junkKeys: 0,
      olderVersions: 0,
    });
    const work = newWorkMeter();
    await rejectsWithTrustError(decide(hostile, work), 'LIMIT_EXCEEDED', {
      role: 'root',
      what: 'certificate chain signature checks',
      limit: MAX_CHAIN_SIGNATURE_CHECKS,
    });
    assert.ok(work.certificateSignatureChecks <= MAX_CHAIN_SIGNATURE_CHECKS);
  });

  it('refuses a root with more keys than the cap', async () => {
    const hostile = buildHostileRoot({
      gun: GUN,
      now: NOW,
      bytes: 0,
      junkCas: 0,
      junkKeys: MAX_ROOT_KEYS,
      olderVersions: 0,
    });
    const work = newWorkMeter();
    await rejectsWithTrustError(decide(hostile, work), 'LIMIT_EXCEEDED', {
      what: 'keys',
      limit: MAX_ROOT_KEYS,
      actual: MAX_ROOT_KEYS + 1,
    });
    assert.equal(work.keysParsed, 0);
  });

  it('refuses a root key bundling more than ten certificates', async () => {
    const hostile = buildHostileRoot({
      gun: GUN,
      now: NOW,
      bytes: 0,
      junkCas: 10,
      junkKeys: 0,
      olderVersions: 0,
    });
    await rejectsWithTrustError(decide(hostile, newWorkMeter()), 'KEY_INVALID', {
      problem: 'bundles 11 certificates, more than the 10 accepted',
    });
  });

  it('parses no key outside the root role of a root no pin anchors', async () => {
    const hostile = buildHostileRoot({
      gun: GUN,
      now: NOW,
      bytes: 0,
      junkCas: 0,
      junkKeys: 40,
      olderVersions: 0,
    });
    const work = newWorkMeter();
    await rejectsWithTrustError(decide(hostile, work), 'ROOT_NOT_TRUSTED');
    // The one root key, for the pin and again (memoised) for its own signature before the search
    // back; none of the 40 others.
    assert.equal(work.keysParsed, 2);
  });
});

describe('anchoring through a pinned CA', () => {
  it('accepts a root certificate issued through bundled intermediates, in any order', async () => {
    const issued = caIssuedRootCertificate(GUN, NOW, 3);
    const publicKey = PublicKey.fromCertificatePem(issued.bundlePem);
    const rootKey: FixtureKey = {
      privateKey: issued.privateKey,
      publicKey,
      signer: localSigner(issued.privateKey, publicKey),
    };
    const repo = await FixtureRepository.create(GUN, NOW, { rootKeys: [rootKey] });
    const work = newWorkMeter();
    const collection = await updateCollection(new MemoryFetcher(repo), GUN, {
      anchor: compileAnchor({ caPem: [issued.caPem] }, GUN),
      now: NOW,
      work,
    });
    assert.equal(collection.root.version, 1);
    // leaf → intermediate 3 → 2 → 1 → CA: one check per link.
    assert.equal(work.certificateSignatureChecks, 4);
  });
});

describe('the search back for a pinned root', () => {
  let repo: FixtureRepository;
  let pin: TrustAnchor;

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    pin = { rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) };
    await repo.rotateRoot([await rootKeyFor(GUN)]);
  });

  it('stops at an older root that did not sign its successor', async () => {
    // Version 3 is signed only by a key of its own: version 2's keys never signed it.
    const stranger = await rootKeyFor(GUN);
    await repo.rotateRoot([stranger], { signers: [stranger.signer] });
    const fetcher = new MemoryFetcher(repo);
    const work = newWorkMeter();
    await rejectsWithTrustError(
      updateCollection(fetcher, GUN, { anchor: compileAnchor(pin, GUN), now: NOW, work }),
      'ROOT_NOT_TRUSTED',
    );
    assert.deepEqual(
      fetcher.requests.filter((r) => r.includes('root')),
      [`${GUN}/root.json`, `${GUN}/2.root.json`],
    );
  });

  it('does not search back when the latest root is not signed by its own keys', async () => {
    const next = await rootKeyFor(GUN);
    const previous = repo.rootKeys;
    await repo.rotateRoot([next], {
      signers: [...previous, next].map((k) => k.signer),
      bytes: (b) => flipSignatureBit(b, 1),
    });
    const fetcher = new MemoryFetcher(repo);
    await rejectsWithTrustError(
      updateCollection(fetcher, GUN, { anchor: compileAnchor(pin, GUN), now: NOW }),
      'ROOT_NOT_TRUSTED',
    );
    assert.deepEqual(
      fetcher.requests.filter((r) => r.includes('root')),
      [`${GUN}/root.json`],
    );
  });

  it('still walks forward from a pin made before rotations', async () => {
    await repo.rotateRoot([await rootKeyFor(GUN)]);
    const collection = await updateCollection(new MemoryFetcher(repo), GUN, {
      anchor: compileAnchor(pin, GUN),
      now: NOW,
    });
    assert.equal(collection.root.version, 3);
  });
});

describe('signature lists', () => {
  let repo: FixtureRepository;
  const m = fakeManifest('v1');

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', m.digestHex, m.length);
  });

  it('tries each authorised key once, however many signatures name it', async () => {
    await repo.publish(['targets'], { targets: { bytes: (b) => repeatSignature(b, 50, true) } });
    const work = newWorkMeter();
    await rejectsWithTrustError(verify(repo, { work }), 'SIGNATURE_THRESHOLD', {
      role: 'targets',
      found: 0,
      needed: 1,
    });
    // root, timestamp, snapshot, then one try for targets' key.
    assert.equal(work.metadataSignatureChecks, 4);
  });

  it(`refuses more than ${MAX_SIGNATURES} signatures on one envelope`, async () => {
    await repo.publish(['targets'], {
      targets: { bytes: (b) => repeatSignature(b, MAX_SIGNATURES + 1, false) },
    });
    await rejectsWithTrustError(verify(repo), 'LIMIT_EXCEEDED', {
      role: 'targets',
      what: 'signatures',
      limit: MAX_SIGNATURES,
      actual: MAX_SIGNATURES + 1,
    });
  });
});

describe('a delegation may not vanish from the snapshot (TUF 5.5.5)', () => {
  let repo: FixtureRepository;
  let trusted: TrustState;
  const old = fakeManifest('old');
  const released = fakeManifest('released');

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', old.digestHex, old.length);
    await repo.addDelegation('targets/releases');
    await repo.signTag('v1', released.digestHex, released.length, 'targets/releases');
    const first = await verify(repo);
    assert.equal(resolveTarget(first, 'v1').sha256Hex, released.digestHex);
    trusted = { rootBytes: first.rootBytes, floors: first.floors };
  });

  it('refuses a newer snapshot that drops a delegation trusted before', async () => {
    // Whoever holds the snapshot and timestamp keys (notary-server, by default) re-signs both
    // without targets/releases, so that v1 would resolve from targets.
    await repo.publish([], { snapshot: { signed: dropMeta('targets/releases') } });
    await rejectsWithTrustError(verify(repo, { state: trusted }), 'VERSION_ROLLBACK', {
      role: 'targets/releases',
      actual: 0,
      floor: trusted.floors?.['targets/releases'] ?? -1,
    });
  });

  it('accepts a delegation its parent removed', async () => {
    await repo.publish(['targets'], {
      targets: {
        signed: (s) => {
          const delegations = s['delegations'] as { keys: object; roles: unknown[] };
          delegations.keys = {};
          delegations.roles = [];
          return { ...s, version: (s['version'] as number) + 1 };
        },
      },
      snapshot: { signed: dropMeta('targets/releases') },
    });
    const collection = await verify(repo, { state: trusted });
    assert.equal(resolveTarget(collection, 'v1').sha256Hex, old.digestHex);
  });
});

describe('a found tag without a sha256', () => {
  let repo: FixtureRepository;
  const m = fakeManifest('v1');

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', m.digestHex, m.length);
    await repo.addDelegation('targets/releases');
  });

  it('stops resolution at the role that signs it, not at the next role', async () => {
    await repo.changeTargets('targets/releases', {
      set: new Map([['v1', { length: m.length, hashes: { sha512: Buffer.alloc(64, 7) } }]]),
    });
    const collection = await verify(repo);
    assert.throws(
      () => resolveTarget(collection, 'v1'),
      (err: unknown) =>
        isTrustError(err, 'TARGET_INVALID') &&
        err.facts.role === 'targets/releases' &&
        err.facts.target === 'v1',
    );
    assert.deepEqual(
      signersOf(collection, 'v1').map((t) => t.role),
      ['targets'],
    );
  });

  it('refuses a sha256 that is not 32 bytes', async () => {
    await repo.changeTargets('targets/releases', {
      set: new Map([['v1', { length: m.length, hashes: { sha256: Buffer.alloc(16, 7) } }]]),
    });
    const collection = await verify(repo);
    assert.throws(
      () => resolveTarget(collection, 'v1'),
      (err: unknown) =>
        isTrustError(err, 'TARGET_INVALID') &&
        err.facts.problem === 'its sha256 is 16 bytes, not 32',
    );
    assert.deepEqual(targetsWithDigest(collection, Buffer.alloc(16, 7).toString('hex')), []);
  });
});

async function rootKeyFor(gun: string): Promise<FixtureKey> {
  return fixtureKey({ certificateFor: gun, notBefore: new Date(NOW.getTime() - DAY) });
}

function verify(
  repo: FixtureRepository,
  options: { state?: TrustState; work?: WorkMeter } = {},
): Promise<TrustedCollection> {
  return updateCollection(new MemoryFetcher(repo), repo.gun, {
    anchor: compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }, repo.gun),
    now: NOW,
    ...(options.state ? { state: options.state } : {}),
    ...(options.work ? { work: options.work } : {}),
  });
}

/** A snapshot override that leaves `role` out of the snapshot's meta. */
function dropMeta(role: string): (signed: Record<string, JsonValue>) => Record<string, JsonValue> {
  return (signed) => {
    const meta = Object.fromEntries(
      Object.entries(signed['meta'] as Record<string, JsonValue>).filter(([name]) => name !== role),
    );
    return { ...signed, meta };
  };
}

/** The envelope with its first signature listed `count` times, each (if `corrupt`) invalid. */
function repeatSignature(bytes: Buffer, count: number, corrupt: boolean): Buffer {
  const source = corrupt ? flipSignatureBit(bytes) : bytes;
  const envelope = parseJson(source, 'fixture') as {
    signed: JsonValue;
    signatures: JsonValue[];
  };
  const [first] = envelope.signatures;
  const signatures = Array.from({ length: count }, () => first);
  return Buffer.from(
    goHtmlEscape(
      `{"signed":${canonicalString(envelope.signed)},"signatures":${JSON.stringify(signatures)}}`,
    ),
  );
}
