/**
 * The admission webhooks of the real kpack-trust-verifier process against the real stack:
 * docker-registry with images pushed by skopeo, repositories signed by the `notary` CLI, the
 * verifier spawned from its build and called over HTTPS as kube-apiserver's dispatcher calls it.
 *
 * The point of `/mutate`: once a Pod is pinned to the digest notary vouches for, re-pointing the
 * registry's tag at another image changes nothing the kubelet would pull; and a new Pod naming the
 * tag is pinned to the signed digest, never to what the registry now serves.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  addTarget,
  fetchManifest,
  initRepo,
  lookup,
  type NotaryStack,
  type PushedImage,
  pushImage,
  rootKeyIds,
  startStack,
} from '../src/index.js';
import { REPO_ROOT } from './support/helm.js';

type Json = Record<string, unknown>;

interface AdmissionReply {
  readonly status: number;
  readonly response: {
    uid?: string;
    allowed?: boolean;
    status?: { code?: number; message?: string };
    patchType?: string;
    patch?: string;
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === 'object' && address !== null ? address.port : 0);
      });
    });
  });
}

function httpsJson(
  url: string,
  ca: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: body === undefined ? 'GET' : 'POST',
        ca,
        headers: { 'content-type': 'application/json' },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function waitReady(url: string, ca: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the verifier exited with code ${child.exitCode}`);
    const ready = await httpsJson(`${url}/readyz`, ca).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the verifier did not become ready within 20 s');
}

let uids = 0;

/** An AdmissionReview v1 as the apiserver's dispatcher sends it. */
function admissionReview(
  object: Json,
  kind: { group: string; kind: string; resource: string } = {
    group: '',
    kind: 'Pod',
    resource: 'pods',
  },
): { uid: string; review: Json } {
  const uid = `e2e00000-0000-4000-8000-${String(++uids).padStart(12, '0')}`;
  return {
    uid,
    review: {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid,
        kind: { group: kind.group, version: 'v1', kind: kind.kind },
        resource: { group: kind.group, version: 'v1', resource: kind.resource },
        namespace: 'default',
        operation: 'CREATE',
        userInfo: { username: 'e2e' },
        object,
        dryRun: false,
      },
    },
  };
}

function pod(image: string): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'app', namespace: 'default' },
    spec: { containers: [{ name: 'app', image }] },
  };
}

function deployment(image: string): Json {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'app', namespace: 'default' },
    spec: {
      selector: { matchLabels: { app: 'app' } },
      template: {
        metadata: { labels: { app: 'app' } },
        spec: { containers: [{ name: 'app', image }] },
      },
    },
  };
}

function patchOf(reply: AdmissionReply): unknown {
  assert.equal(reply.response.patchType, 'JSONPatch');
  return JSON.parse(Buffer.from(reply.response.patch ?? '', 'base64').toString('utf8'));
}

