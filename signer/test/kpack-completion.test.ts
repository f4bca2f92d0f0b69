/**
 * kpack's completion step without a network: its reading of kpack v0.17.2's argument vector (Go
 * `flag` rules), its settings, kpack's password trimming, and what it hands to kpack's binary.
 * Signing against a real notary server is in test/test/kpack-completion.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { encodePrivateKeyPem, generateSigningKey } from '@kpack-trust/common';
import { mentionsNotary, parseCompletionArguments } from '../src/kpack/arguments.js';
import { runKpackCompletion, type CompletionEnvironment } from '../src/kpack/completion.js';
import { KpackNotaryKeyStore, goTrimSpace } from '../src/kpack/notary-key.js';
import { completionSettings } from '../src/kpack/settings.js';

/** The vector build_pod.go builds for an Image with spec.notary.v1 and one Secret of each kind. */
const KPACK_ARGV = [
  '-notary-v1-url=https://notary.example:4443',
  '-basic-docker=basic-creds=registry.example:5000',
  '-dockerconfig=json-creds',
  '-dockercfg=cfg-creds',
  '-basic-git=git-creds=https://github.com',
  '-cosign-annotations=buildTimestamp=20261206.211500',
  '-cosign-annotations=buildNumber=7',
];

describe('parseCompletionArguments', () => {
  it("reads kpack's vector and forwards all of it but -notary-v1-url, in order", () => {
    const parsed = parseCompletionArguments(KPACK_ARGV);
    assert.equal(parsed.notaryUrl, 'https://notary.example:4443');
    assert.deepEqual(parsed.basicDocker, [
      { secret: 'basic-creds', registry: 'registry.example:5000' },
    ]);
    assert.deepEqual(parsed.dockerConfigSecrets, ['json-creds']);
    assert.deepEqual(parsed.dockerCfgSecrets, ['cfg-creds']);
    assert.deepEqual(parsed.forwarded, KPACK_ARGV.slice(1));
  });

  it('takes "-name value" and "--name=value" as Go does, the last string value winning', () => {
    const argv = [
      '--dockerconfig',
      'a',
      '-notary-v1-url',
      'https://first',
      '-dockerconfig=b',
      '--notary-v1-url=https://second',
      'positional',
      '-dockercfg=after-positional',
    ];
    const parsed = parseCompletionArguments(argv);
    assert.equal(parsed.notaryUrl, 'https://second');
    assert.deepEqual(parsed.dockerConfigSecrets, ['a', 'b']);
    // Go's flag stops at the first non-flag: what follows is not parsed, and is passed on as is.
    assert.deepEqual(parsed.dockerCfgSecrets, []);
    assert.deepEqual(parsed.forwarded, [
      '--dockerconfig',
      'a',
      '-dockerconfig=b',
      'positional',
      '-dockercfg=after-positional',
    ]);
  });

  it('treats an empty -notary-v1-url as no notary, as kpack does', () => {
    const parsed = parseCompletionArguments(['-notary-v1-url=', '-dockercfg=x']);
    assert.equal(parsed.notaryUrl, undefined);
    assert.deepEqual(parsed.forwarded, ['-dockercfg=x']);
  });

  it("refuses what Go's flag refuses, naming the fault", () => {
    const refuses = (argv: string[], problem: RegExp): void => {
      assert.throws(
        () => parseCompletionArguments(argv),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'INPUT_INVALID');
          assert.match(err.message, problem);
          return true;
        },
      );
    };
    refuses(['-unknown=1'], /flag provided but not defined: -unknown/);
    refuses(['-dockerconfig'], /flag needs an argument: -dockerconfig/);
    refuses(['---x'], /bad flag syntax: ---x/);
    refuses(['-basic-docker=name-only'], /could not parse docker secret argument name-only/);
  });

  it('tells whether an unreadable vector asks for notary', () => {
    assert.equal(mentionsNotary(['-future-flag', '-notary-v1-url=https://n']), true);
    assert.equal(mentionsNotary(['-future-flag', '-dockercfg=x']), false);
  });
});

