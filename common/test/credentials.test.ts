import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTrustError } from '../src/errors.js';
import {
  dockerConfigCredentials,
  firstCredentials,
  staticCredentials,
} from '../src/notary/credentials.js';
import { loadDockerConfig } from '../src/notary/docker-config-file.js';

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

const config = {
  auths: {
    'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass:with:colons') },
    'registry.example:5000': { auth: b64('alice:s3cret') },
    'https://ghcr.io/v2/': { username: 'bob', password: 'token-b' },
    'http://plain.example': { auth: b64('carol:pw') },
    'quay.io': { identitytoken: 'oauth-refresh-token' },
    'empty.example': { auth: '' },
    'gcr.io': {},
  },
  credsStore: 'desktop',
};

void describe('dockerConfigCredentials', () => {
  const source = dockerConfigCredentials(config);

  void it("finds Docker Hub's entry under https://index.docker.io/v1/ for every Hub name", async () => {
    for (const host of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
      assert.deepEqual(await source.credentialsFor(host), {
        username: 'hubuser',
        password: 'hub:pass:with:colons',
      });
    }
  });

  void it('matches a bare host:port key exactly', async () => {
    assert.deepEqual(await source.credentialsFor('registry.example:5000'), {
      username: 'alice',
      password: 's3cret',
    });
  });

  void it('does not confuse ports: registry.example without :5000 has no entry', async () => {
    assert.equal(await source.credentialsFor('registry.example'), undefined);
    assert.equal(await source.credentialsFor('registry.example:5001'), undefined);
  });

  void it('matches keys with a scheme and path by their host part', async () => {
    assert.deepEqual(await source.credentialsFor('ghcr.io'), {
      username: 'bob',
      password: 'token-b',
    });
    assert.deepEqual(await source.credentialsFor('plain.example'), {
      username: 'carol',
      password: 'pw',
    });
  });

  void it('skips identity-token-only, empty and helper-only entries', async () => {
    assert.equal(await source.credentialsFor('quay.io'), undefined);
    assert.equal(await source.credentialsFor('empty.example'), undefined);
    assert.equal(await source.credentialsFor('gcr.io'), undefined);
    assert.equal(await source.credentialsFor('unknown.example'), undefined);
  });

  void it('prefers "auth" over username/password, as Docker does', async () => {
    const both = dockerConfigCredentials({
      auths: { 'r.example': { auth: b64('from-auth:a'), username: 'u', password: 'p' } },
    });
    assert.deepEqual(await both.credentialsFor('r.example'), {
      username: 'from-auth',
      password: 'a',
    });
  });

  void it('prefers the exact key over a host-part match', async () => {
    const two = dockerConfigCredentials({
      auths: {
        'https://r.example/v1/': { auth: b64('by-host:1') },
        'r.example': { auth: b64('exact:2') },
      },
    });
    assert.deepEqual(await two.credentialsFor('r.example'), { username: 'exact', password: '2' });
  });

  void it('accepts a config without auths', async () => {
    assert.equal(
      await dockerConfigCredentials({ credHelpers: {} }).credentialsFor('docker.io'),
      undefined,
    );
  });

  const broken: { readonly name: string; readonly json: unknown; readonly problem: string }[] = [
    { name: 'not an object', json: [], problem: 'the document is not a JSON object' },
    { name: 'null', json: null, problem: 'the document is not a JSON object' },
    { name: 'auths not an object', json: { auths: 'x' }, problem: '"auths" is not an object' },
    {
      name: 'entry not an object',
      json: { auths: { h: 1 } },
      problem: 'auths["h"] is not an object',
    },
    {
      name: 'auth not base64',
      json: { auths: { h: { auth: 'not base64!' } } },
      problem: 'auths["h"]: "auth" is not base64',
    },
    {
      name: 'auth not a string',
      json: { auths: { h: { auth: 5 } } },
      problem: 'auths["h"]: "auth" is not base64',
    },
    {
      name: 'auth without colon',
      json: { auths: { h: { auth: b64('nocolon') } } },
      problem: 'auths["h"]: "auth" does not decode to user:password',
    },
    {
      name: 'username without password',
      json: { auths: { h: { username: 'u' } } },
      problem: 'auths["h"]: "username" and "password" must both be strings',
    },
  ];
  for (const c of broken) {
    void it(`rejects a config whose ${c.name}`, () => {
      assert.throws(
        () => dockerConfigCredentials(c.json, 'cfg'),
        (e: unknown) => {
          assert.ok(isTrustError(e, 'CREDENTIALS_INVALID'), String(e));
          assert.deepEqual(e.facts, { source: 'cfg', problem: c.problem });
          return true;
        },
      );
    });
  }

  void it('never puts a secret in its error', () => {
    try {
      dockerConfigCredentials({ auths: { h: { auth: b64('user-only-SECRET') } } });
      assert.fail('expected an error');
    } catch (e) {
      assert.ok(isTrustError(e, 'CREDENTIALS_INVALID'));
      assert.doesNotMatch(
        `${e.message} ${JSON.stringify(e.facts)}`,
        /SECRET|dXNlci1vbmx5LVNFQ1JFVA/,
      );
    }
  });
});

