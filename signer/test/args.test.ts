/** Command-line parsing: every accepted shape, and each refusal with its reason. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArguments } from '../src/cli/args.js';

const DIGEST = `sha256:${'a1'.repeat(32)}`;
const BASE = ['sign', '--notary-url', 'https://notary.example:4443'];
const DIR = ['--keys-dir', '/var/notary/v1'];

function refuses(argv: string[], problem: string): void {
  assert.throws(() => parseArguments(argv), {
    code: 'INPUT_INVALID',
    facts: { source: 'command line', problem },
  });
}

describe('parseArguments', () => {
  it('parses a report-driven sign with a keys directory', () => {
    assert.deepEqual(parseArguments([...BASE, '--report', '/var/report/report.toml', ...DIR]), {
      command: 'sign',
      notaryUrl: 'https://notary.example:4443',
      input: { kind: 'report', file: '/var/report/report.toml' },
      keys: { kind: 'directory', dir: '/var/notary/v1' },
      dockerConfigs: [],
      rootKeyIds: [],
      insecureRegistries: [],
      registryCheck: true,
    });
  });

  it('parses flags, repeated images, --flag=value and the Kubernetes store', () => {
    const parsed = parseArguments([
      'sign',
      '--notary-url=https://n.example',
      '--notary-ca',
      '/ca.pem',
      '--image',
      'r.example/a:1',
      '--image=r.example/a:2',
      '--digest',
      DIGEST,
      '--size',
      '1083',
      '--secret-store',
      'kubernetes',
      '--namespace',
      'builds',
      '--root-key-secret',
      'app-root',
      '--targets-key-secret',
      'app-targets',
      '--kubeconfig',
      '/kube/config',
      '--delegation',
      'targets/releases',
      '--docker-config',
      '/a.json',
      '--docker-config',
      '/b.json',
      '--root-key-id',
      'ab'.repeat(32),
      '--registry-ca',
      '/reg.pem',
      '--insecure-registry',
      'r.example',
      '--no-registry-check',
    ]);
    assert.deepEqual(parsed, {
      command: 'sign',
      notaryUrl: 'https://n.example',
      notaryCa: '/ca.pem',
      input: {
        kind: 'flags',
        images: ['r.example/a:1', 'r.example/a:2'],
        digest: DIGEST,
        size: 1083,
      },
      keys: {
        kind: 'kubernetes',
        namespace: 'builds',
        rootKeySecret: 'app-root',
        targetsKeySecret: 'app-targets',
        kubeconfig: '/kube/config',
      },
      delegation: 'targets/releases',
      dockerConfigs: ['/a.json', '/b.json'],
      rootKeyIds: ['ab'.repeat(32)],
      registryCa: '/reg.pem',
      insecureRegistries: ['r.example'],
      registryCheck: false,
    });
  });

  it('takes a root key directory beside the keys directory, and no namespace (the context decides)', () => {
    const withRoot = parseArguments([
      ...BASE,
      '--report',
      'r',
      ...DIR,
      '--root-keys-dir',
      '/var/notary/root',
    ]);
    assert.deepEqual(withRoot.command === 'sign' ? withRoot.keys : undefined, {
      kind: 'directory',
      dir: '/var/notary/v1',
      rootDir: '/var/notary/root',
    });
    const k8s = parseArguments([
      ...BASE,
      '--report',
      'r',
      '--secret-store',
      'kubernetes',
      '--root-key-secret',
      'a',
      '--targets-key-secret',
      'b',
    ]);
    assert.deepEqual(k8s.command === 'sign' ? k8s.keys : undefined, {
      kind: 'kubernetes',
      rootKeySecret: 'a',
      targetsKeySecret: 'b',
    });
  });

  it('answers help and version', () => {
    for (const argv of [['--help'], ['-h'], ['help'], ['sign', '--help'], [...BASE, '-h']]) {
      assert.deepEqual(parseArguments(argv), { command: 'help' });
    }
    assert.deepEqual(parseArguments(['--version']), { command: 'version' });
  });

  it('refuses no command, unknown commands, flags and stray arguments', () => {
    refuses([], 'no command given; the commands are "sign", "kpack-completion" and "controller"');
    refuses(
      ['verify'],
      'unknown command "verify"; the commands are "sign", "kpack-completion" and "controller"',
    );
    refuses([...BASE, '--reprot', 'x'], 'unknown flag --reprot');
    refuses([...BASE, 'report.toml'], 'unexpected argument "report.toml"');
  });

  it('takes only an https:// notary URL, and never echoes one that may hold a secret', () => {
    const at = (url: string): string[] => ['sign', '--notary-url', url, '--report', 'r', ...DIR];
    assert.equal(
      (parseArguments(at('https://notary.example:4443/')) as { notaryUrl: string }).notaryUrl,
      'https://notary.example:4443/',
    );
    refuses(
      at('http://notary.example:4443'),
      '--notary-url must be an https:// URL, not http:// (notary serves trust data over TLS; give --notary-ca for a private CA)',
    );
    refuses(
      at('notary.example:4443'),
      '--notary-url is not a URL such as https://notary.example.com',
    );
    refuses(
      at('https://builder:s3cret@notary.example'),
      '--notary-url must not hold credentials; give them in --docker-config',
    );
    refuses(
      at('http://builder:s3cret@notary.example'),
      '--notary-url must not hold credentials; give them in --docker-config',
    );
    refuses(
      at('https://notary.example/?token=x'),
      '--notary-url must not have a query or fragment',
    );
  });

  it('refuses missing, empty and repeated values', () => {
    refuses([...BASE, '--report'], '--report needs a value');
    refuses([...BASE, '--report', '--keys-dir', 'd'], '--report needs a value');
    refuses([...BASE, '--report='], '--report needs a non-empty value');
    refuses([...BASE, '--report', 'a', '--report', 'b', ...DIR], '--report is given twice');
    refuses([...BASE, '--no-registry-check=yes'], '--no-registry-check takes no value');
  });

  it('requires the notary URL, something to sign and a digest with images', () => {
    refuses(
      ['sign', '--report', 'r', ...DIR],
      '--notary-url is required (the notary server to publish to)',
    );
    refuses(
      [...BASE, ...DIR],
      'nothing to sign: give --report FILE, or --image REPO:TAG with --digest',
    );
    refuses([...BASE, '--image', 'r.example/a:1', ...DIR], '--image needs --digest sha256:<hex>');
    refuses(
      [...BASE, '--report', 'r', '--digest', DIGEST, ...DIR],
      'give either --report or --image/--digest/--size, not both',
    );
  });

  it('refuses a size that is not a positive integer, and no registry check without a size', () => {
    for (const size of ['0', '-1', '1.5', '12abc', '99999999999999999999']) {
      refuses(
        [...BASE, '--image', 'r.example/a:1', '--digest', DIGEST, '--size', size, ...DIR],
        `--size "${size}" is not a positive integer`,
      );
    }
    refuses(
      [...BASE, '--image', 'r.example/a:1', '--digest', DIGEST, '--no-registry-check', ...DIR],
      '--no-registry-check needs --size: without the registry the manifest size is unknown',
    );
  });

  it('requires exactly one key source, complete', () => {
    const input = ['--report', 'r'];
    refuses(
      [...BASE, ...input],
      'no keys: give --keys-dir DIR, or --secret-store kubernetes --root-key-secret NAME --targets-key-secret NAME',
    );
    refuses([...BASE, ...input, '--root-keys-dir', '/r'], '--root-keys-dir goes with --keys-dir');
    refuses(
      [...BASE, ...input, ...DIR, '--secret-store', 'kubernetes'],
      'give either --keys-dir or --secret-store kubernetes and its flags, not both',
    );
    refuses(
      [...BASE, ...input, ...DIR, '--namespace', 'x'],
      'give either --keys-dir or --secret-store kubernetes and its flags, not both',
    );
    refuses(
      [...BASE, ...input, '--secret-store', 'vault'],
      '--secret-store "vault" is unknown; only "kubernetes" is',
    );
    refuses(
      [
        ...BASE,
        ...input,
        '--secret-store',
        'kubernetes',
        '--namespace',
        'n',
        '--root-key-secret',
        'r',
      ],
      '--secret-store kubernetes needs --targets-key-secret',
    );
  });

  it('refuses a delegation that is not under targets/ and a malformed root key id', () => {
    refuses(
      [...BASE, '--report', 'r', ...DIR, '--delegation', 'releases'],
      '--delegation "releases" is not a delegation role such as targets/releases',
    );
    refuses(
      [...BASE, '--report', 'r', ...DIR, '--root-key-id', 'abc'],
      '--root-key-id "abc" is not a 64-hex-digit key id',
    );
  });
});
