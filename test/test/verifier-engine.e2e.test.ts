/**
 * The verifier's decision engine against the real stack: notary-server with notary-signer,
 * docker-registry with images pushed by skopeo, repositories signed by the real `notary` CLI.
 * Signed images are admitted; unsigned, foreign-root, wrong-delegation, wrong-digest and expired
 * ones are denied with the reason that names the problem.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ImagePolicyEngine,
  loadConfig,
  runCheck,
  type ImageReviewSpec,
  type VerifierConfig,
} from '@kpack-trust/verifier';
import {
  addSigner,
  addTarget,
  createDelegationKey,
  type DelegationKey,
  initRepo,
  type NotaryStack,
  type PushedImage,
  pushImage,
  rootKeyIds,
  rotateRoot,
  startStack,
  writeVerifierConfig,
} from '../src/index.js';

const DAY = 24 * 3600 * 1000;

function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

function pod(images: readonly string[]): ImageReviewSpec {
  return { containers: images.map((image) => ({ image })), annotations: {}, namespace: 'default' };
}

void describe('ImagePolicyEngine against notary-server, notary-signer and the notary CLI', () => {
  let stack: NotaryStack;
  let trustA: string;
  let app: PushedImage;
  let other: PushedImage;
  let foreign: PushedImage;
  let delegated: PushedImage;
  let rotated: PushedImage;
  let bob: DelegationKey;
  let alice: DelegationKey;
  let pin: { id: string; canonicalId: string };
  let configFile: string;
  let config: VerifierConfig;
  const engines: ImagePolicyEngine[] = [];

  function engine(options: { now?: () => Date; config?: VerifierConfig } = {}): ImagePolicyEngine {
    const e = new ImagePolicyEngine({
      config: options.config ?? config,
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    engines.push(e);
    return e;
  }

  before(async () => {
    stack = await startStack();
    trustA = await stack.tempDir('trust-a');
    const trustB = await stack.tempDir('trust-b');
    const keys = await stack.tempDir('keys');

    app = await pushImage(stack, 'demo/app', 'v1');
    other = await pushImage(stack, 'demo/app', 'v2', { content: 'another build\n' });
    await initRepo(stack, app.gun, trustA);
    await addTarget(stack, app.gun, trustA, 'v1', app.size, hexOf(app.digest));

    // The same kind of repository, initialized by another trust dir: another root key.
    foreign = await pushImage(stack, 'demo/foreign', 'v1');
    await initRepo(stack, foreign.gun, trustB);
    await addTarget(stack, foreign.gun, trustB, 'v1', foreign.size, hexOf(foreign.digest));

    // `docker trust signer add bob`, then bob signs v1 into targets/releases.
    delegated = await pushImage(stack, 'demo/delegated', 'v1');
    bob = await createDelegationKey(keys, 'bob');
    alice = await createDelegationKey(keys, 'alice');
    await initRepo(stack, delegated.gun, trustA);
    await addSigner(stack, delegated.gun, trustA, bob);
    await addTarget(stack, delegated.gun, trustA, 'v1', delegated.size, hexOf(delegated.digest), {
      roles: ['targets/releases'],
    });

    rotated = await pushImage(stack, 'demo/rotated', 'v1');
    await initRepo(stack, rotated.gun, trustA);
    await addTarget(stack, rotated.gun, trustA, 'v1', rotated.size, hexOf(rotated.digest));

    // The CLI reuses one root key for every GUN of a trust dir: pin its canonical (bare key) id.
    pin = await rootKeyIds(stack, app.gun);
    configFile = await writeVerifierConfig(stack, {
      file: join(stack.workDir, 'verifier.yaml'),
      rules: `  - name: demo
    images: "${stack.registryHost}/demo/*"
    trust: { rootKeys: ["${pin.canonicalId}"] }
  - name: releases-by-bob
    images: "${delegated.gun}"
    trust:
      rootKeys: ["${pin.canonicalId}"]
      signers: [{ role: targets/releases, keys: [${JSON.stringify(bob.certFile)}] }]
  - name: releases-by-alice
    images: "${delegated.gun}"
    namespaces: [alice-only]
    trust:
      rootKeys: ["${pin.canonicalId}"]
      signers: [{ role: targets/releases, keys: [${JSON.stringify(alice.certFile)}] }]`,
    });
    config = await loadConfig(configFile);
  });

  after(async () => {
    await Promise.all(engines.map((e) => e.close()));
    await stack.stop();
  });

  void it('admits a tag signed by the notary CLI, auditing its digest and role', async () => {
    const status = await engine().review(pod([app.reference]));
    assert.deepEqual(status, {
      allowed: true,
      auditAnnotations: {
        'image-0-digest': app.digest,
        'image-0-role': 'targets',
        'image-0-rule': 'demo',
      },
    });
  });

  void it('pins by the id root.json lists as well as by the canonical id', async () => {
    assert.notEqual(pin.id, pin.canonicalId, 'the CLI wraps root keys in certificates');
    const listed = join(stack.workDir, 'verifier-listed-id.yaml');
    await writeFile(
      listed,
      (await readFile(configFile, 'utf8')).replaceAll(pin.canonicalId, pin.id),
    );
    const status = await engine({ config: await loadConfig(listed) }).review(pod([app.reference]));
    assert.equal(status.allowed, true, status.reason);
  });

  void it('admits the signed digest by digest and as tag@digest', async () => {
    const e = engine();
    assert.equal((await e.review(pod([`${app.gun}@${app.digest}`]))).allowed, true);
    assert.equal((await e.review(pod([`${app.reference}@${app.digest}`]))).allowed, true);
  });

  void it('denies an unsigned tag of a signed repository', async () => {
    const status = await engine().review(pod([`${app.gun}:v2`]));
    assert.equal(status.allowed, false);
    assert.equal(
      status.reason,
      `${app.gun}:v2: not signed in notary ${stack.notaryUrl} (no target "v2" in targets/releases or targets)`,
    );
  });

  void it('denies an image whose repository has no trust data', async () => {
    const unsigned = await pushImage(stack, 'demo/unsigned', 'v1');
    const status = await engine().review(pod([unsigned.reference]));
    assert.equal(
      status.reason,
      `${unsigned.reference}: not signed in notary ${stack.notaryUrl} (no trust data for ${unsigned.gun})`,
    );
  });

  void it('denies a repository signed under another root key', async () => {
    const decision = await engine().decide(pod([foreign.reference]));
    assert.equal(decision.images[0]?.code, 'ROOT_NOT_TRUSTED');
    assert.equal(
      decision.status.reason,
      `${foreign.reference}: trust data for ${foreign.gun} from notary ${stack.notaryUrl} failed verification: ` +
        `root of ${foreign.gun} (version 1) is not signed by a pinned root key`,
    );
  });

  void it('denies a digest the tag is not signed for (wrong digest)', async () => {
    const e = engine();
    const decision = await e.decide(pod([`${app.reference}@${other.digest}`]));
    assert.equal(decision.images[0]?.code, 'DIGEST_MISMATCH');
    assert.equal(
      decision.status.reason,
      `${app.reference}@${other.digest}: tag "v1" is signed for ${app.digest}, not for the referenced ${other.digest}`,
    );
    const byDigest = await e.decide(pod([`${app.gun}@${other.digest}`]));
    assert.equal(byDigest.images[0]?.code, 'NOT_SIGNED');
  });

  void it('admits a tag the pinned delegation signed, in Docker order', async () => {
    const status = await engine().review(pod([delegated.reference]));
    assert.equal(status.allowed, true, status.reason);
    assert.equal(status.auditAnnotations?.['image-0-role'], 'targets/releases');
    assert.equal(status.auditAnnotations?.['image-0-digest'], delegated.digest);
    assert.equal(status.auditAnnotations?.['image-0-rule'], 'releases-by-bob');
  });

  void it('denies a tag signed by the wrong delegation key', async () => {
    // Same trust data, but in this namespace the rule pins alice's key; bob signed it.
    const decision = await engine().decide({
      ...pod([delegated.reference]),
      namespace: 'alice-only',
    });
    assert.equal(decision.images[0]?.rule, 'releases-by-alice');
    assert.equal(decision.images[0]?.code, 'SIGNERS_NOT_MET');
    assert.equal(
      decision.status.reason,
      `${delegated.reference}: 0 of the required signers signed "v1", 1 needed (targets/releases is not signed by its pinned key)`,
    );
  });

  void it('denies expired trust data (the injected clock passes the 14-day timestamp)', async () => {
    const later = new Date(Date.now() + 15 * DAY);
    const decision = await engine({ now: () => later }).decide(pod([app.reference]));
    assert.equal(decision.images[0]?.code, 'EXPIRED');
    assert.match(
      decision.status.reason ?? '',
      new RegExp(
        `^${escape(app.reference)}: trust data for ${escape(app.gun)} from notary ${escape(stack.notaryUrl)} failed verification: timestamp expired at `,
      ),
    );
  });

  void it('follows a root rotation by the CLI, from an old pin and from the cached root', async () => {
    let now = new Date();
    const cached = engine({ now: () => now });
    assert.equal((await cached.review(pod([rotated.reference]))).allowed, true);
    const { after: version } = await rotateRoot(stack, rotated.gun, trustA);
    assert.equal(version, 2);
    now = new Date(now.getTime() + 61_000);
    const resumed = await cached.decide(pod([rotated.reference]));
    assert.equal(resumed.status.allowed, true, resumed.status.reason);
    // A fresh engine with the old pin anchors version 1 and walks to 2.
    const fresh = await engine().decide(pod([rotated.reference]));
    assert.equal(fresh.status.allowed, true, fresh.status.reason);
  });

  void it('check prints the decision and exits 0, or 1 on a denial', async () => {
    const ok = await runCheck(configFile, [app.reference], 'default');
    assert.equal(ok.exitCode, 0, ok.output);
    assert.equal(
      (JSON.parse(ok.output) as { images: { digest: string }[] }).images[0]?.digest,
      app.digest,
    );
    const denied = await runCheck(configFile, [app.reference, `${app.gun}:v2`], 'default');
    assert.equal(denied.exitCode, 1);
    assert.match(denied.output, /no target \\"v2\\"/);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
