/**
 * A root rotation followed by an outage, on the real stack: the owner rotates the targets key with
 * the real `notary key rotate` (which publishes root version 2), and notary-server then fails the
 * timestamp with 503. The verifier has verified root version 2 before the failure, so the
 * collection it holds from version 1 — signed by the superseded targets key — must not admit
 * anything, stale or not: the review is denied with the outage's code. The same 503 without a
 * rotation (another GUN on the same server) still admits from stale data, and once notary answers
 * again the rotated repository is verified afresh. Between the verifier and notary-server sits a
 * forwarding HTTPS proxy that answers 503 for chosen files; everything else is the real server's.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest, createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ImagePolicyEngine, loadConfig, type ImageReviewSpec } from '@kpack-trust/verifier';
import {
  addTarget,
  initRepo,
  type NotaryStack,
  type PushedImage,
  pushImage,
  rootKeyIds,
  rootVersion,
  rotateKey,
  startStack,
} from '../src/index.js';

const TTL_SECONDS = 1;
const TIMEOUT_MS = 2000;

/** A forwarding proxy in front of notary-server that answers 503 for paths `failing` accepts. */
interface FailingProxy {
  readonly url: string;
  failing: (path: string) => boolean;
  close(): Promise<void>;
}

async function startProxy(stack: NotaryStack): Promise<FailingProxy> {
  const upstream = new URL(stack.notaryUrl);
  const sockets = new Set<Socket>();
  const proxy: { failing: (path: string) => boolean } = { failing: () => false };
  const server: Server = createServer(
    {
      cert: await readFile(stack.certificates.server.certFile, 'utf8'),
      key: await readFile(stack.certificates.server.keyFile, 'utf8'),
    },
    (req, res) => {
      const path = req.url ?? '/';
      if (proxy.failing(path)) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"UNAVAILABLE","message":"service unavailable"}]}\n');
        return;
      }
      const forwarded = httpsRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          path,
          method: req.method ?? 'GET',
          headers: { ...req.headers, host: upstream.host },
          ca: stack.caPem,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forwarded.on('error', () => {
        res.destroy();
      });
      req.pipe(forwarded);
    },
  );
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    get failing() {
      return proxy.failing;
    },
    set failing(accept: (path: string) => boolean) {
      proxy.failing = accept;
      // Keep-alive clients meet the new behaviour on their next request.
      for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

function pod(image: string): ImageReviewSpec {
  return { containers: [{ image }], annotations: {}, namespace: 'default' };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

void describe('a root rotation, then a notary outage (real notary CLI and server)', () => {
  let stack: NotaryStack;
  let proxy: FailingProxy;
  let engine: ImagePolicyEngine;
  let trust: string;
  let rotated: PushedImage;
  let steady: PushedImage;

  before(async () => {
    stack = await startStack();
    trust = await stack.tempDir('trust');
    rotated = await pushImage(stack, 'demo/rotated', 'v1');
    steady = await pushImage(stack, 'demo/steady', 'v1', { content: 'not rotated\n' });
    for (const image of [rotated, steady]) {
      await initRepo(stack, image.gun, trust);
      await addTarget(stack, image.gun, trust, 'v1', image.size, image.digest.slice(7));
    }
    proxy = await startProxy(stack);
    // The CLI reuses one root key for every GUN it initializes: pin it by its canonical id.
    const pin = (await rootKeyIds(stack, rotated.gun)).canonicalId;
    const file = `${await stack.tempDir('verifier')}/verifier.yaml`;
    await writeFile(
      file,
      `listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
notary:
  - registry: "${stack.registryHost}"
    server: ${proxy.url}
    ca: ${JSON.stringify(stack.caFile)}
    timeoutMs: ${TIMEOUT_MS}
cache: { ttlSeconds: ${TTL_SECONDS}, staleIfErrorSeconds: 3600, refreshAheadSeconds: 0 }
circuitBreaker: { failureThreshold: 0 }
rules:
  - images: "${stack.registryHost}/demo/*"
    trust: { rootKeys: ["${pin}"] }
`,
    );
    engine = new ImagePolicyEngine({ config: await loadConfig(file) });
  });

  after(async () => {
    await engine.close();
    await proxy.close();
    await stack.stop();
  });

  void it('denies with HTTP_STATUS once root version 2 is verified, admits stale where the root did not change, and recovers', async () => {
    const rotatedImage = `${rotated.gun}:v1`;
    const steadyImage = `${steady.gun}:v1`;
    for (const image of [rotatedImage, steadyImage]) {
      const first = await engine.decide(pod(image));
      assert.equal(first.status.allowed, true, image);
    }

    // The owner rotates the targets key (say it leaked): notary publishes root version 2.
    await rotateKey(stack, rotated.gun, trust, 'targets');
    assert.equal(await rootVersion(stack, rotated.gun, trust), 2);

    // Then notary fails every timestamp request with 503 (root.json still answers).
    proxy.failing = (path) => path.endsWith('/_trust/tuf/timestamp.json');
    await sleep(TTL_SECONDS * 1000 + 100);

    const denied = await engine.decide(pod(rotatedImage));
    assert.equal(denied.status.allowed, false);
    assert.equal(denied.images[0]?.code, 'HTTP_STATUS');
    assert.equal(
      denied.images[0]?.reason,
      `notary ${proxy.url} is unavailable for ${rotated.gun} (HTTP 503)`,
    );
    assert.equal(denied.status.auditAnnotations?.['image-0-stale'], undefined);
    // Not on the next review either: nothing of the old root's collection is left.
    const again = await engine.decide(pod(rotatedImage));
    assert.equal(again.status.allowed, false);
    assert.equal(again.images[0]?.code, 'HTTP_STATUS');

    // The same outage without a rotation: verified data stands in, marked stale.
    const stale = await engine.decide(pod(steadyImage));
    assert.equal(stale.status.allowed, true);
    assert.notEqual(stale.status.auditAnnotations?.['image-0-stale'], undefined);

    // Notary answers again: the rotated repository verifies under root version 2.
    proxy.failing = () => false;
    const fresh = await engine.decide(pod(rotatedImage));
    assert.equal(fresh.status.allowed, true);
    assert.equal(fresh.status.auditAnnotations?.['image-0-stale'], undefined);
    const rule = engine.config.rules[0];
    assert.equal(rule?.action, 'verify');
    const state = engine.trustCache.trustState(proxy.url, rotated.gun, rule.trust.anchor);
    assert.equal(state?.floors?.['root'], 2);
  });
});
