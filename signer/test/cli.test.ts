/**
 * The command as a whole, in process: what it prints on stdout and stderr and the exit code it
 * returns, with every edge (files, notary, registry, key store) replaced by an in-memory one.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import {
  TrustError,
  createRootCertificate,
  generateSigningKey,
  type MetadataFetcher,
  type MetadataPublisher,
  type NotaryClientOptions,
} from '@kpack-trust/common';
import { fakeManifest } from '@kpack-trust/common/testing';
import { ExitCode, exitCodeFor } from '../src/cli/exit-codes.js';
import { HELP_TEXT } from '../src/cli/help.js';
import { CONTROLLER_HELP, CONTROLLER_USAGE_POINTER } from '../src/controller/command.js';
import { USAGE_POINTER, runCli, type CliEnvironment } from '../src/cli/run.js';
import type { KeyStoreOptions } from '../src/keys/index.js';
import type { KeyStore } from '../src/keys/key-store.js';
import { KeysDirStore } from '../src/keys/keys-dir-store.js';
import type { RegistryClientOptions } from '../src/registry/manifest-client.js';
import { MemoryKeyStore } from '../src/testing/memory-key-store.js';
import { MemoryNotary } from './support/memory-notary.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const REPO = 'registry.example:5000/team/app';
const DIGEST = `sha256:${fakeManifest('cli').digestHex}`;
const SIGN = ['sign', '--notary-url', 'https://notary.example:4443', '--keys-dir', '/keys'];

interface Harness {
  readonly environment: CliEnvironment;
  readonly out: string[];
  readonly err: string[];
  readonly notaryOptions: NotaryClientOptions[];
  readonly registryOptions: RegistryClientOptions[];
  readonly storeOptions: KeyStoreOptions[];
  readonly notary: MemoryNotary;
}

function harness(
  options: {
    files?: Record<string, string>;
    env?: Record<string, string>;
    notary?: MetadataFetcher & MetadataPublisher;
    store?: KeyStore;
    sizes?: Record<string, number>;
  } = {},
): Harness {
  const out: string[] = [];
  const err: string[] = [];
  const notaryOptions: NotaryClientOptions[] = [];
  const registryOptions: RegistryClientOptions[] = [];
  const storeOptions: KeyStoreOptions[] = [];
  const notary = new MemoryNotary(NOW);
  const store = options.store ?? new MemoryKeyStore({ generate: true });
  const environment: CliEnvironment = {
    env: options.env ?? {},
    homeDir: '/home/builder',
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
    readTextFile: (path) => Promise.resolve(options.files?.[path]),
    createKeyStore: (o) => {
      storeOptions.push(o);
      return store;
    },
    connectNotary: (o) => {
      notaryOptions.push(o);
      const target = options.notary ?? notary;
      return {
        fetchMetadata: (gun, request) => target.fetchMetadata(gun, request),
        fetchServerKey: (gun, role) => target.fetchServerKey(gun, role),
        publish: (gun, files) => target.publish(gun, files),
        close: () => undefined,
      };
    },
    connectRegistry: (o) => {
      registryOptions.push(o);
      return {
        manifestSize: (_image, digest) => {
          const size = options.sizes?.[digest];
          return size === undefined
            ? Promise.reject(
                new TrustError(
                  'MANIFEST_UNKNOWN',
                  { image: REPO, digest, url: 'memory://', status: 404 },
                  `The registry does not have ${digest}.`,
                ),
              )
            : Promise.resolve(size);
        },
        close: () => undefined,
      };
    },
    now: () => NOW,
    sleep: () => Promise.resolve(),
    random: () => 0.5,
  };
  return { environment, out, err, notaryOptions, registryOptions, storeOptions, notary };
}

const POINTER = `kpack-trust-signer: ${USAGE_POINTER}`;

/** A CA bundle that parses (the CLI checks CA files before connecting). */
let caPem = '';
before(async () => {
  caPem = await createRootCertificate('ca.example', generateSigningKey());
});

