/**
 * The verification workflow against in-memory repositories: the happy path, then one corruption at
 * a time, each asserting the exact error code and facts.
 */
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';
import { isTrustError } from '../src/errors.js';
import { compileAnchor, type TrustAnchor } from '../src/verify/anchor.js';
import {
  resolveTarget,
  signersOf,
  targetsWithDigest,
  NOTARY_ROLE_ORDER,
} from '../src/verify/resolve.js';
import { updateCollection, type UpdateOptions } from '../src/verify/updater.js';
import {
  FixtureRepository,
  MemoryFetcher,
  fakeManifest,
  fixtureKey,
  flipSignatureBit,
  sha256Hex,
} from '../src/testing/index.js';
import type { TrustedCollection } from '../src/verify/collection-verifier.js';
import { rejectsWithTrustError } from './support/trust-errors.js';

const GUN = '127.0.0.1:5000/demo/app';
const NOW = new Date('2026-11-22T12:00:00Z');
const DAY = 24 * 3600 * 1000;

function pinned(repo: FixtureRepository): TrustAnchor {
  return { rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) };
}

async function verify(
  repo: FixtureRepository,
  options: Partial<Omit<UpdateOptions, 'anchor'>> & {
    anchor?: TrustAnchor;
    fetcher?: MemoryFetcher;
  } = {},
): Promise<TrustedCollection> {
  const fetcher = options.fetcher ?? new MemoryFetcher(repo);
  return updateCollection(fetcher, repo.gun, {
    anchor: compileAnchor(options.anchor ?? pinned(repo), repo.gun),
    now: options.now ?? NOW,
    ...(options.state ? { state: options.state } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
  });
}

describe('updateCollection', () => {
  let repo: FixtureRepository;
  const m = fakeManifest('v1');

  beforeEach(async () => {
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', m.digestHex, m.length);
  });

  it('verifies a chain pinned by root key id and resolves the tag', async () => {
    const c = await verify(repo);
    const t = resolveTarget(c, 'v1');
    assert.equal(t.sha256Hex, m.digestHex);
    assert.equal(t.length, m.length);
    assert.equal(t.role, 'targets');
    assert.deepEqual(c.floors, { root: 1, timestamp: 2, snapshot: 3, targets: 3 });
  });

  it('accepts a pin by canonical (bare key) id and by PEM certificate', async () => {
    const key = repo.rootKeys[0]?.publicKey;
    assert.ok(key?.certificate);
    assert.notEqual(key.canonicalId, key.id);
    await verify(repo, { anchor: { rootKeyIds: [key.canonicalId] } });
    await verify(repo, { anchor: { rootKeysPem: [key.certificate.toString()] } });
  });

  it('accepts a pin by PEM public key for bare ecdsa and ed25519 root keys', async () => {
    for (const type of ['ecdsa', 'ed25519'] as const) {
      const rootKey = await fixtureKey({ type });
      const bare = await FixtureRepository.create(GUN, NOW, { rootKeys: [rootKey] });
      const pem = createPublicKey(rootKey.privateKey)
        .export({ type: 'spki', format: 'pem' })
        .toString();
      await verify(bare, { anchor: { rootKeysPem: [pem] } });
      const other = createPublicKey((await fixtureKey({ type })).privateKey)
        .export({ type: 'spki', format: 'pem' })
        .toString();
      await rejectsWithTrustError(
        verify(bare, { anchor: { rootKeysPem: [other] } }),
        'ROOT_NOT_TRUSTED',
      );
    }
  });

  it('TOFU must be explicit', async () => {
    assert.throws(
      () => compileAnchor({}, GUN),
      (e: unknown) => isTrustError(e, 'ROOT_NOT_TRUSTED'),
    );
    await verify(repo, { anchor: { tofu: true } });
  });

  it('rejects a root not signed by a pinned key', async () => {
    const other = await fixtureKey();
    await rejectsWithTrustError(
      verify(repo, { anchor: { rootKeyIds: [other.publicKey.id] } }),
      'ROOT_NOT_TRUSTED',
      { gun: GUN },
    );
  });

  it('rejects a root certificate whose CN is not the GUN', async () => {
    const wrongCn = await fixtureKey({
      certificateFor: 'example.com/other',
      notBefore: new Date(NOW.getTime() - DAY),
    });
    const bad = await FixtureRepository.create(GUN, NOW, { rootKeys: [wrongCn] });
    await rejectsWithTrustError(verify(bad), 'CERTIFICATE_INVALID', {
      gun: GUN,
      keyId: wrongCn.publicKey.id,
    });
  });

  it('rejects a bad signature on targets', async () => {
    await repo.changeTargets('targets', {}, { bytes: (b) => flipSignatureBit(b) });
    await rejectsWithTrustError(verify(repo), 'SIGNATURE_THRESHOLD', {
      role: 'targets',
      found: 0,
      needed: 1,
    });
  });

  it('rejects a signature by a key the role does not list', async () => {
    const stranger = await fixtureKey();
    await repo.changeTargets('targets', {}, { signers: [stranger.signer] });
    await rejectsWithTrustError(verify(repo), 'SIGNATURE_THRESHOLD', {
      role: 'targets',
      found: 0,
      needed: 1,
    });
  });

  it('counts one key once towards a threshold, even signing twice', async () => {
    const [a] = await repo.addDelegation('targets/releases', {
      keys: [await fixtureKey(), await fixtureKey()],
      threshold: 2,
    });
    assert.ok(a);
    await repo.changeTargets('targets/releases', {}, { signers: [a.signer, a.signer] });
    await rejectsWithTrustError(verify(repo), 'SIGNATURE_THRESHOLD', {
      role: 'targets/releases',
      found: 1,
      needed: 2,
    });
  });

  it('counts a certificate and its bare key as one signer', async () => {
    const bare = await fixtureKey();
    const { localSigner } = await import('../src/keys/signer.js');
    const { PublicKey } = await import('../src/keys/public-key.js');
    const { createRootCertificate } = await import('../src/keys/root-certificate.js');
    const cert = PublicKey.fromCertificatePem(
      await createRootCertificate('targets/releases', bare.privateKey),
    );
    const certKey = {
      privateKey: bare.privateKey,
      publicKey: cert,
      signer: localSigner(bare.privateKey, cert),
    };
    await repo.addDelegation('targets/releases', { keys: [bare, certKey], threshold: 2 });
    await repo.changeTargets('targets/releases', {}, { signers: [bare.signer, certKey.signer] });
    await rejectsWithTrustError(verify(repo), 'SIGNATURE_THRESHOLD', {
      role: 'targets/releases',
      found: 1,
      needed: 2,
    });
  });

  it('rejects an expired timestamp', async () => {
    await rejectsWithTrustError(
      verify(repo, { now: new Date(NOW.getTime() + 15 * DAY) }),
      'EXPIRED',
      {
        role: 'timestamp',
      },
    );
  });

  it('rejects expired targets', async () => {
    await repo.changeTargets(
      'targets',
      {},
      { signed: (s) => ({ ...s, expires: '2026-11-01T00:00:00Z' }) },
    );
    await rejectsWithTrustError(verify(repo), 'EXPIRED', {
      role: 'targets',
      expires: '2026-11-01T00:00:00.000Z',
    });
  });

  it('rejects a timestamp rollback (freeze: an old, still-signed timestamp replayed)', async () => {
    const oldTimestamp = repo.bytesOf('timestamp');
    await repo.signTag('v2', fakeManifest('v2').digestHex, 600);
    const seen = await verify(repo);
    repo.files.set('timestamp.json', oldTimestamp);
    await rejectsWithTrustError(
      verify(repo, { state: { rootBytes: seen.rootBytes, floors: seen.floors } }),
      'VERSION_ROLLBACK',
      {
        role: 'timestamp',
        actual: 2,
        floor: 3,
      },
    );
  });

  it('rejects a targets rollback hidden behind a fresh timestamp', async () => {
    const seen = await verify(repo);
    await repo.changeTargets('targets', {}, { signed: (s) => ({ ...s, version: 2 }) });
    await rejectsWithTrustError(
      verify(repo, { state: { floors: seen.floors } }),
      'VERSION_ROLLBACK',
      {
        role: 'targets',
        actual: 2,
        floor: 3,
      },
    );
  });

  it('rejects a snapshot whose hash does not match the timestamp', async () => {
    const name = `snapshot.${sha256Hex(repo.bytesOf('snapshot'))}.json`;
    const bytes = Buffer.from(repo.bytesOf('snapshot'));
    const i = bytes.length - 3;
    bytes[i] = (bytes[i] ?? 0) ^ 0x01; // same length, different content
    repo.files.set(name, bytes);
    await rejectsWithTrustError(verify(repo), 'HASH_MISMATCH', {
      role: 'snapshot',
      algorithm: 'sha256',
    });
  });

  it('rejects targets shorter than the snapshot says', async () => {
    const name = `targets.${sha256Hex(repo.bytesOf('targets'))}.json`;
    repo.files.set(name, repo.bytesOf('targets').subarray(0, 100));
    await rejectsWithTrustError(verify(repo), 'LENGTH_MISMATCH', { role: 'targets', actual: 100 });
  });

  describe('snapshot and timestamp structure (notary IsValidSnapshotStructure, IsValidTimestampStructure)', () => {
    /** One edit of the `meta` object of the next snapshot or timestamp, signed as the server would. */
    function editMeta(
      role: 'snapshot' | 'timestamp',
      edit: (meta: Record<string, { hashes: Record<string, string> }>) => void,
    ): Promise<void> {
      return repo.publish([], {
        [role]: {
          signed: (s) => {
            edit(s['meta'] as Record<string, { hashes: Record<string, string> }>);
            return s;
          },
        },
      });
    }
    const short = Buffer.alloc(31, 7).toString('base64');

    it('rejects a snapshot without a root entry: META_MISSING', async () => {
      await editMeta('snapshot', (meta) => delete meta['root']);
      await rejectsWithTrustError(verify(repo), 'META_MISSING', {
        role: 'root',
        parent: 'snapshot',
      });
    });

    it('rejects a snapshot without a targets entry: META_MISSING', async () => {
      await editMeta('snapshot', (meta) => delete meta['targets']);
      await rejectsWithTrustError(verify(repo), 'META_MISSING', {
        role: 'targets',
        parent: 'snapshot',
      });
    });

    for (const entry of ['root', 'targets']) {
      it(`rejects a snapshot whose ${entry} entry has no sha256 (sha512 alone is not enough)`, async () => {
        await editMeta('snapshot', (meta) => delete meta[entry]?.hashes['sha256']);
        await rejectsWithTrustError(verify(repo), 'METADATA_MALFORMED', {
          role: 'snapshot',
          field: `signed.meta.${entry}.hashes.sha256`,
          problem: 'is missing',
        });
      });

      it(`rejects a snapshot whose ${entry} sha256 is not 32 bytes`, async () => {
        await editMeta('snapshot', (meta) => {
          const hashes = meta[entry]?.hashes ?? assert.fail();
          hashes['sha256'] = short;
        });
        await rejectsWithTrustError(verify(repo), 'METADATA_MALFORMED', {
          role: 'snapshot',
          field: `signed.meta.${entry}.hashes.sha256`,
          problem: 'is 31 bytes, not 32',
        });
      });
    }

    it('rejects a snapshot whose root sha512 is not 64 bytes', async () => {
      await editMeta('snapshot', (meta) => {
        const hashes = meta['root']?.hashes ?? assert.fail();
        hashes['sha512'] = short;
      });
      await rejectsWithTrustError(verify(repo), 'METADATA_MALFORMED', {
        role: 'snapshot',
        field: 'signed.meta.root.hashes.sha512',
        problem: 'is 31 bytes, not 64',
      });
    });

    it('rejects a timestamp without a snapshot entry: META_MISSING', async () => {
      await editMeta('timestamp', (meta) => delete meta['snapshot']);
      await rejectsWithTrustError(verify(repo), 'META_MISSING', {
        role: 'snapshot',
        parent: 'timestamp',
      });
    });

    it('rejects a timestamp whose snapshot entry has no sha256', async () => {
      await editMeta('timestamp', (meta) => delete meta['snapshot']?.hashes['sha256']);
      await rejectsWithTrustError(verify(repo), 'METADATA_MALFORMED', {
        role: 'timestamp',
        field: 'signed.meta.snapshot.hashes.sha256',
        problem: 'is missing',
      });
    });

    it('rejects a timestamp whose snapshot sha256 is not 32 bytes', async () => {
      await editMeta('timestamp', (meta) => {
        const hashes = meta['snapshot']?.hashes ?? assert.fail();
        hashes['sha256'] = short;
      });
      await rejectsWithTrustError(verify(repo), 'METADATA_MALFORMED', {
        role: 'timestamp',
        field: 'signed.meta.snapshot.hashes.sha256',
        problem: 'is 31 bytes, not 32',
      });
    });
  });

  it('stops a download larger than the parent states', async () => {
    const name = `targets.${sha256Hex(repo.bytesOf('targets'))}.json`;
    repo.files.set(name, Buffer.concat([repo.bytesOf('targets'), Buffer.from('  ')]));
    await rejectsWithTrustError(verify(repo), 'DOWNLOAD_TOO_LARGE', { role: 'targets' });
  });

  it('stops an oversized timestamp at the per-role limit', async () => {
    await rejectsWithTrustError(verify(repo, { limits: { timestamp: 64 } }), 'DOWNLOAD_TOO_LARGE', {
      role: 'timestamp',
      limit: 64,
    });
  });

  it('follows a root rotation from an old pin through <n>.root.json', async () => {
    const oldPin = pinned(repo);
    const next = await fixtureKey({
      certificateFor: GUN,
      notBefore: new Date(NOW.getTime() - DAY),
    });
    await repo.rotateRoot([next]);
    const c = await verify(repo, { anchor: oldPin });
    assert.equal(c.root.version, 2);
    assert.equal(resolveTarget(c, 'v1').sha256Hex, m.digestHex);
  });

  it('anchors a pin on a middle root key and walks forward from that version', async () => {
    const key = (): ReturnType<typeof fixtureKey> =>
      fixtureKey({ certificateFor: GUN, notBefore: new Date(NOW.getTime() - DAY) });
    const second = await key();
    await repo.rotateRoot([second]);
    await repo.rotateRoot([await key()]);
    const fetcher = new MemoryFetcher(repo);
    const c = await verify(repo, { anchor: { rootKeyIds: [second.publicKey.id] }, fetcher });
    assert.equal(c.root.version, 3);
    // The newest root is tried first, then 2.root.json anchors; version 1 is never needed.
    assert.deepEqual(
      fetcher.requests.filter((r) => r.includes('root')),
      [`${GUN}/root.json`, `${GUN}/2.root.json`],
    );
  });

  it('rejects a root older than one trusted before, even when the pin anchors it', async () => {
    const next = await fixtureKey({
      certificateFor: GUN,
      notBefore: new Date(NOW.getTime() - DAY),
    });
    const v1 = repo.bytesOf('root');
    const oldPin = pinned(repo);
    await repo.rotateRoot([next]);
    const seen = await verify(repo, { anchor: oldPin });
    repo.files.set('root.json', v1);
    await rejectsWithTrustError(
      verify(repo, { anchor: oldPin, state: { floors: seen.floors } }),
      'VERSION_ROLLBACK',
      {
        role: 'root',
        actual: 1,
        floor: 2,
      },
    );
  });

  it('rejects a rotated root that the old root did not sign', async () => {
    const oldPin = pinned(repo);
    const next = await fixtureKey({
      certificateFor: GUN,
      notBefore: new Date(NOW.getTime() - DAY),
    });
    await repo.rotateRoot([next], { signers: [next.signer] });
    await rejectsWithTrustError(verify(repo, { anchor: oldPin }), 'SIGNATURE_THRESHOLD', {
      role: 'root',
      found: 0,
      needed: 1,
    });
  });

  describe('a delegation listing names outside its paths (notary: paths apply at lookup only)', () => {
    // What `notary delegation remove … --all-paths` leaves behind: targets/releases still lists
    // what it signed when its paths allowed it. Go's builder loads the role; WalkTargets and
    // ListTargets never take a name from it that its paths exclude.
    const rel = fakeManifest('release');
    const stray = fakeManifest('stray');

    beforeEach(async () => {
      await repo.addDelegation('targets/releases', { paths: ['release-'] });
      await repo.signTag('release-1', rel.digestHex, rel.length, 'targets/releases');
      await repo.signTag('latest', stray.digestHex, stray.length, 'targets/releases');
      await repo.signTag('v1', stray.digestHex, stray.length, 'targets/releases');
    });

    it('loads the role and resolves the names inside its paths from it', async () => {
      const c = await verify(repo);
      assert.equal(c.targetsRoles.has('targets/releases'), true);
      assert.equal(resolveTarget(c, 'release-1').role, 'targets/releases');
      assert.equal(resolveTarget(c, 'release-1').sha256Hex, rel.digestHex);
    });

    it('never resolves a name outside them from it, in Docker or notary order', async () => {
      const c = await verify(repo);
      for (const order of [undefined, NOTARY_ROLE_ORDER]) {
        assert.throws(
          () => resolveTarget(c, 'latest', order),
          (e: unknown) => isTrustError(e, 'TARGET_NOT_FOUND'),
        );
        // v1 is also signed in targets: that signature answers, not the stray one.
        assert.equal(resolveTarget(c, 'v1', order).role, 'targets');
        assert.equal(resolveTarget(c, 'v1', order).sha256Hex, m.digestHex);
      }
    });

    it('counts it as no signer and finds no tag by digest in it for those names', async () => {
      const c = await verify(repo);
      assert.deepEqual(signersOf(c, 'latest'), []);
      assert.deepEqual(
        signersOf(c, 'v1').map((t) => t.role),
        ['targets'],
      );
      assert.deepEqual(targetsWithDigest(c, stray.digestHex), []);
      assert.deepEqual(
        [...(c.targetsRoles.get('targets/releases')?.metadata.targets.keys() ?? [])],
        ['release-1'],
      );
    });

    it("applies its ancestors' paths: a grandchild asking for more keeps only its parent's", async () => {
      await repo.addDelegation('targets/releases/ci', { paths: ['release-', 'nightly'] });
      await repo.signTag('release-2', rel.digestHex, rel.length, 'targets/releases/ci');
      await repo.signTag('nightly', stray.digestHex, stray.length, 'targets/releases/ci');
      const c = await verify(repo);
      assert.equal(resolveTarget(c, 'release-2').role, 'targets/releases/ci');
      assert.deepEqual(
        [...(c.targetsRoles.get('targets/releases/ci')?.metadata.targets.keys() ?? [])],
        ['release-2'],
      );
      assert.deepEqual(signersOf(c, 'nightly'), []);
    });

    it("keeps only the paths of a nested delegation that its parent's paths prefix (Go: RestrictDelegationPathPrefixes)", async () => {
      // targets/releases may sign release-*; its child asks for everything, rel* and
      // release-ci-*. Only "release-ci-" extends "release-", so notary keeps only it (and its CLI
      // refuses to add the others): release-2, which our per-ancestor check would have admitted
      // through "" or "rel", is never taken from the child.
      await repo.addDelegation('targets/releases/ci', { paths: ['', 'rel', 'release-ci-'] });
      await repo.signTag('release-2', rel.digestHex, rel.length, 'targets/releases/ci');
      await repo.signTag('release-ci-1', rel.digestHex, rel.length, 'targets/releases/ci');
      const c = await verify(repo);
      assert.equal(resolveTarget(c, 'release-ci-1').role, 'targets/releases/ci');
      assert.throws(
        () => resolveTarget(c, 'release-2'),
        (e: unknown) => isTrustError(e, 'TARGET_NOT_FOUND'),
      );
      assert.deepEqual(c.targetsRoles.get('targets/releases/ci')?.pathRestrictions.at(-1), [
        'release-ci-',
      ]);
    });

    it('drops every name when its paths are empty, and loads it all the same', async () => {
      // `notary delegation remove GUN targets/releases --all-paths`: keys and targets stay.
      repo.targets = {
        ...repo.targets,
        delegations: {
          ...repo.targets.delegations,
          roles: repo.targets.delegations.roles.map((d) => ({ ...d, paths: [] })),
        },
      };
      await repo.publish(['targets']);
      const c = await verify(repo);
      assert.equal(c.targetsRoles.get('targets/releases')?.metadata.targets.size, 0);
      assert.equal(resolveTarget(c, 'v1').role, 'targets');
      assert.throws(
        () => resolveTarget(c, 'release-1'),
        (e: unknown) => isTrustError(e, 'TARGET_NOT_FOUND'),
      );
    });
  });

  it('resolves targets/releases first for Docker and targets first for notary lookup', async () => {
    await repo.addDelegation('targets/releases');
    const rel = fakeManifest('release');
    await repo.signTag('v1', rel.digestHex, rel.length, 'targets/releases');
    const c = await verify(repo);
    assert.equal(resolveTarget(c, 'v1').role, 'targets/releases');
    assert.equal(resolveTarget(c, 'v1').sha256Hex, rel.digestHex);
    assert.equal(resolveTarget(c, 'v1', NOTARY_ROLE_ORDER).sha256Hex, m.digestHex);
    assert.deepEqual(
      signersOf(c, 'v1')
        .map((t) => t.role)
        .sort(),
      ['targets', 'targets/releases'],
    );
    assert.deepEqual(
      targetsWithDigest(c, rel.digestHex).map((t) => `${t.role}:${t.name}`),
      ['targets/releases:v1'],
    );
  });

  it('walks delegations breadth-first, as notary WalkTargets does', async () => {
    // targets → [targets/a, targets/b]; targets/a → [targets/a/x]. The tag is in targets/a/x and in
    // targets/b: Go queues a/x behind b, so b wins; a depth-first walk would pick a/x.
    await repo.addDelegation('targets/a');
    await repo.addDelegation('targets/b');
    await repo.addDelegation('targets/a/x');
    const deep = fakeManifest('deep');
    const wide = fakeManifest('wide');
    await repo.signTag('w', deep.digestHex, deep.length, 'targets/a/x');
    await repo.signTag('w', wide.digestHex, wide.length, 'targets/b');
    const c = await verify(repo);
    assert.equal(resolveTarget(c, 'w', NOTARY_ROLE_ORDER).role, 'targets/b');
    assert.equal(resolveTarget(c, 'w', NOTARY_ROLE_ORDER).sha256Hex, wide.digestHex);
    // Only in the grandchild: still found, one level further down.
    await repo.signTag('only-deep', deep.digestHex, deep.length, 'targets/a/x');
    assert.equal(resolveTarget(await verify(repo), 'only-deep').role, 'targets/a/x');
  });

  it('reports an unsigned tag', async () => {
    const c = await verify(repo);
    assert.throws(
      () => resolveTarget(c, 'nope'),
      (e: unknown) => isTrustError(e, 'TARGET_NOT_FOUND'),
    );
  });

  it('treats a declared but unpublished delegation as empty', async () => {
    await repo.addDelegation('targets/releases');
    repo.snapshot = {
      ...(repo.snapshot ?? assert.fail()),
      meta: new Map([...(repo.snapshot?.meta ?? [])].filter(([k]) => k !== 'targets/releases')),
    };
    await repo.publish([]);
    const c = await verify(repo);
    assert.equal(c.targetsRoles.has('targets/releases'), false);
    assert.equal(resolveTarget(c, 'v1').role, 'targets');
  });

  it('fetches each file once per update', async () => {
    const fetcher = new MemoryFetcher(repo);
    await verify(repo, { fetcher });
    assert.deepEqual(
      fetcher.requests.map((r) => r.replace(/[0-9a-f]{64}/, 'H')),
      [
        `${GUN}/root.json`,
        `${GUN}/timestamp.json`,
        `${GUN}/snapshot.H.json`,
        `${GUN}/targets.H.json`,
      ],
    );
  });
});
