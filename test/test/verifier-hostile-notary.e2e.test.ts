/**
 * The decision engine, over its real HTTPS notary client, against a hostile notary server: real
 * metadata (in-memory fixture repositories) with one thing corrupted at a time — every corruption
 * of the trust core's tests, plus freeze — and every transport fault: down, slow, 5xx, truncated,
 * endless and trickling bodies, garbage, a certificate from the wrong CA. Each gets a denial that
 * names the problem within the notary deadline, and the same engine recovers, without a restart,
 * once the server is healthy again. Transport faults are named by their class only (the detail is
 * for the log); only an outage of the configured server is "unavailable". Servers the config does
 * not name — any host:port a pod writes — all read the same, and deny even under `failure: error`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  PublicKey,
  createRootCertificate,
  localSigner,
  isTrustError,
  type JsonValue,
} from '@kpack-trust/common';
import {
  FixtureRepository,
  buildHostileRoot,
  fakeManifest,
  fixtureKey,
  flipSignatureBit,
  sha256Hex,
  type FixtureKey,
} from '@kpack-trust/common/testing';
import {
  ImagePolicyEngine,
  loadConfig,
  type ImageDecision,
  type VerifierConfig,
} from '@kpack-trust/verifier';
import {
  startHostileNotary,
  type HostileFault,
  type HostileNotary,
} from '../src/hostile-notary.js';
import { createCertificates } from '../src/index.js';

const REGISTRY = '127.0.0.1:5000';
const TIMEOUT_MS = 1000;
const DAY = 24 * 3600 * 1000;
const m = fakeManifest('v1');

/** A root key shared by every fixture GUN (as the notary CLI does), pinned by its canonical id. */
let rootKey: FixtureKey;
let now = new Date();

async function rootKeyFor(gun: string, key = rootKey): Promise<FixtureKey> {
  const publicKey = PublicKey.fromCertificatePem(
    await createRootCertificate(gun, key.privateKey, { notBefore: new Date(now.getTime() - DAY) }),
  );
  return { privateKey: key.privateKey, publicKey, signer: localSigner(key.privateKey, publicKey) };
}

async function honestRepository(name: string): Promise<FixtureRepository> {
  const gun = `${REGISTRY}/hostile/${name}`;
  const repo = await FixtureRepository.create(gun, now, { rootKeys: [await rootKeyFor(gun)] });
  await repo.signTag('v1', m.digestHex, m.length);
  return repo;
}

function replaceServed(repo: FixtureRepository, role: string, bytes: (b: Buffer) => Buffer): void {
  const current = repo.bytesOf(role);
  repo.files.set(`${role}.${sha256Hex(current)}.json`, bytes(current));
}

/** One corruption: how to build or break the repository, and the code the denial must carry. */
interface Corruption {
  readonly name: string;
  readonly code: string;
  /** What the reason must say after "failed verification: " (or the failure clause). */
  readonly reason: RegExp;
  /** Runs on the honest repository before `prime`. */
  readonly setup?: (repo: FixtureRepository) => Promise<void>;
  /** Review once before corrupting, so the engine has seen newer versions. */
  readonly prime?: boolean;
  readonly create?: (name: string) => Promise<FixtureRepository>;
  readonly corrupt: (repo: FixtureRepository) => Promise<void> | void;
  /** Republishes honestly; the same engine must then admit again. */
  readonly heal?: (repo: FixtureRepository) => Promise<void>;
  /** Clock shift for this case. */
  readonly shiftMs?: number;
}

/** Timestamps saved by `setup` for a later replay, by GUN. */
const frozen = new Map<string, Buffer>();

const republishTargets = async (repo: FixtureRepository): Promise<void> => {
  await repo.publish(['targets']);
};