describe('completionSettings', () => {
  it("defaults to kpack's mount paths, and each can be overridden", () => {
    const defaults = completionSettings({});
    assert.equal(defaults.reportFile, '/var/report/report.toml');
    assert.equal(defaults.notaryKeysDir, '/var/notary/v1');
    assert.equal(defaults.buildSecretsDir, '/var/build-secrets');
    assert.equal(defaults.kpackCompletion, '/cnb/process/kpack-completion');
    assert.equal(defaults.kpackCompletionArgv0, '/cnb/process/completion');
    assert.equal(defaults.trustOnFirstUse, false);
    const moved = completionSettings({
      KPACK_TRUST_REPORT_DIR: '/t/report/',
      KPACK_TRUST_ROOT_KEY_ID: `${'a'.repeat(64)}, ${'b'.repeat(64)}`,
      KPACK_TRUST_DELEGATION: 'targets/releases',
    });
    assert.equal(moved.reportFile, '/t/report/report.toml');
    assert.deepEqual(moved.rootKeyIds, ['a'.repeat(64), 'b'.repeat(64)]);
    assert.equal(moved.delegation, 'targets/releases');
  });

  it('refuses a malformed root key id, naming the variable', () => {
    assert.throws(() => completionSettings({ KPACK_TRUST_ROOT_KEY_ID: 'abc' }), {
      code: 'CONFIG_INVALID',
      facts: {
        source: 'environment',
        path: 'KPACK_TRUST_ROOT_KEY_ID',
        problem: '"abc" is not a 64-hex-digit key id',
      },
    });
  });
});

describe("kpack's notary key directory", () => {
  it('trims the password as strings.TrimSpace does', () => {
    assert.equal(goTrimSpace(' \t\r\n pass word \u00a0\n'), 'pass word');
  });

  it('loads the first *.key whatever its role header, with a whitespace-wrapped password', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpack-key-'));
    const key = generateSigningKey();
    await writeFile(join(dir, 'b.key'), encodePrivateKeyPem(key, 'secret', { role: 'my-key' }));
    await writeFile(
      join(dir, 'c.key'),
      encodePrivateKeyPem(generateSigningKey(), 'x', { role: 'x' }),
    );
    await writeFile(join(dir, 'password'), '  secret \n');
    const store = new KpackNotaryKeyStore(dir);
    const keys = await store.load();
    assert.equal(store.key?.fileName, 'b.key');
    assert.equal(store.key?.fileKeyId, 'b');
    assert.ok(keys.targets?.equals(key));
  });

  it('refuses a directory without a key, and a wrong password', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpack-key-'));
    await writeFile(join(dir, 'password'), 'secret');
    await assert.rejects(new KpackNotaryKeyStore(dir).load(), {
      code: 'KEY_STORE_INVALID',
    });
    await writeFile(
      join(dir, 'a.key'),
      encodePrivateKeyPem(generateSigningKey(), 'other', { role: 'my-key' }),
    );
    await assert.rejects(new KpackNotaryKeyStore(dir).load(), { code: 'PRIVATE_KEY_INVALID' });
  });
});

/** An environment with no network: records what kpack's binary would have been given. */
function offline(
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): {
  environment: CompletionEnvironment;
  runs: { file: string; argv0: string; args: readonly string[] }[];
  stderr: string[];
} {
  const runs: { file: string; argv0: string; args: readonly string[] }[] = [];
  const stderr: string[] = [];
  const unreachable = (): never => {
    throw new Error('no network in this test');
  };
  return {
    runs,
    stderr,
    environment: {
      env,
      stdout: () => undefined,
      stderr: (line) => stderr.push(line),
      readTextFile: (path) => Promise.resolve(files[path]),
      connectNotary: unreachable,
      connectRegistry: unreachable,
      now: () => new Date(),
      runProgram: (file, argv0, args) => {
        runs.push({ file, argv0, args });
        return Promise.resolve(0);
      },
    },
  };
}

