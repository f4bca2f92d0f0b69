/**
 * Registry names as the network reads them: host names without case, and `:443` the port an https
 * registry is reached on anyway. `REGISTRY.corp.com/app` and `registry.corp.com:443/app` are pulled
 * from the same registry as `registry.corp.com/app`, so they must meet the same notary entry, the
 * same rules and the GUN the signer signed (kpack tags are lowercase) — not `https://<as written>`
 * over public CAs, where the registry itself (or whoever answers) could serve trust data of its own
 * to a TOFU rule.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  parseImageReference,
  type MetadataFetcher,
  type MetadataRequest,
} from '@kpack-trust/common';
import { FixtureRepository, MemoryFetcher } from '@kpack-trust/common/testing';
import {
  canonicalImagePattern,
  canonicalReference,
  canonicalRegistry,
} from '../src/config/registry.js';
import { ImagePolicyEngine } from '../src/policy/engine.js';
import { NotarySources } from '../src/trust/notary-clients.js';
import { NOW, V1, V2, configFrom, pod } from './support/engine.js';

const CORP = 'registry.corp.com';
const CORP_NOTARY = 'https://notary.corp.com';
const CORP_GUN = `${CORP}/app`;

/** Every way of writing CORP that reaches the same registry. */
const ALIASES = [
  'REGISTRY.corp.com',
  'Registry.Corp.Com',
  'registry.corp.com:443',
  'REGISTRY.CORP.COM:443',
  'registry.corp.com:0443',
];

const PREAMBLE = `
listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - registry: ${CORP}
    server: ${CORP_NOTARY}
`;

/** Records which server was asked for which GUN, then serves it from `inner`. */
function recording(
  asked: string[],
  server: string,
  inner: MetadataFetcher,
): MetadataFetcher & { close(): void } {
  return {
    fetchMetadata: (gun: string, request: MetadataRequest) => {
      asked.push(`${server} ${gun}`);
      return inner.fetchMetadata(gun, request);
    },
    close: () => undefined,
  };
}

