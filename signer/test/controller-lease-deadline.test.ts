/**
 * Leader election is bounded by the renew deadline even when the apiserver answers a renewal's
 * headers and then stalls its body — a fault the real apiserver cannot be made to produce on
 * demand, so a named fake stands in: `StallingLeaseServer`, a tiny HTTP server in this file that
 * keeps one Lease in memory with resourceVersion checks and, once told to, answers every request
 * with a 200 and half a body. The client is the controller's own KubeHttp + leaseClient.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeHttp, leaseClient } from '../src/controller/kube-api.js';
import { runLeaderElection } from '../src/controller/leader-election.js';
import { listenAsApiserver } from './support/loopback-apiserver.js';

/** The Lease endpoint of an apiserver, with a switch that stalls every answer's body. */
class StallingLeaseServer {
  lease: { metadata: { resourceVersion: string }; spec: unknown } | undefined;
  version = 0;
  /** 'ok': answer; 'stall': headers and part of the body, then nothing; 'fail': one 500. */
  mode: 'ok' | 'stall' | 'fail' = 'ok';
  /** When the last successful write arrived (performance.now()). */
  lastWriteAt = 0;
  stalledAt: number | undefined;
  readonly server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      this.#answer(req, body, res);
    });
  });

  #answer(req: IncomingMessage, body: string, res: ServerResponse): void {
    const send = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    };
    if (this.mode === 'stall') {
      this.stalledAt ??= performance.now();
      // Headers and the start of a body, then silence: the connection stays open.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"kind":"Lease","metadata":');
      return;
    }
    if (this.mode === 'fail') {
      this.mode = 'ok';
      send(500, { kind: 'Status', code: 500, reason: 'InternalError', message: 'etcd busy' });
      return;
    }
    if (req.method === 'GET') {
      if (this.lease === undefined) send(404, { kind: 'Status', code: 404, reason: 'NotFound' });
      else send(200, this.lease);
      return;
    }
    const sent = JSON.parse(body) as { metadata: { resourceVersion?: string }; spec: unknown };
    const expected = this.lease?.metadata.resourceVersion;
    if (
      req.method === 'POST' ? expected !== undefined : sent.metadata.resourceVersion !== expected
    ) {
      send(409, { kind: 'Status', code: 409, reason: 'Conflict' });
      return;
    }
    this.lease = { metadata: { resourceVersion: String(++this.version) }, spec: sent.spec };
    this.lastWriteAt = performance.now();
    send(req.method === 'POST' ? 201 : 200, this.lease);
  }
}

