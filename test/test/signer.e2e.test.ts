/**
 * kpack-trust-signer against the real stack: notary-server + notary-signer + docker-registry on
 * loopback, images pushed with skopeo, results read back by a fresh `notary` CLI. The command runs
 * as a child process (`node signer/dist/src/main.js`), so exit codes, stdout and stderr are what
 * is tested; one race test drives the flow in process to make the collision deterministic.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import {
  NotaryHttpClient,
  PublicKey,
  createRootCertificate,
  decodePrivateKeyPem,
  encodePrivateKeyPem,
  generateSigningKey,
  imageTarget,
  localSigner,
  newRoot,
  newTargets,
  signRole,
} from '@kpack-trust/common';
import { RegistryHttpClient, buildImageOf, signBuild, type SignSummary } from '@kpack-trust/signer';
import { MemoryKeyStore } from '@kpack-trust/signer/testing';
import {
  DEFAULT_PASSPHRASE,
  addDelegation,
  addTarget,
  createDelegationKey,
  initRepo,
  listTargets,
  lookup,
  pushImage,
  rootVersion,
  startStack,
  type NotaryStack,
} from '@kpack-trust/e2e';

const MAIN = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const KEY_PASSWORD = 'e2e key password\n';

interface SignerRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly summary: SignSummary | undefined;
}

/** Runs `node main.js sign …` with a clean environment (no DOCKER_CONFIG, HOME in the stack dir). */
function runSigner(
  stack: NotaryStack,
  args: readonly string[],
  env: Record<string, string> = {},
  notaryUrl = stack.notaryUrl,
): Promise<SignerRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [MAIN, 'sign', '--notary-url', notaryUrl, '--notary-ca', stack.caFile, ...args],
      {
        env: { PATH: process.env['PATH'] ?? '', HOME: stack.workDir, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const line = stdout.trim();
      resolve({
        code: code ?? -1,
        stdout,
        stderr,
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

/** kpack's mounted-Secret layout: `<canonical key id>.key` (encrypted PKCS#8) and `password`. */
async function writeKeysDir(
  dir: string,
  keys: { key: KeyObject; role: string; gun?: string }[],
): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const { key, role, gun } of keys) {
    const id = PublicKey.fromKeyObject(key).id;
    await writeFile(
      join(dir, `${id}.key`),
      encodePrivateKeyPem(key, KEY_PASSWORD.trim(), {
        role,
        ...(gun === undefined ? {} : { gun }),
      }),
    );
  }
  await writeFile(join(dir, 'password'), KEY_PASSWORD);
  return dir;
}

/** The arguments that sign one pushed image with the keys in one kpack-style directory. */
function keysDirArgs(
  image: { readonly reference: string; readonly digest: string },
  keysDir: string,
): string[] {
  return ['--image', image.reference, '--digest', image.digest, '--keys-dir', keysDir];
}

/** Fresh root + targets keys in two kpack-style directories. */
async function freshKeys(
  stack: NotaryStack,
): Promise<{ root: KeyObject; targets: KeyObject; args: string[] }> {
  const root = generateSigningKey();
  const targets = generateSigningKey();
  const base = await stack.tempDir('keys');
  const keysDir = await writeKeysDir(join(base, 'targets'), [{ key: targets, role: 'targets' }]);
  const rootDir = await writeKeysDir(join(base, 'root'), [{ key: root, role: 'root' }]);
  return { root, targets, args: ['--keys-dir', keysDir, '--root-keys-dir', rootDir] };
}

async function writeReport(stack: NotaryStack, tags: string[], digest: string): Promise<string> {
  const file = join(await stack.tempDir('report'), 'report.toml');
  await writeFile(
    file,
    `[image]\ntags = [${tags.map((t) => JSON.stringify(t)).join(', ')}]\ndigest = "${digest}"\n`,
  );
  return file;
}

/** The notary CLI's private key file with `role: targets` in a trust dir. */
async function cliKeyFile(trustDir: string, role: string): Promise<string> {
  const dir = join(trustDir, 'private');
  for (const name of await readdir(dir)) {
    const text = await readFile(join(dir, name), 'utf8');
    if (new RegExp(`^role: ${role}$`, 'm').test(text)) return text;
  }
  throw new Error(`no ${role} key in ${dir}`);
}

/** The server's targets version for a GUN, or 0 when the GUN does not exist. */
async function targetsVersion(stack: NotaryStack, gun: string): Promise<number> {
  const client = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem });
  try {
    const bytes = await client.fetchMetadata(gun, { role: 'targets', maxBytes: 1 << 20 });
    return (JSON.parse(Buffer.from(bytes).toString('utf8')) as { signed: { version: number } })
      .signed.version;
  } catch {
    return 0;
  } finally {
    client.close();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve();
    }),
  );
  return port;
}

