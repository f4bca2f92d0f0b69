/**
 * The admission webhooks' contract over real HTTPS, with the real engine deciding against an
 * in-memory notary repository: what kube-apiserver's webhook dispatcher sends, and what it needs
 * back — the uid echoed, a JSON Patch a real JSON Patch library applies, refusals it shows to the
 * person deploying, and no admission of anything malformed.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import jsonPatch, { type Operation } from 'fast-json-patch';
import type { FixtureRepository, MemoryFetcher } from '@kpack-trust/common/testing';
import { createAdmission } from '../src/http/admission.js';
import { createApp } from '../src/http/app.js';
import { createJsonLogger } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import type { ImagePolicyEngine } from '../src/policy/engine.js';
import {
  ControlledFetcher,
  GUN,
  REGISTRY,
  V1,
  engineWith,
  pinnedConfig,
  signedRepository,
  unreachable,
} from './support/engine.js';
import { httpsCall } from './support/https-client.js';
import { createAuthority, type TestAuthority } from './support/tls.js';

const SIGNED = `${GUN}:v1`;
const PINNED = `${SIGNED}@sha256:${V1.digestHex}`;
const UNSIGNED = `${GUN}:unsigned`;
const ALLOWED = `${REGISTRY}/tools/debug:1`;
const ALLOW_RULE = `
  - { name: tools, images: "${REGISTRY}/tools/*", allow: true }`;

type Json = Record<string, unknown>;

interface Verifier {
  readonly port: number;
  readonly engine: ImagePolicyEngine;
  readonly metrics: VerifierMetrics;
  readonly server: Server;
}

let ca: TestAuthority;
let serverPem: { cert: string; key: string };
let repo: FixtureRepository;
let fetcher: MemoryFetcher;
const started: Verifier[] = [];

before(async () => {
  ca = await createAuthority('admission CA');
  serverPem = await ca.issue('verifier', 'server');
  ({ repo, fetcher } = await signedRepository());
});
after(async () => {
  for (const v of started) {
    v.server.closeAllConnections();
    await new Promise((resolve) => v.server.close(resolve));
    await v.engine.close();
  }
});

/** A verifier on a loopback HTTPS port, deciding with the real engine. */
async function verifier(top = ''): Promise<Verifier> {
  const { engine } = engineWith(pinnedConfig(repo, { top, rules: ALLOW_RULE }), fetcher);
  const metrics = new VerifierMetrics({ defaultMetrics: false });
  const logger = createJsonLogger({ write: () => undefined });
  const server = createServer(serverPem, createApp({ reviewer: engine, metrics, logger }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const v = { port: (server.address() as AddressInfo).port, engine, metrics, server };
  started.push(v);
  return v;
}

/** A Pod object as the apiserver sends it. */
function podObject(
  images: { containers?: string[]; initContainers?: string[]; ephemeralContainers?: string[] },
  annotations: Record<string, string> = {},
): Json {
  const list = (prefix: string, of: string[] | undefined) =>
    of?.map((image, i) => ({ name: `${prefix}-${i}`, image, imagePullPolicy: 'IfNotPresent' }));
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'app-', namespace: 'default', annotations },
    spec: {
      containers: list('app', images.containers) ?? [],
      ...(images.initContainers ? { initContainers: list('init', images.initContainers) } : {}),
      ...(images.ephemeralContainers
        ? { ephemeralContainers: list('debug', images.ephemeralContainers) }
        : {}),
      restartPolicy: 'Always',
    },
  };
}

let uids = 0;

/** An admission.k8s.io/v1 AdmissionReview as kube-apiserver's dispatcher builds it. */
function admissionReview(
  object: Json,
  options: {
    group?: string;
    kind?: string;
    resource?: string;
    subResource?: string;
    operation?: string;
    oldObject?: Json;
    namespace?: string;
  } = {},
): { uid: string; review: Json } {
  const uid = `705ab4f5-6393-11e8-b7cc-42010a8000${String(++uids).padStart(2, '0')}`;
  const group = options.group ?? '';
  const version = group === '' ? 'v1' : 'v1';
  return {
    uid,
    review: {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid,
        kind: { group, version, kind: options.kind ?? 'Pod' },
        resource: { group, version, resource: options.resource ?? 'pods' },
        ...(options.subResource ? { subResource: options.subResource } : {}),
        requestKind: { group, version, kind: options.kind ?? 'Pod' },
        requestResource: { group, version, resource: options.resource ?? 'pods' },
        name: 'app-x7k2p',
        namespace: options.namespace ?? 'default',
        operation: options.operation ?? 'CREATE',
        userInfo: { username: 'admin', groups: ['system:authenticated'] },
        object,
        oldObject: options.oldObject ?? null,
        dryRun: false,
        options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      },
    },
  };
}

