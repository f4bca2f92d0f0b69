/**
 * An expired delegation on the real stack: the real `notary` CLI and our verifier engine agree
 * that it denies only what depends on it, and disagree exactly where we are deliberately stricter.
 *
 * notary-server refuses to store a role that has already expired (see signer-renewal.e2e), so a
 * delegation made by the CLI is re-published with our trust core expiring a few seconds ahead, and
 * the test waits for it to pass. Two repositories, one wait:
 * - `targets/alice` expired (a `docker trust signer add alice` nobody signs with any more): a tag
 *   of `targets` is admitted by both; a tag only alice signed is refused by both.
 * - `targets/releases` expired: `notary lookup` (targets first) still finds a tag of `targets`, and
 *   so does our notary-order resolution; Go's Docker-order lookup would silently fall back from the
 *   expired `targets/releases` to `targets` too, but our engine denies with the expired role named.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import {
  NOTARY_ROLE_ORDER,
  NotaryHttpClient,
  PublicKey,
  compileAnchor,
  localSigner,
  parseEnvelope,
  parseRoot,
  parseTargets,
  resolveTarget,
  signRole,
  updateCollection,
} from '@kpack-trust/common';
import { ImagePolicyEngine, loadConfig, type ImageDecision } from '@kpack-trust/verifier';
import {
  addDelegation,
  addSigner,
  addTarget,
  createDelegationKey,
  importKey,
  initRepo,
  notaryCli,
  pushImage,
  startStack,
  type CliResult,
  type DelegationKey,
  type NotaryStack,
  type PushedImage,
  writeVerifierConfig,
} from '../src/index.js';

/** How far ahead the soon-to-expire role expires: long enough to be accepted, short to wait out. */
const EXPIRES_IN_MS = 5_000;

function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

/** A role's signer as the delegation lists it: the CLI's x509 key over the key file's private key. */
async function delegationSigner(
  key: DelegationKey,
): Promise<{ privateKey: KeyObject; publicKey: PublicKey }> {
  return {
    privateKey: createPrivateKey(await readFile(key.keyFile)),
    publicKey: PublicKey.fromCertificatePem(await readFile(key.certFile, 'utf8')),
  };
}

/** Re-publishes the current `role` unchanged at version + 1, expiring at `expires` (our trust core). */
async function republishExpiring(
  client: NotaryHttpClient,
  gun: string,
  role: string,
  signer: { privateKey: KeyObject; publicKey: PublicKey },
  expires: Date,
): Promise<void> {
  const bytes = await client.fetchMetadata(gun, { role, maxBytes: 1 << 20 });
  const current = parseTargets(parseEnvelope(bytes, role).signed, role);
  const next = { ...current, version: current.version + 1, expires };
  const signed = await signRole(next, [localSigner(signer.privateKey, signer.publicKey)]);
  await client.publish(gun, [{ role, bytes: signed }]);
}

