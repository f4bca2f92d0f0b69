/**
 * kpack-trust-signer renewing expired metadata on the real stack. notary-server refuses to store
 * a role whose `expires` has already passed (400 INVALID_UPDATE, ErrBadTargets), so an expired
 * repository is made honestly: a role is published with an expiry a few seconds ahead, and the
 * test waits for it to pass. Then the real `notary` CLI refuses to read it — and refuses to publish
 * to it — and our strict verifier denies it; after one signer run both read it again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import {
  NotaryHttpClient,
  PublicKey,
  encodePrivateKeyPem,
  generateSigningKey,
  isTrustError,
  localSigner,
  parseEnvelope,
  parseTargets,
  signRole,
} from '@kpack-trust/common';
import type { SignSummary } from '@kpack-trust/signer';
import { ImagePolicyEngine, loadConfig } from '@kpack-trust/verifier';
import {
  DEFAULT_PASSPHRASE,
  addDelegation,
  createDelegationKey,
  initRepo,
  lookup,
  notaryCli,
  pushImage,
  rootKeyIds,
  startStack,
  type NotaryStack,
  writeVerifierConfig,
} from '../src/index.js';

const MAIN = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const KEY_PASSWORD = 'renewal key password';
/** How far ahead the soon-to-expire role expires: long enough to be accepted, short to wait out. */
const EXPIRES_IN_MS = 5_000;

interface SignerRun {
  readonly code: number;
  readonly stderr: string;
  readonly summary: SignSummary | undefined;
}

function runSigner(stack: NotaryStack, args: readonly string[]): Promise<SignerRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [MAIN, 'sign', '--notary-url', stack.notaryUrl, '--notary-ca', stack.caFile, ...args],
      {
        env: { PATH: process.env['PATH'] ?? '', HOME: stack.workDir },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = Buffer.concat(out).toString('utf8').trim();
      resolve({
        code: code ?? -1,
        stderr: Buffer.concat(err).toString('utf8'),
        summary: line === '' ? undefined : (JSON.parse(line) as SignSummary),
      });
    });
  });
}

function ok(run: SignerRun): SignSummary {
  assert.equal(run.code, 0, `signer exited ${run.code}\n${run.stderr}`);
  assert.ok(run.summary, 'one JSON summary line on stdout');
  return run.summary;
}

/** kpack's mounted-Secret layout: `<key id>.key` (encrypted PKCS#8) and `password`. */
async function keysDir(dir: string, key: KeyObject, role: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const id = PublicKey.fromKeyObject(key).id;
  await writeFile(join(dir, `${id}.key`), encodePrivateKeyPem(key, KEY_PASSWORD, { role }));
  await writeFile(join(dir, 'password'), KEY_PASSWORD);
  return dir;
}

/**
 * Re-publishes the current `role` unchanged at version + 1 expiring at `expires`, signed with
 * our own trust core — the way a writer with a short expiry policy would.
 */
async function republishExpiring(
  stack: NotaryStack,
  gun: string,
  role: string,
  signer: { privateKey: KeyObject; publicKey: PublicKey },
  expires: Date,
): Promise<number> {
  const client = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem });
  try {
    const bytes = await client.fetchMetadata(gun, { role, maxBytes: 1 << 20 });
    const current = parseTargets(parseEnvelope(bytes, role).signed, role);
    const next = { ...current, version: current.version + 1, expires };
    const signed = await signRole(next, [localSigner(signer.privateKey, signer.publicKey)]);
    await client.publish(gun, [{ role, bytes: signed }]);
    return next.version;
  } finally {
    client.close();
  }
}

async function currentVersion(stack: NotaryStack, gun: string, role: string): Promise<number> {
  const client = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem });
  try {
    const bytes = await client.fetchMetadata(gun, { role, maxBytes: 1 << 20 });
    return parseTargets(parseEnvelope(bytes, role).signed, role).version;
  } finally {
    client.close();
  }
}

async function waitUntilPast(date: Date): Promise<void> {
  const ms = date.getTime() - Date.now() + 1_000;
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
}