interface Reply {
  readonly status: number;
  readonly body: Json;
  readonly response: {
    uid?: string;
    allowed?: boolean;
    status?: { code?: number; message?: string };
    patchType?: string;
    patch?: string;
    warnings?: string[];
  };
}

async function post(v: Verifier, path: string, body: unknown): Promise<Reply> {
  const raw = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const res = await httpsCall({
    port: v.port,
    ca: ca.cert,
    path,
    method: 'POST',
    body: raw,
    headers: { 'Content-Type': 'application/json' },
  });
  const parsed = JSON.parse(res.body) as Json;
  return {
    status: res.status,
    body: parsed,
    response: parsed['response'] ?? {},
  };
}

/** The operations of a reply's patch, decoded. */
function patchOf(reply: Reply): Operation[] {
  assert.equal(reply.response.patchType, 'JSONPatch');
  return JSON.parse(
    Buffer.from(reply.response.patch ?? '', 'base64').toString('utf8'),
  ) as Operation[];
}

/** Applies the reply's patch with fast-json-patch, validating each operation against the pod. */
function patched(pod: Json, reply: Reply): Json {
  return jsonPatch.applyPatch(structuredClone(pod), patchOf(reply), true, false).newDocument;
}

function imagesOf(pod: Json, list = 'containers'): string[] {
  const spec = pod['spec'] as Record<string, { image: string }[] | undefined>;
  return (spec[list] ?? []).map((c) => c.image);
}

