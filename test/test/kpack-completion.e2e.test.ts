/**
 * `kpack-trust-signer kpack-completion` in a build pod's completion container laid out as kpack
 * v0.17.2's build_pod.go lays it out — its argument vector for an Image with `spec.notary.v1` and
 * one registry Secret of each kind, its env, its mounts as directories (Secrets with Kubernetes'
 * `..data` symlinks) — against the real notary stack behind token auth. The repository is set up as
 * kpack's docs say: a key generated for `my-key` as `docker trust key generate` writes it, added
 * as a signer, so it has `targets/releases` and `targets/my-key`. kpack's own binary is a stand-in
 * that records what it was given and writes a termination message — and, in one case, kpack
 * v0.17.2's real `cmd/completion`, built from its Go module (test/src/kube/binaries.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import {
  NotaryHttpClient,
  PublicKey,
  compileAnchor,
  encodePrivateKeyPem,
  generateSigningKey,
  resolveTarget,
  updateCollection,
} from '@kpack-trust/common';
import {
  ensureKubeBinaries,
  initRepo,
  listDelegations,
  lookup,
  pushImage,
  requireBinary,
  runNotary,
  tarOneFile,
  writeOciLayout,
  startStack,
  type NotaryStack,
  type PushedImage,
} from '@kpack-trust/e2e';

const MAIN = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const CREDENTIALS = { username: 'kpack-builder', password: 'registry-password' };
/** The passphrase `docker trust key generate` asked for; the Secret's file has whitespace around it. */
const KEY_PASSPHRASE = 'my-key passphrase';

/** A repository set up as kpack's docs set it up, and the key kpack's Secret holds. */
interface SignerSetup {
  readonly gun: string;
  readonly key: KeyObject;
  readonly keyId: string;
  /** The root key id root.json lists: what KPACK_TRUST_ROOT_KEY_ID pins. */
  readonly rootKeyId: string;
  readonly cliDir: string;
}

/** A completion container's file system: every path kpack mounts, under one directory. */
interface CompletionPod {
  readonly root: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly terminationLog: string;
  readonly standInRecord: string;
}

interface StepRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `docker trust key generate my-key` (an ECDSA key, file `<key id>.key` headed `role: my-key`, and a
 * PUBLIC KEY pem) then `docker trust signer add --key my-key.pub my-key <repo>`, done with the
 * notary CLI: the repository is created with a server-held snapshot, and both `targets/releases`
 * and `targets/my-key` list the public key itself, so the delegation's key id is the file name.
 */
async function dockerTrustSignerSetup(stack: NotaryStack, repo: string): Promise<SignerSetup> {
  const image = await pushImage(stack, repo, 'base', { content: `${repo} base` });
  const gun = image.gun;
  const cliDir = await stack.tempDir('docker-trust');
  await initRepo(stack, gun, cliDir, { serverSnapshot: true });
  const key = generateSigningKey('ecdsa');
  const keyId = PublicKey.fromKeyObject(key).id;
  const pubFile = join(cliDir, 'my-key.pub');
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' }).toString('base64');
  const lines = spki.match(/.{1,64}/g) ?? [];
  await writeFile(
    pubFile,
    [
      '-----BEGIN PUBLIC KEY-----',
      'role: my-key',
      '',
      ...lines,
      '-----END PUBLIC KEY-----',
      '',
    ].join('\n'),
  );
  for (const role of ['targets/releases', 'targets/my-key']) {
    await runNotary(stack, ['delegation', 'add', gun, role, pubFile, '--all-paths'], {
      trustDir: cliDir,
    });
  }
  await runNotary(stack, ['publish', gun], { trustDir: cliDir });
  const root = JSON.parse(
    await readFile(join(cliDir, 'tuf', gun, 'metadata', 'root.json'), 'utf8'),
  ) as { signed: { roles: { root: { keyids: string[] } } } };
  const rootKeyId = root.signed.roles.root.keyids[0] ?? '';
  return { gun, key, keyId, rootKeyId, cliDir };
}

