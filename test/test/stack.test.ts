/**
 * The loopback stack itself: real notary-signer, notary-server and docker-registry started in both
 * trust-service modes and behind token auth, driven by the real notary CLI and skopeo, and torn
 * down without leaving a process behind.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createHash, verify } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  INSTALL_COMMAND,
  NotaryCliError,
  addDelegation,
  addSigner,
  addTarget,
  createDelegationKey,
  fetchManifest,
  initRepo,
  listDelegations,
  listTargets,
  lookup,
  notaryCli,
  pushImage,
  requireBinary,
  rotateRoot,
  rootVersion,
  startStack,
  type NotaryStack,
} from '../src/index.js';
import { freePort, httpOk, launchDaemon } from '../src/stack/processes.js';

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** GET over HTTPS trusting only the stack's CA. */
function httpsGet(url: string, ca: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function httpGet(url: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * True while a process with this pid runs. A zombie counts as gone: a daemon whose parent died is
 * re-parented to PID 1, which in a container may never reap it, yet it has exited all the same.
 */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state letter follows the parenthesised command name.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const HEX_A = 'a'.repeat(64);

/** The key type notary-server answers for a server-held role key. */
async function serverKeyType(stack: NotaryStack, gun: string, role: string): Promise<unknown> {
  const reply = await httpsGet(`${stack.notaryUrl}/v2/${gun}/_trust/tuf/${role}.key`, stack.caPem);
  assert.equal(reply.status, 200, reply.body);
  return (JSON.parse(reply.body) as { keytype?: unknown }).keytype;
}

/** stop() ends exactly the stack's daemons and removes its work dir; a second stop() is a no-op. */
async function assertStopsCleanly(stack: NotaryStack, expected: readonly string[]): Promise<void> {
  assert.deepEqual(stack.processes.map((p) => p.name).sort(), [...expected].sort());
  for (const p of stack.processes) assert.ok(pidAlive(p.pid), `${p.name} should be running`);
  await stack.stop();
  for (const p of stack.processes) assert.equal(pidAlive(p.pid), false, `${p.name} still alive`);
  assert.equal(existsSync(stack.workDir), false);
  await stack.stop();
}

describe('binaries', { timeout: 60_000 }, () => {
  test('requireBinary finds the real notary on PATH', () => {
    assert.match(requireBinary('notary'), /\/notary$/);
  });

  test('requireBinary names the exact install command when a binary is missing', () => {
    assert.equal(
      INSTALL_COMMAND,
      'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y notary docker-registry skopeo',
    );
    assert.throws(
      () => requireBinary('notary-server', { path: '/nonexistent-kpack-trust-bin' }),
      (error: Error) =>
        error.message.includes(INSTALL_COMMAND) && /notary-server/.test(error.message),
    );
  });
});

describe('launchDaemon', { timeout: 60_000 }, () => {
  test('retries on a new port when another process took the chosen one', async (t) => {
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    t.after(() => squatter.close());
    const address = squatter.address();
    assert.ok(typeof address === 'object' && address !== null);
    const ports = [address.port, await freePort()];
    const workDir = await mkdtemp(join(tmpdir(), 'kpack-trust-race-'));
    t.after(() => rm(workDir, { recursive: true }));

    const daemon = await launchDaemon({
      name: 'docker-registry',
      binary: requireBinary('docker-registry'),
      workDir,
      allocatePort: () => Promise.resolve(ports.shift() ?? 0),
      prepare: async (port) => {
        const config = join(workDir, 'registry.yml');
        await writeFile(
          config,
          `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(workDir, 'data')}\n` +
            `http:\n  addr: 127.0.0.1:${port}\n  secret: test\n`,
        );
        return ['serve', config];
      },
      probe: (port) => httpOk(`http://127.0.0.1:${port}/v2/`),
    });
    assert.equal(daemon.attempts, 2);
    assert.notEqual(daemon.port, address.port);
    await daemon.stop();
    assert.equal(daemon.exited, true);
    assert.equal(pidAlive(daemon.pid), false);
  });

  test('fails with the tail of the log when the daemon exits before it is healthy', async (t) => {
    const workDir = await mkdtemp(join(tmpdir(), 'kpack-trust-fail-'));
    t.after(() => rm(workDir, { recursive: true }));
    await assert.rejects(
      launchDaemon({
        name: 'notary-server',
        binary: requireBinary('notary-server'),
        workDir,
        prepare: () => Promise.resolve(['-config', join(workDir, 'missing.json')]),
        probe: () => Promise.resolve(false),
      }),
      (error: Error) =>
        /notary-server exited with code 1 before becoming healthy/.test(error.message) &&
        error.message.includes('Could not read config'),
    );
  });
});

describe('stack with notary-signer (remote trust service)', { timeout: 60_000 }, () => {
  let stack: NotaryStack;
  let trustDir: string;
  before(async () => {
    stack = await startStack({ trustService: 'remote' });
    trustDir = await stack.tempDir('trust');
  });
  after(() => stack.stop());

  test('serves notary-server health over TLS and the registry API', async () => {
    assert.match(stack.notaryUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(stack.registryHost, /^127\.0\.0\.1:\d+$/);
    assert.equal(stack.trustService, 'remote');
    const health = await httpsGet(`${stack.notaryUrl}/_notary_server/health`, stack.caPem);
    assert.deepEqual([health.status, health.body], [200, '{}']);
    assert.equal((await httpGet(`http://${stack.registryHost}/v2/`)).status, 200);
  });

  test('notary init, addhash, publish and lookup round-trip; server keys are ECDSA', async () => {
    const gun = `${stack.registryHost}/demo/remote`;
    await initRepo(stack, gun, trustDir);
    await addTarget(stack, gun, trustDir, 'v1', 123, HEX_A);
    assert.deepEqual(await lookup(stack, gun, 'v1', trustDir), {
      tag: 'v1',
      sha256Hex: HEX_A,
      size: 123,
      role: 'targets',
    });
    assert.equal(await serverKeyType(stack, gun, 'timestamp'), 'ecdsa');
    await assert.rejects(lookup(stack, gun, 'v2', trustDir), (error: NotaryCliError) =>
      error.result.stdout.includes('No valid trust data for v2'),
    );
  });

  test('pushes an image whose manifest the registry serves by digest, and signs it', async () => {
    const image = await pushImage(stack, 'demo/image', 'v1', { content: 'first' });
    assert.equal(image.gun, `${stack.registryHost}/demo/image`);
    assert.equal(image.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    const byDigest = await fetchManifest(stack.registryHost, 'demo/image', image.digest);
    assert.equal(byDigest.status, 200);
    assert.equal(byDigest.digestHeader, image.digest);
    assert.equal(
      `sha256:${createHash('sha256').update(byDigest.body).digest('hex')}`,
      image.digest,
    );
    assert.equal(byDigest.body.length, image.size);

    const other = await pushImage(stack, 'demo/image', 'v2', { content: 'second' });
    assert.notEqual(other.digest, image.digest);
    const converted = await pushImage(stack, 'demo/image', 'v3', { format: 'docker' });
    assert.equal(converted.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');

    const hex = image.digest.slice('sha256:'.length);
    await initRepo(stack, image.gun, trustDir);
    await addTarget(stack, image.gun, trustDir, 'v1', image.size, hex);
    assert.deepEqual(await lookup(stack, image.gun, 'v1', trustDir), {
      tag: 'v1',
      sha256Hex: hex,
      size: image.size,
      role: 'targets',
    });
  });

  test('a named signer signs into targets/releases', async () => {
    const gun = `${stack.registryHost}/demo/delegated`;
    await initRepo(stack, gun, trustDir, { serverSnapshot: true });
    const alice = await createDelegationKey(await stack.tempDir('keys'), 'alice');
    const keyId = await addSigner(stack, gun, trustDir, alice);
    const delegations = await listDelegations(stack, gun, trustDir);
    assert.deepEqual(
      delegations.map((d) => [d.role, d.paths, d.keyIds, d.threshold]),
      [
        ['targets/alice', [''], [keyId], 1],
        ['targets/releases', [''], [keyId], 1],
      ],
    );
    await addTarget(stack, gun, trustDir, 'v1', 42, HEX_A, { roles: ['targets/releases'] });
    assert.deepEqual(await lookup(stack, gun, 'v1', trustDir), {
      tag: 'v1',
      sha256Hex: HEX_A,
      size: 42,
      role: 'targets/releases',
    });
    assert.deepEqual(
      (await listTargets(stack, gun, trustDir, { roles: ['targets/alice'] })).map((r) => r.tag),
      [],
    );

    const bob = await createDelegationKey(await stack.tempDir('keys'), 'bob');
    await addDelegation(stack, gun, trustDir, 'targets/qa', [bob.certFile], {
      paths: ['qa-', 'rc-'],
    });
    const qa = (await listDelegations(stack, gun, trustDir)).find((d) => d.role === 'targets/qa');
    assert.deepEqual(qa?.paths, ['qa-', 'rc-']);
  });

  test('root rotation raises the root version (server-held snapshot repo starts at root v2)', async () => {
    const gun = `${stack.registryHost}/demo/rotated`;
    await initRepo(stack, gun, trustDir, { serverSnapshot: true });
    assert.equal(await rootVersion(stack, gun, trustDir), 2);
    assert.equal(await serverKeyType(stack, gun, 'snapshot'), 'ecdsa');
    assert.deepEqual(await rotateRoot(stack, gun, trustDir), { before: 2, after: 3 });
  });

  test('stop() ends exactly its own daemons and removes the work dir', async () => {
    await assertStopsCleanly(stack, ['docker-registry', 'notary-server', 'notary-signer']);
  });
});

describe('stack with the local trust service and no registry', { timeout: 60_000 }, () => {
  let stack: NotaryStack;
  before(async () => {
    stack = await startStack({ trustService: 'local', registry: false });
  });
  after(() => stack.stop());

  test('runs notary-server alone, with ed25519 server keys', async () => {
    assert.equal(stack.trustService, 'local');
    assert.throws(() => stack.registryHost, /without a registry/);
    const health = await httpsGet(`${stack.notaryUrl}/_notary_server/health`, stack.caPem);
    assert.equal(health.status, 200);

    const trustDir = await stack.tempDir('trust');
    const gun = 'registry.example/demo/local';
    await initRepo(stack, gun, trustDir, { serverSnapshot: true });
    await addTarget(stack, gun, trustDir, 'latest', 7, HEX_A);
    assert.deepEqual(await lookup(stack, gun, 'latest', trustDir), {
      tag: 'latest',
      sha256Hex: HEX_A,
      size: 7,
      role: 'targets',
    });
    assert.equal(await serverKeyType(stack, gun, 'timestamp'), 'ed25519');
    assert.equal(await serverKeyType(stack, gun, 'snapshot'), 'ed25519');
  });

  test('stop() ends notary-server and removes the work dir', async () => {
    await assertStopsCleanly(stack, ['notary-server']);
  });
});

describe('stack behind token auth', { timeout: 60_000 }, () => {
  let stack: NotaryStack;
  let trustDir: string;
  let gun: string;
  before(async () => {
    stack = await startStack({ trustService: 'remote', auth: 'token' });
    trustDir = await stack.tempDir('trust');
    gun = `${stack.registryHost}/demo/private`;
  });
  after(() => stack.stop());

  test('notary-server challenges with the issuer realm, service and pull scope', async () => {
    const reply = await httpsGet(`${stack.notaryUrl}/v2/${gun}/_trust/tuf/root.json`, stack.caPem);
    assert.equal(reply.status, 401);
    assert.equal(
      reply.headers['www-authenticate'],
      `Bearer realm="${stack.token?.realm}",service="notary-server",scope="repository:${gun}:pull"`,
    );
  });

  test('the notary CLI gets tokens with NOTARY_AUTH and publishes; reads are anonymous', async () => {
    const issuer = stack.token;
    assert.ok(issuer !== undefined);
    const before = issuer.requests;
    await initRepo(stack, gun, trustDir);
    await addTarget(stack, gun, trustDir, 'v1', 99, HEX_A);
    const writes = issuer.log.slice(before);
    assert.ok(writes.length > 0);
    for (const record of writes) {
      assert.deepEqual(
        [record.user, record.status, record.scopes, record.granted],
        [issuer.username, 200, [`repository:${gun}:push,pull`], ['push,pull']],
      );
    }

    const mark = issuer.requests;
    assert.equal((await lookup(stack, gun, 'v1', trustDir)).size, 99);
    const reads = issuer.log.slice(mark);
    assert.ok(reads.length > 0);
    for (const record of reads) {
      assert.deepEqual([record.user, record.status, record.granted], [undefined, 200, ['pull']]);
    }
  });

  test('tokens are ES256 JWTs with an x5c chaining to the CA and the requested access', async () => {
    const issuer = stack.token;
    assert.ok(issuer !== undefined);
    const basic = Buffer.from(`${issuer.username}:${issuer.password}`).toString('base64');
    const url = `${issuer.realm}?service=notary-server&scope=repository:${gun}:push,pull`;
    const reply = await httpsGet(url, stack.caPem, { Authorization: `Basic ${basic}` });
    assert.equal(reply.status, 200, reply.body);
    const body = JSON.parse(reply.body) as {
      token: string;
      access_token: string;
      expires_in: number;
    };
    assert.equal(body.access_token, body.token);
    assert.equal(body.expires_in, 300);

    const [headerPart, claimsPart, signaturePart] = body.token.split('.');
    assert.ok(headerPart !== undefined && claimsPart !== undefined && signaturePart !== undefined);
    const header = JSON.parse(Buffer.from(headerPart, 'base64url').toString()) as {
      alg: string;
      x5c: string[];
    };
    assert.equal(header.alg, 'ES256');
    const leaf = new X509Certificate(Buffer.from(header.x5c[0] ?? '', 'base64'));
    assert.ok(leaf.verify(new X509Certificate(stack.caPem).publicKey));
    assert.ok(
      verify(
        'sha256',
        Buffer.from(`${headerPart}.${claimsPart}`),
        { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' },
        Buffer.from(signaturePart, 'base64url'),
      ),
    );
    const claims = JSON.parse(Buffer.from(claimsPart, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    assert.equal(claims['iss'], issuer.issuer);
    assert.equal(claims['sub'], issuer.username);
    assert.equal(claims['aud'], 'notary-server');
    assert.deepEqual(claims['access'], [
      { type: 'repository', name: gun, actions: ['push', 'pull'] },
    ]);
    const now = Date.now() / 1000;
    assert.ok((claims['nbf'] as number) <= now && now < (claims['exp'] as number));
  });

  test('wrong credentials get 401 from the issuer and the CLI cannot publish', async () => {
    const issuer = stack.token;
    assert.ok(issuer !== undefined);
    const wrong = Buffer.from(`${issuer.username}:not-the-password`).toString('base64');
    const url = `${issuer.realm}?service=notary-server&scope=repository:${gun}:pull`;
    const reply = await httpsGet(url, stack.caPem, { Authorization: `Basic ${wrong}` });
    assert.equal(reply.status, 401);

    const mark = issuer.requests;
    const result = await notaryCli(stack, ['init', `${stack.registryHost}/demo/denied`, '-p'], {
      trustDir: await stack.tempDir('denied'),
      env: { NOTARY_AUTH: wrong },
    });
    assert.notEqual(result.code, 0);
    // The CLI quotes the token service's error message.
    assert.match(result.stdout, /fatal: unauthorized: invalid credentials/);
    assert.ok(issuer.log.slice(mark).some((r) => r.status === 401 && r.user === issuer.username));
  });

  test('stop() ends the daemons and the token issuer', async () => {
    const realm = stack.token?.realm ?? '';
    await assertStopsCleanly(stack, ['docker-registry', 'notary-server', 'notary-signer']);
    await assert.rejects(httpsGet(realm, stack.caPem), { code: 'ECONNREFUSED' });
  });
});

describe('token auth without anonymous pull', { timeout: 60_000 }, () => {
  test('read-only CLI commands, which never send credentials, are refused', async (t) => {
    const stack = await startStack({
      trustService: 'local',
      registry: false,
      auth: 'token',
      anonymousPull: false,
      credentials: { username: 'builder', password: 's3cret' },
    });
    t.after(() => stack.stop());
    const trustDir = await stack.tempDir('trust');
    const gun = 'registry.example/demo/private';
    await initRepo(stack, gun, trustDir);
    const result = await notaryCli(stack, ['list', gun], { trustDir });
    assert.notEqual(result.code, 0);
    assert.match(result.stdout, /fatal: unauthorized/);
    const last = stack.token?.log.at(-1);
    assert.deepEqual(
      [last?.user, last?.status, last?.scopes],
      [undefined, 401, [`repository:${gun}:pull`]],
    );
  });
});

describe('cleanup when the test process dies', { timeout: 60_000 }, () => {
  const entry = new URL('../src/index.js', import.meta.url).href;
  const cases = [
    ['an uncaught exception', 'throw new Error("test run crashed");'],
    [
      'SIGTERM',
      'process.kill(process.pid, "SIGTERM"); await new Promise((r) => setTimeout(r, 20000));',
    ],
  ] as const;
  for (const [how, ending] of cases) {
    test(`${how} kills the stack's daemons and removes its work dir`, async () => {
      const script =
        `import { startStack } from ${JSON.stringify(entry)};\n` +
        `const stack = await startStack({ trustService: 'remote' });\n` +
        `console.log(JSON.stringify({ pids: stack.processes.map((p) => p.pid), dir: stack.workDir }));\n` +
        ending;
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '--eval', script],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.on('close', (c, s) => {
          resolve([c, s]);
        }),
      );
      const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
        pids: number[];
        dir: string;
      };
      assert.equal(report.pids.length, 3, stderr);
      if (how === 'SIGTERM') assert.equal(signal, 'SIGTERM');
      else assert.equal(code, 1, stderr);
      for (const pid of report.pids) assert.equal(pidAlive(pid), false, `pid ${pid} survived`);
      assert.equal(existsSync(report.dir), false);
    });
  }
});
