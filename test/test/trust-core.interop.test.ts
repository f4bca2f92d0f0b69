/**
 * The trust core against the real notary stack, in both directions:
 * - repositories the `notary` CLI creates (plain, delegations, server-managed snapshot, rotated
 *   root, with notary-signer's ECDSA and the local service's ed25519 server keys) verify with
 *   updateCollection and resolve to exactly what `notary lookup` prints;
 * - metadata our core signs and publishes is accepted by notary-server and verified by a fresh
 *   `notary` CLI client — including target names that stress canonical JSON.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  NOTARY_ROLE_ORDER,
  DOCKER_ROLE_ORDER,
  NotaryHttpClient,
  PublicKey,
  compileAnchor,
  createRootCertificate,
  generateSigningKey,
  imageTarget,
  isTrustError,
  localSigner,
  newRoot,
  newTargets,
  nextSnapshot,
  resolveTarget,
  signRole,
  updateCollection,
  withDelegation,
  type TrustAnchor,
  type TrustedCollection,
} from '@kpack-trust/common';
import {
  addDelegation,
  addSigner,
  addTarget,
  createDelegationKey,
  importKey,
  initRepo,
  listTargets,
  lookup,
  rotateRoot,
  runNotary,
  startStack,
  type NotaryStack,
} from '../src/index.js';
import { createHash } from 'node:crypto';

/**
 * Target names that exercise every canonical-JSON rule notary can publish: HTML characters Go
 * escapes on the wire, quote and backslash, non-ASCII, and a pair whose order differs between
 * UTF-8 bytes (U+FF5E first) and UTF-16 code units (the astral character first).
 */
const AWKWARD_NAMES = [
  'v1',
  'html<b>&amp;',
  'quote"back\\slash',
  'ünïcødé-€',
  'sort-\u{1F600}',
  'sort-\uFF5E',
  "it's/a:path",
];

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

/** The root key ids the CLI's own cache lists for `gun`: an independent source for the pin. */
async function cliRootKeyIds(trustDir: string, gun: string): Promise<string[]> {
  const root = JSON.parse(
    await readFile(join(trustDir, 'tuf', gun, 'metadata', 'root.json'), 'utf8'),
  ) as {
    signed: { roles: { root: { keyids: string[] } } };
  };
  return root.signed.roles.root.keyids;
}