/** A Secret volume as the kubelet mounts it: files in a timestamped dir, reached through `..data`. */
async function mountSecret(dir: string, files: Record<string, string>): Promise<void> {
  const data = join(dir, '..2026_12_06_21_00_00.000000001');
  await mkdir(data, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    await writeFile(join(data, name), text);
    await symlink(join('..data', name), join(dir, name));
  }
  await symlink('..2026_12_06_21_00_00.000000001', join(dir, '..data'));
}

/**
 * The stand-in for kpack's completion binary: records its arguments and env, writes a termination
 * message. (A script cannot see the argv[0] it was started with — the kernel replaces it with the
 * interpreter — so that is checked with kpack's real binary and in the unit tests.)
 */
async function writeStandIn(file: string, record: string): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  await writeFile(
    file,
    `#!${process.execPath}
const { writeFileSync, mkdirSync } = require('node:fs');
const { dirname } = require('node:path');
writeFileSync(${JSON.stringify(record)}, JSON.stringify({ args: process.argv.slice(2), home: process.env.HOME, cacheTag: process.env.CACHE_TAG }));
mkdirSync(dirname(process.env.TERMINATION_MESSAGE_PATH), { recursive: true });
writeFileSync(process.env.TERMINATION_MESSAGE_PATH, 'stand-in build metadata');
console.log('Build successful');
`,
  );
  await chmod(file, 0o755);
}

type CredentialKind = 'basic-auth' | 'dockerconfigjson' | 'dockercfg';

/**
 * The completion container of a build pod for an Image with `spec.notary.v1`, whose service account
 * has one registry Secret of each kind; `live` is the kind holding the stack's real credentials
 * (the others name registries that do not exist here). Argument order is build_pod.go's: notary,
 * then each Secret's flag, then two cosign annotations.
 */
async function completionPod(
  stack: NotaryStack,
  setup: SignerSetup,
  report: { tags: string[]; digest: string } | undefined,
  options: {
    live?: CredentialKind;
    notary?: boolean;
    keyFiles?: Record<string, string>;
    basicAuthFiles?: Record<string, string>;
    env?: Record<string, string>;
  } = {},
): Promise<CompletionPod> {
  const root = await stack.tempDir('completion-pod');
  const live = options.live ?? 'basic-auth';
  const host = (kind: CredentialKind): string =>
    kind === live ? stack.registryHost : `${kind}.registry.invalid`;
  const auth = Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64');
  const secrets = join(root, 'var', 'build-secrets');
  await mountSecret(join(secrets, 'registry-basic'), options.basicAuthFiles ?? CREDENTIALS);
  await mountSecret(join(secrets, 'registry-json'), {
    '.dockerconfigjson': JSON.stringify({ auths: { [host('dockerconfigjson')]: { auth } } }),
  });
  await mountSecret(join(secrets, 'registry-cfg'), {
    '.dockercfg': JSON.stringify({ [host('dockercfg')]: { auth, email: 'ci@example.com' } }),
  });
  await mountSecret(
    join(root, 'var', 'notary', 'v1'),
    options.keyFiles ?? {
      [`${setup.keyId}.key`]: encodePrivateKeyPem(setup.key, KEY_PASSPHRASE, { role: 'my-key' }),
      password: `\n  ${KEY_PASSPHRASE} \r\n`,
    },
  );
  await mkdir(join(root, 'var', 'report'), { recursive: true });
  if (report !== undefined) {
    await writeFile(
      join(root, 'var', 'report', 'report.toml'),
      `[image]\ntags = [${report.tags.map((t) => JSON.stringify(t)).join(', ')}]\ndigest = "${report.digest}"\n`,
    );
  }
  await mkdir(join(root, 'builder', 'home'), { recursive: true });
  const standIn = join(root, 'cnb', 'process', 'kpack-completion');
  const standInRecord = join(root, 'stand-in.json');
  await writeStandIn(standIn, standInRecord);
  const terminationLog = join(root, 'tmp', 'termination-log');
  const argv = [
    ...(options.notary === false ? [] : [`-notary-v1-url=${stack.notaryUrl}`]),
    `-basic-docker=registry-basic=${host('basic-auth')}`,
    '-dockerconfig=registry-json',
    '-dockercfg=registry-cfg',
    '-cosign-annotations=buildTimestamp=20261206.210000',
    '-cosign-annotations=buildNumber=1',
  ];
  return {
    root,
    argv,
    terminationLog,
    standInRecord,
    env: {
      PATH: process.env['PATH'] ?? '',
      // build_pod.go's env for the completion container.
      HOME: join(root, 'builder', 'home'),
      CACHE_TAG: '',
      TERMINATION_MESSAGE_PATH: terminationLog,
      // The mounts, moved under the pod's directory, and what the image would bake in.
      KPACK_TRUST_REPORT_DIR: join(root, 'var', 'report'),
      KPACK_TRUST_NOTARY_KEYS_DIR: join(root, 'var', 'notary', 'v1'),
      KPACK_TRUST_BUILD_SECRETS_DIR: secrets,
      KPACK_TRUST_KPACK_COMPLETION: standIn,
      KPACK_TRUST_NOTARY_CA: stack.caFile,
      KPACK_TRUST_ROOT_KEY_ID: setup.rootKeyId,
      ...options.env,
    },
  };
}