const CORRUPTIONS: readonly Corruption[] = [
  {
    name: 'root-unpinned',
    code: 'ROOT_NOT_TRUSTED',
    reason: /root of .* \(version 1\) is not signed by a pinned root key$/,
    create: async (name) => {
      const gun = `${REGISTRY}/hostile/${name}`;
      const stranger = await fixtureKey({
        certificateFor: gun,
        notBefore: new Date(now.getTime() - DAY),
      });
      const repo = await FixtureRepository.create(gun, now, { rootKeys: [stranger] });
      await repo.signTag('v1', m.digestHex, m.length);
      return repo;
    },
    corrupt: () => undefined,
  },
  {
    name: 'root-certificate-cn',
    code: 'CERTIFICATE_INVALID',
    reason:
      /root certificate .* is invalid: the certificate's CN "example\.com\/other" does not match the GUN$/,
    create: async (name) => {
      const gun = `${REGISTRY}/hostile/${name}`;
      const wrongCn = await rootKeyFor('example.com/other');
      const repo = await FixtureRepository.create(gun, now, { rootKeys: [wrongCn] });
      await repo.signTag('v1', m.digestHex, m.length);
      return repo;
    },
    corrupt: () => undefined,
  },
  {
    name: 'targets-bad-signature',
    code: 'SIGNATURE_THRESHOLD',
    reason: /^targets has 0 valid signature\(s\) from its keys, needs 1$/,
    corrupt: (repo) => repo.changeTargets('targets', {}, { bytes: (b) => flipSignatureBit(b) }),
    heal: republishTargets,
  },
  {
    name: 'targets-unlisted-key',
    code: 'SIGNATURE_THRESHOLD',
    reason: /^targets has 0 valid signature\(s\) from its keys, needs 1$/,
    corrupt: async (repo) => {
      const stranger = await fixtureKey();
      await repo.changeTargets('targets', {}, { signers: [stranger.signer] });
    },
    heal: republishTargets,
  },
  {
    name: 'delegation-key-counted-twice',
    code: 'SIGNATURE_THRESHOLD',
    reason: /^targets\/releases has 1 valid signature\(s\) from its keys, needs 2$/,
    corrupt: async (repo) => {
      const [a] = await repo.addDelegation('targets/releases', {
        keys: [await fixtureKey(), await fixtureKey()],
        threshold: 2,
      });
      assert.ok(a);
      await repo.changeTargets('targets/releases', {}, { signers: [a.signer, a.signer] });
    },
  },
  {
    name: 'delegation-certificate-and-bare-key',
    code: 'SIGNATURE_THRESHOLD',
    reason: /^targets\/releases has 1 valid signature\(s\) from its keys, needs 2$/,
    corrupt: async (repo) => {
      const bare = await fixtureKey();
      const cert = PublicKey.fromCertificatePem(
        await createRootCertificate('targets/releases', bare.privateKey),
      );
      const certKey = {
        privateKey: bare.privateKey,
        publicKey: cert,
        signer: localSigner(bare.privateKey, cert),
      };
      await repo.addDelegation('targets/releases', { keys: [bare, certKey], threshold: 2 });
      await repo.changeTargets('targets/releases', {}, { signers: [bare.signer, certKey.signer] });
    },
  },
  {
    name: 'timestamp-expired',
    code: 'EXPIRED',
    reason: /^timestamp expired at /,
    shiftMs: 15 * DAY,
    corrupt: () => undefined,
  },
  {
    name: 'targets-expired',
    code: 'EXPIRED',
    reason: /^targets expired at /,
    corrupt: (repo) =>
      repo.changeTargets(
        'targets',
        {},
        {
          signed: (s) => ({ ...s, expires: new Date(now.getTime() - DAY).toISOString() }),
        },
      ),
    heal: republishTargets,
  },
  {
    // An old, still validly signed timestamp replayed after a newer one was seen.
    name: 'freeze',
    code: 'VERSION_ROLLBACK',
    reason: /^timestamp version 2 is lower than version 3 already trusted \(rollback or freeze\)$/,
    setup: async (repo) => {
      frozen.set(repo.gun, repo.bytesOf('timestamp'));
      await repo.publish([]);
    },
    prime: true,
    corrupt: (repo) => {
      const old = frozen.get(repo.gun);
      assert.ok(old);
      repo.files.set('timestamp.json', old);
    },
    heal: async (repo) => {
      await repo.publish([]);
    },
  },
  {
    name: 'targets-rollback',
    code: 'VERSION_ROLLBACK',
    reason: /^targets version 2 is lower than version 3 already trusted \(rollback or freeze\)$/,
    prime: true,
    corrupt: (repo) => repo.changeTargets('targets', {}, { signed: (s) => ({ ...s, version: 2 }) }),
    heal: async (repo) => {
      await repo.changeTargets('targets', {}, { signed: (s) => ({ ...s, version: 5 }) });
    },
  },
  {
    name: 'snapshot-hash',
    code: 'HASH_MISMATCH',
    reason: /snapshot/,
    corrupt: (repo) => {
      replaceServed(repo, 'snapshot', (b) => {
        const copy = Buffer.from(b);
        const i = copy.length - 3;
        copy[i] = (copy[i] ?? 0) ^ 0x01;
        return copy;
      });
    },
    heal: republishTargets,
  },
  {
    name: 'targets-short',
    code: 'LENGTH_MISMATCH',
    reason: /targets/,
    corrupt: (repo) => {
      replaceServed(repo, 'targets', (b) => b.subarray(0, 100));
    },
    heal: republishTargets,
  },
  {
    name: 'targets-long',
    code: 'DOWNLOAD_TOO_LARGE',
    reason: /the answer for targets exceeds \d+ bytes$/,
    corrupt: (repo) => {
      replaceServed(repo, 'targets', (b) => Buffer.concat([b, Buffer.from('  ')]));
    },
    heal: republishTargets,
  },
  {
    name: 'timestamp-oversized',
    code: 'DOWNLOAD_TOO_LARGE',
    reason: /the answer for timestamp exceeds 1048576 bytes$/,
    corrupt: (repo) => {
      repo.files.set(
        'timestamp.json',
        Buffer.concat([repo.bytesOf('timestamp'), Buffer.alloc(2 << 20, 0x20)]),
      );
    },
    heal: async (repo) => {
      await repo.publish([]);
    },
  },
  {
    name: 'root-rotation-unsigned-by-old-root',
    code: 'SIGNATURE_THRESHOLD',
    reason: /^root has 0 valid signature\(s\) from its keys, needs 1$/,
    corrupt: async (repo) => {
      const next = await rootKeyFor(repo.gun, await fixtureKey());
      await repo.rotateRoot([next], { signers: [next.signer] });
    },
  },
  // Issue 11: a 1 MiB root.json is refused before its keys are parsed.
  {
    name: 'root-hostile-1mib',
    code: 'LIMIT_EXCEEDED',
    reason: /^root lists \d+ keys in signed\.keys, more than the 64 accepted$/,
    corrupt: (repo) => {
      const hostileRoot = buildHostileRoot({ gun: repo.gun, now, junkCas: 0, junkKeys: 100 });
      for (const [file, bytes] of hostileRoot.files) repo.files.set(file, bytes);
    },
  },
  // Issue 11 (TUF 5.5.5): the server re-signs snapshot and timestamp without targets/releases.
  {
    name: 'snapshot-drops-delegation',
    code: 'VERSION_ROLLBACK',
    reason:
      /^snapshot version \d+ no longer lists targets\/releases, which targets still delegates to and whose version \d+ was trusted before \(rollback\)$/,
    setup: async (repo) => {
      await repo.addDelegation('targets/releases');
      await repo.signTag('v1', m.digestHex, m.length, 'targets/releases');
    },
    prime: true,
    corrupt: (repo) =>
      repo.publish([], {
        snapshot: {
          signed: (s) => ({
            ...s,
            meta: Object.fromEntries(
              Object.entries(s['meta'] as Record<string, JsonValue>).filter(
                ([role]) => role !== 'targets/releases',
              ),
            ),
          }),
        },
      }),
  },
  // Issue 11: a tag found in targets/releases without a sha256 is not looked up in targets.
  {
    name: 'tag-without-sha256',
    code: 'TARGET_INVALID',
    reason: /^targets\/releases signs "v1" of .*, but it has no sha256 hash$/,
    corrupt: async (repo) => {
      await repo.addDelegation('targets/releases');
      await repo.changeTargets('targets/releases', {
        set: new Map([['v1', { length: m.length, hashes: { sha512: Buffer.alloc(64, 7) } }]]),
      });
    },
  },
];