for (const trustService of ['remote', 'local'] as const) {
  describe(`trust core against notary-server (${trustService} trust service)`, () => {
    let stack: NotaryStack;
    let client: NotaryHttpClient;

    const verify = (gun: string, anchor: TrustAnchor): Promise<TrustedCollection> =>
      updateCollection(client, gun, { anchor: compileAnchor(anchor, gun), now: new Date() });

    before(async () => {
      stack = await startStack({ trustService, registry: false });
      client = new NotaryHttpClient({
        baseUrl: stack.notaryUrl,
        ca: stack.caPem,
        exclusiveCa: true,
      });
    });
    after(async () => {
      client.close();
      await stack.stop();
    });

    it('verifies a CLI-made repository and resolves every tag to what notary lookup prints', async () => {
      const gun = `example.com/${trustService}/plain`;
      const trustDir = await stack.tempDir('trust');
      await initRepo(stack, gun, trustDir);
      for (const [i, name] of AWKWARD_NAMES.entries()) {
        await addTarget(stack, gun, trustDir, name, 1000 + i, sha(name), { publish: false });
      }
      await runNotary(stack, ['publish', gun], { trustDir });
      const collection = await verify(gun, { rootKeyIds: await cliRootKeyIds(trustDir, gun) });
      assert.equal(collection.timestamp.meta.size, 1);
      for (const name of AWKWARD_NAMES) {
        const expected = await lookup(stack, gun, name, trustDir);
        const got = resolveTarget(collection, name, NOTARY_ROLE_ORDER);
        assert.equal(got.sha256Hex, expected.sha256Hex, name);
        assert.equal(got.length, expected.size, name);
      }
      // The server's timestamp key is of the kind its trust service makes.
      const tsKey = collection.root.keys.get(collection.root.roles.timestamp.keyIds[0] ?? '');
      assert.equal(tsKey?.type, trustService === 'remote' ? 'ecdsa' : 'ed25519');
    });

    it('verifies a repository with a server-managed snapshot', async () => {
      const gun = `example.com/${trustService}/server-snapshot`;
      const trustDir = await stack.tempDir('trust');
      await initRepo(stack, gun, trustDir, { serverSnapshot: true });
      await addTarget(stack, gun, trustDir, 'latest', 512, sha('latest'));
      const c = await verify(gun, { rootKeyIds: await cliRootKeyIds(trustDir, gun) });
      const snapshotKey = c.root.keys.get(c.root.roles.snapshot.keyIds[0] ?? '');
      assert.equal(snapshotKey?.type, trustService === 'remote' ? 'ecdsa' : 'ed25519');
      assert.equal(
        resolveTarget(c, 'latest').sha256Hex,
        (await lookup(stack, gun, 'latest', trustDir)).sha256Hex,
      );
    });

    it('resolves targets/releases first as Docker does, targets first and a signer-only tag as notary lookup does', async () => {
      const gun = `example.com/${trustService}/delegated`;
      const trustDir = await stack.tempDir('trust');
      await initRepo(stack, gun, trustDir);
      const signer = await createDelegationKey(await stack.tempDir('keys'), 'ci');
      await addSigner(stack, gun, trustDir, signer);
      await addTarget(stack, gun, trustDir, 'v1', 700, sha('in-targets'));
      await addTarget(stack, gun, trustDir, 'v1', 701, sha('in-releases'), {
        roles: ['targets/releases'],
      });
      await addTarget(stack, gun, trustDir, 'ci-only', 702, sha('ci'), { roles: ['targets/ci'] });
      const c = await verify(gun, { rootKeyIds: await cliRootKeyIds(trustDir, gun) });
      assert.deepEqual([...c.targetsRoles.keys()].sort(), [
        'targets',
        'targets/ci',
        'targets/releases',
      ]);

      const notaryView = await lookup(stack, gun, 'v1', trustDir);
      assert.equal(resolveTarget(c, 'v1', NOTARY_ROLE_ORDER).sha256Hex, notaryView.sha256Hex);
      assert.equal(notaryView.sha256Hex, sha('in-targets'));
      const dockerView = resolveTarget(c, 'v1', DOCKER_ROLE_ORDER);
      assert.equal(dockerView.role, 'targets/releases');
      assert.equal(dockerView.sha256Hex, sha('in-releases'));
      assert.equal(
        resolveTarget(c, 'ci-only').sha256Hex,
        (await lookup(stack, gun, 'ci-only', trustDir)).sha256Hex,
      );
    });

    it('walks nested delegations breadth-first, picking the role notary lookup picks', async () => {
      // targets → [targets/a, targets/b], targets/a → [targets/a/x]; the tag is in a/x and in b.
      // notary's WalkTargets queues a/x behind b, so `notary lookup` prints b's digest.
      const gun = `example.com/${trustService}/nested`;
      const trustDir = await stack.tempDir('trust');
      await initRepo(stack, gun, trustDir);
      const key = await createDelegationKey(await stack.tempDir('keys'), 'nested');
      await importKey(stack, trustDir, key.keyFile, 'targets/a');
      for (const role of ['targets/a', 'targets/b', 'targets/a/x']) {
        await addDelegation(stack, gun, trustDir, role, [key.certFile], { publish: false });
      }
      await runNotary(stack, ['publish', gun], { trustDir });
      await addTarget(stack, gun, trustDir, 'w', 801, sha('deep'), {
        roles: ['targets/a/x'],
        publish: false,
      });
      await addTarget(stack, gun, trustDir, 'w', 802, sha('wide'), { roles: ['targets/b'] });
      const c = await verify(gun, { rootKeyIds: await cliRootKeyIds(trustDir, gun) });
      const notaryView = await lookup(stack, gun, 'w', trustDir);
      assert.equal(notaryView.sha256Hex, sha('wide'));
      const ours = resolveTarget(c, 'w', NOTARY_ROLE_ORDER);
      assert.equal(ours.role, 'targets/b');
      assert.equal(ours.sha256Hex, notaryView.sha256Hex);
    });

    it('loads a delegation whose paths the CLI narrowed, never resolving what it signed outside them', async () => {
      // `notary delegation remove --all-paths` then `add --paths prod/` leaves targets/releases
      // listing v1, signed while its paths allowed it. notary ignores v1 there (paths apply at
      // lookup) and still serves every other tag; so must we.
      const gun = `example.com/${trustService}/narrowed`;
      const trustDir = await stack.tempDir('trust');
      await initRepo(stack, gun, trustDir);
      const key = await createDelegationKey(await stack.tempDir('keys'), 'rel');
      await importKey(stack, trustDir, key.keyFile, 'targets/releases');
      await addDelegation(stack, gun, trustDir, 'targets/releases', [key.certFile]);
      await addTarget(stack, gun, trustDir, 'v1', 900, sha('stray'), {
        roles: ['targets/releases'],
      });
      await addTarget(stack, gun, trustDir, 'v2', 901, sha('kept'));
      const cli = { trustDir };
      await runNotary(stack, ['delegation', 'remove', gun, 'targets/releases', '--all-paths'], cli);
      await runNotary(stack, ['publish', gun], cli);
      await runNotary(
        stack,
        ['delegation', 'add', gun, 'targets/releases', '--paths', 'prod/'],
        cli,
      );
      await runNotary(stack, ['publish', gun], cli);
      await addTarget(stack, gun, trustDir, 'prod/app', 902, sha('prod'), {
        roles: ['targets/releases'],
      });

      const c = await verify(gun, { rootKeyIds: await cliRootKeyIds(trustDir, gun) });
      // The scenario holds: the role's signed bytes still list v1 …
      const raw = JSON.parse(
        await readFile(join(trustDir, 'tuf', gun, 'metadata', 'targets', 'releases.json'), 'utf8'),
      ) as { signed: { targets: Record<string, unknown> } };
      assert.ok('v1' in raw.signed.targets);
      // … and neither notary nor we take it from there.
      const listed = await listTargets(stack, gun, trustDir);
      assert.deepEqual(listed.map((t) => t.tag).sort(), ['prod/app', 'v2']);
      for (const order of [DOCKER_ROLE_ORDER, NOTARY_ROLE_ORDER]) {
        assert.throws(
          () => resolveTarget(c, 'v1', order),
          (e: unknown) => isTrustError(e, 'TARGET_NOT_FOUND'),
        );
      }
      for (const tag of ['v2', 'prod/app']) {
        const notaryView = await lookup(stack, gun, tag, trustDir);
        const ours = resolveTarget(c, tag, DOCKER_ROLE_ORDER);
        assert.equal(ours.sha256Hex, notaryView.sha256Hex, tag);
        assert.equal(ours.role, notaryView.role, tag);
      }
    });

    it('follows a CLI root rotation from a pin on the old root key', async () => {
      const gun = `example.com/${trustService}/rotated`;
      const trustDir = await stack.tempDir('trust');
      await initRepo(stack, gun, trustDir);
      await addTarget(stack, gun, trustDir, 'v1', 800, sha('rotated'));
      const oldPin = await cliRootKeyIds(trustDir, gun);
      const { after: version } = await rotateRoot(stack, gun, trustDir);
      const newPin = await cliRootKeyIds(trustDir, gun);
      assert.notDeepEqual(newPin, oldPin);
      const viaOld = await verify(gun, { rootKeyIds: oldPin });
      assert.equal(viaOld.root.version, version);
      const viaNew = await verify(gun, { rootKeyIds: newPin });
      assert.equal(resolveTarget(viaNew, 'v1').sha256Hex, sha('rotated'));
      await assert.rejects(verify(gun, { rootKeyIds: [sha('not a key')] }), (e: unknown) =>
        isTrustError(e, 'ROOT_NOT_TRUSTED'),
      );
    });

    it('publishes metadata signed by our core that a fresh notary CLI verifies', async () => {
      const gun = `example.com/${trustService}/ours`;
      const now = new Date();
      const rootKey = generateSigningKey();
      const rootPub = PublicKey.fromCertificatePem(await createRootCertificate(gun, rootKey));
      const targetsKey = generateSigningKey();
      const snapshotKey = generateSigningKey();
      const releasesKey = generateSigningKey();
      const timestampPub = PublicKey.fromJson(await client.fetchServerKey(gun, 'timestamp'), {
        role: 'timestamp',
        field: 'timestamp.key',
      });
      const root = newRoot(
        {
          root: [rootPub],
          targets: [PublicKey.fromKeyObject(targetsKey)],
          snapshot: [PublicKey.fromKeyObject(snapshotKey)],
          timestamp: [timestampPub],
        },
        now,
      );
      const names = new Map(AWKWARD_NAMES.map((n, i) => [n, imageTarget(sha(n), 2000 + i)]));
      const targets = withDelegation(
        { ...newTargets(now), targets: names },
        { name: 'targets/releases', keys: [PublicKey.fromKeyObject(releasesKey)] },
      );
      const releases = {
        ...newTargets(now, 1),
        targets: new Map([['release-1', imageTarget(sha('r1'), 42)]]),
      };
      const files = new Map<string, Buffer>([
        ['root', await signRole(root, [localSigner(rootKey, rootPub)])],
        ['targets', await signRole(targets, [localSigner(targetsKey)])],
        ['targets/releases', await signRole(releases, [localSigner(releasesKey)])],
      ]);
      files.set(
        'snapshot',
        await signRole(nextSnapshot(undefined, files, now), [localSigner(snapshotKey)]),
      );
      await client.publish(
        gun,
        [...files].map(([role, bytes]) => ({ role, bytes })),
      );

      // A fresh CLI trust dir: the CLI downloads and verifies everything we signed.
      const trustDir = await stack.tempDir('fresh');
      const listed = await listTargets(stack, gun, trustDir);
      for (const [i, name] of AWKWARD_NAMES.entries()) {
        const row = listed.find((r) => r.tag === name);
        assert.ok(row, `notary list shows ${name}`);
        assert.equal(row.sha256Hex, sha(name));
        assert.equal(row.size, 2000 + i);
      }
      const release = await lookup(stack, gun, 'release-1', trustDir);
      assert.equal(release.sha256Hex, sha('r1'));
      assert.equal(release.role, 'targets/releases');
      // …and the CLI pinned the root key we made.
      assert.deepEqual(await cliRootKeyIds(trustDir, gun), [rootPub.id]);
      // Our own verifier agrees, pinned on the same key.
      const c = await verify(gun, { rootKeyIds: [rootPub.id] });
      assert.equal(resolveTarget(c, 'release-1').role, 'targets/releases');
    });
  });
}
