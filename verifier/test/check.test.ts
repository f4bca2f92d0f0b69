/**
 * `check`: the same decision as the webhook, printed as JSON, with exit codes 0 allowed, 1 denied,
 * 2 error.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FixtureRepository, MemoryFetcher, fakeManifest } from '@kpack-trust/common/testing';
import { runCheck } from '../src/cli/check.js';
import { ControlledFetcher, GUN, NOTARY, NOW, unreachable } from './support/engine.js';

const v1 = fakeManifest('v1');

describe('runCheck', () => {
  let dir: string;
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;
  let configFile: string;

  async function writeConfig(name: string, extra = ''): Promise<string> {
    const file = join(dir, name);
    await writeFile(
      file,
      `listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - { registry: "127.0.0.1:5000", server: "${NOTARY}" }
${extra}
rules:
  - images: "127.0.0.1:5000/demo/*"
    trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.id ?? ''}"] }
`,
    );
    return file;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpack-trust-check-'));
    repo = await FixtureRepository.create(GUN, NOW);
    await repo.signTag('v1', v1.digestHex, v1.length);
    fetcher = new MemoryFetcher(repo);
    configFile = await writeConfig('verifier.yaml');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const options = (): { now: () => Date; fetcherFor: () => MemoryFetcher } => ({
    now: () => NOW,
    fetcherFor: () => fetcher,
  });

  it('exits 0 and prints the decision when every image is admitted', async () => {
    const result = await runCheck(configFile, [`${GUN}:v1`], 'prod', options());
    assert.equal(result.exitCode, 0);
    const printed = JSON.parse(result.output) as Record<string, unknown>;
    assert.deepEqual(
      {
        ...printed,
        images: (printed['images'] as Record<string, unknown>[]).map((i) => ({
          ...i,
          durationMs: 0,
        })),
      },
      {
        allowed: true,
        namespace: 'prod',
        auditAnnotations: {
          'image-0-digest': `sha256:${v1.digestHex}`,
          'image-0-role': 'targets',
          'image-0-rule': '127.0.0.1:5000/demo/*',
        },
        images: [
          {
            image: `${GUN}:v1`,
            result: 'allowed',
            code: 'SIGNED',
            reason: `signed by targets in notary ${NOTARY}`,
            digest: `sha256:${v1.digestHex}`,
            role: 'targets',
            rule: '127.0.0.1:5000/demo/*',
            durationMs: 0,
          },
        ],
      },
    );
  });

  it('exits 1 with the reason when an image is denied', async () => {
    const result = await runCheck(configFile, [`${GUN}:v1`, `${GUN}:v9`], 'default', options());
    assert.equal(result.exitCode, 1);
    const printed = JSON.parse(result.output) as { allowed: boolean; reason: string };
    assert.equal(printed.allowed, false);
    assert.equal(
      printed.reason,
      `${GUN}:v9: not signed in notary ${NOTARY} (no target "v9" in targets/releases or targets)`,
    );
  });

  it('exits 2 on a broken config, naming the key', async () => {
    const broken = join(dir, 'broken.yaml');
    await writeFile(broken, 'listen: { port: 1, tls: { cert: a, key: b } }\nrules: []\nextra: 1\n');
    const result = await runCheck(broken, [`${GUN}:v1`]);
    assert.equal(result.exitCode, 2);
    assert.deepEqual(JSON.parse(result.output), {
      error: {
        code: 'CONFIG_INVALID',
        message: `${broken}: extra is not a known key (allowed here: listen, notary, rules, exemptNamespaces, detectionMode, failure, breakGlass, cache, circuitBreaker)`,
      },
    });
  });

  it('exits 2 without images', async () => {
    const result = await runCheck(configFile, []);
    assert.equal(result.exitCode, 2);
    assert.match(result.output, /"code": "USAGE"/);
  });

  it('exits 1 when notary is down (fail closed), 2 under failure: error', async () => {
    const down = new ControlledFetcher(fetcher);
    down.failWith = unreachable();
    const closed = await runCheck(configFile, [`${GUN}:v1`], 'default', {
      now: () => NOW,
      fetcherFor: () => down,
    });
    assert.equal(closed.exitCode, 1);
    const erroring = await runCheck(
      await writeConfig('error.yaml', 'failure: error'),
      [`${GUN}:v1`],
      'default',
      {
        now: () => NOW,
        fetcherFor: () => down,
      },
    );
    assert.equal(erroring.exitCode, 2);
    assert.match(erroring.output, /"code": "REVIEW_FAILED"/);
    assert.doesNotMatch(erroring.output, /ECONNREFUSED/, 'the class of failure, not the error');
  });

  it('denies a server the config does not name, even under failure: error, without the error', async () => {
    const file = join(dir, 'any.yaml');
    await writeFile(
      file,
      `listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
failure: error
rules:
  - images: "**"
    trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.id ?? ''}"] }
`,
    );
    const image = '10.0.0.1:22/scan/me:v1';
    const result = await runCheck(file, [image], 'default', {
      now: () => NOW,
      fetcherFor: () => ({
        fetchMetadata: () => Promise.reject(unreachable('https://10.0.0.1:22/v2/x')),
      }),
    });
    assert.equal(result.exitCode, 1);
    const printed = JSON.parse(result.output) as {
      reason?: string;
      images: Record<string, unknown>[];
    };
    const reason =
      'no trust data for 10.0.0.1:22/scan/me from notary https://10.0.0.1:22 (not signed there, or the server did not serve it)';
    assert.equal(printed.reason, `${image}: ${reason}`);
    assert.deepEqual(
      { code: printed.images[0]?.['code'], reason: printed.images[0]?.['reason'] },
      { code: 'NO_TRUST_DATA', reason },
    );
    assert.doesNotMatch(result.output, /ECONNREFUSED|detail/);
  });
});