void describe('an expired delegation: the notary CLI and our verifier engine', () => {
  let stack: NotaryStack;
  let client: NotaryHttpClient;
  let engine: ImagePolicyEngine;
  let aliceRepo: PushedImage;
  let releasesRepo: PushedImage;
  let rootCanonicalId: string;
  const otherDigest = 'ab'.repeat(32);

  const lookupCli = async (gun: string, tag: string): Promise<CliResult> =>
    notaryCli(stack, ['lookup', gun, tag], { trustDir: await stack.tempDir('reader') });

  async function decide(image: string): Promise<ImageDecision> {
    const decision = (
      await engine.decide({ containers: [{ image }], annotations: {}, namespace: 'default' })
    ).images[0];
    assert.ok(decision);
    return decision;
  }

  before(async () => {
    stack = await startStack();
    client = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem });
    const owner = await stack.tempDir('owner');
    const keys = await stack.tempDir('keys');

    // `docker trust signer add alice` (targets/alice and targets/releases, one key); the owner
    // signs v1 into targets, alice signs a tag of her own.
    aliceRepo = await pushImage(stack, 'expired/alice', 'v1');
    await initRepo(stack, aliceRepo.gun, owner, { serverSnapshot: true });
    await addTarget(stack, aliceRepo.gun, owner, 'v1', aliceRepo.size, hexOf(aliceRepo.digest));
    const alice = await createDelegationKey(keys, 'alice');
    await addSigner(stack, aliceRepo.gun, owner, alice);
    await addTarget(stack, aliceRepo.gun, owner, 'alice-only', 10, otherDigest, {
      roles: ['targets/alice'],
    });

    // targets/releases alone, with its own key; v1 in targets, `rel` in targets/releases.
    releasesRepo = await pushImage(stack, 'expired/releases', 'v1', { content: 'releases\n' });
    await initRepo(stack, releasesRepo.gun, owner, { serverSnapshot: true });
    await addTarget(
      stack,
      releasesRepo.gun,
      owner,
      'v1',
      releasesRepo.size,
      hexOf(releasesRepo.digest),
    );
    const releaser = await createDelegationKey(keys, 'releaser');
    await importKey(stack, owner, releaser.keyFile, 'targets/releases');
    await addDelegation(stack, releasesRepo.gun, owner, 'targets/releases', [releaser.certFile]);
    await addTarget(stack, releasesRepo.gun, owner, 'rel', 10, otherDigest, {
      roles: ['targets/releases'],
    });

    const expires = new Date(Date.now() + EXPIRES_IN_MS);
    await republishExpiring(
      client,
      aliceRepo.gun,
      'targets/alice',
      await delegationSigner(alice),
      expires,
    );
    await republishExpiring(
      client,
      releasesRepo.gun,
      'targets/releases',
      await delegationSigner(releaser),
      expires,
    );

    // The CLI reuses one root key for every GUN of a trust dir: pin its canonical id.
    const rootBytes = await client.fetchMetadata(aliceRepo.gun, {
      role: 'root',
      maxBytes: 1 << 20,
    });
    const root = parseRoot(parseEnvelope(rootBytes, 'root').signed);
    rootCanonicalId = root.keys.get(root.roles.root.keyIds[0] ?? '')?.canonicalId ?? '';
    assert.notEqual(rootCanonicalId, '');
    const configFile = await writeVerifierConfig(stack, {
      rules: `  - name: expired
    images: "${stack.registryHost}/expired/*"
    trust: { rootKeys: ["${rootCanonicalId}"] }`,
    });
    engine = new ImagePolicyEngine({ config: await loadConfig(configFile) });

    const wait = expires.getTime() - Date.now() + 1_000;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  });

  after(async () => {
    await engine.close();
    client.close();
    await stack.stop();
  });

  void it('expired targets/alice: both admit a tag of targets, with a warning from the CLI', async () => {
    const cli = await lookupCli(aliceRepo.gun, 'v1');
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout.trim(), `v1 ${aliceRepo.digest} ${aliceRepo.size}`);
    // Go's downloadTargets: an expired delegation is logged and skipped, not fatal.
    assert.match(
      cli.stderr,
      /level=warning msg="Error getting targets\/alice: targets\/alice expired at /,
    );

    const ours = await decide(aliceRepo.reference);
    assert.equal(ours.result, 'allowed', ours.reason);
    assert.equal(ours.role, 'targets');
    assert.equal(ours.digest, aliceRepo.digest);
  });

  void it('expired targets/alice: both refuse the tag only alice signed', async () => {
    const cli = await lookupCli(aliceRepo.gun, 'alice-only');
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, /\* fatal: No valid trust data for alice-only/);
    assert.match(cli.stderr, /targets\/alice expired at /);

    const ours = await decide(`${aliceRepo.gun}:alice-only`);
    assert.equal(ours.result, 'denied');
    assert.equal(ours.code, 'EXPIRED');
    assert.match(ours.reason, /failed verification: targets\/alice expired at /);
  });

  void it('expired targets/releases: notary lookup and our notary-order resolution find v1 in targets', async () => {
    const cli = await lookupCli(releasesRepo.gun, 'v1');
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout.trim(), `v1 ${releasesRepo.digest} ${releasesRepo.size}`);
    assert.match(
      cli.stderr,
      /level=warning msg="Error getting targets\/releases: targets\/releases expired at /,
    );

    const collection = await updateCollection(client, releasesRepo.gun, {
      anchor: compileAnchor({ rootKeyIds: [rootCanonicalId] }, releasesRepo.gun),
      now: new Date(),
      invalidDelegations: 'record',
    });
    assert.deepEqual([...collection.invalidRoles.keys()], ['targets/releases']);
    const found = resolveTarget(collection, 'v1', NOTARY_ROLE_ORDER);
    assert.equal(found.role, 'targets');
    assert.equal(`sha256:${found.sha256Hex}`, releasesRepo.digest);
  });

  void it('expired targets/releases: our engine denies v1 (Docker order), deliberately stricter than Go', async () => {
    // Docker resolves a tag from targets/releases first. Go's client drops the expired role from
    // its repo and walks on to targets, so `docker pull` would get whatever targets says — maybe
    // a digest the release signer superseded — without a word. We deny instead, naming the role
    // to renew (the signer renews it on its next run).
    const ours = await decide(releasesRepo.reference);
    assert.equal(ours.result, 'denied');
    assert.equal(ours.code, 'EXPIRED');
    assert.match(
      ours.reason,
      new RegExp(
        `^trust data for ${releasesRepo.gun.replace(/\./g, '\\.')} from notary .* failed verification: targets/releases expired at `,
      ),
    );

    // Both refuse the tag only targets/releases signed.
    const cli = await lookupCli(releasesRepo.gun, 'rel');
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, /\* fatal: No valid trust data for rel/);
    const rel = await decide(`${releasesRepo.gun}:rel`);
    assert.equal(rel.code, 'EXPIRED');
  });
});