/**
 * Runs the step. With `kpackPaths`, in a private mount namespace whose /var is a fresh tmpfs with
 * the pod's report and build secrets bind-mounted at kpack's fixed paths — kpack's own binary
 * reads /var/report and /var/build-secrets and nothing else — so this machine's /var is untouched.
 */
function runStep(pod: CompletionPod, kpackPaths = false): Promise<StepRun> {
  const step = [process.execPath, MAIN, 'kpack-completion', ...pod.argv];
  const [command = '', ...args] = kpackPaths
    ? [
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        '/bin/sh',
        '-ec',
        'mount -t tmpfs tmpfs /var; mkdir /var/report /var/build-secrets; ' +
          'mount --bind "$0/var/report" /var/report; ' +
          'mount --bind "$0/var/build-secrets" /var/build-secrets; exec "$@"',
        pod.root,
        ...step,
      ]
    : step;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: pod.env,
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

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The server's version of each targets role of `gun`. */
async function roleVersions(stack: NotaryStack, gun: string): Promise<Record<string, number>> {
  const client = new NotaryHttpClient({
    baseUrl: stack.notaryUrl,
    ca: stack.caPem,
    credentials: {
      credentialsFor: () => Promise.resolve(CREDENTIALS),
    },
  });
  const out: Record<string, number> = {};
  try {
    for (const role of ['targets', 'targets/releases', 'targets/my-key']) {
      try {
        const bytes = await client.fetchMetadata(gun, { role, maxBytes: 1 << 20 });
        out[role] = (
          JSON.parse(Buffer.from(bytes).toString('utf8')) as { signed: { version: number } }
        ).signed.version;
      } catch {
        out[role] = 0;
      }
    }
  } finally {
    client.close();
  }
  return out;
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

/** One "error:" line on stderr, the exit code, kpack's binary not run, nothing published. */
async function assertRefused(
  stack: NotaryStack,
  setup: SignerSetup,
  pod: CompletionPod,
  pattern: RegExp,
  code = 2,
): Promise<void> {
  const before = await roleVersions(stack, setup.gun);
  const run = await runStep(pod);
  assert.equal(run.code, code, run.stderr);
  const errors = run.stderr.split('\n').filter((line) => line.includes('error:'));
  assert.equal(errors.length, 1, run.stderr);
  assert.match(errors[0] ?? '', pattern);
  assert.match(errors[0] ?? '', /kpack's completion was not run$/);
  assert.ok(!run.stderr.includes(KEY_PASSPHRASE) && !run.stderr.includes(CREDENTIALS.password));
  assert.equal(await exists(pod.standInRecord), false, "kpack's binary must not run");
  assert.equal(await exists(pod.terminationLog), false);
  assert.deepEqual(await roleVersions(stack, setup.gun), before);
}

/**
 * An image as lifecycle exports it, as far as kpack's completion reads it: the stack id, build and
 * lifecycle metadata labels (cnb.RemoteMetadataRetriever), pushed with skopeo.
 */
async function pushBuiltImage(
  stack: NotaryStack,
  repo: string,
  tag: string,
): Promise<{ digest: string; size: number; gun: string }> {
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const layer = tarOneFile('app.txt', Buffer.from(`${repo}:${tag}\n`));
  const layerDigest = `sha256:${sha(layer)}`;
  const runImage = `${stack.registryHost}/kpack/run-image`;
  const labels = {
    'io.buildpacks.stack.id': 'io.buildpacks.stacks.jammy',
    'io.buildpacks.build.metadata': JSON.stringify({
      buildpacks: [{ id: 'paketo-buildpacks/go', version: '4.13.0' }],
      launcher: { version: '0.20.5' },
    }),
    'io.buildpacks.lifecycle.metadata': JSON.stringify({
      runImage: { topLayer: layerDigest, reference: `${runImage}@sha256:${'ab'.repeat(32)}` },
      stack: { runImage: { image: runImage } },
    }),
  };
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Labels: labels },
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
    }),
  );
  const configDigest = `sha256:${sha(config)}`;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: layerDigest,
          size: layer.length,
        },
      ],
    }),
  );
  const manifestDigest = `sha256:${sha(manifest)}`;
  const layout = await stack.tempDir('built-image');
  await writeOciLayout(
    layout,
    {
      manifest,
      manifestDigest,
      blobs: new Map([
        [layerDigest, layer],
        [configDigest, config],
        [manifestDigest, manifest],
      ]),
    },
    tag,
  );
  const skopeo = spawn(
    requireBinary('skopeo'),
    [
      '--insecure-policy',
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      '--dest-no-creds',
      '--preserve-digests',
      `oci:${layout}:${tag}`,
      `docker://${stack.registryHost}/${repo}:${tag}`,
    ],
    { stdio: 'inherit' },
  );
  const code = await new Promise<number | null>((resolve) => skopeo.on('close', resolve));
  assert.equal(code, 0, 'skopeo copy');
  return { digest: manifestDigest, size: manifest.length, gun: `${stack.registryHost}/${repo}` };
}