const REPORT = `[image]\ntags = ["${REPO}:latest", "${REPO}:b1"]\ndigest = "${DIGEST}"\n`;

describe('runCli', () => {
  it('signs from a report: one JSON line on stdout, progress on stderr, exit 0', async () => {
    const h = harness({ files: { '/report.toml': REPORT }, sizes: { [DIGEST]: 1083 } });
    const code = await runCli([...SIGN, '--report', '/report.toml'], h.environment);
    assert.equal(code, ExitCode.OK, h.err.join('\n'));
    assert.equal(h.out.length, 1);
    const summary = JSON.parse(h.out[0] ?? '') as Record<string, unknown>;
    assert.equal(summary['gun'], REPO);
    assert.deepEqual(summary['tags'], ['latest', 'b1']);
    assert.equal(summary['digest'], DIGEST);
    assert.equal(summary['size'], 1083);
    assert.deepEqual(summary['rolesPublished'], ['root', 'targets']);
    assert.deepEqual(summary['versions'], { root: 1, targets: 2 });
    assert.equal(summary['created'], true);
    assert.match(String(summary['rootKeyId']), /^[0-9a-f]{64}$/);
    assert.ok(h.err.length > 0 && h.err.every((l) => l.startsWith('kpack-trust-signer: ')));
    assert.deepEqual(
      h.notary.targetsOf(REPO),
      new Map([
        ['latest', fakeManifest('cli').digestHex],
        ['b1', fakeManifest('cli').digestHex],
      ]),
    );
  });

  it('prints help on stdout and exits 0', async () => {
    const h = harness();
    assert.equal(await runCli(['--help'], h.environment), ExitCode.OK);
    const text = h.out.join('\n');
    for (const fragment of [
      'kpack-trust-signer sign',
      '--report FILE',
      '--keys-dir DIR',
      'Exit codes:',
      '5  still conflicting',
    ]) {
      assert.ok(text.includes(fragment), fragment);
    }
    assert.deepEqual(h.err, []);
  });

  it('exits 2 for bad flags with the error and one line pointing at --help, publishing nothing', async () => {
    const h = harness();
    assert.equal(await runCli([...SIGN, '--bogus'], h.environment), ExitCode.BAD_INPUT);
    assert.deepEqual(h.out, []);
    assert.deepEqual(h.err, [
      'kpack-trust-signer: error: unknown flag --bogus. [INPUT_INVALID]',
      POINTER,
    ]);
    assert.deepEqual(h.notaryOptions, []);
    assert.deepEqual(h.storeOptions, []);
  });

  it('exits 2 with no command (the documented usage code), not printing the whole help', async () => {
    const h = harness();
    assert.equal(await runCli([], h.environment), ExitCode.BAD_INPUT);
    assert.deepEqual(h.out, []);
    assert.deepEqual(h.err, [
      'kpack-trust-signer: error: no command given; the commands are "sign", "kpack-completion" and "controller". [INPUT_INVALID]',
      POINTER,
    ]);
  });

  it('refuses an http:// notary URL before anything is read or sent', async () => {
    const h = harness({ files: { '/report.toml': REPORT } });
    const code = await runCli(
      [
        'sign',
        '--notary-url',
        'http://notary.example',
        '--keys-dir',
        '/keys',
        '--report',
        '/report.toml',
      ],
      h.environment,
    );
    assert.equal(code, ExitCode.BAD_INPUT);
    assert.deepEqual(h.err, [
      'kpack-trust-signer: error: --notary-url must be an https:// URL, not http:// (notary serves trust data over TLS; give --notary-ca for a private CA). [INPUT_INVALID]',
      POINTER,
    ]);
    assert.deepEqual(h.notaryOptions, []);
  });

  it('checks a keys directory and the CA files before connecting: a mistake is exit 2, not 4', async () => {
    const base = [...SIGN.slice(0, 3), '--image', `${REPO}:a`, '--digest', DIGEST];
    const missingDir = harness({
      store: new KeysDirStore({ dir: '/nonexistent-kpack-trust-keys' }),
    });
    assert.equal(
      await runCli(
        [...base, '--keys-dir', '/nonexistent-kpack-trust-keys'],
        missingDir.environment,
      ),
      ExitCode.BAD_INPUT,
    );
    assert.match(
      missingDir.err.at(-1) ?? '',
      /^kpack-trust-signer: error: keys dir \/nonexistent-kpack-trust-keys .*ENOENT.*\[KEY_STORE_INVALID\]$/,
    );
    assert.deepEqual(missingDir.notaryOptions, []);
    assert.deepEqual(missingDir.registryOptions, []);
    assert.ok(!missingDir.err.some((line) => line.includes(POINTER)), 'not a usage mistake');

    for (const [flag, text, problem] of [
      ['--notary-ca', 'not a certificate', 'the file holds no PEM certificate'],
      ['--registry-ca', 'not a certificate', 'the file holds no PEM certificate'],
      [
        '--notary-ca',
        '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
        'the file holds a PEM certificate that does not parse',
      ],
    ] as const) {
      const h = harness({ files: { '/ca.pem': text } });
      assert.equal(
        await runCli([...base, '--keys-dir', '/keys', flag, '/ca.pem'], h.environment),
        ExitCode.BAD_INPUT,
      );
      assert.deepEqual(h.err, [
        `kpack-trust-signer: error: ${flag} /ca.pem: ${problem}. [INPUT_INVALID]`,
      ]);
      assert.deepEqual(h.notaryOptions, []);
      assert.deepEqual(h.storeOptions, [], 'the CA is checked before the key store is opened');
    }
  });

  it('exits 2 for a missing or unreadable report and for tags in two repositories', async () => {
    const missing = harness();
    assert.equal(
      await runCli([...SIGN, '--report', '/nope.toml'], missing.environment),
      ExitCode.BAD_INPUT,
    );
    assert.match(missing.err.at(-1) ?? '', /--report \/nope\.toml: the file does not exist/);

    const garbled = harness({ files: { '/r.toml': 'tags = [' } });
    assert.equal(
      await runCli([...SIGN, '--report', '/r.toml'], garbled.environment),
      ExitCode.BAD_INPUT,
    );
    assert.match(garbled.err.at(-1) ?? '', /\/r\.toml: not valid TOML/);

    const split = harness({ sizes: { [DIGEST]: 10 } });
    const code = await runCli(
      [
        ...SIGN,
        '--image',
        `${REPO}:a`,
        '--image',
        'registry.example:5000/team/other:a',
        '--digest',
        DIGEST,
      ],
      split.environment,
    );
    assert.equal(code, ExitCode.BAD_INPUT);
    assert.match(split.err.at(-1) ?? '', /the tags belong to 2 repositories/);
    assert.deepEqual(split.notary.publishes, []);
  });

  it('exits 2 for a digest the registry does not have', async () => {
    const h = harness();
    assert.equal(
      await runCli([...SIGN, '--image', `${REPO}:a`, '--digest', DIGEST], h.environment),
      ExitCode.BAD_INPUT,
    );
    assert.match(h.err.at(-1) ?? '', /\[MANIFEST_UNKNOWN\]$/);
    assert.deepEqual(h.notary.publishes, []);
  });

  it('skips the registry with --no-registry-check and --size', async () => {
    const h = harness();
    const code = await runCli(
      [...SIGN, '--image', `${REPO}:a`, '--digest', DIGEST, '--size', '77', '--no-registry-check'],
      h.environment,
    );
    assert.equal(code, ExitCode.OK, h.err.join('\n'));
    assert.deepEqual(h.registryOptions, []);
    assert.equal((JSON.parse(h.out[0] ?? '') as { size: number }).size, 77);
  });

  it('hands the notary CA, credentials, delegation and passphrases to the edges, and never prints a passphrase', async () => {
    const config = JSON.stringify({
      auths: {
        'registry.example:5000': { auth: Buffer.from('builder:s3cret').toString('base64') },
      },
    });
    const secret = 'passphrase-never-printed';
    const store: KeyStore = {
      description: 'failing store',
      load: () =>
        Promise.reject(
          new TrustError(
            'PRIVATE_KEY_INVALID',
            { source: '/keys/abc.key', problem: 'wrong passphrase' },
            '/keys/abc.key: wrong passphrase',
          ),
        ),
    };
    const h = harness({
      files: { '/ca.pem': caPem, '/home/builder/.docker/config.json': config },
      env: {
        KPACK_TRUST_TARGETS_PASSPHRASE: secret,
        KPACK_TRUST_ROOT_PASSPHRASE: `${secret}-root`,
      },
      store,
      sizes: { [DIGEST]: 10 },
    });
    const code = await runCli(
      [
        ...SIGN,
        '--notary-ca',
        '/ca.pem',
        '--image',
        `${REPO}:a`,
        '--digest',
        DIGEST,
        '--delegation',
        'targets/releases',
        '--root-keys-dir',
        '/root-keys',
      ],
      h.environment,
    );
    assert.equal(code, ExitCode.BAD_INPUT);
    assert.match(h.err.at(-1) ?? '', /wrong passphrase \[PRIVATE_KEY_INVALID\]/);
    assert.deepEqual(h.storeOptions, [
      {
        kind: 'directory',
        dir: '/keys',
        rootDir: '/root-keys',
        delegation: 'targets/releases',
        passphrases: { root: `${secret}-root`, targets: secret },
      },
    ]);
    // The key directory is read before any connection, so the wrong passphrase stops it there.
    assert.deepEqual(h.notaryOptions, []);
    assert.ok(![...h.out, ...h.err].some((l) => l.includes(secret) || l.includes('s3cret')));

    const ok = harness({
      files: { '/ca.pem': caPem, '/home/builder/.docker/config.json': config },
      sizes: { [DIGEST]: 10 },
    });
    assert.equal(
      await runCli(
        [...SIGN, '--notary-ca', '/ca.pem', '--image', `${REPO}:a`, '--digest', DIGEST],
        ok.environment,
      ),
      ExitCode.OK,
      ok.err.join('\n'),
    );
    const notaryOptions = ok.notaryOptions[0];
    assert.equal(notaryOptions?.ca, caPem);
    assert.deepEqual(await notaryOptions.credentials?.credentialsFor('registry.example:5000'), {
      username: 'builder',
      password: 's3cret',
    });
    assert.ok(ok.registryOptions[0]?.credentials);
  });

  it('--root-key-id: a new repository is refused before the store makes keys, and a store root that is not the pinned one is refused', async () => {
    const pin = 'ab'.repeat(32);
    const store = new MemoryKeyStore({ generate: true });
    const h = harness({ store, sizes: { [DIGEST]: 10 } });
    const args = [...SIGN, '--image', `${REPO}:a`, '--digest', DIGEST, '--root-key-id', pin];
    assert.equal(await runCli(args, h.environment), ExitCode.BAD_INPUT);
    assert.equal(store.current, undefined);
    assert.ok(store.loads.length > 0 && store.loads.every((load) => !load.createIfMissing));
    assert.match(
      h.err.join('\n'),
      /holds no root key; a key generated now could not be the pinned root key/,
    );
    assert.equal(h.notary.targetsOf(REPO).size, 0);

    const held = new MemoryKeyStore({
      keys: { root: { privateKey: generateSigningKey() }, targets: generateSigningKey() },
    });
    const other = harness({ store: held, sizes: { [DIGEST]: 10 } });
    assert.equal(await runCli(args, other.environment), ExitCode.BAD_INPUT);
    assert.match(other.err.join('\n'), /is not the pinned root key/);
    assert.equal(other.notary.targetsOf(REPO).size, 0);
  });

  it('reads a key directory once when the repository exists', async () => {
    const store = new MemoryKeyStore({ generate: true });
    const first = harness({ store, sizes: { [DIGEST]: 10 } });
    const args = [...SIGN, '--image', `${REPO}:a`, '--digest', DIGEST];
    assert.equal(await runCli(args, first.environment), ExitCode.OK, first.err.join('\n'));
    store.loads.length = 0;
    const again = harness({ store, notary: first.notary, sizes: { [DIGEST]: 10 } });
    assert.equal(
      await runCli([...SIGN, '--image', `${REPO}:b`, '--digest', DIGEST], again.environment),
      ExitCode.OK,
      again.err.join('\n'),
    );
    assert.deepEqual(store.loads, [{ gun: REPO, createIfMissing: false }]);
  });

  it('uses $DOCKER_CONFIG, goes anonymous when the default file is absent, and exits 2 for a named file that is', async () => {
    const viaEnv = harness({
      files: { '/cfg/config.json': '{"auths":{}}' },
      env: { DOCKER_CONFIG: '/cfg' },
      sizes: { [DIGEST]: 10 },
    });
    assert.equal(
      await runCli([...SIGN, '--image', `${REPO}:a`, '--digest', DIGEST], viaEnv.environment),
      ExitCode.OK,
    );
    assert.ok(viaEnv.notaryOptions[0]?.credentials);

    const anonymous = harness({ sizes: { [DIGEST]: 10 } });
    assert.equal(
      await runCli([...SIGN, '--image', `${REPO}:a`, '--digest', DIGEST], anonymous.environment),
      ExitCode.OK,
    );
    assert.equal(anonymous.notaryOptions[0]?.credentials, undefined);

    const named = harness({ sizes: { [DIGEST]: 10 } });
    assert.equal(
      await runCli(
        [...SIGN, '--docker-config', '/x.json', '--image', `${REPO}:a`, '--digest', DIGEST],
        named.environment,
      ),
      ExitCode.BAD_INPUT,
    );
    assert.match(named.err.at(-1) ?? '', /--docker-config \/x\.json: the file does not exist/);

    const garbled = harness({ files: { '/x.json': '{"auths": {"r": {"auth": "pass' } });
    assert.equal(
      await runCli(
        [...SIGN, '--docker-config', '/x.json', '--image', `${REPO}:a`, '--digest', DIGEST],
        garbled.environment,
      ),
      ExitCode.BAD_INPUT,
    );
    assert.deepEqual(
      garbled.err.at(-1),
      'kpack-trust-signer: error: Cannot use /x.json: the file is not JSON. [CREDENTIALS_INVALID]',
    );
  });

  it('exits 3, 4, 5 and 1 for auth failures, an unavailable server, endless conflicts and anything else', async () => {
    const failing = (error: Error): MetadataFetcher & MetadataPublisher => ({
      fetchMetadata: () => Promise.reject(error),
      fetchServerKey: () => Promise.reject(error),
      publish: () => Promise.reject(error),
    });
    const cases: [Error, number][] = [
      [
        new TrustError('AUTH_FAILED', { url: 'u', status: 401, problem: 'refused' }, 'refused'),
        ExitCode.AUTH_FAILED,
      ],
      [
        new TrustError('HTTP_UNREACHABLE', { url: 'u', problem: 'ECONNREFUSED' }, 'down'),
        ExitCode.UNAVAILABLE,
      ],
      [
        new TrustError('HTTP_STATUS', { url: 'u', status: 503, serverCode: '' }, '503'),
        ExitCode.UNAVAILABLE,
      ],
      [new Error('boom'), ExitCode.FAILED],
    ];
    for (const [error, expected] of cases) {
      const h = harness({ notary: failing(error), sizes: { [DIGEST]: 10 } });
      assert.equal(
        await runCli([...SIGN, '--image', `${REPO}:a`, '--digest', DIGEST], h.environment),
        expected,
        error.message,
      );
      assert.deepEqual(h.out, []);
    }

    const conflicted = harness({ sizes: { [DIGEST]: 10 } });
    await runCli([...SIGN, '--image', `${REPO}:base`, '--digest', DIGEST], conflicted.environment);
    const versionConflict = new TrustError(
      'HTTP_STATUS',
      { url: 'u', status: 400, serverCode: 'VERSION' },
      'POST answered HTTP 400 VERSION.',
    );
    const always: MetadataFetcher & MetadataPublisher = {
      fetchMetadata: (gun, request) => conflicted.notary.fetchMetadata(gun, request),
      fetchServerKey: (gun, role) => conflicted.notary.fetchServerKey(gun, role),
      publish: () => Promise.reject(versionConflict),
    };
    const h = harness({
      notary: always,
      store: (conflicted.environment.createKeyStore as () => KeyStore)(),
      sizes: { [DIGEST]: 10 },
    });
    assert.equal(
      await runCli([...SIGN, '--image', `${REPO}:next`, '--digest', DIGEST], h.environment),
      ExitCode.CONFLICT,
    );
    assert.match(
      h.err.at(-1) ?? '',
      /concurrent writers changed it during each of 5 attempts.*\[PUBLISH_CONFLICT\]$/,
    );
    assert.equal(h.err.filter((l) => l.includes('retrying on fresh metadata')).length, 4);
  });
});