describe('kpack-trust-signer renews expired metadata on notary-server', () => {
  let stack: NotaryStack;

  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack.stop();
  });

  it('renews expired targets: the notary CLI and our verifier read the repository again', async () => {
    const first = await pushImage(stack, 'renewal/app', 'v1');
    const gun = first.gun;
    const root = generateSigningKey();
    const targets = generateSigningKey();
    const base = await stack.tempDir('keys');
    const keyArgs = [
      '--keys-dir',
      await keysDir(join(base, 'targets'), targets, 'targets'),
      '--root-keys-dir',
      await keysDir(join(base, 'root'), root, 'root'),
    ];
    const created = ok(
      await runSigner(stack, ['--image', first.reference, '--digest', first.digest, ...keyArgs]),
    );
    const targetsSigner = { privateKey: targets, publicKey: PublicKey.fromKeyObject(targets) };

    // Measured: notary-server refuses to store targets that have already expired.
    await assert.rejects(
      republishExpiring(stack, gun, 'targets', targetsSigner, new Date(Date.now() - 60_000)),
      (err: unknown) =>
        isTrustError(err, 'HTTP_STATUS') &&
        err.facts.status === 400 &&
        err.facts.serverCode === 'INVALID_UPDATE',
    );
    assert.equal(await currentVersion(stack, gun, 'targets'), 2);
    // …but stores targets that expire in a few seconds, and keeps serving them once they have.
    const expires = new Date(Date.now() + EXPIRES_IN_MS);
    assert.equal(await republishExpiring(stack, gun, 'targets', targetsSigner, expires), 3);
    await waitUntilPast(expires);

    const reader = await stack.tempDir('reader');
    const refused = await notaryCli(stack, ['lookup', gun, 'v1'], { trustDir: reader });
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /\* fatal: targets expired at /);

    // The Go client will not publish to it either, even holding the targets key.
    const cliDir = await stack.tempDir('cli');
    await mkdir(join(cliDir, 'private'), { recursive: true });
    await writeFile(
      join(cliDir, 'private', `${targetsSigner.publicKey.id}.key`),
      encodePrivateKeyPem(targets, DEFAULT_PASSPHRASE, { role: 'targets', gun }),
    );
    const staged = await notaryCli(
      stack,
      ['addhash', gun, 'by-cli', '10', '--sha256', 'ab'.repeat(32)],
      { trustDir: cliDir },
    );
    assert.equal(staged.code, 0, staged.stderr);
    const goPublish = await notaryCli(stack, ['publish', gun], { trustDir: cliDir });
    assert.equal(goPublish.code, 1);
    assert.match(
      goPublish.stderr,
      /Could not publish Repository since we could not update: targets expired at /,
    );
    assert.equal(await currentVersion(stack, gun, 'targets'), 3);

    // Our verifier is strict: it never reads expired metadata.
    const configFile = await writeVerifierConfig(stack, {
      rules: `  - name: renewal
    images: "${stack.registryHost}/renewal/*"
    trust: { rootKeys: ["${created.rootCanonicalKeyId}"] }`,
    });
    const config = await loadConfig(configFile);
    const review = async (image: string): Promise<{ allowed: boolean; reason?: string }> => {
      const engine = new ImagePolicyEngine({ config });
      try {
        return await engine.review({
          containers: [{ image }],
          annotations: {},
          namespace: 'default',
        });
      } finally {
        await engine.close();
      }
    };
    const denied = await review(first.reference);
    assert.equal(denied.allowed, false);
    assert.match(denied.reason ?? '', /targets expired at /);

    const second = await pushImage(stack, 'renewal/app', 'v2', { content: 'three years later' });
    const run = await runSigner(stack, [
      '--image',
      second.reference,
      '--digest',
      second.digest,
      ...keyArgs,
    ]);
    const renewed = ok(run);
    assert.deepEqual(renewed.rolesPublished, ['targets']);
    assert.deepEqual(renewed.versions, { root: 1, targets: 4 });
    const line = `${gun}: renewed expired targets (expired ${expires.toISOString()}, now valid until `;
    assert.ok(run.stderr.includes(line), run.stderr);

    const fresh = await stack.tempDir('reader');
    assert.equal((await lookup(stack, gun, 'v2', fresh)).sha256Hex, second.digest.slice(7));
    assert.equal((await lookup(stack, gun, 'v1', fresh)).sha256Hex, first.digest.slice(7));
    // The reader that saw the expired targets follows too (its cache holds version 3).
    assert.equal((await lookup(stack, gun, 'v2', reader)).sha256Hex, second.digest.slice(7));
    assert.equal((await review(second.reference)).allowed, true);
  });

  it('renews an expired targets/releases it signs into, though no tag changed', async () => {
    const image = await pushImage(stack, 'renewal/delegated', 'rel');
    const gun = image.gun;
    const cliDir = await stack.tempDir('cli');
    await initRepo(stack, gun, cliDir, { serverSnapshot: true });
    const delegate = await createDelegationKey(await stack.tempDir('signer'), 'releases');
    await addDelegation(stack, gun, cliDir, 'targets/releases', [delegate.certFile]);
    const privateKey = createPrivateKey(await readFile(delegate.keyFile));
    // The CLI's root pinned: a delegation never published yet is refused under trust on first use.
    const { canonicalId } = await rootKeyIds(stack, gun);
    const keyArgs = [
      '--keys-dir',
      await keysDir(join(await stack.tempDir('keys'), 'releases'), privateKey, 'targets/releases'),
      '--delegation',
      'targets/releases',
      '--root-key-id',
      canonicalId,
    ];
    const signArgs = ['--image', image.reference, '--digest', image.digest, ...keyArgs];
    assert.deepEqual(ok(await runSigner(stack, signArgs)).rolesPublished, ['targets/releases']);

    const listed = PublicKey.fromCertificatePem(await readFile(delegate.certFile, 'utf8'));
    const expires = new Date(Date.now() + EXPIRES_IN_MS);
    const version = await republishExpiring(
      stack,
      gun,
      'targets/releases',
      { privateKey, publicKey: listed },
      expires,
    );
    await waitUntilPast(expires);
    const refused = await notaryCli(stack, ['lookup', gun, 'rel'], {
      trustDir: await stack.tempDir('reader'),
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /\* fatal: No valid trust data for rel/);
    assert.match(refused.stderr, /targets\/releases expired at /);

    const run = await runSigner(stack, signArgs);
    const renewed = ok(run);
    assert.deepEqual(renewed.rolesPublished, ['targets/releases']);
    assert.equal(renewed.versions['targets/releases'], version + 1);
    assert.match(run.stderr, /renewed expired targets\/releases \(expired .*, now valid until /);
    assert.deepEqual(await lookup(stack, gun, 'rel', await stack.tempDir('reader')), {
      tag: 'rel',
      sha256Hex: image.digest.slice(7),
      size: image.size,
      role: 'targets/releases',
    });
  });
});
