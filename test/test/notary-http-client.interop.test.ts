/**
 * NotaryHttpClient against the real notary-server (with notary-signer, or its local key service,
 * or behind a token service): every byte it reads must be the byte the real `notary` CLI cached.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NotaryHttpClient, isTrustError, staticCredentials } from '@kpack-trust/common';
import { initRepo, runNotary, startStack, type NotaryStack } from '../src/index.js';

const MAX = 1 << 20;

/** The metadata file the CLI cached for `gun` after its last publish or update. */
function cached(trustDir: string, gun: string, file: string): Promise<Buffer> {
  return readFile(join(trustDir, 'tuf', gun, 'metadata', file));
}

const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

void describe('NotaryHttpClient against notary-server with notary-signer', () => {
  let stack: NotaryStack;
  let client: NotaryHttpClient;
  const gun = '127.0.0.1:5000/interop/app';
  let trustDir = '';

  before(async () => {
    stack = await startStack({ registry: false });
    client = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem, exclusiveCa: true });
    trustDir = await stack.tempDir('trust');
    await initRepo(stack, gun, trustDir);
    // Observed: `notary publish` re-signs targets and snapshot (as version 2) without updating its
    // cache, which keeps the unpublished version 1 copies and no timestamp; `notary list` updates
    // the cache to exactly the server's bytes.
    await runNotary(stack, ['list', gun], { trustDir });
  });
  after(async () => {
    client.close();
    await stack.stop();
  });

  void it('fetchServerKey(gun, timestamp) returns a P-256 ecdsa key — a new one per call until a root names one', async () => {
    // Observed: notary-server's get-or-create only "gets" the key the published root lists; for a
    // GUN without a root, every GET <role>.key creates another key.
    const fresh = '127.0.0.1:5000/interop/keys-only';
    const key = await client.fetchServerKey(fresh, 'timestamp');
    assert.equal(key.keytype, 'ecdsa');
    assert.equal(key.keyval.private, null);
    const spki = createPublicKey({
      key: Buffer.from(key.keyval.public, 'base64'),
      format: 'der',
      type: 'spki',
    });
    assert.equal(spki.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const again = await client.fetchServerKey(fresh, 'timestamp');
    assert.equal(again.keytype, 'ecdsa');
    assert.notEqual(again.keyval.public, key.keyval.public);
    const snapshot = await client.fetchServerKey(fresh, 'snapshot');
    assert.equal(snapshot.keytype, 'ecdsa');
  });

  void it('fetchServerKey returns the timestamp key the published root lists, every time', async () => {
    const root = JSON.parse((await cached(trustDir, gun, 'root.json')).toString('utf8')) as {
      signed: {
        keys: Record<string, { keytype: string; keyval: { public: string } }>;
        roles: { timestamp: { keyids: string[] } };
      };
    };
    const id = root.signed.roles.timestamp.keyids[0] ?? '';
    const listed = root.signed.keys[id];
    assert.ok(listed !== undefined);
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await client.fetchServerKey(gun, 'timestamp'), {
        keytype: listed.keytype,
        keyval: { public: listed.keyval.public, private: null },
      });
    }
  });

  void it('reads root.json of a CLI-created repo byte for byte as the CLI cached it', async () => {
    const root = await cached(trustDir, gun, 'root.json');
    assert.deepEqual(
      Buffer.from(await client.fetchMetadata(gun, { role: 'root', maxBytes: MAX })),
      root,
    );
    // The numbered and the checksummed names serve the same bytes.
    assert.deepEqual(
      Buffer.from(await client.fetchMetadata(gun, { role: 'root', version: 1, maxBytes: MAX })),
      root,
    );
    assert.deepEqual(
      Buffer.from(
        await client.fetchMetadata(gun, {
          role: 'root',
          sha256Hex: sha256Hex(root),
          maxBytes: MAX,
        }),
      ),
      root,
    );
  });

  void it('reads timestamp, and targets and snapshot by checksum, as the CLI cached them', async () => {
    const timestamp = await cached(trustDir, gun, 'timestamp.json');
    assert.deepEqual(
      Buffer.from(await client.fetchMetadata(gun, { role: 'timestamp', maxBytes: MAX })),
      timestamp,
    );
    for (const role of ['targets', 'snapshot']) {
      const bytes = await cached(trustDir, gun, `${role}.json`);
      const got = await client.fetchMetadata(gun, {
        role,
        sha256Hex: sha256Hex(bytes),
        maxBytes: MAX,
      });
      assert.deepEqual(Buffer.from(got), bytes, role);
    }
  });

  void it('cuts the real server off at maxBytes', async () => {
    const root = await cached(trustDir, gun, 'root.json');
    await assert.rejects(
      client.fetchMetadata(gun, { role: 'root', maxBytes: root.length - 1 }),
      (e: unknown) => {
        assert.ok(isTrustError(e, 'DOWNLOAD_TOO_LARGE'));
        assert.equal(e.facts.limit, root.length - 1);
        return true;
      },
    );
  });

  void it('reports a missing GUN and a missing role as 404 METADATA_NOT_FOUND', async () => {
    for (const [missingGun, role] of [
      ['127.0.0.1:5000/interop/never-created', 'root'],
      [gun, 'targets/releases'],
    ] as const) {
      await assert.rejects(
        client.fetchMetadata(missingGun, { role, maxBytes: MAX }),
        (e: unknown) => {
          assert.ok(isTrustError(e, 'HTTP_STATUS'));
          assert.equal(e.facts.status, 404);
          assert.equal(e.facts.serverCode, 'METADATA_NOT_FOUND');
          assert.equal(e.facts.url, `${stack.notaryUrl}/v2/${missingGun}/_trust/tuf/${role}.json`);
          return true;
        },
      );
    }
  });

  void it('has its multipart upload parsed by the server, delegation file names included', async () => {
    // Not JSON on purpose: MALFORMED_JSON proves the server found the part and accepted its role
    // name (a bad name is INVALID_ROLE, a bad upload MALFORMED_UPLOAD), and nothing is stored.
    for (const role of ['targets', 'targets/releases']) {
      await assert.rejects(
        client.publish(gun, [{ role, bytes: Buffer.from('not json') }]),
        (e: unknown) => {
          assert.ok(isTrustError(e, 'HTTP_STATUS'));
          assert.deepEqual(
            { ...e.facts },
            {
              url: `${stack.notaryUrl}/v2/${gun}/_trust/tuf/`,
              status: 400,
              serverCode: 'MALFORMED_JSON',
            },
          );
          return true;
        },
      );
    }
  });
});