describe('POST /mutate', () => {
  it('pins every container and init container admitted by a verify rule to its signed digest', async () => {
    const v = await verifier();
    const pod = podObject({ containers: [SIGNED, ALLOWED], initContainers: [SIGNED] });
    const { uid, review } = admissionReview(pod);
    const reply = await post(v, '/mutate', review);
    assert.equal(reply.status, 200);
    assert.equal(reply.body['apiVersion'], 'admission.k8s.io/v1');
    assert.equal(reply.body['kind'], 'AdmissionReview');
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, true);
    const result = patched(pod, reply);
    // The allow rule's image is not rewritten: no digest was verified for it.
    assert.deepEqual(imagesOf(result), [PINNED, ALLOWED]);
    assert.deepEqual(imagesOf(result, 'initContainers'), [PINNED]);
    assert.equal(patchOf(reply).length, 2, 'one replace per verified container, nothing else');
  });

  it('admits the patched pod again with no patch (reinvocation is idempotent)', async () => {
    const v = await verifier();
    const pod = podObject({ containers: [SIGNED], initContainers: [SIGNED] });
    const first = await post(v, '/mutate', admissionReview(pod).review);
    const again = admissionReview(patched(pod, first));
    const reply = await post(v, '/mutate', again.review);
    assert.equal(reply.response.uid, again.uid);
    assert.equal(reply.response.allowed, true);
    assert.equal(reply.response.patch, undefined);
    assert.equal(reply.response.patchType, undefined);
  });

  it('pins an ephemeral container added through pods/ephemeralcontainers, and only it', async () => {
    const v = await verifier();
    const running = podObject({ containers: [PINNED] });
    const withDebug = podObject({ containers: [PINNED], ephemeralContainers: [SIGNED] });
    const { uid, review } = admissionReview(withDebug, {
      operation: 'UPDATE',
      subResource: 'ephemeralcontainers',
      oldObject: running,
    });
    const reply = await post(v, '/mutate', review);
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, true);
    assert.deepEqual(patchOf(reply), [
      { op: 'replace', path: '/spec/ephemeralContainers/0/image', value: PINNED },
    ]);
    assert.deepEqual(imagesOf(patched(withDebug, reply), 'ephemeralContainers'), [PINNED]);
  });

  it('denies an unsigned ephemeral container with 403 naming the image', async () => {
    const v = await verifier();
    const running = podObject({ containers: [PINNED] });
    const { review } = admissionReview(
      podObject({ containers: [PINNED], ephemeralContainers: [UNSIGNED] }),
      { operation: 'UPDATE', subResource: 'ephemeralcontainers', oldObject: running },
    );
    const reply = await post(v, '/mutate', review);
    assert.equal(reply.response.allowed, false);
    assert.equal(reply.response.status?.code, 403);
    assert.match(
      reply.response.status?.message ?? '',
      new RegExp(`^${escape(UNSIGNED)}: not signed`),
    );
  });

  it('denies with exactly the reason the ImagePolicyWebhook path gives', async () => {
    const v = await verifier();
    const { uid, review } = admissionReview(podObject({ containers: [SIGNED, UNSIGNED] }));
    const reply = await post(v, '/mutate', review);
    assert.equal(reply.status, 200);
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, false);
    assert.equal(reply.response.status?.code, 403);
    assert.equal(reply.response.patch, undefined, 'a denied pod is not patched');
    const imageReview = await post(v, '/', {
      apiVersion: 'imagepolicy.k8s.io/v1alpha1',
      kind: 'ImageReview',
      spec: { containers: [{ image: SIGNED }, { image: UNSIGNED }], namespace: 'default' },
    });
    const status = imageReview.body['status'] as { allowed: boolean; reason: string };
    assert.equal(status.allowed, false);
    assert.equal(reply.response.status?.message, status.reason);
    assert.match(status.reason, new RegExp(escape(UNSIGNED)));
  });

  it('admits in detection mode with a warning naming the image, still pinning verified images', async () => {
    const v = await verifier('detectionMode: true');
    const pod = podObject({ containers: [SIGNED, UNSIGNED] });
    const reply = await post(v, '/mutate', admissionReview(pod).review);
    assert.equal(reply.response.allowed, true);
    assert.equal(reply.response.warnings?.length, 1);
    assert.match(
      reply.response.warnings?.[0] ?? '',
      new RegExp(`^detection mode: ${escape(UNSIGNED)} would be denied: not signed`),
    );
    assert.deepEqual(imagesOf(patched(pod, reply)), [PINNED, UNSIGNED]);
  });

  it('rewrites nothing in an exempt namespace', async () => {
    const v = await verifier('exemptNamespaces: [kube-system]');
    const { review } = admissionReview(podObject({ containers: [SIGNED, UNSIGNED] }), {
      namespace: 'kube-system',
    });
    const reply = await post(v, '/mutate', review);
    assert.equal(reply.response.allowed, true);
    assert.equal(reply.response.patch, undefined);
  });

  it('admits a break-glass pod unpinned, with a warning', async () => {
    const v = await verifier('breakGlass: {}');
    const pod = podObject(
      { containers: [SIGNED] },
      { 'kpack-trust.image-policy.k8s.io/break-glass': 'INC-1' },
    );
    const reply = await post(v, '/mutate', admissionReview(pod).review);
    assert.equal(reply.response.allowed, true);
    assert.equal(reply.response.patch, undefined);
    assert.match(reply.response.warnings?.[0] ?? '', /break-glass annotation/);
  });

  it('refuses a workload sent to /mutate with a 400 status, not an admission', async () => {
    const v = await verifier();
    const { uid, review } = admissionReview(deployment([SIGNED]), {
      group: 'apps',
      kind: 'Deployment',
      resource: 'deployments',
    });
    const reply = await post(v, '/mutate', review);
    assert.equal(reply.status, 200);
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, false);
    assert.equal(reply.response.status?.code, 400);
    assert.match(
      reply.response.status?.message ?? '',
      /\/mutate admits Pods, got "apps\/Deployment"/,
    );
  });
});