/**
 * Each transport fault, the code it must carry, and what the reason says after `notary <url> ` —
 * a class, never the socket or TLS error — or, for answers about the GUN (garbage, oversized), the
 * failed-verification clause. `unavailable`: an outage `failure: error` may turn into an error.
 */
const FAULTS: readonly {
  fault: HostileFault;
  code: string;
  reason: (gun: string, url: string) => string;
  unavailable: boolean;
}[] = [
  {
    fault: { kind: 'down' },
    code: 'HTTP_UNREACHABLE',
    reason: (gun, url) => `notary ${url} is unavailable for ${gun} (connection failed)`,
    unavailable: true,
  },
  {
    fault: { kind: 'slow', delayMs: 5 * TIMEOUT_MS },
    code: 'HTTP_UNREACHABLE',
    reason: (gun, url) => `notary ${url} is unavailable for ${gun} (timed out)`,
    unavailable: true,
  },
  {
    fault: { kind: 'status', status: 503 },
    code: 'HTTP_STATUS',
    reason: (gun, url) => `notary ${url} is unavailable for ${gun} (HTTP 503)`,
    unavailable: true,
  },
  {
    fault: { kind: 'truncated', only: 'snapshot' },
    code: 'HTTP_UNREACHABLE',
    reason: (gun, url) => `notary ${url} is unavailable for ${gun} (connection failed)`,
    unavailable: true,
  },
  {
    fault: { kind: 'endless', only: 'timestamp' },
    code: 'DOWNLOAD_TOO_LARGE',
    reason: (gun, url) =>
      `trust data for ${gun} from notary ${url} failed verification: GET ${url}/v2/${gun}/_trust/tuf/timestamp.json: the answer for timestamp exceeds 1048576 bytes`,
    unavailable: false,
  },
  {
    fault: { kind: 'trickle', only: 'targets' },
    code: 'HTTP_UNREACHABLE',
    reason: (gun, url) => `notary ${url} is unavailable for ${gun} (timed out)`,
    unavailable: true,
  },
  {
    fault: { kind: 'garbage', only: 'root' },
    code: 'METADATA_MALFORMED',
    reason: (gun, url) =>
      `trust data for ${gun} from notary ${url} failed verification: root metadata is not valid JSON`,
    unavailable: false,
  },
  {
    fault: { kind: 'wrong-ca' },
    code: 'HTTP_UNREACHABLE',
    reason: (gun, url) => `notary ${url} is unavailable for ${gun} (TLS handshake failed)`,
    unavailable: true,
  },
];

