/**
 * Configuration loading: the minimal config as written, defaults, path resolution, and one
 * invalid thing at a time, each failing with CONFIG_INVALID naming the key path.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createPublicKey } from 'node:crypto';
import {
  createRootCertificate,
  generateSigningKey,
  isTrustError,
  type TrustErrorFacts,
} from '@kpack-trust/common';
import { createTestCa, fixtureKey } from '@kpack-trust/common/testing';
import { loadConfig } from '../src/config/load.js';
import { DEFAULT_BREAK_GLASS_ANNOTATION } from '../src/config/parse.js';
import { CONFIG_DIR, PREAMBLE, configFrom } from './support/engine.js';

const ROOT_ID = 'a'.repeat(64);

const MINIMAL = `
listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }   # optional tls.clientCA: demand the apiserver's client cert
notary:
  - registry: 127.0.0.1:5000           # images from this registry…
    server: https://127.0.0.1:4443     # …are checked against this notary server
    ca: ca.crt
rules:                                 # first the most specific match; no match = denied
  - images: "127.0.0.1:5000/demo/*"
    trust: { rootKeys: ["${ROOT_ID}"] }
  - images: "docker.io/library/*"
    allow: true                        # admitted without verification
`;

// A real certificate: the CA bundle rule parses every block (common caBundleProblem).
const CA_PEM = createTestCa({ commonName: 'config test CA' }).certPem;
const FILES = { [`${CONFIG_DIR}/ca.crt`]: CA_PEM };

type Expected = { [K in keyof TrustErrorFacts['CONFIG_INVALID']]?: string | RegExp };

function invalid(text: string, facts: Expected, files: Record<string, string> = FILES): void {
  assert.throws(
    () => configFrom(text, files),
    (error: unknown) => {
      if (!isTrustError(error, 'CONFIG_INVALID')) {
        assert.fail(`expected CONFIG_INVALID, got ${String(error)}`);
      }
      for (const [k, v] of Object.entries(facts) as [keyof Expected, string | RegExp][]) {
        if (typeof v === 'string') assert.equal(error.facts[k], v, `fact ${k}`);
        else assert.match(error.facts[k], v, `fact ${k}`);
      }
      return true;
    },
  );
}

function rule(body: string): string {
  return `${PREAMBLE}\nrules:\n  - ${body}\n`;
}

describe('parseConfig', () => {
  it('accepts the minimal config of the issue as written', () => {
    const c = configFrom(MINIMAL, FILES);
    assert.deepEqual(c.listen, {
      port: 8443,
      tls: { cert: `${CONFIG_DIR}/tls.crt`, key: `${CONFIG_DIR}/tls.key` },
    });
    assert.equal(c.notary.length, 1);
    assert.equal(c.notary[0]?.registry, '127.0.0.1:5000');
    assert.equal(c.notary[0]?.server, 'https://127.0.0.1:4443');
    assert.equal(c.notary[0]?.caFile, `${CONFIG_DIR}/ca.crt`);
    assert.equal(c.notary[0]?.caPem, CA_PEM);
    assert.equal(c.notary[0]?.timeoutMs, 10_000);
    const [verify, allow] = c.rules;
    assert.equal(verify?.action, 'verify');
    assert.equal(verify?.name, '127.0.0.1:5000/demo/*');
    assert.deepEqual(verify?.images, ['127.0.0.1:5000/demo/*']);
    assert.ok(verify?.action === 'verify');
    assert.deepEqual([...verify.trust.anchor.keyIds], [ROOT_ID]);
    assert.equal(verify.trust.anchor.tofu, false);
    assert.deepEqual(verify.trust.signers, []);
    assert.equal(allow?.action, 'allow');
    assert.equal(c.failure, 'deny');
    assert.equal(c.detectionMode, false);
    assert.deepEqual(c.breakGlass, { enabled: false, annotation: DEFAULT_BREAK_GLASS_ANNOTATION });
    assert.deepEqual(c.cache, {
      maxRepositories: 1000,
      ttlSeconds: 60,
      maxTrustStates: 10_000,
      staleIfErrorSeconds: 3600,
      negativeTtlSeconds: 5,
      refreshAheadSeconds: 10,
    });
    assert.deepEqual(c.circuitBreaker, { failureThreshold: 5, cooldownSeconds: 10 });
    assert.deepEqual(c.exemptNamespaces, []);
  });

  it('freezes the result', () => {
    const c = configFrom(MINIMAL, FILES);
    assert.ok(Object.isFrozen(c));
    assert.ok(Object.isFrozen(c.rules));
    assert.ok(Object.isFrozen(c.rules[0]));
    assert.ok(Object.isFrozen(c.listen.tls));
  });

  it('reads JSON as well', () => {
    const c = configFrom(
      JSON.stringify({
        listen: {
          port: 1,
          host: '127.0.0.1',
          tls: { cert: '/x.crt', key: '/x.key', clientCA: 'c.pem' },
        },
        rules: [{ images: ['**'], allow: true }],
      }),
    );
    assert.deepEqual(c.listen, {
      port: 1,
      host: '127.0.0.1',
      tls: { cert: '/x.crt', key: '/x.key', clientCA: `${CONFIG_DIR}/c.pem` },
    });
    assert.deepEqual(c.notary, []);
  });

  it('reads every extension', async () => {
    const signerKey = await fixtureKey();
    const signerPem = createPublicKey(signerKey.privateKey)
      .export({ type: 'spki', format: 'pem' })
      .toString();
    const caPem = await createRootCertificate(
      'kpack-trust test root CA',
      generateSigningKey('ecdsa'),
    );
    const c = configFrom(
      `${PREAMBLE}    timeoutMs: 2500
    credentials: docker/config.json
exemptNamespaces: [kube-system, "tenant-*"]
detectionMode: true
failure: error
breakGlass: { annotation: ops.image-policy.k8s.io/break-glass }
cache:
  maxRepositories: 5
  ttlSeconds: 0
  maxTrustStates: 7
  staleIfErrorSeconds: 0
  negativeTtlSeconds: 2
  refreshAheadSeconds: 0
circuitBreaker: { failureThreshold: 0, cooldownSeconds: 30 }
rules:
  - name: releases
    images: ["127.0.0.1:5000/demo/*", "127.0.0.1:5000/team/**"]
    namespaces: [prod]
    excludeNamespaces: [prod-canary]
    requireDigest: true
    detectionMode: false
    trust:
      rootKeysPem: [keys/root.pem]
      ca: root-ca.pem
      signers:
        - role: targets/releases
          keys: ["${'b'.repeat(64)}", signer.pem]
          threshold: 2
        - role: targets/alice
          keys: ["${'c'.repeat(64)}"]
      signersThreshold: 1
  - images: "127.0.0.1:5000/sandbox/*"
    tofu: true
  - images: "127.0.0.1:5000/blocked/*"
    deny: true
`,
      {
        [`${CONFIG_DIR}/docker/config.json`]: JSON.stringify({
          auths: { '127.0.0.1:5000': { username: 'u', password: 'p' } },
        }),
        [`${CONFIG_DIR}/keys/root.pem`]: signerPem,
        [`${CONFIG_DIR}/root-ca.pem`]: caPem,
        [`${CONFIG_DIR}/signer.pem`]: signerPem,
      },
    );
    const notary = c.notary[0];
    assert.equal(notary?.timeoutMs, 2500);
    assert.equal(notary.credentialsFile, `${CONFIG_DIR}/docker/config.json`);
    assert.deepEqual(await notary.credentials?.credentialsFor('127.0.0.1:5000'), {
      username: 'u',
      password: 'p',
    });
    assert.deepEqual(c.exemptNamespaces, ['kube-system', 'tenant-*']);
    assert.equal(c.failure, 'error');
    assert.deepEqual(c.breakGlass, {
      enabled: true,
      annotation: 'ops.image-policy.k8s.io/break-glass',
    });
    assert.deepEqual(c.cache, {
      maxRepositories: 5,
      ttlSeconds: 0,
      maxTrustStates: 7,
      staleIfErrorSeconds: 0,
      negativeTtlSeconds: 2,
      refreshAheadSeconds: 0,
    });
    assert.deepEqual(c.circuitBreaker, { failureThreshold: 0, cooldownSeconds: 30 });
    const [releases, sandbox, blocked] = c.rules;
    assert.ok(releases?.action === 'verify');
    assert.equal(releases.name, 'releases');
    assert.deepEqual(releases.namespaces, ['prod']);
    assert.deepEqual(releases.excludeNamespaces, ['prod-canary']);
    assert.equal(releases.requireDigest, true);
    assert.equal(releases.detectionMode, false);
    assert.equal(releases.trust.anchor.spkis.size, 1);
    assert.equal(releases.trust.anchor.cas.length, 1);
    assert.deepEqual(releases.trust.signers, [
      {
        role: 'targets/releases',
        keyIds: ['b'.repeat(64)],
        canonicalIds: [signerKey.publicKey.canonicalId],
        threshold: 2,
      },
      { role: 'targets/alice', keyIds: ['c'.repeat(64)], canonicalIds: [], threshold: 1 },
    ]);
    assert.equal(releases.trust.signersThreshold, 1);
    assert.ok(sandbox?.action === 'verify');
    assert.equal(sandbox.trust.anchor.tofu, true);
    assert.equal(sandbox.detectionMode, true, 'inherits the global detection mode');
    assert.equal(blocked?.action, 'deny');
  });

  it('defaults signersThreshold to every signer', () => {
    const c = configFrom(
      rule(`images: "a.io/x/*"
    trust:
      rootKeys: ["${ROOT_ID}"]
      signers: [{ role: targets/a, keys: ["${ROOT_ID}"] }, { role: targets/b, keys: ["${ROOT_ID}"] }]`),
    );
    assert.ok(c.rules[0]?.action === 'verify');
    assert.equal(c.rules[0].trust.signersThreshold, 2);
  });

  it('rejects unknown keys, naming their path', () => {
    invalid(`${MINIMAL}\nbogus: 1\n`, { path: 'bogus', problem: /not a known key/ });
    invalid(rule(`images: "a.io/x/*"\n    trust: { rootKey: ["${ROOT_ID}"] }`), {
      path: 'rules[0].trust.rootKey',
    });
    invalid(`${PREAMBLE}    insecure: true\nrules: []\n`, { path: 'notary[0].insecure' });
    invalid(rule(`images: "a.io/x/*"\n    allow: true\n    color: red`), {
      path: 'rules[0].color',
    });
  });

  it('rejects wrong types, naming their path', () => {
    invalid(MINIMAL.replace('port: 8443', 'port: "8443"'), {
      path: 'listen.port',
      problem: /integer/,
    });
    invalid(MINIMAL.replace('port: 8443', 'port: 70000'), {
      path: 'listen.port',
      problem: /between/,
    });
    invalid(MINIMAL.replace(ROOT_ID, 'not-hex'), { path: 'rules[0].trust.rootKeys[0]' });
    invalid(rule(`images: "a.io/x/*"\n    allow: "yes"`), { path: 'rules[0].allow' });
    invalid(`${PREAMBLE}rules: {}\n`, { path: 'rules', problem: /list/ });
    invalid(`${PREAMBLE}failure: open\nrules: []\n`, {
      path: 'failure',
      problem: /"deny", "error"/,
    });
    invalid(`${PREAMBLE}    timeoutMs: 0\nrules: []\n`, { path: 'notary[0].timeoutMs' });
    invalid(`${PREAMBLE}cache: { ttlSeconds: -1 }\nrules: []\n`, { path: 'cache.ttlSeconds' });
    invalid(`${PREAMBLE}cache: { staleIfErrorSeconds: 604801 }\nrules: []\n`, {
      path: 'cache.staleIfErrorSeconds',
    });
    invalid(`${PREAMBLE}cache: { negativeTtlSeconds: 301 }\nrules: []\n`, {
      path: 'cache.negativeTtlSeconds',
    });
    invalid(`${PREAMBLE}circuitBreaker: { cooldownSeconds: 0 }\nrules: []\n`, {
      path: 'circuitBreaker.cooldownSeconds',
    });
    invalid(`${PREAMBLE}circuitBreaker: { threshold: 3 }\nrules: []\n`, {
      path: 'circuitBreaker.threshold',
    });
    invalid(`${PREAMBLE}cache: { maxRepositories: 10, maxTrustStates: 5 }\nrules: []\n`, {
      path: 'cache.maxTrustStates',
    });
  });

  it('rejects missing required keys', () => {
    invalid(PREAMBLE, { path: 'rules', problem: 'is required' });
    invalid('rules: []\n', { path: 'listen', problem: 'is required' });
    invalid('listen: { port: 1, tls: { key: k } }\nrules: []\n', { path: 'listen.tls.cert' });
    invalid(rule('allow: true'), { path: 'rules[0].images' });
    invalid(`${PREAMBLE.replace('    server: https://127.0.0.1:4443\n', '')}rules: []\n`, {
      path: 'notary[0].server',
    });
  });

  it('demands exactly one of allow, deny, trust', () => {
    invalid(rule(`images: "a.io/x/*"\n    allow: true\n    trust: { rootKeys: ["${ROOT_ID}"] }`), {
      path: 'rules[0]',
      problem: /exactly one/,
    });
    invalid(rule('images: "a.io/x/*"'), { path: 'rules[0]', problem: /exactly one/ });
    invalid(rule('images: "a.io/x/*"\n    allow: true\n    deny: true'), { path: 'rules[0]' });
  });

  it('trusts nothing on first use unless told to', () => {
    invalid(rule('images: "a.io/x/*"\n    trust: {}'), {
      path: 'rules[0].trust',
      problem: /pins no root key/,
    });
    const c = configFrom(rule('images: "a.io/x/*"\n    trust: { tofu: true }'));
    assert.ok(c.rules[0]?.action === 'verify');
    assert.equal(c.rules[0].trust.anchor.tofu, true);
  });

  it('rejects bad patterns, servers, roles and annotations', () => {
    invalid(rule('images: "a.io/x/app:v1"\n    allow: true'), {
      path: 'rules[0].images',
      problem: /leave out the tag/,
    });
    invalid(rule('images: ["a.io/x/*", "a.io//y"]\n    allow: true'), {
      path: 'rules[0].images[1]',
      problem: /empty path segment/,
    });
    invalid(rule('images: "a.io/x**"\n    allow: true'), { problem: /whole path segment/ });
    invalid(rule('images: "alpine"\n    allow: true'), { problem: /registry\/path/ });
    invalid(rule('images: "a.io/x/*"\n    allow: true\n    namespaces: [Prod]'), {
      path: 'rules[0].namespaces[0]',
    });
    invalid(PREAMBLE.replace('https://', 'http://') + 'rules: []\n', {
      path: 'notary[0].server',
      problem: /https/,
    });
    invalid(`${PREAMBLE}  - registry: 127.0.0.1:5000\n    server: https://x\nrules: []\n`, {
      path: 'notary[1].registry',
      problem: /second time/,
    });
    invalid(
      rule(
        `images: "a.io/x/*"\n    trust: { rootKeys: ["${ROOT_ID}"], signers: [{ role: releases, keys: ["${ROOT_ID}"] }] }`,
      ),
      { path: 'rules[0].trust.signers[0].role' },
    );
    invalid(
      rule(
        `images: "a.io/x/*"\n    trust: { rootKeys: ["${ROOT_ID}"], signers: [{ role: targets/a, keys: [] }] }`,
      ),
      { path: 'rules[0].trust.signers[0].keys' },
    );
    invalid(
      rule(
        `images: "a.io/x/*"\n    trust: { rootKeys: ["${ROOT_ID}"], signers: [{ role: targets/a, keys: ["${ROOT_ID}"] }], signersThreshold: 2 }`,
      ),
      { path: 'rules[0].trust.signersThreshold' },
    );
    invalid(`${PREAMBLE}breakGlass: { annotation: break-glass }\nrules: []\n`, {
      path: 'breakGlass.annotation',
      problem: /image-policy\.k8s\.io/,
    });
  });

  it('names files that cannot be read, and files that hold no PEM', () => {
    invalid(
      MINIMAL,
      { path: 'notary[0].ca', problem: new RegExp(`${CONFIG_DIR}/ca.crt.*ENOENT`) },
      {},
    );
    invalid(
      MINIMAL,
      { path: 'notary[0].ca', problem: /no PEM certificate/ },
      {
        [`${CONFIG_DIR}/ca.crt`]: 'hello',
      },
    );
    // A garbled block: Node's TLS would silently drop it and every certificate after it.
    invalid(
      MINIMAL,
      {
        path: 'notary[0].ca',
        problem: new RegExp(`${CONFIG_DIR}/ca.crt holds a PEM certificate that does not parse`),
      },
      {
        [`${CONFIG_DIR}/ca.crt`]: `-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n${CA_PEM}`,
      },
    );
    invalid(rule(`images: "a.io/x/*"\n    trust: { rootKeysPem: [/keys/missing.pem] }`), {
      path: 'rules[0].trust.rootKeysPem[0]',
      problem: /\/keys\/missing\.pem/,
    });
    invalid(
      `${PREAMBLE}    credentials: creds.json\nrules: []\n`,
      { path: 'notary[0].credentials' },
      {
        [`${CONFIG_DIR}/creds.json`]: '{"auths": {"x": {"auth": "%%%"}}}',
      },
    );
  });

  it('reports YAML syntax errors and duplicate keys with their position', () => {
    invalid('listen: [\n', { path: '', problem: /not valid YAML or JSON at line/ });
    invalid(`${MINIMAL}\nrules: []\n`, { path: '', problem: /not valid YAML/ });
  });
});

describe('loadConfig', () => {
  it('resolves relative paths against the config file directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kpack-trust-config-'));
    try {
      await writeFile(join(dir, 'ca.crt'), CA_PEM);
      await writeFile(join(dir, 'verifier.yaml'), MINIMAL);
      const c = await loadConfig(join(dir, 'verifier.yaml'));
      assert.equal(c.source, join(dir, 'verifier.yaml'));
      assert.equal(c.listen.tls.cert, join(dir, 'tls.crt'));
      assert.equal(c.notary[0]?.caPem, CA_PEM);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails with CONFIG_INVALID when the file is missing', async () => {
    await assert.rejects(
      loadConfig('/nonexistent/kpack-trust.yaml'),
      (e: unknown) => isTrustError(e, 'CONFIG_INVALID') && /ENOENT/.test(e.facts.problem),
    );
  });
});