describe('registry names without case and default port', () => {
  let signed: MemoryFetcher;
  let hostile: MemoryFetcher;
  let pin: string;

  before(async () => {
    // The real repository: v1 → V1, on the configured notary server.
    const repo = await FixtureRepository.create(CORP_GUN, NOW);
    await repo.signTag('v1', V1.digestHex, V1.length);
    signed = new MemoryFetcher(repo);
    pin = repo.rootKeys[0]?.publicKey.canonicalId ?? '';
    // What anything else answering for an alias would serve a TOFU rule: v1 → V2, its own root.
    hostile = new MemoryFetcher();
    for (const alias of ALIASES) {
      const fake = await FixtureRepository.create(`${alias}/app`, NOW);
      await fake.signTag('v1', V2.digestHex, V2.length);
      hostile.serve(fake);
    }
  });

  function engineFor(rules: string): { engine: ImagePolicyEngine; asked: string[] } {
    const asked: string[] = [];
    const engine = new ImagePolicyEngine({
      config: configFrom(`${PREAMBLE}\nrules:\n${rules}`),
      now: () => NOW,
      fetcherFor: (endpoint) =>
        recording(asked, endpoint.server, endpoint.server === CORP_NOTARY ? signed : hostile),
    });
    return { engine, asked };
  }

  for (const alias of ALIASES) {
    it(`verifies ${alias}/app:v1 against the configured entry, under the signed GUN`, async () => {
      const { engine, asked } = engineFor('  - images: "*.corp.com/**"\n    tofu: true\n');
      const decision = await engine.decide(pod([`${alias}/app:v1`]));
      assert.equal(decision.status.allowed, true, decision.status.reason);
      assert.equal(decision.images[0]?.digest, `sha256:${V1.digestHex}`);
      assert.ok(asked.length > 0);
      assert.deepEqual(new Set(asked), new Set([`${CORP_NOTARY} ${CORP_GUN}`]));
      await engine.close();
    });

    it(`applies the rule written for ${CORP} to ${alias}`, async () => {
      const { engine } = engineFor(`  - images: "${CORP}/app"
    name: corp-pinned
    deny: true
  - images: "**"
    tofu: true
`);
      const decision = await engine.decide(pod([`${alias}/app:v1`]));
      assert.equal(decision.status.allowed, false);
      assert.equal(decision.images[0]?.code, 'RULE_DENY');
      assert.equal(decision.images[0]?.rule, 'corp-pinned');
      await engine.close();
    });
  }

  it('matches a pinned rule and its entry written with case and :443 in the config', async () => {
    const asked: string[] = [];
    const engine = new ImagePolicyEngine({
      config: configFrom(`
listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - registry: Registry.Corp.com:443
    server: ${CORP_NOTARY}
rules:
  - images: "REGISTRY.corp.com:443/**"
    trust: { rootKeys: ["${pin}"] }
`),
      now: () => NOW,
      fetcherFor: (endpoint) =>
        recording(asked, endpoint.server, endpoint.server === CORP_NOTARY ? signed : hostile),
    });
    const decision = await engine.decide(pod([`${CORP}/app:v1`]));
    assert.equal(decision.status.allowed, true, decision.status.reason);
    assert.deepEqual(new Set(asked), new Set([`${CORP_NOTARY} ${CORP_GUN}`]));
    await engine.close();
  });

  it('keeps a port other than 443 a different registry', async () => {
    const { engine, asked } = engineFor('  - images: "*.corp.com:*/**"\n    tofu: true\n');
    const decision = await engine.decide(pod([`${CORP}:8443/app:v1`]));
    assert.equal(decision.status.allowed, false);
    assert.deepEqual(asked, [`https://${CORP}:8443 ${CORP}:8443/app`]);
    await engine.close();
  });

  it('refuses a config naming one registry twice in two spellings', () => {
    assert.throws(
      () =>
        configFrom(`${PREAMBLE}  - registry: REGISTRY.corp.com:443
    server: https://other.corp.com
rules:
  - { images: "**", deny: true }
`),
      /names registry\.corp\.com a second time/,
    );
  });

  it('maps every spelling to one pooled source', () => {
    const sources = new NotarySources(
      () => signed,
      [{ registry: 'Registry.Corp.com:443', server: CORP_NOTARY, timeoutMs: 1000 }],
    );
    for (const alias of [CORP, ...ALIASES]) {
      const source = sources.forRegistry(alias);
      assert.equal(source.implicit, false, alias);
      assert.equal(source.server, CORP_NOTARY);
    }
    assert.equal(
      sources.forRegistry('OTHER.corp.com:0443').key,
      sources.forRegistry('other.corp.com').key,
    );
  });

  it('canonicalizes hosts, ports and patterns', () => {
    const cases: [string, string][] = [
      ['registry.corp.com', 'registry.corp.com'],
      ['REGISTRY.corp.com:443', 'registry.corp.com'],
      ['registry.corp.com:00443', 'registry.corp.com'],
      ['registry.corp.com:05000', 'registry.corp.com:5000'],
      ['registry.corp.com:80', 'registry.corp.com:80'],
      ['[FE80::1]:443', '[fe80::1]'],
      ['[::1]:5000', '[::1]:5000'],
      ['LOCALHOST', 'localhost'],
      ['INDEX.DOCKER.IO', 'docker.io'],
      ['index.docker.io:443', 'docker.io'],
      ['Docker.io', 'docker.io'],
    ];
    for (const [input, expected] of cases) assert.equal(canonicalRegistry(input), expected, input);
    assert.equal(canonicalImagePattern('*.Corp.com:443/team/*'), '*.corp.com/team/*');
    assert.equal(canonicalImagePattern('**/team/app'), '**/team/app');
    assert.equal(canonicalImagePattern('**'), '**');
    assert.equal(canonicalImagePattern('Quay.io/**'), 'quay.io/**');
    assert.equal(canonicalImagePattern('index.docker.io/**'), 'docker.io/**');
  });

  it('folds Docker Hub spellings the reference parser leaves alone into docker.io', () => {
    const name = (image: string): string => canonicalReference(parseImageReference(image)).name;
    assert.equal(name('INDEX.DOCKER.IO/evil/app:v1'), 'docker.io/evil/app');
    assert.equal(name('index.docker.io:443/evil/app:v1'), 'docker.io/evil/app');
    assert.equal(name('DOCKER.IO/alpine'), 'docker.io/library/alpine');
    assert.equal(name('docker.io/alpine'), 'docker.io/library/alpine');
    assert.equal(name('registry.corp.com:8443/app'), 'registry.corp.com:8443/app');
  });
});