describe('kpack-trust-signer against notary-server, docker-registry and the notary CLI', () => {
  let stack: NotaryStack;

  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack.stop();
  });

  it('signs a report with two tags, updates them on the next build, and is idempotent', async () => {
    const first = await pushImage(stack, 'e2e/app', 'b1', { content: 'build one' });
    const gun = first.gun;
    const keys = await freshKeys(stack);
    const report1 = await writeReport(stack, [`${gun}:b1`, `${gun}:latest`], first.digest);
    const one = ok(await runSigner(stack, ['--report', report1, ...keys.args]));
    assert.equal(one.gun, gun);
    assert.equal(one.created, true);
    assert.equal(one.size, first.size);
    assert.deepEqual(one.rolesPublished, ['root', 'targets']);
    assert.deepEqual(one.versions, { root: 1, targets: 2 });

    const reader = await stack.tempDir('reader');
    for (const tag of ['b1', 'latest']) {
      const found = await lookup(stack, gun, tag, reader);
      assert.deepEqual([found.sha256Hex, found.size], [first.digest.slice(7), first.size]);
    }
    const cached = JSON.parse(
      await readFile(join(reader, 'tuf', gun, 'metadata', 'root.json'), 'utf8'),
    ) as {
      signed: { roles: { root: { keyids: string[] } } };
    };
    assert.deepEqual(
      cached.signed.roles.root.keyids,
      [one.rootKeyId],
      'rootKeyId is the id root.json lists',
    );

    const second = await pushImage(stack, 'e2e/app', 'b2', { content: 'build two' });
    const report2 = await writeReport(stack, [`${gun}:b2`, `${gun}:latest`], second.digest);
    const two = ok(await runSigner(stack, ['--report', report2, ...keys.args]));
    assert.equal(two.created, false);
    assert.equal(two.rootKeyId, one.rootKeyId);
    assert.deepEqual(two.rolesPublished, ['targets']);
    assert.deepEqual(two.versions, { root: 1, targets: 3 });
    const fresh = await stack.tempDir('reader');
    assert.equal((await lookup(stack, gun, 'latest', fresh)).sha256Hex, second.digest.slice(7));
    assert.equal((await lookup(stack, gun, 'b2', fresh)).sha256Hex, second.digest.slice(7));
    assert.equal((await lookup(stack, gun, 'b1', fresh)).sha256Hex, first.digest.slice(7));

    const again = ok(await runSigner(stack, ['--report', report2, ...keys.args]));
    assert.deepEqual(again.rolesPublished, []);
    assert.equal(await targetsVersion(stack, gun), 3);
  });

  it('updates a repository the notary CLI initialized, with the targets key exported from the CLI', async () => {
    const image = await pushImage(stack, 'e2e/cli-made', 'v1');
    const cliDir = await stack.tempDir('cli');
    await initRepo(stack, image.gun, cliDir, { serverSnapshot: true });
    const keysDir = join(await stack.tempDir('keys'), 'targets');
    await mkdir(keysDir);
    // The CLI's file as it is: <id>.key with role and gun headers, plus its passphrase.
    await writeFile(join(keysDir, 'exported.key'), await cliKeyFile(cliDir, 'targets'));
    await writeFile(join(keysDir, 'password'), DEFAULT_PASSPHRASE);

    const run = ok(await runSigner(stack, keysDirArgs(image, keysDir)));
    assert.equal(run.created, false);
    assert.deepEqual(run.rolesPublished, ['targets']);
    const found = await lookup(stack, image.gun, 'v1', await stack.tempDir('reader'));
    assert.deepEqual([found.sha256Hex, found.size], [image.digest.slice(7), image.size]);
    // The CLI that made the repository keeps working on it after our publish.
    await addTarget(stack, image.gun, cliDir, 'from-cli', 10, 'ab'.repeat(32));
    assert.deepEqual((await listTargets(stack, image.gun, cliDir)).map((t) => t.tag).sort(), [
      'from-cli',
      'v1',
    ]);
  });

  it('explains a plain `notary init` repository whose snapshot key the CLI keeps', async () => {
    const image = await pushImage(stack, 'e2e/client-snapshot', 'v1');
    const cliDir = await stack.tempDir('cli');
    await initRepo(stack, image.gun, cliDir);
    const keysDir = join(await stack.tempDir('keys'), 'targets');
    await mkdir(keysDir);
    await writeFile(join(keysDir, 'exported.key'), await cliKeyFile(cliDir, 'targets'));
    await writeFile(join(keysDir, 'password'), DEFAULT_PASSPHRASE);
    const before = await targetsVersion(stack, image.gun);
    const run = await runSigner(stack, keysDirArgs(image, keysDir));
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /snapshot key is held by a client.*notary key rotate .* snapshot -r/);
    assert.equal(await targetsVersion(stack, image.gun), before);
  });

  it('lets the notary CLI sign a repository we created, with our exported targets key', async () => {
    const image = await pushImage(stack, 'e2e/shared', 'ours');
    const keys = await freshKeys(stack);
    ok(
      await runSigner(stack, ['--image', image.reference, '--digest', image.digest, ...keys.args]),
    );
    const cliDir = await stack.tempDir('cli');
    await mkdir(join(cliDir, 'private'), { recursive: true });
    const id = PublicKey.fromKeyObject(keys.targets).id;
    await writeFile(
      join(cliDir, 'private', `${id}.key`),
      encodePrivateKeyPem(keys.targets, DEFAULT_PASSPHRASE, { role: 'targets', gun: image.gun }),
    );
    await addTarget(stack, image.gun, cliDir, 'by-cli', 123, 'cd'.repeat(32));
    const reader = await stack.tempDir('reader');
    assert.deepEqual(await lookup(stack, image.gun, 'by-cli', reader), {
      tag: 'by-cli',
      sha256Hex: 'cd'.repeat(32),
      size: 123,
      role: 'targets',
    });
    // And we keep signing after the CLI's publish.
    const next = await pushImage(stack, 'e2e/shared', 'next', { content: 'next' });
    const run = ok(
      await runSigner(stack, ['--image', next.reference, '--digest', next.digest, ...keys.args]),
    );
    assert.deepEqual(run.versions, { root: 1, targets: 4 });
    assert.equal(
      (await lookup(stack, image.gun, 'by-cli', await stack.tempDir('reader'))).size,
      123,
    );
  });

  it('signs into targets/releases set up by the CLI, and notary lookup resolves it', async () => {
    const image = await pushImage(stack, 'e2e/delegated', 'rel');
    const cliDir = await stack.tempDir('cli');
    await initRepo(stack, image.gun, cliDir, { serverSnapshot: true });
    const signer = await createDelegationKey(await stack.tempDir('signer'), 'releases');
    await addDelegation(stack, image.gun, cliDir, 'targets/releases', [signer.certFile]);
    const keysDir = await writeKeysDir(join(await stack.tempDir('keys'), 'releases'), [
      { key: createPrivateKey(await readFile(signer.keyFile)), role: 'targets/releases' },
    ]);
    const args = [...keysDirArgs(image, keysDir), '--delegation', 'targets/releases'];
    // With the root trusted on first use, a delegation no version of which our key signed is
    // refused (a forged chain could have delegated it to us), here one never published yet.
    const tofu = await runSigner(stack, args);
    assert.equal(tofu.code, 2, tofu.stderr);
    assert.match(tofu.stderr, /targets\/releases has never been published.*--root-key-id/);
    const cliRoot = decodePrivateKeyPem(
      await cliKeyFile(cliDir, 'root'),
      DEFAULT_PASSPHRASE,
      'the CLI root key',
    );
    const rootKeyId = PublicKey.fromKeyObject(cliRoot.privateKey).id;
    const run = ok(await runSigner(stack, [...args, '--root-key-id', rootKeyId]));
    assert.deepEqual(run.rolesPublished, ['targets/releases']);
    assert.equal(run.role, 'targets/releases');
    const found = await lookup(stack, image.gun, 'rel', await stack.tempDir('reader'));
    assert.deepEqual(found, {
      tag: 'rel',
      sha256Hex: image.digest.slice(7),
      size: image.size,
      role: 'targets/releases',
    });
  });

  it('lands both of two signers publishing different tags at once (the loser retries on 400 VERSION)', async () => {
    const image = await pushImage(stack, 'e2e/race', 'base');
    const keys = await freshKeys(stack);
    ok(
      await runSigner(stack, ['--image', image.reference, '--digest', image.digest, ...keys.args]),
    );
    const store = new MemoryKeyStore({
      keys: { root: { privateKey: keys.root }, targets: keys.targets },
    });
    // Both signers read v2 and hold their publish until the other is ready: one POST must lose.
    let waiting: (() => void)[] = [];
    const barrier = (): Promise<void> =>
      new Promise((resolve) => {
        waiting.push(resolve);
        if (waiting.length === 2) {
          for (const release of waiting) release();
          waiting = [];
        }
      });
    let held = 0;
    const sign = async (tag: string): Promise<SignSummary> => {
      const notary = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem });
      const registry = new RegistryHttpClient();
      const gate = {
        fetchMetadata: notary.fetchMetadata.bind(notary),
        fetchServerKey: notary.fetchServerKey.bind(notary),
        publish: async (gun: string, files: Parameters<NotaryHttpClient['publish']>[1]) => {
          if (held++ < 2) await barrier();
          return notary.publish(gun, files);
        },
      };
      try {
        return await signBuild(
          { image: buildImageOf([`${image.gun}:${tag}`], image.digest, undefined, 'test') },
          { notary: gate, keyStore: store, registry, now: () => new Date(), random: Math.random },
        );
      } finally {
        notary.close();
        registry.close();
      }
    };
    const [a, b] = await Promise.all([sign('left'), sign('right')]);
    assert.deepEqual([a.attempts, b.attempts].sort(), [1, 2]);
    const reader = await stack.tempDir('reader');
    for (const tag of ['base', 'left', 'right']) {
      assert.equal((await lookup(stack, image.gun, tag, reader)).sha256Hex, image.digest.slice(7));
    }
    assert.equal(await targetsVersion(stack, image.gun), 4);
  });

  it('re-signs a root about to expire, renewing its certificate, and the CLI follows the rotation', async () => {
    const image = await pushImage(stack, 'e2e/expiring', 'v1');
    const gun = image.gun;
    const keys = await freshKeys(stack);
    // Build the repository by hand with a root certificate that has five weeks left.
    const client = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem });
    const now = new Date();
    try {
      const cert = await createRootCertificate(gun, keys.root, {
        notBefore: new Date(now.getTime() - 3615 * 24 * 3600 * 1000),
      });
      const rootKey = PublicKey.fromCertificatePem(cert);
      const targetsKey = PublicKey.fromKeyObject(keys.targets);
      const timestamp = PublicKey.fromJson(await client.fetchServerKey(gun, 'timestamp'), {
        role: 't',
        field: '$',
      });
      const snapshot = PublicKey.fromJson(await client.fetchServerKey(gun, 'snapshot'), {
        role: 's',
        field: '$',
      });
      const root = newRoot(
        { root: [rootKey], targets: [targetsKey], snapshot: [snapshot], timestamp: [timestamp] },
        now,
      );
      const targets = {
        ...newTargets(now),
        targets: new Map([['v1', imageTarget(image.digest.slice(7), image.size)]]),
      };
      await client.publish(gun, [
        { role: 'root', bytes: await signRole(root, [localSigner(keys.root, rootKey)]) },
        {
          role: 'targets',
          bytes: await signRole(targets, [localSigner(keys.targets, targetsKey)]),
        },
      ]);
      const cliDir = await stack.tempDir('cli');
      assert.equal(await rootVersion(stack, gun, cliDir), 1);

      const next = await pushImage(stack, 'e2e/expiring', 'v2', { content: 'renewed' });
      const run = ok(
        await runSigner(stack, ['--image', next.reference, '--digest', next.digest, ...keys.args]),
      );
      assert.deepEqual(run.rolesPublished, ['root', 'targets']);
      assert.equal(run.versions['root'], 2);
      assert.notEqual(run.rootKeyId, rootKey.id);
      assert.equal(run.rootCanonicalKeyId, rootKey.canonicalId);
      // A client holding root v1 accepts v2 (signed by the old and the renewed certificate).
      assert.equal(await rootVersion(stack, gun, cliDir), 2);
      assert.equal((await lookup(stack, gun, 'v2', cliDir)).sha256Hex, next.digest.slice(7));
      assert.equal(
        (await lookup(stack, gun, 'v2', await stack.tempDir('reader'))).sha256Hex,
        next.digest.slice(7),
      );
    } finally {
      client.close();
    }
  });

  describe('refuses bad input with a clear message and publishes nothing', () => {
    it('an unreadable or garbled report', async () => {
      const keys = await freshKeys(stack);
      const missing = await runSigner(stack, [
        '--report',
        '/nonexistent/report.toml',
        ...keys.args,
      ]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /--report \/nonexistent\/report\.toml: the file does not exist/);
      const dir = await stack.tempDir('report');
      const unreadable = await runSigner(stack, ['--report', dir, ...keys.args]);
      assert.equal(unreadable.code, 2);
      assert.match(unreadable.stderr, /Cannot read .*EISDIR/);
      const garbled = join(dir, 'report.toml');
      await writeFile(garbled, '[image]\ntags = ["a"\n');
      const bad = await runSigner(stack, ['--report', garbled, ...keys.args]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /report\.toml: not valid TOML \(line \d+, column \d+\)/);
      assert.equal(bad.stdout, '');
    });

    it('tags in two repositories', async () => {
      const image = await pushImage(stack, 'e2e/split-a', 'v1');
      const keys = await freshKeys(stack);
      const report = await writeReport(
        stack,
        [image.reference, `${stack.registryHost}/e2e/split-b:v1`],
        image.digest,
      );
      const run = await runSigner(stack, ['--report', report, ...keys.args]);
      assert.equal(run.code, 2);
      assert.match(run.stderr, /the tags belong to 2 repositories .*nothing was published/);
      assert.equal(await targetsVersion(stack, image.gun), 0);
    });

    it('a wrong passphrase', async () => {
      const image = await pushImage(stack, 'e2e/passphrase', 'v1');
      const keys = await freshKeys(stack);
      const dir = keys.args[1] ?? '';
      await writeFile(join(dir, 'password'), 'not the passphrase');
      const run = await runSigner(
        stack,
        ['--image', image.reference, '--digest', image.digest, ...keys.args],
        {
          KPACK_TRUST_TARGETS_PASSPHRASE: 'not this one either',
        },
      );
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /PRIVATE_KEY_INVALID/);
      assert.ok(
        !run.stderr.includes('not this one either') && !run.stderr.includes('not the passphrase'),
      );
      assert.equal(await targetsVersion(stack, image.gun), 0);
    });

    it("a key that is not the repository's targets key", async () => {
      const image = await pushImage(stack, 'e2e/wrong-key', 'v1');
      const owner = await freshKeys(stack);
      ok(
        await runSigner(stack, [
          '--image',
          image.reference,
          '--digest',
          image.digest,
          ...owner.args,
        ]),
      );
      const strangerDir = await writeKeysDir(join(await stack.tempDir('keys'), 'stranger'), [
        { key: generateSigningKey(), role: 'targets' },
      ]);
      const next = await pushImage(stack, 'e2e/wrong-key', 'v2', { content: 'v2' });
      const run = await runSigner(stack, keysDirArgs(next, strangerDir));
      assert.equal(run.code, 2);
      assert.match(run.stderr, /is not the repository's targets key/);
      assert.equal(await targetsVersion(stack, image.gun), 2);
    });

    it('a digest the registry does not have', async () => {
      const image = await pushImage(stack, 'e2e/unknown-digest', 'v1');
      const keys = await freshKeys(stack);
      const run = await runSigner(stack, [
        '--image',
        image.reference,
        '--digest',
        `sha256:${'0'.repeat(64)}`,
        ...keys.args,
      ]);
      assert.equal(run.code, 2);
      assert.match(run.stderr, /registry does not have .*push the image before signing it/);
      assert.equal(await targetsVersion(stack, image.gun), 0);
    });

    it('an unreachable notary server', async () => {
      const keys = await freshKeys(stack);
      const image = await pushImage(stack, 'e2e/unreachable', 'v1');
      const port = await freePort();
      const dead = await runSigner(
        stack,
        ['--image', image.reference, '--digest', image.digest, ...keys.args],
        {},
        `https://127.0.0.1:${port}`,
      );
      assert.equal(dead.code, 4, dead.stderr);
      assert.match(dead.stderr, /ECONNREFUSED.*\[HTTP_UNREACHABLE\]/);
    });
  });

  describe('with a notary server behind token auth (and server-held ed25519 keys)', () => {
    let tokenStack: NotaryStack;
    before(async () => {
      tokenStack = await startStack({
        auth: 'token',
        trustService: 'local',
        credentials: { username: 'builder', password: 'right-password' },
      });
    });
    after(async () => {
      await tokenStack.stop();
    });

    async function dockerConfig(password: string): Promise<string> {
      const file = join(await tokenStack.tempDir('docker'), 'config.json');
      const auth = Buffer.from(`builder:${password}`).toString('base64');
      await writeFile(file, JSON.stringify({ auths: { [tokenStack.registryHost]: { auth } } }));
      return file;
    }

    it('signs with the registry credentials from a docker config', async () => {
      const image = await pushImage(tokenStack, 'e2e/token', 'v1');
      const keys = await freshKeys(tokenStack);
      const run = ok(
        await runSigner(tokenStack, [
          '--image',
          image.reference,
          '--digest',
          image.digest,
          '--docker-config',
          await dockerConfig('right-password'),
          ...keys.args,
        ]),
      );
      assert.equal(run.created, true);
      assert.equal(
        (await lookup(tokenStack, image.gun, 'v1', await tokenStack.tempDir('reader'))).sha256Hex,
        image.digest.slice(7),
      );
    });

    it('exits 3 when the token service refuses our credentials (notary answers 401)', async () => {
      const image = await pushImage(tokenStack, 'e2e/token-denied', 'v1');
      const keys = await freshKeys(tokenStack);
      const run = await runSigner(tokenStack, [
        '--image',
        image.reference,
        '--digest',
        image.digest,
        '--docker-config',
        await dockerConfig('wrong-password'),
        ...keys.args,
      ]);
      assert.equal(run.code, 3, run.stderr);
      assert.match(run.stderr, /token service rejected the credentials.*\[AUTH_FAILED\]/);
      assert.ok(!run.stderr.includes('wrong-password'));
      // Without credentials the anonymous token allows pull only, and notary answers the push with 401.
      const anonymous = await runSigner(tokenStack, [
        '--image',
        image.reference,
        '--digest',
        image.digest,
        ...keys.args,
      ]);
      assert.equal(anonymous.code, 3, anonymous.stderr);
      assert.match(
        anonymous.stderr,
        /refused the token issued for repository:.*push,pull.*\[AUTH_FAILED\]/,
      );
    });
  });
});