void describe('ImagePolicyEngine against a hostile notary', () => {
  let dir: string;
  let hostile: HostileNotary;
  let config: VerifierConfig;
  /** `config` plus a rule that verifies every other image: any host:port a pod names. */
  let anyRegistry: VerifierConfig;
  let engine: ImagePolicyEngine;
  const engines: ImagePolicyEngine[] = [];

  const newEngine = (
    options: { shiftMs?: number; failure?: 'error'; config?: VerifierConfig } = {},
  ): ImagePolicyEngine => {
    const shift = options.shiftMs ?? 0;
    const base = options.config ?? config;
    const e = new ImagePolicyEngine({
      config: options.failure === undefined ? base : { ...base, failure: options.failure },
      now: () => new Date(Date.now() + shift),
    });
    engines.push(e);
    return e;
  };

  async function decide(
    e: ImagePolicyEngine,
    gun: string,
  ): Promise<{ decision: ImageDecision; reason: string; ms: number }> {
    const started = performance.now();
    const result = await e.decide({
      containers: [{ image: `${gun}:v1` }],
      annotations: {},
      namespace: 'default',
    });
    const decision = result.images[0];
    assert.ok(decision);
    return { decision, reason: result.status.reason ?? '', ms: performance.now() - started };
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpack-trust-hostile-'));
    const [good, wrong] = await Promise.all([
      createCertificates(join(dir, 'good')),
      createCertificates(join(dir, 'wrong')),
    ]);
    const pair = async (p: {
      certFile: string;
      keyFile: string;
    }): Promise<{ cert: string; key: string }> => ({
      cert: await readFile(p.certFile, 'utf8'),
      key: await readFile(p.keyFile, 'utf8'),
    });
    hostile = await startHostileNotary({
      tls: await pair(good.server),
      wrongCaTls: await pair(wrong.server),
    });
    rootKey = await fixtureKey();
    now = new Date();
    const file = join(dir, 'verifier.yaml');
    await writeFile(
      file,
      `listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - { registry: "${REGISTRY}", server: "${hostile.url}", ca: ${good.caFile}, timeoutMs: ${TIMEOUT_MS} }
cache: { ttlSeconds: 0, negativeTtlSeconds: 0, staleIfErrorSeconds: 0 }
circuitBreaker: { failureThreshold: 0 }
rules:
  - images: "${REGISTRY}/hostile/*"
    trust: { rootKeys: ["${rootKey.publicKey.id}"] }
`,
    );
    config = await loadConfig(file);
    const anyFile = join(dir, 'verifier-any.yaml');
    await writeFile(
      anyFile,
      `${await readFile(file, 'utf8')}  - images: "**"
    trust: { rootKeys: ["${rootKey.publicKey.id}"] }
`,
    );
    anyRegistry = await loadConfig(anyFile);
    engine = newEngine();
  });

  after(async () => {
    await Promise.all(engines.map((e) => e.close()));
    await hostile.close();
    await rm(dir, { recursive: true, force: true });
  });

  void it('admits an honest repository', async () => {
    const repo = await honestRepository('honest');
    hostile.serve(repo.gun, repo.files);
    const { decision } = await decide(engine, repo.gun);
    assert.equal(decision.result, 'allowed', decision.reason);
  });

  for (const c of CORRUPTIONS) {
    void it(`denies ${c.name} with ${c.code}${c.heal ? ', then recovers' : ''}`, async () => {
      const repo = await (c.create ?? honestRepository)(c.name);
      hostile.serve(repo.gun, repo.files);
      const e = c.shiftMs === undefined ? engine : newEngine({ shiftMs: c.shiftMs });
      await c.setup?.(repo);
      if (c.prime === true) {
        const primed = await decide(e, repo.gun);
        assert.equal(primed.decision.result, 'allowed', primed.reason);
      }
      await c.corrupt(repo);
      const { decision, reason } = await decide(e, repo.gun);
      assert.equal(decision.result, 'denied');
      assert.equal(decision.code, c.code, reason);
      const prefix = `${repo.gun}:v1: trust data for ${repo.gun} from notary ${hostile.url} failed verification: `;
      assert.ok(reason.startsWith(prefix), reason);
      assert.match(reason.slice(prefix.length), c.reason);
      if (c.heal !== undefined) {
        await c.heal(repo);
        const healed = await decide(e, repo.gun);
        assert.equal(healed.decision.result, 'allowed', healed.reason);
      }
    });
  }

  for (const f of FAULTS) {
    const label =
      f.fault.kind + ('only' in f.fault && f.fault.only !== undefined ? ` (${f.fault.only})` : '');
    void it(`denies within the deadline when the server is ${label}, then recovers`, async () => {
      const repo = await honestRepository(`fault-${f.fault.kind}`);
      hostile.serve(repo.gun, repo.files);
      await hostile.setFault(f.fault);
      try {
        const { decision, reason, ms } = await decide(engine, repo.gun);
        assert.equal(decision.result, 'denied');
        assert.equal(decision.code, f.code, reason);
        assert.equal(decision.unavailable, f.unavailable ? true : undefined);
        assert.equal(reason, `${repo.gun}:v1: ${f.reason(repo.gun, hostile.url)}`);
        assert.ok(ms < TIMEOUT_MS + 1000, `decided after ${Math.round(ms)} ms`);
      } finally {
        await hostile.setFault({ kind: 'healthy' });
      }
      const healed = await decide(engine, repo.gun);
      assert.equal(healed.decision.result, 'allowed', healed.reason);
    });
  }

  void it('answers an error instead under failure: error, and recovers', async () => {
    const repo = await honestRepository('fault-error-mode');
    hostile.serve(repo.gun, repo.files);
    const e = newEngine({ failure: 'error' });
    await hostile.setFault({ kind: 'status', status: 503 });
    try {
      await assert.rejects(
        e.review({
          containers: [{ image: `${repo.gun}:v1` }],
          annotations: {},
          namespace: 'default',
        }),
        (error: unknown) =>
          isTrustError(error, 'REVIEW_FAILED') && error.facts.image === `${repo.gun}:v1`,
      );
    } finally {
      await hostile.setFault({ kind: 'healthy' });
    }
    assert.equal((await decide(e, repo.gun)).decision.result, 'allowed');
  });

  void it('denies unconfigured servers alike — closed, plain HTTP, unknown CA — even under failure: error', async () => {
    const probe = createTcpServer().listen(0, '127.0.0.1');
    await new Promise((r) => probe.once('listening', r));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const plain: HttpServer = createHttpServer((_req, res) => res.end('not notary'));
    plain.listen(0, '127.0.0.1');
    await new Promise((r) => plain.once('listening', r));
    try {
      const signed = await honestRepository('implicit-mix');
      hostile.serve(signed.gun, signed.files);
      const hosts = [
        `127.0.0.1:${closedPort}`,
        `127.0.0.1:${(plain.address() as AddressInfo).port}`,
        // The hostile server itself, reached as `https://<registry>`: a CA the public roots lack.
        new URL(hostile.url).host,
      ];
      const e = newEngine({ config: anyRegistry, failure: 'error' });
      const images = [`${signed.gun}:v1`, ...hosts.map((h) => `${h}/probe/me:v1`)];
      const result = await e.decide({
        containers: images.map((image) => ({ image })),
        annotations: {},
        namespace: 'default',
      });
      assert.equal(result.images[0]?.result, 'allowed', result.images[0]?.reason);
      assert.equal(result.status.allowed, false);
      assert.equal(
        result.status.reason,
        hosts
          .map(
            (h) =>
              `${h}/probe/me:v1: no trust data for ${h}/probe/me from notary https://${h} (not signed there, or the server did not serve it)`,
          )
          .join('; '),
      );
      assert.ok(result.images.slice(1).every((d) => d.code === 'NO_TRUST_DATA' && !d.unavailable));
    } finally {
      plain.close();
    }
  });
});