void describe('NotaryHttpClient against notary-server with its local key service', () => {
  let stack: NotaryStack;
  let client: NotaryHttpClient;

  before(async () => {
    stack = await startStack({ registry: false, trustService: 'local' });
    client = new NotaryHttpClient({ baseUrl: stack.notaryUrl, ca: stack.caPem });
  });
  after(async () => {
    client.close();
    await stack.stop();
  });

  void it('fetchServerKey returns an ed25519 key', async () => {
    const key = await client.fetchServerKey('127.0.0.1:5000/interop/local', 'timestamp');
    assert.equal(key.keytype, 'ed25519');
    assert.equal(Buffer.from(key.keyval.public, 'base64').length, 32);
  });
});

void describe('NotaryHttpClient against notary-server behind a token service', () => {
  let stack: NotaryStack;
  const gun = '127.0.0.1:5000/interop/private';
  let trustDir = '';
  const clients: NotaryHttpClient[] = [];
  const client = (credentials?: { username: string; password: string }): NotaryHttpClient => {
    const c = new NotaryHttpClient({
      baseUrl: stack.notaryUrl,
      ca: stack.caPem,
      ...(credentials === undefined
        ? {}
        : { credentials: staticCredentials(credentials.username, credentials.password) }),
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    stack = await startStack({ registry: false, auth: 'token' });
    trustDir = await stack.tempDir('trust');
    await initRepo(stack, gun, trustDir);
  });
  after(async () => {
    for (const c of clients) c.close();
    await stack.stop();
  });

  const issuer = (): NonNullable<NotaryStack['token']> => {
    assert.ok(stack.token !== undefined);
    return stack.token;
  };

  void it('gets a pull token, reads, and reuses the token for the next read', async () => {
    const token = issuer();
    const before = token.requests;
    const c = client({ username: token.username, password: token.password });
    const root = await c.fetchMetadata(gun, { role: 'root', maxBytes: MAX });
    assert.deepEqual(Buffer.from(root), await cached(trustDir, gun, 'root.json'));
    await c.fetchMetadata(gun, { role: 'timestamp', maxBytes: MAX });
    assert.equal(token.requests, before + 1);
    assert.deepEqual(token.log.at(-1), {
      user: token.username,
      scopes: [`repository:${gun}:pull`],
      granted: ['pull'],
      status: 200,
    });
  });

  void it('asks for push,pull to fetch a server key', async () => {
    const token = issuer();
    const key = await client({ username: token.username, password: token.password }).fetchServerKey(
      gun,
      'timestamp',
    );
    assert.equal(key.keytype, 'ecdsa');
    assert.deepEqual(token.log.at(-1)?.scopes, [`repository:${gun}:push,pull`]);
    assert.deepEqual(token.log.at(-1)?.granted, ['push,pull']);
  });

  void it('reads anonymously with a pull-only token', async () => {
    const token = issuer();
    await client().fetchMetadata(gun, { role: 'root', maxBytes: MAX });
    assert.equal(token.log.at(-1)?.user, undefined);
    assert.equal(token.log.at(-1)?.status, 200);
  });

  void it('fails AUTH_FAILED with a wrong password', async () => {
    const token = issuer();
    await assert.rejects(
      client({ username: token.username, password: `${token.password}-wrong` }).fetchMetadata(gun, {
        role: 'root',
        maxBytes: MAX,
      }),
      (e: unknown) => {
        assert.ok(isTrustError(e, 'AUTH_FAILED'));
        assert.equal(e.facts.status, 401);
        assert.equal(e.facts.problem, 'the token service rejected the credentials');
        assert.ok(e.facts.url.startsWith(token.realm));
        assert.doesNotMatch(`${e.message} ${JSON.stringify(e.facts)}`, new RegExp(token.password));
        return true;
      },
    );
  });

  void it('is refused a push scope anonymously (the server answers 401 to the pull-only token)', async () => {
    await assert.rejects(client().fetchServerKey(gun, 'timestamp'), (e: unknown) => {
      assert.ok(isTrustError(e, 'AUTH_FAILED'));
      assert.equal(e.facts.status, 401);
      assert.equal(
        e.facts.problem,
        `the server refused the token issued for repository:${gun}:push,pull`,
      );
      return true;
    });
  });
});