describe("kpack-completion in kpack v0.17.2's completion container, on the real notary stack", () => {
  let stack: NotaryStack;
  let setup: SignerSetup;
  let image: PushedImage;

  before(async () => {
    stack = await startStack({ auth: 'token', credentials: CREDENTIALS, anonymousPull: true });
    setup = await dockerTrustSignerSetup(stack, 'kpack/app');
    image = await pushImage(stack, 'kpack/app', 'build-1', { content: 'kpack build 1' });
  });
  after(async () => {
    await stack.stop();
  });

  it('signs both delegations from the report with registry credentials of each kind, then runs kpack’s binary without -notary-v1-url', async () => {
    for (const [i, live] of (['basic-auth', 'dockerconfigjson', 'dockercfg'] as const).entries()) {
      const build = await pushImage(stack, 'kpack/app', `b${i}`, { content: `build ${live}` });
      const tags = [`${setup.gun}:b${i}`, `${setup.gun}:latest`];
      const pod = await completionPod(stack, setup, { tags, digest: build.digest }, { live });
      const run = await runStep(pod);
      assert.equal(run.code, 0, `${live}: ${run.stderr}`);
      const summary = JSON.parse(run.stdout.split('\n')[0] ?? '') as {
        roles: string[];
        rolesPublished: string[];
      };
      assert.deepEqual(summary.roles, ['targets/releases', 'targets/my-key']);
      assert.deepEqual(summary.rolesPublished, ['targets/releases', 'targets/my-key']);

      const reader = await stack.tempDir('reader');
      for (const tag of [`b${i}`, 'latest']) {
        const found = await lookup(stack, setup.gun, tag, reader);
        assert.deepEqual([found.sha256Hex, found.size], [build.digest.slice(7), build.size]);
      }
      const standIn = JSON.parse(await readFile(pod.standInRecord, 'utf8')) as {
        args: string[];
        home: string;
      };
      assert.deepEqual(standIn.args, pod.argv.slice(1));
      assert.equal(standIn.home, pod.env['HOME']);
      assert.equal(await readFile(pod.terminationLog, 'utf8'), 'stand-in build metadata');
      assert.match(run.stdout, /Build successful/);
    }
  });

  it('leaves a tag Docker resolves from targets/releases, and the CLI lists both delegations', async () => {
    const tags = [`${setup.gun}:docker-order`];
    const pod = await completionPod(stack, setup, { tags, digest: image.digest });
    assert.equal((await runStep(pod)).code, 0);
    const client = new NotaryHttpClient({
      baseUrl: stack.notaryUrl,
      ca: stack.caPem,
      credentials: { credentialsFor: () => Promise.resolve(CREDENTIALS) },
    });
    try {
      const collection = await updateCollection(client, setup.gun, {
        anchor: compileAnchor({ rootKeyIds: [setup.rootKeyId] }, setup.gun),
        now: new Date(),
      });
      const found = resolveTarget(collection, 'docker-order');
      assert.deepEqual([found.role, found.sha256Hex], ['targets/releases', image.digest.slice(7)]);
      const mine = collection.targetsRoles.get('targets/my-key')?.metadata.targets;
      assert.equal(mine?.get('docker-order')?.length, image.size);
    } finally {
      client.close();
    }
    const delegations = await listDelegations(stack, setup.gun, setup.cliDir);
    assert.deepEqual(delegations.map((d) => [d.role, d.keyIds]).sort(), [
      ['targets/my-key', [setup.keyId]],
      ['targets/releases', [setup.keyId]],
    ]);
  });

  it("without -notary-v1-url signs nothing and gives kpack's binary the vector unchanged", async () => {
    const tags = [`${setup.gun}:no-notary`];
    const pod = await completionPod(
      stack,
      setup,
      { tags, digest: image.digest },
      { notary: false },
    );
    const before = await roleVersions(stack, setup.gun);
    const run = await runStep(pod);
    assert.equal(run.code, 0, run.stderr);
    const standIn = JSON.parse(await readFile(pod.standInRecord, 'utf8')) as { args: string[] };
    assert.deepEqual(standIn.args, pod.argv);
    assert.deepEqual(await roleVersions(stack, setup.gun), before);
    assert.equal(await readFile(pod.terminationLog, 'utf8'), 'stand-in build metadata');
  });

  it("then runs kpack v0.17.2's own completion binary, which writes the build metadata kpack's controller reads", async () => {
    const kube = await ensureKubeBinaries();
    assert.equal(kube.versions.kpack, 'v0.17.2');
    const built = await pushBuiltImage(stack, 'kpack/app', 'real-kpack');
    const tags = [`${setup.gun}:real-kpack`];
    const pod = await completionPod(
      stack,
      setup,
      { tags, digest: built.digest },
      { env: { KPACK_TRUST_KPACK_COMPLETION: kube.kpackCompletion } },
    );
    const run = await runStep(pod, true);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    // kpack's own last line, after our summary line.
    assert.match(run.stdout, /^\{"gun":.*\}\nBuild successful\n$/s);
    const found = await lookup(stack, setup.gun, 'real-kpack', await stack.tempDir('reader'));
    assert.equal(found.sha256Hex, built.digest.slice(7));
    // cnb.CompressBuildMetadata: base64 of gzipped JSON, what the controller decompresses.
    const message = await readFile(pod.terminationLog, 'utf8');
    const metadata = JSON.parse(gunzipSync(Buffer.from(message, 'base64')).toString('utf8')) as {
      latestImage: string;
      stackID: string;
      stackRunImage: string;
      lifecycleVersion: string;
      buildpackMetadata: { id: string; version: string }[];
    };
    assert.equal(metadata.latestImage, `${setup.gun}@${built.digest}`);
    assert.equal(metadata.stackID, 'io.buildpacks.stacks.jammy');
    assert.equal(metadata.lifecycleVersion, '0.20.5');
    assert.deepEqual(
      metadata.buildpackMetadata.map((b) => [b.id, b.version]),
      [['paketo-buildpacks/go', '4.13.0']],
    );
  });

  describe('refuses bad input in one line, runs nothing of kpack and publishes nothing', () => {
    it('no report', async () => {
      const pod = await completionPod(stack, setup, undefined);
      await assertRefused(stack, setup, pod, /report\.toml does not exist.*\[INPUT_INVALID\]/);
    });

    it('a notary Secret with no key', async () => {
      const tags = [`${setup.gun}:x`];
      const pod = await completionPod(
        stack,
        setup,
        { tags, digest: image.digest },
        { keyFiles: { password: KEY_PASSPHRASE } },
      );
      await assertRefused(stack, setup, pod, /holds no <key id>\.key file.*\[KEY_STORE_INVALID\]/);
    });

    it('a wrong password', async () => {
      const tags = [`${setup.gun}:x`];
      const keyFiles = {
        [`${setup.keyId}.key`]: encodePrivateKeyPem(setup.key, KEY_PASSPHRASE, { role: 'my-key' }),
        password: 'not the passphrase\n',
      };
      const pod = await completionPod(stack, setup, { tags, digest: image.digest }, { keyFiles });
      await assertRefused(stack, setup, pod, /\[PRIVATE_KEY_INVALID\]/);
    });

    it('a key no delegation lists', async () => {
      const stranger = generateSigningKey('ecdsa');
      const keyFiles = {
        [`${PublicKey.fromKeyObject(stranger).id}.key`]: encodePrivateKeyPem(
          stranger,
          KEY_PASSPHRASE,
          { role: 'my-key' },
        ),
        password: KEY_PASSPHRASE,
      };
      const tags = [`${setup.gun}:x`];
      const pod = await completionPod(stack, setup, { tags, digest: image.digest }, { keyFiles });
      await assertRefused(
        stack,
        setup,
        pod,
        /no delegation roles found .*targets\/releases, targets\/my-key.*\[SIGNING_KEY_UNUSABLE\]/,
      );
    });

    it('tags in two repositories', async () => {
      const tags = [`${setup.gun}:x`, `${stack.registryHost}/kpack/other:x`];
      const pod = await completionPod(stack, setup, { tags, digest: image.digest });
      await assertRefused(stack, setup, pod, /the tags belong to 2 repositories/);
    });

    it('notary unreachable', async () => {
      const tags = [`${setup.gun}:x`];
      const pod = await completionPod(stack, setup, { tags, digest: image.digest });
      const dead = `https://127.0.0.1:${await freePort()}`;
      const argv = pod.argv.map((a) =>
        a.startsWith('-notary-v1-url=') ? `-notary-v1-url=${dead}` : a,
      );
      await assertRefused(stack, setup, { ...pod, argv }, /ECONNREFUSED.*\[HTTP_UNREACHABLE\]/, 4);
    });

    it('a -notary-v1-url that sign --notary-url refuses too: plain http, credentials, a query', async () => {
      const tags = [`${setup.gun}:x`];
      const pod = await completionPod(stack, setup, { tags, digest: image.digest });
      const { host } = new URL(stack.notaryUrl);
      // The stack's own server each time, so the URL rule is the only thing that can refuse.
      const cases: [string, RegExp][] = [
        [`http://${host}`, /must be an https:\/\/ URL, not http:\/\//],
        [
          `https://${CREDENTIALS.username}:${CREDENTIALS.password}@${host}`,
          /must not hold credentials/,
        ],
        [`https://${host}/?x=1`, /must not have a query or fragment/],
      ];
      for (const [url, pattern] of cases) {
        const argv = pod.argv.map((a) =>
          a.startsWith('-notary-v1-url=') ? `-notary-v1-url=${url}` : a,
        );
        await assertRefused(
          stack,
          setup,
          { ...pod, argv },
          new RegExp(`-notary-v1-url ${pattern.source}.*\\[CONFIG_INVALID\\]`),
        );
      }
    });

    it('a basic-auth Secret without its password file', async () => {
      const tags = [`${setup.gun}:x`];
      const pod = await completionPod(
        stack,
        setup,
        { tags, digest: image.digest },
        { basicAuthFiles: { username: CREDENTIALS.username } },
      );
      await assertRefused(
        stack,
        setup,
        pod,
        /basic-auth Secret "registry-basic" .* has no password file.*\[CREDENTIALS_INVALID\]/,
      );
    });
  });
});
