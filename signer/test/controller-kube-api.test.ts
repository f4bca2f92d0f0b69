/**
 * The controller's HTTP calls to the apiserver, against a local listener that records requests and
 * answers with canned bodies: the wire shape of each call (paths, query, content types) and how
 * answers map to the informer's and election's errors. Behaviour against the real apiserver is
 * tested end to end in test/test/signer-controller.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { GoneError, PageTooLargeError, type WatchEvent } from '../src/controller/informer.js';
import {
  KubeHttp,
  annotateBuild,
  buildListWatch,
  leaseClient,
  type KpackApi,
} from '../src/controller/kube-api.js';
import { LeaseConflictError } from '../src/controller/leader-election.js';
import { listenAsApiserver } from './support/loopback-apiserver.js';

interface Seen {
  method: string;
  url: string;
  contentType: string | undefined;
  body: string;
}

describe('controller Kubernetes API calls', () => {
  const seen: Seen[] = [];
  let answer: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(500).end();
  };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        contentType: req.headers['content-type'],
        body,
      });
      answer(req, res);
    });
  });
  let http: KubeHttp;
  let config: KubeConfig;
  const api: KpackApi = { groupVersion: 'kpack.io/v1alpha2' };

  before(async () => {
    config = await listenAsApiserver(server);
    http = new KubeHttp(config);
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const json = (status: number, value: unknown) => (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
  };

  it('lists a page with limit and continue, and watches with bookmarks from the version given', async () => {
    seen.length = 0;
    answer = json(200, {
      items: [{ a: 1 }],
      metadata: { resourceVersion: '42', continue: 'next' },
    });
    const client = buildListWatch(http, api, 'team');
    const page = await client.list({ limit: 7, continueToken: 'tok' });
    assert.deepEqual(page, { items: [{ a: 1 }], resourceVersion: '42', continueToken: 'next' });
    assert.equal(
      seen[0]?.url,
      '/apis/kpack.io/v1alpha2/namespaces/team/builds?limit=7&continue=tok',
    );

    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`${JSON.stringify({ type: 'ADDED', object: { n: 1 } })}\n{"type":"BOOK`);
      res.end(`MARK","object":{"metadata":{"resourceVersion":"50"}}}\n`);
    };
    const events: WatchEvent[] = [];
    await client.watch(
      { resourceVersion: '42', timeoutSeconds: 30 },
      (e) => events.push(e),
      new AbortController().signal,
    );
    assert.deepEqual(
      events.map((e) => e.type),
      ['ADDED', 'BOOKMARK'],
    );
    const query = new URL(seen[1]?.url ?? '', 'http://x').searchParams;
    assert.equal(query.get('watch'), 'true');
    assert.equal(query.get('resourceVersion'), '42');
    assert.equal(query.get('allowWatchBookmarks'), 'true');
  });

  it('a list page larger than the response cap is a PageTooLargeError naming the cap, not a bare failure', async () => {
    const items = Array.from({ length: 8 }, (_, i) => ({ metadata: { name: `b${i}` } }));
    answer = json(200, { items, metadata: { resourceVersion: '9' } });
    const size = JSON.stringify({ items, metadata: { resourceVersion: '9' } }).length;
    const capped = buildListWatch(new KubeHttp(config, { maxResponseBytes: size - 1 }), api);
    const refused = await capped.list({ limit: 8 }).catch((err: unknown) => err);
    assert.ok(refused instanceof PageTooLargeError);
    assert.equal(refused.maxBytes, size - 1);
    // The same answer within the cap is read whole.
    const fits = buildListWatch(new KubeHttp(config, { maxResponseBytes: size }), api);
    assert.equal((await fits.list({ limit: 8 })).items.length, 8);
  });

  it('an HTTP 410 on a watch is a GoneError', async () => {
    answer = json(410, {
      kind: 'Status',
      code: 410,
      reason: 'Expired',
      message: 'too old resource version',
    });
    await assert.rejects(
      buildListWatch(http, api).watch(
        { resourceVersion: '1', timeoutSeconds: 30 },
        () => undefined,
        new AbortController().signal,
      ),
      GoneError,
    );
  });

  it('a watch line that is not JSON fails the watch instead of being dropped', async () => {
    answer = (_req, res) => {
      res.writeHead(200).end('not json\n');
    };
    await assert.rejects(
      buildListWatch(http, api).watch(
        { resourceVersion: '1', timeoutSeconds: 30 },
        () => undefined,
        new AbortController().signal,
      ),
      SyntaxError,
    );
  });

  it('annotates a Build with a JSON merge patch, null removing a key', async () => {
    seen.length = 0;
    answer = json(200, {});
    await annotateBuild(http, api, 'team', 'b-1', {
      'kpack-trust.io/signed-digest': 'sha256:ab',
      gone: null,
    });
    assert.deepEqual(seen[0], {
      method: 'PATCH',
      url: '/apis/kpack.io/v1alpha2/namespaces/team/builds/b-1',
      contentType: 'application/merge-patch+json',
      body: JSON.stringify({
        metadata: { annotations: { 'kpack-trust.io/signed-digest': 'sha256:ab', gone: null } },
      }),
    });
  });

  it('updates a Lease at the resourceVersion read, and a 409 is a LeaseConflictError', async () => {
    seen.length = 0;
    answer = json(409, {
      kind: 'Status',
      code: 409,
      reason: 'Conflict',
      message: 'the object has been modified',
    });
    const lease = leaseClient(http, 'sys', 'l');
    const write = {
      holderIdentity: 'me',
      leaseDurationSeconds: 15,
      acquireTime: '2026-01-01T00:00:00.000000Z',
      renewTime: '2026-01-01T00:00:00.000000Z',
      leaseTransitions: 0,
    };
    await assert.rejects(lease.update('17', write), LeaseConflictError);
    assert.equal(seen[0]?.method, 'PUT');
    assert.equal(seen[0]?.url, '/apis/coordination.k8s.io/v1/namespaces/sys/leases/l');
    const sent = JSON.parse(seen[0]?.body ?? '{}') as { metadata: { resourceVersion: string } };
    assert.equal(sent.metadata.resourceVersion, '17');

    answer = json(404, { kind: 'Status', code: 404, reason: 'NotFound' });
    assert.equal(await lease.get(), undefined);
  });
});