describe('Lease renewal bounded by the renew deadline (fake apiserver: stalled bodies)', () => {
  const fake = new StallingLeaseServer();
  let http: KubeHttp;

  before(async () => {
    const config = await listenAsApiserver(fake.server);
    // The default 30 s request deadline: only the renew deadline can end the stalled renewal.
    http = new KubeHttp(config);
  });

  after(() => {
    fake.server.closeAllConnections();
    fake.server.close();
  });

  const RENEW_DEADLINE_MS = 1_000;

  it('gives up leadership at the renew deadline when a renewal’s body stalls, and says why', async () => {
    fake.mode = 'ok';
    fake.lease = undefined;
    const stop = new AbortController();
    const transitions: string[] = [];
    let leadingAbortedAt: number | undefined;
    let renewalsBeforeStall = 0;
    // Without a bound on the renewal the election would wait on the stalled body for good: stop
    // it after 5 s and drop the fake's connections so the test fails instead of hanging.
    const safety = setTimeout(() => {
      stop.abort();
      fake.server.closeAllConnections();
    }, 5_000);
    await runLeaderElection(
      {
        client: leaseClient(http, 'sys', 'signer'),
        identity: 'a',
        leaseDurationMs: 1_500,
        renewDeadlineMs: RENEW_DEADLINE_MS,
        retryPeriodMs: 100,
        onTransition: (event, detail) => {
          transitions.push(`${event}: ${detail}`);
          if (event === 'lost') stop.abort();
        },
      },
      async (leading) => {
        // Renewals go through for a while, then every answer stalls.
        const wrote = fake.version;
        while (fake.version < wrote + 3) await new Promise((r) => setTimeout(r, 20));
        renewalsBeforeStall = fake.version - wrote;
        fake.mode = 'stall';
        await new Promise<void>((resolve) => {
          leading.addEventListener(
            'abort',
            () => {
              leadingAbortedAt = performance.now();
              resolve();
            },
            { once: true },
          );
        });
      },
      stop.signal,
    );
    clearTimeout(safety);
    assert.ok(renewalsBeforeStall >= 3);
    assert.ok(leadingAbortedAt !== undefined, 'the leader work was told to stop');
    assert.ok(fake.stalledAt !== undefined);
    // The deadline counts from the start of the last renewal that went through, a few ms before
    // its write reached the server: the work stops by then + the renew deadline.
    const sinceLastRenewal = leadingAbortedAt - fake.lastWriteAt;
    assert.ok(
      sinceLastRenewal <= RENEW_DEADLINE_MS + 250,
      `stopped ${sinceLastRenewal.toFixed(0)} ms after the last renewal`,
    );
    assert.ok(
      sinceLastRenewal >= RENEW_DEADLINE_MS - 150,
      `stopped ${sinceLastRenewal.toFixed(0)} ms after the last renewal, before the deadline`,
    );
    assert.equal(transitions[0], 'leading: a');
    assert.equal(
      transitions.find((t) => t.startsWith('lost')),
      'lost: the Lease was not renewed within the renew deadline (1 s): no answer from the Lease within the renew deadline (1 s)',
    );
    assert.equal(
      transitions.filter((t) => t.startsWith('renew-failed')).length,
      0,
      transitions.join(' | '),
    );
  });

  it('a renewal that fails with time left is retried while still leading', async () => {
    fake.mode = 'ok';
    fake.lease = undefined;
    const stop = new AbortController();
    const transitions: string[] = [];
    await runLeaderElection(
      {
        client: leaseClient(http, 'sys', 'signer-2'),
        identity: 'b',
        leaseDurationMs: 1_500,
        renewDeadlineMs: RENEW_DEADLINE_MS,
        retryPeriodMs: 100,
        onTransition: (event, detail) => transitions.push(`${event}: ${detail}`),
      },
      async (leading) => {
        const wrote = fake.version;
        fake.mode = 'fail';
        // Two renewals after the failed one: leadership held throughout.
        while (fake.version < wrote + 2) await new Promise((r) => setTimeout(r, 20));
        assert.equal(leading.aborted, false);
        stop.abort();
      },
      stop.signal,
    );
    assert.deepEqual(transitions, [
      'leading: b',
      'renew-failed: renewal failed: GET /apis/coordination.k8s.io/v1/namespaces/sys/leases/signer-2: 500 InternalError: etcd busy',
      'stopped: released the Lease',
    ]);
  });
});

describe('KubeHttp deadline over the whole answer (fake apiserver: stalled bodies)', () => {
  const fake = new StallingLeaseServer();
  let config: KubeConfig;

  before(async () => {
    config = await listenAsApiserver(fake.server);
  });

  after(() => {
    fake.server.closeAllConnections();
    fake.server.close();
  });

  it('a body that stalls after the headers fails the call at the request deadline', async () => {
    fake.mode = 'stall';
    const http = new KubeHttp(config, { requestTimeoutMs: 300 });
    const started = performance.now();
    await assert.rejects(http.call('GET', '/api/v1/namespaces/x/secrets/s'), {
      message: `GET /api/v1/namespaces/x/secrets/s: no complete answer from ${http.server.origin} within 0.3 s`,
    });
    const took = performance.now() - started;
    assert.ok(took >= 290 && took < 1_000, `failed after ${took.toFixed(0)} ms`);
  });

  it('a caller’s signal aborts the body read with the caller’s reason', async () => {
    fake.mode = 'stall';
    const http = new KubeHttp(config);
    const caller = new AbortController();
    setTimeout(() => {
      caller.abort(new Error('the caller gave up'));
    }, 100);
    await assert.rejects(http.call('GET', '/x', { signal: caller.signal }), {
      message: 'the caller gave up',
    });
  });
});
