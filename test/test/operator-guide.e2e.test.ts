/**
 * The procedures of docs/operator-guide.md that no other test runs, against the real stack:
 * kpack-trust-signer and kpack-trust-verifier as child processes with exactly the flags the guide
 * shows, keys rotated by the real `notary` CLI, and the verifier's `check` as the gate a CI step
 * (or an operator after a rotation) runs. Kubernetes Secrets live in the real kube-apiserver
 * (test/src/kube/control-plane.ts), and the signer reaches them as a service account bound to the
 * Role of the guide's §3.2, applied with kubectl exactly as printed there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { PublicKey, encodePrivateKeyPem, generateSigningKey } from '@kpack-trust/common';
import type { SignSummary } from '@kpack-trust/signer';
import {
  DEFAULT_PASSPHRASE,
  initRepo,
  notaryCli,
  pushImage,
  rotateKey,
  rotateRoot,
  startControlPlane,
  startStack,
  type ControlPlane,
  type NotaryStack,
  writeVerifierConfig,
} from '../src/index.js';

const SIGNER = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const VERIFIER = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/verifier')));
const GUIDE = fileURLToPath(new URL('../../../docs/operator-guide.md', import.meta.url));
const NAMESPACE = 'builds';
const KEY_PASSWORD = 'guide key password';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a built CLI with a clean environment (PATH, HOME in the stack dir, plus `env`). */
function run(
  stack: NotaryStack,
  main: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: stack.workDir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** `kpack-trust-signer sign --notary-url URL --notary-ca CA …args`; exit 0 and its summary. */
async function sign(
  stack: NotaryStack,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<SignSummary> {
  const result = await signRun(stack, args, env);
  assert.equal(result.code, 0, `signer exited ${result.code}\n${result.stderr}`);
  return JSON.parse(result.stdout.trim()) as SignSummary;
}

function signRun(
  stack: NotaryStack,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<Run> {
  return run(
    stack,
    SIGNER,
    ['sign', '--notary-url', stack.notaryUrl, '--notary-ca', stack.caFile, ...args],
    env,
  );
}

/** What `kpack-trust-verifier check` prints. */
interface CheckOutput {
  readonly allowed: boolean;
  readonly namespace: string;
  readonly reason?: string;
  readonly images: readonly { readonly image: string; readonly digest?: string }[];
}

/** `kpack-trust-verifier check --config FILE …args`: its exit status and printed decision. */
async function check(
  stack: NotaryStack,
  config: string,
  args: readonly string[],
): Promise<{ code: number; output: CheckOutput }> {
  const result = await run(stack, VERIFIER, ['check', '--config', config, ...args]);
  return { code: result.code, output: JSON.parse(result.stdout) as CheckOutput };
}

/** A verifier config for the stack's registry pinning `rootKeys` (the guide's pinning example). */
function verifierConfig(stack: NotaryStack, rootKeys: readonly string[]): Promise<string> {
  return writeVerifierConfig(stack, {
    rules: [
      `  - images: "${stack.registryHost}/guide/*"`,
      `    trust: { rootKeys: [${rootKeys.map((k) => `"${k}"`).join(', ')}] }`,
    ].join('\n'),
  });
}

async function writeReport(stack: NotaryStack, tags: string[], digest: string): Promise<string> {
  const file = join(await stack.tempDir('report'), 'report.toml');
  await writeFile(
    file,
    `[image]\ntags = [${tags.map((t) => JSON.stringify(t)).join(', ')}]\ndigest = "${digest}"\n`,
  );
  return file;
}

/** kpack's mounted-Secret layout: `<canonical key id>.key` and `password`. */
async function writeKeysDir(
  dir: string,
  key: KeyObject,
  role: 'root' | 'targets',
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, `${PublicKey.fromKeyObject(key).id}.key`),
    encodePrivateKeyPem(key, KEY_PASSWORD, { role }),
  );
  await writeFile(join(dir, 'password'), `${KEY_PASSWORD}\n`);
  return dir;
}

/** Root and targets keys in two kpack-style directories, as the guide's first build mounts them. */
async function keyDirs(
  stack: NotaryStack,
): Promise<{ root: KeyObject; rootDir: string; targetsDir: string }> {
  const base = await stack.tempDir('keys');
  const root = generateSigningKey();
  return {
    root,
    rootDir: await writeKeysDir(join(base, 'root'), root, 'root'),
    targetsDir: await writeKeysDir(join(base, 'targets'), generateSigningKey(), 'targets'),
  };
}

/** A notary trust dir holding the repository's root key, as the guide tells operators to make. */
async function trustDirWithRoot(stack: NotaryStack, root: KeyObject): Promise<string> {
  const dir = await stack.tempDir('trust');
  await mkdir(join(dir, 'private'), { recursive: true, mode: 0o700 });
  await writeFile(
    join(dir, 'private', `${PublicKey.fromKeyObject(root).id}.key`),
    encodePrivateKeyPem(root, DEFAULT_PASSPHRASE, { role: 'root' }),
    { mode: 0o600 },
  );
  return dir;
}

/** The key file with `role: <role>` the notary CLI keeps in a trust dir. */
/** The Role YAML block of the guide's §3.2, as an operator would copy it. */
async function guideRole(): Promise<string> {
  const guide = await readFile(GUIDE, 'utf8');
  const section = guide.slice(guide.indexOf('### 3.2 RBAC'));
  const block = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
  if (block?.includes('kind: Role') !== true) {
    throw new Error('docs/operator-guide.md §3.2 has no Role block');
  }
  return block;
}

async function cliKeyFile(trustDir: string, role: string): Promise<{ name: string; pem: string }> {
  const dir = join(trustDir, 'private');
  for (const name of await readdir(dir)) {
    const pem = await readFile(join(dir, name), 'utf8');
    if (new RegExp(`^role: ${role}$`, 'm').test(pem)) return { name, pem };
  }
  throw new Error(`no ${role} key in ${dir}`);
}

describe('operator guide procedures against notary-server, the notary CLI and the CLIs', () => {
  let stack: NotaryStack;
  let cluster: ControlPlane | undefined;
  let kubeconfig: string;

  const kubectl = async (args: readonly string[], input?: string): Promise<string> => {
    assert.ok(cluster);
    const result = await cluster.kubectl(args, input === undefined ? {} : { input });
    assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };

  before(async () => {
    [stack, cluster] = await Promise.all([
      startStack(),
      startControlPlane({ controllerManager: false }),
    ]);
    await kubectl(['create', 'namespace', NAMESPACE]);
    // The guide's §3.2 Role, verbatim, bound to the service account the builds run as.
    await kubectl(['apply', '-f', '-'], await guideRole());
    await kubectl(['create', 'serviceaccount', 'builder', '-n', NAMESPACE]);
    await kubectl([
      'create',
      'rolebinding',
      'kpack-trust-signer',
      '--role=kpack-trust-signer',
      `--serviceaccount=${NAMESPACE}:builder`,
      '-n',
      NAMESPACE,
    ]);
    const token = (await kubectl(['create', 'token', 'builder', '-n', NAMESPACE])).trim();
    kubeconfig = await cluster.writeKubeconfig(join(await stack.tempDir('kube'), 'config'), {
      token,
    });
  });
  after(async () => {
    await cluster?.stop();
    await stack.stop();
  });

  /** The Secret, read back with kubectl as the cluster admin. */
  const getSecret = async (
    name: string,
  ): Promise<{ metadata: { annotations?: Record<string, string> } }> =>
    JSON.parse(await kubectl(['get', 'secret', name, '-n', NAMESPACE, '-o', 'json'])) as {
      metadata: { annotations?: Record<string, string> };
    };

  it('Secret store: keys made on the first build and reused, one root for the namespace, check gates on the pin', async () => {
    const first = await pushImage(stack, 'guide/secrets', 'b1', { content: 'secrets build 1' });
    const gun = first.gun;
    // In a pod the service account answers; here $KUBECONFIG does, with the same flags.
    const flags = [
      '--secret-store',
      'kubernetes',
      '--namespace',
      NAMESPACE,
      '--root-key-secret',
      'app-notary-root',
      '--targets-key-secret',
      'app-notary-targets',
    ];
    const env = { KUBECONFIG: kubeconfig };
    const one = await sign(
      stack,
      [
        '--report',
        await writeReport(stack, [`${gun}:b1`, `${gun}:latest`], first.digest),
        ...flags,
      ],
      env,
    );
    assert.deepEqual([one.created, one.keysCreated], [true, true]);
    const rootSecret = await getSecret('app-notary-root');
    assert.equal(rootSecret.metadata.annotations?.['kpack-trust.io/root-key-id'], one.rootKeyId);
    await getSecret('app-notary-targets');

    const second = await pushImage(stack, 'guide/secrets', 'b2', { content: 'secrets build 2' });
    const two = await sign(
      stack,
      [
        '--report',
        await writeReport(stack, [`${gun}:b2`, `${gun}:latest`], second.digest),
        ...flags,
      ],
      env,
    );
    assert.deepEqual([two.created, two.keysCreated], [false, false]);
    assert.equal(two.rootKeyId, one.rootKeyId);
    assert.deepEqual(two.rolesPublished, ['targets']);

    const config = await verifierConfig(stack, [one.rootKeyId]);
    const admitted = await check(stack, config, [`${gun}:latest`]);
    assert.equal(admitted.code, 0, JSON.stringify(admitted.output));
    assert.equal(admitted.output.images[0]?.digest, second.digest);
    const denied = await check(stack, config, ['--namespace', 'team', `${gun}:unsigned`]);
    assert.equal(denied.code, 1);
    assert.equal(denied.output.namespace, 'team');
    assert.match(denied.output.reason ?? '', /^\S+:unsigned: not signed in notary /);

    // The same two Secrets sign a second repository: the same root key in a certificate for that
    // repository, so one pin on the canonical id covers both.
    const other = await pushImage(stack, 'guide/other', 'b1', { content: 'other image' });
    const three = await sign(
      stack,
      ['--report', await writeReport(stack, [`${other.gun}:b1`], other.digest), ...flags],
      env,
    );
    assert.deepEqual([three.created, three.keysCreated], [true, false]);
    assert.equal(three.rootCanonicalKeyId, one.rootCanonicalKeyId);
    assert.notEqual(three.rootKeyId, one.rootKeyId);
    const both = await check(stack, await verifierConfig(stack, [one.rootCanonicalKeyId]), [
      `${gun}:latest`,
      `${other.gun}:b1`,
    ]);
    assert.equal(both.code, 0, JSON.stringify(both.output));
  });

  it("kpack's keys dir: a repository the notary CLI set up, its targets key in the Secret, every build pinned to the root key list shows", async () => {
    const first = await pushImage(stack, 'guide/keysdir', 'b1', { content: 'keys dir build 1' });
    const gun = first.gun;
    // notary init, key rotate … snapshot -r, publish: the repository exists before any build.
    const trustDir = await stack.tempDir('trust');
    await initRepo(stack, gun, trustDir, { serverSnapshot: true });
    const list = await notaryCli(stack, ['key', 'list'], { trustDir });
    assert.equal(list.code, 0, list.stderr);
    const rootIds = [...list.stdout.matchAll(/^root\s+([0-9a-f]{64})\s/gm)].map((m) => m[1]);
    assert.equal(rootIds.length, 1, list.stdout);
    const rootId = rootIds[0] ?? '';

    // The Secret spec.notary.v1.secretRef names: the CLI's targets key file and its passphrase.
    const keysDir = join(await stack.tempDir('keys'), 'notary-v1');
    await mkdir(keysDir);
    const targetsKey = await cliKeyFile(trustDir, 'targets');
    await writeFile(join(keysDir, targetsKey.name), targetsKey.pem);
    await writeFile(join(keysDir, 'password'), DEFAULT_PASSPHRASE);

    const build = await sign(stack, [
      '--report',
      await writeReport(stack, [`${gun}:b1`, `${gun}:latest`], first.digest),
      '--keys-dir',
      keysDir,
      '--root-key-id',
      rootId,
    ]);
    assert.equal(build.created, false);
    assert.deepEqual(build.rolesPublished, ['targets']);
    assert.equal(build.rootCanonicalKeyId, rootId);

    // A pin on another key refuses the repository: nothing is signed on trust data it cannot anchor.
    const second = await pushImage(stack, 'guide/keysdir', 'b2', { content: 'keys dir build 2' });
    const wrong = await signRun(stack, [
      '--report',
      await writeReport(stack, [`${gun}:b2`], second.digest),
      '--keys-dir',
      keysDir,
      '--root-key-id',
      'ab'.repeat(32),
    ]);
    assert.equal(wrong.code, 2, wrong.stderr);
    assert.match(
      wrong.stderr,
      /root is not signed by the pinned root key (ab){32}\. \[SIGNING_KEY_UNUSABLE\]/,
    );
    const config = await verifierConfig(stack, [rootId]);
    assert.equal((await check(stack, config, [`${gun}:latest`])).code, 0);
    assert.equal((await check(stack, config, [`${gun}:b2`])).code, 1);
  });

  it('root rotation by the notary CLI: old and new pins verify, builds go on, the new key moves into the store', async () => {
    const first = await pushImage(stack, 'guide/rotate-root', 'b1', { content: 'root rotation 1' });
    const gun = first.gun;
    const keys = await keyDirs(stack);
    const created = await sign(stack, [
      '--image',
      first.reference,
      '--digest',
      first.digest,
      '--keys-dir',
      keys.targetsDir,
      '--root-keys-dir',
      keys.rootDir,
    ]);
    const trustDir = await trustDirWithRoot(stack, keys.root);
    assert.deepEqual(await rotateRoot(stack, gun, trustDir), { before: 1, after: 2 });

    for (const pin of [created.rootKeyId, created.rootCanonicalKeyId]) {
      const result = await check(stack, await verifierConfig(stack, [pin]), [`${gun}:b1`]);
      assert.equal(result.code, 0, JSON.stringify(result.output));
    }
    const second = await pushImage(stack, 'guide/rotate-root', 'b2', {
      content: 'root rotation 2',
    });
    const next = await sign(stack, [
      '--report',
      await writeReport(stack, [`${gun}:b2`], second.digest),
      '--keys-dir',
      keys.targetsDir,
      '--root-key-id',
      created.rootKeyId,
    ]);
    assert.deepEqual(next.rolesPublished, ['targets']);
    assert.equal(next.versions['root'], 2);
    // The new root key is the one `notary key list` shows beside the old one.
    const list = await notaryCli(stack, ['key', 'list'], { trustDir });
    assert.equal(list.code, 0, list.stderr);
    const rootIds = [...list.stdout.matchAll(/^root\s+([0-9a-f]{64})\s/gm)].map((m) => m[1]);
    const newRootId = rootIds.find((id) => id !== created.rootCanonicalKeyId) ?? '';
    assert.deepEqual(rootIds.sort(), [created.rootCanonicalKeyId, newRootId].sort());

    // A store still holding the superseded root key signs targets, and its summary names the
    // repository's new root: the pin to move the verifier to.
    const third = await pushImage(stack, 'guide/rotate-root', 'b3', { content: 'root rotation 3' });
    const stale = await sign(stack, [
      '--report',
      await writeReport(stack, [`${gun}:b3`], third.digest),
      '--keys-dir',
      keys.targetsDir,
      '--root-keys-dir',
      keys.rootDir,
    ]);
    assert.deepEqual(stale.rolesPublished, ['targets']);
    assert.equal(stale.rootCanonicalKeyId, newRootId);
    assert.notEqual(stale.rootKeyId, created.rootKeyId);
    for (const pin of [stale.rootKeyId, newRootId]) {
      const result = await check(stack, await verifierConfig(stack, [pin]), [`${gun}:b3`]);
      assert.equal(result.code, 0, JSON.stringify(result.output));
    }

    // Moved into the store (its file and passphrase), the new root key is the signer's root key.
    const movedRoot = join(await stack.tempDir('keys'), 'root-rotated');
    await mkdir(movedRoot);
    await writeFile(
      join(movedRoot, `${newRootId}.key`),
      await readFile(join(trustDir, 'private', `${newRootId}.key`), 'utf8'),
    );
    await writeFile(join(movedRoot, 'password'), DEFAULT_PASSPHRASE);
    const fourth = await pushImage(stack, 'guide/rotate-root', 'b4', {
      content: 'root rotation 4',
    });
    const moved = await sign(stack, [
      '--report',
      await writeReport(stack, [`${gun}:b4`], fourth.digest),
      '--keys-dir',
      keys.targetsDir,
      '--root-keys-dir',
      movedRoot,
    ]);
    assert.deepEqual(moved.rolesPublished, ['targets']);
    assert.deepEqual([moved.rootKeyId, moved.rootCanonicalKeyId], [stale.rootKeyId, newRootId]);
  });

  it('targets key rotation by the notary CLI: the old key is refused, the key the CLI made signs', async () => {
    const first = await pushImage(stack, 'guide/rotate-targets', 'b1', { content: 'targets 1' });
    const gun = first.gun;
    const keys = await keyDirs(stack);
    const created = await sign(stack, [
      '--image',
      first.reference,
      '--digest',
      first.digest,
      '--keys-dir',
      keys.targetsDir,
      '--root-keys-dir',
      keys.rootDir,
    ]);
    const trustDir = await trustDirWithRoot(stack, keys.root);
    await rotateKey(stack, gun, trustDir, 'targets');

    const second = await pushImage(stack, 'guide/rotate-targets', 'b2', { content: 'targets 2' });
    const report = await writeReport(stack, [`${gun}:b2`], second.digest);
    const stale = await signRun(stack, [
      '--report',
      report,
      '--keys-dir',
      keys.targetsDir,
      '--root-key-id',
      created.rootKeyId,
    ]);
    assert.equal(stale.code, 2, stale.stderr);
    assert.match(stale.stderr, /is not the repository's targets key/);

    // The new key file as the CLI wrote it, with its passphrase: the new content of the Secret.
    const fresh = join(await stack.tempDir('keys'), 'targets-rotated');
    await mkdir(fresh);
    const file = await cliKeyFile(trustDir, 'targets');
    await writeFile(join(fresh, file.name), file.pem);
    await writeFile(join(fresh, 'password'), DEFAULT_PASSPHRASE);
    const signed = await sign(stack, [
      '--report',
      report,
      '--keys-dir',
      fresh,
      '--root-key-id',
      created.rootKeyId,
    ]);
    assert.deepEqual(signed.rolesPublished, ['targets']);
    const config = await verifierConfig(stack, [created.rootKeyId]);
    for (const tag of ['b1', 'b2']) {
      const result = await check(stack, config, [`${gun}:${tag}`]);
      assert.equal(result.code, 0, JSON.stringify(result.output));
    }
  });
});