void describe('admission webhooks of kpack-trust-verifier against the real notary stack', () => {
  let stack: NotaryStack;
  let verifier: ChildProcess | undefined;
  let url: string;
  let app: PushedImage;
  let signedHex: string;

  async function admit(path: string, review: Json): Promise<AdmissionReply> {
    const reply = await httpsJson(`${url}${path}`, stack.caPem, review);
    const parsed = JSON.parse(reply.body) as { response?: AdmissionReply['response'] };
    return { status: reply.status, response: parsed.response ?? {} };
  }

  before(async () => {
    stack = await startStack();
    const trust = await stack.tempDir('trust');
    app = await pushImage(stack, 'demo/app', 'v1', { content: 'signed build\n' });
    await pushImage(stack, 'demo/app', 'unsigned', { content: 'never signed\n' });
    await initRepo(stack, app.gun, trust);
    await addTarget(stack, app.gun, trust, 'v1', app.size, app.digest.slice('sha256:'.length));
    signedHex = (await lookup(stack, app.gun, 'v1', trust)).sha256Hex;

    const pin = (await rootKeyIds(stack, app.gun)).canonicalId;

    const port = await freePort();
    const config = join(stack.workDir, 'verifier.yaml');
    const { certFile, keyFile } = stack.certificates.server;
    await writeFile(
      config,
      [
        `listen: { port: ${port}, host: 127.0.0.1, tls: { cert: ${JSON.stringify(certFile)}, key: ${JSON.stringify(keyFile)} } }`,
        'notary:',
        `  - registry: "${stack.registryHost}"`,
        `    server: ${stack.notaryUrl}`,
        `    ca: ${JSON.stringify(stack.caFile)}`,
        // Every review asks notary again: pinning must not depend on a cached answer.
        'cache: { ttlSeconds: 0 }',
        'rules:',
        `  - images: "${stack.registryHost}/demo/*"`,
        `    trust: { rootKeys: ["${pin}"] }`,
        '',
      ].join('\n'),
    );
    verifier = spawn(
      process.execPath,
      [join(REPO_ROOT, 'verifier/dist/src/main.js'), 'serve', '--config', config],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    url = `https://127.0.0.1:${port}`;
    await waitReady(url, stack.caPem, verifier);
  });

  after(async () => {
    if (verifier && verifier.exitCode === null) {
      const exited = new Promise((resolve) => verifier?.once('exit', resolve));
      verifier.kill('SIGTERM');
      await exited;
    }
    await stack?.stop();
  });

  void it('pins app:v1 to the digest `notary lookup` prints, and keeps it pinned after the registry re-points v1', async () => {
    assert.equal(`sha256:${signedHex}`, app.digest, 'notary signed what skopeo pushed');
    const first = admissionReview(pod(app.reference));
    const pinned = await admit('/mutate', first.review);
    assert.equal(pinned.status, 200);
    assert.equal(pinned.response.uid, first.uid);
    assert.equal(pinned.response.allowed, true);
    const pinnedImage = `${app.reference}@sha256:${signedHex}`;
    assert.deepEqual(patchOf(pinned), [
      { op: 'replace', path: '/spec/containers/0/image', value: pinnedImage },
    ]);

    // Whoever can push to the registry points v1 at an image nobody signed.
    const swapped = await pushImage(stack, 'demo/app', 'v1', {
      content: 'pushed by an intruder\n',
    });
    assert.notEqual(swapped.digest, app.digest);
    const served = await fetchManifest(stack.registryHost, 'demo/app', 'v1');
    assert.equal(
      served.digestHeader,
      swapped.digest,
      'the registry now serves the new image as v1',
    );

    // The pinned pod (as stored) is admitted again untouched: it still names the signed digest.
    const again = await admit('/mutate', admissionReview(pod(pinnedImage)).review);
    assert.equal(again.response.allowed, true);
    assert.equal(again.response.patch, undefined);
    assert.equal(
      (await admit('/validate', admissionReview(pod(pinnedImage)).review)).response.allowed,
      true,
    );

    // A new pod naming the tag is pinned to the signed digest, never to the one the registry serves.
    const fresh = await admit('/mutate', admissionReview(pod(app.reference)).review);
    if (fresh.response.allowed === true) {
      assert.deepEqual(patchOf(fresh), [
        { op: 'replace', path: '/spec/containers/0/image', value: pinnedImage },
      ]);
    } else {
      assert.equal(fresh.response.status?.code, 403);
    }
    assert.doesNotMatch(JSON.stringify(fresh), new RegExp(swapped.digest.slice('sha256:'.length)));

    // Asking for the new image by its digest is refused: no signed tag points to it.
    const byDigest = await admit(
      '/mutate',
      admissionReview(pod(`${app.gun}@${swapped.digest}`)).review,
    );
    assert.equal(byDigest.response.allowed, false);
    assert.equal(byDigest.response.status?.code, 403);
    assert.match(byDigest.response.status?.message ?? '', /not signed/);
  });

  void it('refuses a Deployment of an unsigned image at /validate, naming the image', async () => {
    const unsigned = `${app.gun}:unsigned`;
    const { uid, review } = admissionReview(deployment(unsigned), {
      group: 'apps',
      kind: 'Deployment',
      resource: 'deployments',
    });
    const reply = await admit('/validate', review);
    assert.equal(reply.status, 200);
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, false);
    assert.equal(reply.response.status?.code, 403);
    assert.match(
      reply.response.status?.message ?? '',
      new RegExp(`^${unsigned.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not signed`),
    );

    const signed = await admit(
      '/validate',
      admissionReview(deployment(app.reference), {
        group: 'apps',
        kind: 'Deployment',
        resource: 'deployments',
      }).review,
    );
    assert.equal(signed.response.allowed, true);
    assert.equal(signed.response.patch, undefined, '/validate never mutates');
  });
});