describe('runKpackCompletion', () => {
  it("without -notary-v1-url, runs kpack's binary with the vector unchanged", async () => {
    const { environment, runs } = offline();
    const argv = KPACK_ARGV.slice(1);
    assert.equal(await runKpackCompletion(argv, environment), 0);
    assert.deepEqual(runs, [
      { file: '/cnb/process/kpack-completion', argv0: '/cnb/process/completion', args: argv },
    ]);
  });

  it('hands a vector it cannot read to kpack when it does not ask for notary', async () => {
    const { environment, runs } = offline();
    const argv = ['-flag-of-a-newer-kpack', 'x', '-dockercfg=c'];
    assert.equal(await runKpackCompletion(argv, environment), 0);
    assert.deepEqual(runs[0]?.args, argv);
  });

  it("fails in one line, without running kpack's binary, when signing cannot start", async () => {
    const unpinned = offline();
    assert.equal(await runKpackCompletion(KPACK_ARGV, unpinned.environment), 2);
    assert.deepEqual(unpinned.runs, []);
    assert.equal(unpinned.stderr.length, 1);
    assert.match(
      unpinned.stderr[0] ?? '',
      /KPACK_TRUST_ROOT_KEY_ID is not set.*\[CONFIG_INVALID\]/,
    );

    const plainHttp = offline({ KPACK_TRUST_ROOT_KEY_ID: 'a'.repeat(64) });
    const httpArgv = KPACK_ARGV.map((arg) =>
      arg.startsWith('-notary-v1-url=') ? '-notary-v1-url=http://notary.example' : arg,
    );
    assert.equal(await runKpackCompletion(httpArgv, plainHttp.environment), 2);
    assert.deepEqual(plainHttp.runs, []);
    assert.equal(plainHttp.stderr.length, 1);
    assert.match(
      plainHttp.stderr[0] ?? '',
      /-notary-v1-url must be an https:\/\/ URL, not http:\/\/ .*\[CONFIG_INVALID\]/,
    );
    assert.doesNotMatch(plainHttp.stderr[0] ?? '', /http:\/\/notary\.example/);
    // The whole table of URLs, shared with sign and the controller, is in notary-url.test.ts.

    const noReport = offline({ KPACK_TRUST_ROOT_KEY_ID: 'a'.repeat(64) });
    assert.equal(await runKpackCompletion(KPACK_ARGV, noReport.environment), 2);
    assert.deepEqual(noReport.runs, []);
    assert.match(
      noReport.stderr.join('\n'),
      /^.*error: \/var\/report\/report\.toml does not exist.*kpack's completion was not run$/,
    );
  });

  // One bad setting each: kpack-trust's variables concern Notary only.
  const BAD_SETTINGS: [string, string, string][] = [
    ['KPACK_TRUST_ROOT_KEY_ID', 'abc', '"abc" is not a 64-hex-digit key id'],
    ['KPACK_TRUST_ROOT_TRUST_ON_FIRST_USE', 'yes', '"yes" is neither true nor false'],
    [
      'KPACK_TRUST_DELEGATION',
      'releases',
      '"releases" is not a delegation role such as targets/releases',
    ],
  ];

  it("hands a build not asking for Notary to kpack's binary even when a setting is bad", async () => {
    for (const [variable, value] of BAD_SETTINGS) {
      const { environment, runs, stderr } = offline({
        [variable]: value,
        KPACK_TRUST_KPACK_COMPLETION: '/opt/kpack/completion',
        KPACK_TRUST_KPACK_COMPLETION_ARGV0: 'completion',
      });
      const argv = KPACK_ARGV.slice(1);
      assert.equal(await runKpackCompletion(argv, environment), 0, variable);
      assert.deepEqual(
        runs,
        [{ file: '/opt/kpack/completion', argv0: 'completion', args: argv }],
        variable,
      );
      assert.deepEqual(stderr, [], variable);
    }
  });

  it("fails a build asking for Notary on a bad setting, without running kpack's binary", async () => {
    for (const [variable, value, problem] of BAD_SETTINGS) {
      const { environment, runs, stderr } = offline({
        [variable]: value,
        KPACK_TRUST_ROOT_KEY_ID: 'a'.repeat(64),
        ...(variable === 'KPACK_TRUST_ROOT_KEY_ID' ? { [variable]: value } : {}),
      });
      assert.equal(await runKpackCompletion(KPACK_ARGV, environment), 2, variable);
      assert.deepEqual(runs, [], variable);
      assert.deepEqual(
        stderr,
        [
          `kpack-trust-signer kpack-completion: error: ${variable}: ${problem}. [CONFIG_INVALID]; kpack's completion was not run`,
        ],
        variable,
      );
    }
  });

  it('refuses a notary or registry CA file that holds no usable PEM certificate, naming the variable', async () => {
    const report = `[image]\ntags = ["registry.example:5000/team/app:v1"]\ndigest = "sha256:${'c'.repeat(64)}"\n`;
    const garbled =
      '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
    const cases: [string, string, string][] = [
      ['KPACK_TRUST_NOTARY_CA', '', 'the file holds no PEM certificate'],
      ['KPACK_TRUST_NOTARY_CA', 'not a certificate\n', 'the file holds no PEM certificate'],
      ['KPACK_TRUST_NOTARY_CA', garbled, 'the file holds a PEM certificate that does not parse'],
      ['KPACK_TRUST_REGISTRY_CA', '', 'the file holds no PEM certificate'],
    ];
    for (const [variable, text, problem] of cases) {
      const { environment, runs, stderr } = offline(
        { KPACK_TRUST_ROOT_KEY_ID: 'a'.repeat(64), [variable]: '/etc/ca.pem' },
        { '/var/report/report.toml': report, '/etc/ca.pem': text },
      );
      const argv = ['-notary-v1-url=https://notary.example:4443'];
      assert.equal(await runKpackCompletion(argv, environment), 2, `${variable} ${text}`);
      assert.deepEqual(runs, []);
      assert.deepEqual(stderr, [
        `kpack-trust-signer kpack-completion: error: ${variable} /etc/ca.pem: ${problem}. [CONFIG_INVALID]; kpack's completion was not run`,
      ]);
    }
  });
});