describe('malformed AdmissionReviews', () => {
  const good = () => admissionReview(podObject({ containers: [SIGNED] }));

  /** Requests with no uid to echo: HTTP 400, which the dispatcher treats as a failed call. */
  const unanswerable: [string, () => unknown, RegExp][] = [
    ['bad JSON', () => '{"apiVersion":', /not valid JSON/],
    ['a JSON array', () => [], /must be a JSON object/],
    [
      'the v1beta1 API version',
      () => ({ ...good().review, apiVersion: 'admission.k8s.io/v1beta1' }),
      /apiVersion must be "admission.k8s.io\/v1"/,
    ],
    [
      'another kind',
      () => ({ ...good().review, kind: 'ImageReview' }),
      /kind must be "AdmissionReview"/,
    ],
    [
      'no request',
      () => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
      /request must be an object/,
    ],
    [
      'a request without uid',
      () => {
        const review = good().review;
        const request = { ...(review['request'] as Json) };
        delete request['uid'];
        return { ...review, request };
      },
      /request\.uid must be a non-empty string/,
    ],
    [
      'a numeric uid',
      () => ({ ...good().review, request: { ...(good().review['request'] as Json), uid: 7 } }),
      /request\.uid must be a non-empty string/,
    ],
  ];
  for (const [what, body, problem] of unanswerable) {
    it(`answers ${what} with HTTP 400`, async () => {
      const v = await verifier();
      for (const path of ['/mutate', '/validate']) {
        const reply = await post(v, path, body());
        assert.equal(reply.status, 400, `${path}: ${JSON.stringify(reply.body)}`);
        assert.equal(reply.body['error'], 'BadRequest');
        assert.match(String(reply.body['message']), problem);
        assert.equal(reply.response.allowed, undefined);
      }
    });
  }

  /** Requests with a uid: a refusal the apiserver shows, with status 400. */
  const refused: [string, (review: Json, request: Json) => void, RegExp][] = [
    [
      'an unknown operation',
      (_r, req) => void (req['operation'] = 'PATCH'),
      /request\.operation must be one of/,
    ],
    [
      'no object on CREATE',
      (_r, req) => void (req['object'] = null),
      /request\.object is required for CREATE/,
    ],
    [
      'a pod without spec',
      (_r, req) => {
        delete (req['object'] as Json)['spec'];
      },
      /object\.spec must be an object/,
    ],
    [
      'containers that are not an array',
      (_r, req) =>
        void (((req['object'] as Json)['spec'] as Json)['containers'] = { image: SIGNED }),
      /spec\.containers must be an array/,
    ],
    [
      'a container without image',
      (_r, req) =>
        void (((req['object'] as Json)['spec'] as Json)['containers'] = [{ name: 'app' }]),
      /spec\.containers\[0\]\.image must be a non-empty string/,
    ],
    [
      'a non-string break-glass annotation',
      (_r, req) =>
        void (((req['object'] as Json)['metadata'] as Json)['annotations'] = {
          'kpack-trust.image-policy.k8s.io/break-glass': true,
        }),
      /metadata\.annotations\["kpack-trust\.image-policy\.k8s\.io\/break-glass"\] must be a string/,
    ],
  ];
  for (const [what, corrupt, problem] of refused) {
    it(`refuses ${what} with status 400, echoing the uid`, async () => {
      const v = await verifier();
      const { uid, review } = good();
      const request = structuredClone(review['request']) as Json;
      corrupt(review, request);
      const reply = await post(v, '/mutate', { ...review, request });
      assert.equal(reply.status, 200);
      assert.equal(reply.response.uid, uid);
      assert.equal(reply.response.allowed, false);
      assert.equal(reply.response.status?.code, 400);
      assert.match(reply.response.status?.message ?? '', problem);
    });
  }

  it('answers a body over the limit with 413 and never reads it all', async () => {
    const v = await verifier();
    const big = Buffer.alloc(5 * 1024 * 1024, 0x20);
    const reply = await post(v, '/mutate', big);
    assert.equal(reply.status, 413);
    assert.equal(reply.body['error'], 'PayloadTooLarge');
  });

  it('denies a pod with more containers than are reviewed, without reading them', async () => {
    const v = await verifier();
    const pod = podObject({ containers: Array.from({ length: 1001 }, () => SIGNED) });
    const { uid, review } = admissionReview(pod);
    const reply = await post(v, '/mutate', review);
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, false);
    assert.equal(reply.response.status?.code, 403);
    assert.match(reply.response.status?.message ?? '', /1001 containers and at most 1000/);
  });

  it('counts every answer by webhook and outcome', async () => {
    const v = await verifier();
    await post(v, '/mutate', good().review);
    await post(v, '/mutate', '{');
    const text = (await v.metrics.exposition()).body;
    assert.match(
      text,
      /kpack_trust_verifier_admission_reviews_total\{webhook="mutate",outcome="patched"\} 1/,
    );
    assert.match(
      text,
      /kpack_trust_verifier_admission_reviews_total\{webhook="mutate",outcome="rejected"\} 1/,
    );
  });
});

/** A Deployment whose pod template runs these images. */
function deployment(images: string[]): Json {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'app', namespace: 'default' },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'app' } },
      template: templateOf(images),
    },
  };
}

function templateOf(images: string[]): Json {
  return {
    metadata: { labels: { app: 'app' } },
    spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) },
  };
}