describe('exitCodeFor', () => {
  it('maps each error code to the documented exit code', () => {
    assert.equal(
      exitCodeFor(
        new TrustError(
          'SIGNING_KEY_UNUSABLE',
          { gun: 'g', role: 'targets', keyId: '', problem: 'p' },
          'm',
        ),
      ),
      2,
    );
    assert.equal(
      exitCodeFor(new TrustError('REFERENCE_INVALID', { reference: 'r', problem: 'p' }, 'm')),
      2,
    );
    assert.equal(
      exitCodeFor(new TrustError('HTTP_STATUS', { url: 'u', status: 403, serverCode: '' }, 'm')),
      3,
    );
    assert.equal(
      exitCodeFor(
        new TrustError('HTTP_STATUS', { url: 'u', status: 400, serverCode: 'INVALID_UPDATE' }, 'm'),
      ),
      1,
    );
    assert.equal(
      exitCodeFor(new TrustError('PUBLISH_CONFLICT', { gun: 'g', attempts: 5 }, 'm')),
      5,
    );
    assert.equal(
      exitCodeFor(
        new TrustError('SIGNATURE_THRESHOLD', { role: 'targets', found: 0, needed: 1 }, 'm'),
      ),
      1,
    );
    assert.equal(exitCodeFor('not an error'), 1);
  });
});