void describe('staticCredentials', () => {
  void it('answers every host with the same pair', async () => {
    const source = staticCredentials('u', 'p');
    assert.deepEqual(await source.credentialsFor('a.example'), { username: 'u', password: 'p' });
    assert.deepEqual(await source.credentialsFor('docker.io'), { username: 'u', password: 'p' });
  });
});

void describe('loadDockerConfig', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpack-trust-dockercfg-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('reads a config.json file', async () => {
    const path = join(dir, 'config.json');
    await writeFile(path, JSON.stringify(config));
    const source = await loadDockerConfig(path);
    assert.deepEqual(await source.credentialsFor('registry.example:5000'), {
      username: 'alice',
      password: 's3cret',
    });
  });

  void it('fails on a missing file, naming the path', async () => {
    const path = join(dir, 'absent.json');
    await assert.rejects(loadDockerConfig(path), (e: unknown) => {
      assert.ok(isTrustError(e, 'CREDENTIALS_INVALID'));
      assert.deepEqual(e.facts, { source: path, problem: 'cannot read the file (ENOENT)' });
      return true;
    });
  });

  void it('fails on a file that is not JSON, without quoting it', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, '{"auths": SECRET-PASSWORD');
    await assert.rejects(loadDockerConfig(path), (e: unknown) => {
      assert.ok(isTrustError(e, 'CREDENTIALS_INVALID'));
      assert.deepEqual(e.facts, { source: path, problem: 'the file is not JSON' });
      assert.equal(e.cause, undefined);
      assert.doesNotMatch(e.message, /SECRET/);
      return true;
    });
  });

  void it('reports a malformed entry against the file', async () => {
    const path = join(dir, 'entry.json');
    await writeFile(path, JSON.stringify({ auths: { h: { auth: b64('x') } } }));
    await assert.rejects(loadDockerConfig(path), (e: unknown) => {
      assert.ok(isTrustError(e, 'CREDENTIALS_INVALID'));
      assert.deepEqual(e.facts, {
        source: path,
        problem: 'auths["h"]: "auth" does not decode to user:password',
      });
      return true;
    });
  });
});

void describe('firstCredentials', () => {
  void it('answers from the first source that knows the host, and nothing when none does', async () => {
    const first = dockerConfigCredentials({ auths: { 'a.example': { auth: btoa('first:1') } } });
    const second = dockerConfigCredentials({
      auths: { 'a.example': { auth: btoa('second:2') }, 'b.example': { auth: btoa('second:3') } },
    });
    const chain = firstCredentials([first, second]);
    assert.deepEqual(await chain.credentialsFor('a.example'), { username: 'first', password: '1' });
    assert.deepEqual(await chain.credentialsFor('b.example'), {
      username: 'second',
      password: '3',
    });
    assert.equal(await chain.credentialsFor('c.example'), undefined);
  });
});