/** Each workload kind and its object carrying a pod template of these images. */
const WORKLOADS: [
  group: string,
  kind: string,
  resource: string,
  make: (images: string[]) => Json,
][] = [
  ['', 'Pod', 'pods', (images) => podObject({ containers: images })],
  ['apps', 'Deployment', 'deployments', deployment],
  ['apps', 'ReplicaSet', 'replicasets', (images) => ({ spec: { template: templateOf(images) } })],
  ['apps', 'StatefulSet', 'statefulsets', (images) => ({ spec: { template: templateOf(images) } })],
  ['apps', 'DaemonSet', 'daemonsets', (images) => ({ spec: { template: templateOf(images) } })],
  ['batch', 'Job', 'jobs', (images) => ({ spec: { template: templateOf(images) } })],
  [
    'batch',
    'CronJob',
    'cronjobs',
    (images) => ({
      spec: { schedule: '@hourly', jobTemplate: { spec: { template: templateOf(images) } } },
    }),
  ],
  [
    '',
    'ReplicationController',
    'replicationcontrollers',
    (images) => ({ spec: { template: templateOf(images) } }),
  ],
];

describe('POST /validate', () => {
  for (const [group, kind, resource, make] of WORKLOADS) {
    it(`refuses a ${kind} whose pod template runs an unsigned image, and admits a signed one unchanged`, async () => {
      const v = await verifier();
      const denied = admissionReview(make([SIGNED, UNSIGNED]), { group, kind, resource });
      const refusal = await post(v, '/validate', denied.review);
      assert.equal(refusal.response.uid, denied.uid);
      assert.equal(refusal.response.allowed, false);
      assert.equal(refusal.response.status?.code, 403);
      assert.match(
        refusal.response.status?.message ?? '',
        new RegExp(`^${escape(UNSIGNED)}: not signed`),
      );

      const admitted = admissionReview(make([SIGNED]), { group, kind, resource });
      const reply = await post(v, '/validate', admitted.review);
      assert.equal(reply.response.uid, admitted.uid);
      assert.equal(reply.response.allowed, true);
      assert.equal(reply.response.patch, undefined, '/validate never mutates');
      assert.equal(reply.response.patchType, undefined);
    });
  }

  it('on UPDATE decides only containers whose image changed', async () => {
    const v = await verifier();
    // The old template's unsigned image was admitted before (say, by break-glass): a replica change
    // must not be refused for it, but a new unsigned image must.
    const old = deployment([UNSIGNED]);
    const scaled = {
      ...deployment([UNSIGNED]),
      spec: { ...(deployment([UNSIGNED])['spec'] as Json), replicas: 5 },
    };
    const target = {
      group: 'apps',
      kind: 'Deployment',
      resource: 'deployments',
      operation: 'UPDATE',
    };
    const kept = await post(
      v,
      '/validate',
      admissionReview(scaled, { ...target, oldObject: old }).review,
    );
    assert.equal(kept.response.allowed, true);
    const changed = await post(
      v,
      '/validate',
      admissionReview(deployment([`${GUN}:other`]), { ...target, oldObject: old }).review,
    );
    assert.equal(changed.response.allowed, false);
    assert.match(changed.response.status?.message ?? '', /:other: not signed/);
  });

  it('refuses a kind it does not read with a 400 status', async () => {
    const v = await verifier();
    const { uid, review } = admissionReview(
      { data: {} },
      { kind: 'ConfigMap', resource: 'configmaps' },
    );
    const reply = await post(v, '/validate', review);
    assert.equal(reply.response.uid, uid);
    assert.equal(reply.response.allowed, false);
    assert.equal(reply.response.status?.code, 400);
  });
});