const compiled = fileURLToPath(import.meta.url).includes('/dist/');
/** signer/ (this file is signer/test/cli.test.ts, or signer/dist/test/cli.test.js compiled). */
const SIGNER_DIR = new URL(compiled ? '../../' : '../', import.meta.url);
const MAIN = fileURLToPath(new URL(compiled ? 'dist/src/main.js' : 'src/main.ts', SIGNER_DIR));
const NODE_ARGS = compiled ? [MAIN] : ['--import', 'tsx', MAIN];

describe('the kpack-trust-signer program', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, [...NODE_ARGS, ...args], {
      encoding: 'utf8',
      env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent-home' },
    });

  it('--version prints the version in signer/package.json', () => {
    const manifest = JSON.parse(readFileSync(new URL('package.json', SIGNER_DIR), 'utf8')) as {
      version: string;
    };
    const child = run(['--version']);
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout, `${manifest.version}\n`);
  });

  it('exits 2 with no arguments: the error and one line pointing at --help', () => {
    const child = run([]);
    assert.equal(child.status, ExitCode.BAD_INPUT);
    assert.equal(child.stdout, '');
    assert.equal(
      child.stderr,
      'kpack-trust-signer: error: no command given; the commands are "sign", "kpack-completion" and "controller". [INPUT_INVALID]\n' +
        `${POINTER}\n`,
    );
  });

  it('fails on a missing --keys-dir with exit 2 before reaching the (unreachable) notary server', () => {
    const child = run([
      'sign',
      '--notary-url',
      'https://127.0.0.1:1',
      '--image',
      '127.0.0.1:5000/team/app:v1',
      '--digest',
      DIGEST,
      '--size',
      '10',
      '--no-registry-check',
      '--keys-dir',
      '/nonexistent-kpack-trust-keys',
    ]);
    assert.equal(child.status, ExitCode.BAD_INPUT, child.stderr);
    assert.match(
      child.stderr,
      /keys dir \/nonexistent-kpack-trust-keys .*\[KEY_STORE_INVALID\]\n$/,
    );
    assert.doesNotMatch(child.stderr, /HTTP_UNREACHABLE|ECONNREFUSED/);
  });

  it('controller: refuses an empty --notary-ca at start, before the kubeconfig or any server', () => {
    const dir = mkdtempSync(join(tmpdir(), 'controller-ca-'));
    try {
      const ca = join(dir, 'ca.pem');
      writeFileSync(ca, '');
      const child = run(['controller', '--notary-ca', ca, '--kubeconfig', join(dir, 'none')]);
      assert.equal(child.status, 1, child.stderr);
      const line = JSON.parse(child.stdout.trim()) as { message?: string; error?: string };
      assert.equal(line.message, 'controller failed');
      assert.equal(line.error, `--notary-ca ${ca}: the file holds no PEM certificate`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('controller: -h prints its help; an unknown flag is exit 2 with one line pointing at it', () => {
    const help = run(['controller', '-h']);
    assert.equal(help.status, 0, help.stderr);
    assert.equal(help.stdout, CONTROLLER_HELP);
    const wrong = run(['controller', '--sign-timeot', '30']);
    assert.equal(wrong.status, 2);
    assert.equal(wrong.stdout, '');
    const lines = wrong.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2, wrong.stderr);
    assert.match(lines[0] ?? '', /^kpack-trust-signer controller: .*'--sign-timeot'/);
    assert.equal(lines[1], `kpack-trust-signer controller: ${CONTROLLER_USAGE_POINTER}`);
  });

  it('controller: refuses a --sign-timeout past one day at start (a longer timer would fire at once)', () => {
    const child = run(['controller', '--sign-timeout', '2147484', '--kubeconfig', '/nonexistent']);
    assert.equal(child.status, 1, child.stderr);
    const line = JSON.parse(child.stdout.trim()) as { message?: string; error?: string };
    assert.equal(line.message, 'controller failed');
    assert.equal(line.error, '--sign-timeout "2147484" is above 86400 seconds (one day)');
  });

  it('runs through the bin/ entry npm links (mode 755, shebang)', () => {
    const bin = fileURLToPath(new URL('bin/kpack-trust-signer.js', SIGNER_DIR));
    assert.match(readFileSync(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const child = spawnSync(bin, ['--help'], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout, HELP_TEXT);
  });

  it('tells operators to pin the root id the operator guide puts first', () => {
    // The guide's "Pinning roots" lists the preferred pin first; the verifier's rootKeys accepts
    // both ids (common/src/verify/anchor.ts matchesPins), the canonical one survives renewals.
    const guide = readFileSync(new URL('../docs/operator-guide.md', SIGNER_DIR), 'utf8');
    const section = guide.slice(guide.indexOf('## 5. Pinning roots'));
    const first = /^- \*\*`rootKeys` with `(\w+)`\*\*/m.exec(section)?.[1];
    assert.equal(first, 'rootCanonicalKeyId');
    assert.match(
      HELP_TEXT,
      /Pin rootCanonicalKeyId\n\s+\(the bare root key's id\) in the verifier's rootKeys/,
    );
    assert.doesNotMatch(HELP_TEXT, /pin rootKeyId/i);
    const readme = readFileSync(new URL('README.md', SIGNER_DIR), 'utf8');
    assert.match(
      readme,
      /Pin `rootCanonicalKeyId`, the bare root key's id, in the verifier's `rootKeys`/,
    );
    assert.doesNotMatch(readme, /`rootKeyId`[^.]*: pin it/);
  });
});
