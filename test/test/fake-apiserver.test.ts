/**
 * The fake kube-apiserver answers byte for byte in the apiserver's shapes: metav1.Status bodies
 * with its messages, reasons, details and codes; Secret objects with server-set metadata; and the
 * validation a create goes through. Tests talk raw HTTPS so nothing smooths over a wrong field.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import {
  DEFAULT_USER,
  rbacAuthorizer,
  startFakeApiserver,
  type FakeApiserver,
} from '../src/index.js';

interface Reply {
  readonly status: number;
  readonly contentType: string;
  readonly json: Record<string, unknown>;
}

let fake: FakeApiserver;

before(async () => {
  fake = await startFakeApiserver({ namespaces: ['builds', 'other'] });
});

after(async () => {
  await fake.close();
});

function call(
  method: string,
  path: string,
  options: { token?: string | null; body?: unknown; contentType?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? fake.token : options.token;
  if (token !== null) headers['Authorization'] = `Bearer ${token}`;
  let payload: string | undefined;
  if (options.body !== undefined) {
    payload = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['Content-Type'] = options.contentType ?? 'application/json';
  }
  return new Promise((resolve, reject) => {
    const req = request(
      `${fake.url}${path}`,
      { method, headers, ca: fake.caPem, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              contentType: String(res.headers['content-type']),
              json: JSON.parse(text) as Record<string, unknown>,
            });
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const b64 = (text: string): string => Buffer.from(text).toString('base64');

describe('fake apiserver: Status objects', () => {
  it('answers 401 Unauthorized without a valid bearer token', async () => {
    for (const token of [null, 'not-a-token']) {
      const reply = await call('GET', '/api/v1/namespaces/builds/secrets/x', { token });
      assert.equal(reply.status, 401);
      assert.equal(reply.contentType, 'application/json');
      assert.deepEqual(reply.json, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'Unauthorized',
        reason: 'Unauthorized',
        code: 401,
      });
    }
  });

  it('answers 404 NotFound for a missing Secret, with the fields in Go order', async () => {
    const reply = await call('GET', '/api/v1/namespaces/builds/secrets/absent');
    assert.equal(reply.status, 404);
    assert.equal(
      JSON.stringify(reply.json),
      '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",' +
        '"message":"secrets \\"absent\\" not found","reason":"NotFound",' +
        '"details":{"name":"absent","kind":"secrets"},"code":404}',
    );
  });

  it('answers 409 AlreadyExists for a second create of one name', async () => {
    const body = { metadata: { name: 'twice' }, data: { a: b64('1') } };
    assert.equal((await call('POST', '/api/v1/namespaces/builds/secrets', { body })).status, 201);
    const reply = await call('POST', '/api/v1/namespaces/builds/secrets', { body });
    assert.equal(reply.status, 409);
    assert.deepEqual(reply.json, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'secrets "twice" already exists',
      reason: 'AlreadyExists',
      details: { name: 'twice', kind: 'secrets' },
      code: 409,
    });
  });

  it('answers 403 Forbidden in the RBAC authorizer format; a create names no Secret', async () => {
    fake.setAuthorizer(rbacAuthorizer([{ verbs: ['get'], resourceNames: ['allowed'] }]));
    try {
      const get = await call('GET', '/api/v1/namespaces/builds/secrets/denied');
      assert.equal(get.status, 403);
      assert.deepEqual(get.json, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: `secrets "denied" is forbidden: User "${DEFAULT_USER}" cannot get resource "secrets" in API group "" in the namespace "builds"`,
        reason: 'Forbidden',
        details: { name: 'denied', kind: 'secrets' },
        code: 403,
      });
      const allowed = await call('GET', '/api/v1/namespaces/builds/secrets/allowed');
      assert.equal(allowed.status, 404);
      const create = await call('POST', '/api/v1/namespaces/builds/secrets', {
        body: { metadata: { name: 'allowed' } },
      });
      assert.equal(create.status, 403);
      assert.equal(
        create.json['message'],
        `secrets is forbidden: User "${DEFAULT_USER}" cannot create resource "secrets" in API group "" in the namespace "builds"`,
      );
      assert.deepEqual(create.json['details'], { kind: 'secrets' });
    } finally {
      fake.setAuthorizer(undefined);
    }
  });

  it('answers 404 for a create in a namespace that does not exist', async () => {
    const reply = await call('POST', '/api/v1/namespaces/nowhere/secrets', {
      body: { metadata: { name: 'x' } },
    });
    assert.equal(reply.status, 404);
    assert.equal(reply.json['message'], 'namespaces "nowhere" not found');
    assert.deepEqual(reply.json['details'], { name: 'nowhere', kind: 'namespaces' });
  });

  it('answers 405 for methods the fake does not serve and 404 for other paths', async () => {
    const put = await call('PUT', '/api/v1/namespaces/builds/secrets/x', { body: {} });
    assert.equal(put.status, 405);
    assert.equal(put.json['reason'], 'MethodNotAllowed');
    const other = await call('GET', '/api/v1/namespaces/builds/configmaps/x');
    assert.equal(other.status, 404);
    assert.equal(other.json['message'], 'the server could not find the requested resource');
  });
});

describe('fake apiserver: Secrets', () => {
  it('stores a create with server-set metadata and serves it back on GET', async () => {
    const created = await call('POST', '/api/v1/namespaces/builds/secrets', {
      body: {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'full', namespace: 'builds', labels: { a: 'b' } },
        data: { 'x.key': b64('pem') },
        stringData: { password: 'pw' },
      },
    });
    assert.equal(created.status, 201);
    const metadata = created.json['metadata'] as Record<string, unknown>;
    assert.match(String(metadata['uid']), /^[0-9a-f-]{36}$/);
    assert.match(String(metadata['resourceVersion']), /^\d+$/);
    assert.match(String(metadata['creationTimestamp']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.deepEqual(created.json['data'], { 'x.key': b64('pem'), password: b64('pw') });
    assert.equal(created.json['type'], 'Opaque');
    assert.equal('stringData' in created.json, false);
    const read = await call('GET', '/api/v1/namespaces/builds/secrets/full');
    assert.equal(read.status, 200);
    assert.deepEqual(read.json, created.json);
    const list = await call('GET', '/api/v1/namespaces/builds/secrets');
    assert.equal(list.json['kind'], 'SecretList');
    const items = list.json['items'] as Record<string, unknown>[];
    const item = items.find((i) => (i['metadata'] as Record<string, unknown>)['name'] === 'full');
    assert.ok(item);
    assert.equal('kind' in item, false);
  });

  it('refuses data that is not strict base64 with the decoder 400', async () => {
    const reply = await call('POST', '/api/v1/namespaces/builds/secrets', {
      body: { metadata: { name: 'bad64' }, data: { k: 'abc' } },
    });
    assert.equal(reply.status, 400);
    assert.equal(reply.json['reason'], 'BadRequest');
    assert.equal(
      reply.json['message'],
      'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0',
    );
    const star = await call('POST', '/api/v1/namespaces/builds/secrets', {
      body: { metadata: { name: 'bad64' }, data: { k: 'ab*d' } },
    });
    assert.equal(
      star.json['message'],
      'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 2',
    );
  });

  it('refuses an invalid name and data key with a 422 Invalid listing both', async () => {
    const reply = await call('POST', '/api/v1/namespaces/builds/secrets', {
      body: { metadata: { name: 'Bad_Name' }, data: { 'bad key': b64('x') } },
    });
    assert.equal(reply.status, 422);
    assert.equal(reply.json['reason'], 'Invalid');
    assert.match(
      String(reply.json['message']),
      /^Secret "Bad_Name" is invalid: \[metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain .*, data\[bad key\]: Invalid value: "bad key": a valid config key .*\]$/,
    );
    const details = reply.json['details'] as Record<string, unknown>;
    assert.equal(details['kind'], 'Secret');
    assert.equal((details['causes'] as unknown[]).length, 2);
  });

  it('refuses a create whose body names another namespace', async () => {
    const reply = await call('POST', '/api/v1/namespaces/builds/secrets', {
      body: { metadata: { name: 'elsewhere', namespace: 'other' } },
    });
    assert.equal(reply.status, 400);
    assert.equal(
      reply.json['message'],
      'the namespace of the provided object does not match the namespace sent on the request',
    );
  });

  it('counts requests and can hold a response back', async () => {
    const before = fake.count({ verb: 'get', name: 'held' });
    let release: () => void = () => undefined;
    fake.setResponseHook((r) =>
      r.name === 'held' ? new Promise<void>((resolve) => (release = resolve)) : undefined,
    );
    try {
      let answered = false;
      const pending = call('GET', '/api/v1/namespaces/builds/secrets/held').then((reply) => {
        answered = true;
        return reply;
      });
      while (fake.count({ verb: 'get', name: 'held' }) === before) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(answered, false);
      release();
      assert.equal((await pending).status, 404);
      assert.equal(fake.count({ verb: 'get', name: 'held', status: 404 }), before + 1);
    } finally {
      fake.setResponseHook(undefined);
    }
  });
});