describe('the same Pod sent again under a new uid', () => {
  it('echoes exactly the uid JSON.parse reads, whatever else spells "uid"', async () => {
    const v = await verifier();
    const { uid, review } = admissionReview(podObject({ containers: [SIGNED] }));
    const plain = JSON.stringify(review);
    const at = `"uid":${JSON.stringify(uid)}`;
    // Each sent with the decoy equal to the uid first, then with the decoy changed: whatever else
    // in the body spells a uid, the reply echoes the one JSON.parse reads as request.uid.
    const variants: Record<string, (real: string, other: string) => string> = {
      'the apiserver encoding': (real) => plain.replace(at, `"uid":"${real}"`),
      'a uid written with escapes': (real) =>
        plain.replace(at, `"uid":"${real.replace('-', '\\u002d')}"`),
      'duplicate uid keys, the last one read': (real, other) =>
        plain.replace(at, `"uid":"${other}","uid":"${real}"`),
      'a decoy "uid": before the request': (real, other) =>
        `{"x\\"uid":"${other}",${plain.slice(1).replace(at, `"uid":"${real}"`)}`,
      'a decoy request before the real one': (real, other) =>
        `{"request":{"uid":"${other}"},${plain.slice(1).replace(at, `"uid":"${real}"`)}`,
    };
    assert.equal((await post(v, '/mutate', plain)).response.uid, uid);
    assert.equal((await post(v, '/mutate', plain)).response.uid, uid);
    for (const [name, make] of Object.entries(variants)) {
      for (const [real, other] of [
        ['real-1', 'real-1'],
        ['real-1', 'other-1'],
        ['real-2', 'other-2'],
      ] as const) {
        const text = make(real, other);
        assert.equal((JSON.parse(text) as { request: { uid: string } }).request.uid, real);
        const reply = await post(v, '/mutate', text);
        assert.equal(reply.response.uid, real, `${name}: ${real}/${other}`);
        assert.equal(reply.response.allowed, true, name);
        assert.deepEqual(
          patchOf(reply).map((op) => op.path),
          ['/spec/containers/0/image'],
          name,
        );
      }
    }
  });

  it('does not share an answer between two pods whose bodies differ in one byte', async () => {
    const v = await verifier();
    const sameLength = `${GUN}:v9`;
    assert.equal(sameLength.length, SIGNED.length);
    const signed = admissionReview(podObject({ containers: [SIGNED] }));
    const other = admissionReview(podObject({ containers: [sameLength] }));
    const text = JSON.stringify(signed.review);
    assert.equal((await post(v, '/mutate', text)).response.allowed, true);
    assert.equal((await post(v, '/mutate', text)).response.allowed, true);
    assert.equal(
      (await post(v, '/mutate', text.replace(signed.uid, 'again'))).response.allowed,
      true,
    );
    const reply = await post(
      v,
      '/mutate',
      JSON.stringify(other.review).replace(other.uid, 'again'),
    );
    assert.equal(reply.response.uid, 'again');
    assert.equal(reply.response.allowed, false);
    assert.match(reply.response.status?.message ?? '', new RegExp(escape(sameLength)));
  });

  it('warns in detection mode on every review of the same pod', async () => {
    const v = await verifier('detectionMode: true');
    const pod = podObject({ containers: [SIGNED, UNSIGNED] });
    const { uid, review } = admissionReview(pod);
    for (const next of [uid, 'second', 'third']) {
      const reply = await post(v, '/mutate', JSON.stringify(review).replace(uid, next));
      assert.equal(reply.response.uid, next);
      assert.equal(reply.response.allowed, true);
      assert.match(reply.response.warnings?.[0] ?? '', /^detection mode: .* would be denied/);
      assert.deepEqual(imagesOf(patched(pod, reply)), [PINNED, UNSIGNED]);
    }
  });
});

describe('bounds and failures', () => {
  it('denies a pod whose pinning patch would exceed the patch limit, rather than admit it unpinned', async () => {
    const { engine } = engineWith(pinnedConfig(repo), fetcher);
    const handler = createAdmission({
      decider: engine,
      metrics: new VerifierMetrics({ defaultMetrics: false }),
      logger: createJsonLogger({ write: () => undefined }),
      maxImages: 1000,
      maxPatchBytes: 100,
    });
    const { uid, review } = admissionReview(podObject({ containers: [SIGNED, SIGNED] }));
    const answer = await handler.answer('mutate', review, 0);
    assert.equal(answer.httpStatus, 200);
    const { response } = answer.body as { response: Reply['response'] };
    assert.equal(response.uid, uid);
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 403);
    assert.match(response.status?.message ?? '', /pinning 2 images .* over 100 bytes/);
    await engine.close();
  });

  it('answers 500 when notary is unreachable under failure: error, so failurePolicy decides', async () => {
    const failing = new ControlledFetcher(fetcher);
    failing.failWith = unreachable();
    const { engine } = engineWith(pinnedConfig(repo, { top: 'failure: error' }), failing);
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const logger = createJsonLogger({ write: () => undefined });
    const server = createServer(serverPem, createApp({ reviewer: engine, metrics, logger }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const v = { port: (server.address() as AddressInfo).port, engine, metrics, server };
    started.push(v);
    for (const path of ['/mutate', '/validate']) {
      const reply = await post(
        v,
        path,
        admissionReview(podObject({ containers: [SIGNED] })).review,
      );
      assert.equal(reply.status, 500, path);
      assert.equal(reply.body['error'], 'InternalError');
      assert.equal(reply.response.allowed, undefined);
    }
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
