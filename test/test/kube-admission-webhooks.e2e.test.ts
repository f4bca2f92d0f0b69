/**
 * The chart's MutatingWebhookConfiguration and ValidatingWebhookConfiguration applied with kubectl
 * to a real kube-apiserver (built from k8s.io/kubernetes by scripts/kube-binaries.sh, with etcd
 * and kube-controller-manager, on loopback), calling kpack-trust-verifier over HTTPS: the real
 * notary stack, images signed by the notary CLI. Pods are created and stored, never run.
 *
 * The configurations are `helm template` output with one change: the apiserver here cannot reach
 * a Service, so each `clientConfig.service` becomes the `clientConfig.url` of the loopback
 * verifier. The caBundle is the chart's (from verifier.tls.caBundle, the stack's CA).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import {
  addTarget,
  type ControlPlane,
  eventually,
  initRepo,
  type NotaryStack,
  type PushedImage,
  pushImage,
  rootKeyIds,
  startControlPlane,
  startStack,
  startVerifierProcess,
  type VerifierProcess,
} from '../src/index.js';
import { CHART_DIR, runHelm } from './support/helm.js';

const RELEASE_NAMESPACE = 'kpack-trust';

type Json = Record<string, unknown>;

/** The canonical id of a GUN's root key, as the server's root.json lists it. */
async function rootCanonicalKeyId(stack: NotaryStack, gun: string): Promise<string> {
  return (await rootKeyIds(stack, gun)).canonicalId;
}

/** The chart's webhook configurations, pointed at the loopback verifier. */
function webhookConfigurations(verifier: VerifierProcess): Json[] {
  const run = runHelm([
    'template',
    'kpack-trust',
    CHART_DIR,
    '--namespace',
    RELEASE_NAMESPACE,
    '--show-only',
    'templates/admission-webhooks.yaml',
    '--set',
    'verifier.image.repository=registry.example.com/kpack-trust-verifier',
    '--set',
    'admission.mode=admissionWebhooks',
    '--set',
    'verifier.tls.existingSecret=kpack-trust-verifier-tls',
    '--set-string',
    `verifier.tls.caBundle=${verifier.caPem}`,
  ]);
  assert.equal(run.status, 0, run.stderr);
  const objects = parseAllDocuments(run.stdout)
    .map((doc) => doc.toJS() as Json | null)
    .filter((o): o is Json => o !== null);
  assert.deepEqual(
    objects.map((o) => o['kind']),
    ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'],
  );
  for (const object of objects) {
    for (const webhook of object['webhooks'] as { clientConfig: Json }[]) {
      const { service, ...rest } = webhook.clientConfig as { service: { path: string } } & Json;
      assert.equal(rest['caBundle'], Buffer.from(verifier.caPem).toString('base64'));
      webhook.clientConfig = { ...rest, url: `${verifier.url}${service.path}` };
    }
  }
  return objects;
}

function pod(name: string, image: string, namespace = 'default'): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: { containers: [{ name: 'app', image }] },
  };
}

void describe('kube-apiserver admission webhooks → kpack-trust-verifier (real control plane)', () => {
  let stack: NotaryStack;
  let verifier: VerifierProcess;
  let cluster: ControlPlane;
  let signed: PushedImage;
  let unsignedRef: string;
  let pinned: string;

  const create = (object: Json) =>
    cluster.kubectl(['create', '-f', '-', '-o', 'json'], { input: JSON.stringify(object) });
  const storedImage = async (name: string, namespace = 'default'): Promise<string> => {
    const get = await cluster.kubectl([
      'get',
      'pod',
      name,
      '-n',
      namespace,
      '-o',
      'jsonpath={.spec.containers[0].image}',
    ]);
    assert.equal(get.code, 0, get.stderr);
    return get.stdout;
  };

  before(async () => {
    stack = await startStack();
    const trust = await stack.tempDir('trust');
    signed = await pushImage(stack, 'team/app', 'v1');
    await initRepo(stack, signed.gun, trust);
    await addTarget(
      stack,
      signed.gun,
      trust,
      'v1',
      signed.size,
      signed.digest.slice('sha256:'.length),
    );
    pinned = `${signed.reference}@${signed.digest}`;
    unsignedRef = (await pushImage(stack, 'team/app', 'unsigned', { content: 'never signed\n' }))
      .reference;
    const pin = await rootCanonicalKeyId(stack, signed.gun);
    verifier = await startVerifierProcess(stack, {
      rules: `  - name: team\n    images: "${stack.registryHost}/team/*"\n    trust: { rootKeys: ["${pin}"] }`,
    });
    cluster = await startControlPlane();
    const apply = await cluster.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: webhookConfigurations(verifier),
      }),
    });
    assert.equal(apply.code, 0, apply.stderr);
    // The apiserver picks new webhook configurations up from its informer; wait until it calls.
    await eventually(
      'the mutating webhook taking effect',
      async () => {
        const probe = await cluster.kubectl(
          ['create', '--dry-run=server', '-f', '-', '-o', 'json'],
          {
            input: JSON.stringify(pod('probe', signed.reference)),
          },
        );
        if (probe.code !== 0) return undefined;
        const image = (JSON.parse(probe.stdout) as { spec: { containers: { image: string }[] } })
          .spec.containers[0]?.image;
        return image === pinned ? true : undefined;
      },
      60_000,
    );
  });

  after(async () => {
    await cluster?.stop();
    await verifier?.stop();
    await stack?.stop();
  });

  void it('stores a pod created with a signed tag pinned to the signed digest', async () => {
    const created = await create(pod('signed', signed.reference));
    assert.equal(created.code, 0, created.stderr);
    assert.equal(await storedImage('signed'), pinned);
  });

  void it('pins an ephemeral container added with kubectl debug, and refuses an unsigned one', async () => {
    const debug = await cluster.kubectl([
      'debug',
      'signed',
      `--image=${signed.reference}`,
      '--container=debugger',
    ]);
    assert.equal(debug.code, 0, debug.stderr);
    const get = await cluster.kubectl([
      'get',
      'pod',
      'signed',
      '-o',
      'jsonpath={.spec.ephemeralContainers[0].image} {.spec.containers[0].image}',
    ]);
    assert.equal(get.stdout, `${pinned} ${pinned}`);
    const refused = await cluster.kubectl([
      'debug',
      'signed',
      `--image=${unsignedRef}`,
      '--container=unsigned-debugger',
    ]);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      /admission webhook "mutate\.kpack-trust\.io" denied the request: .*:unsigned: not signed/,
    );
  });

  void it('pins an image changed on a running pod with kubectl set image', async () => {
    const created = await create(pod('retagged', unsignedRef));
    assert.notEqual(created.code, 0, 'an unsigned pod is refused first');
    assert.equal((await create(pod('retagged', signed.reference))).code, 0);
    // Re-point the container by tag: the stored pod must carry the digest again, never the bare tag.
    const set = await cluster.kubectl(['set', 'image', 'pod/retagged', `app=${signed.reference}`]);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(await storedImage('retagged'), pinned);
    const refused = await cluster.kubectl(['set', 'image', 'pod/retagged', `app=${unsignedRef}`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /denied the request: .*:unsigned: not signed/);
    assert.equal(await storedImage('retagged'), pinned);
  });

  void it('refuses an unsigned pod with the webhook name and our reason', async () => {
    const ours = await verifier.review([unsignedRef]);
    assert.equal(ours.allowed, false);
    const created = await create(pod('unsigned', unsignedRef));
    assert.notEqual(created.code, 0);
    assert.ok(
      created.stderr.includes(
        `admission webhook "mutate.kpack-trust.io" denied the request: ${ours.reason ?? ''}`,
      ),
      created.stderr,
    );
  });

  void it('refuses an unsigned Deployment at kubectl apply, before any ReplicaSet exists', async () => {
    const ours = await verifier.review([unsignedRef]);
    const apply = await cluster.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'unsigned-app', namespace: 'default' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'unsigned-app' } },
          template: {
            metadata: { labels: { app: 'unsigned-app' } },
            spec: { containers: [{ name: 'app', image: unsignedRef }] },
          },
        },
      }),
    });
    assert.notEqual(apply.code, 0, 'kubectl apply must fail');
    assert.ok(
      apply.stderr.includes(
        `admission webhook "validate.kpack-trust.io" denied the request: ${ours.reason ?? ''}`,
      ),
      apply.stderr,
    );
    const get = await cluster.kubectl(['get', 'deployment', 'unsigned-app']);
    assert.match(get.stderr, /NotFound/);
  });

  void it("pins every pod kube-controller-manager creates for a signed Deployment's ReplicaSet", async () => {
    const replicas = 6;
    const created = await create({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'scaled', namespace: 'default' },
      spec: {
        replicas,
        selector: { matchLabels: { app: 'scaled' } },
        template: {
          metadata: { labels: { app: 'scaled' } },
          spec: { containers: [{ name: 'app', image: signed.reference }] },
        },
      },
    });
    assert.equal(created.code, 0, created.stderr);
    // kube-controller-manager's ReplicaSet controller creates the pods (no scheduler: they stay
    // Pending, stored as admitted).
    const images = await eventually(
      `${replicas} pods of the ReplicaSet`,
      async () => {
        const list = await cluster.kubectl([
          'get',
          'pods',
          '-n',
          'default',
          '-l',
          'app=scaled',
          '-o',
          'jsonpath={range .items[*]}{.spec.containers[0].image}{"\\n"}{end}',
        ]);
        const lines = list.stdout.split('\n').filter((l) => l !== '');
        return lines.length === replicas ? lines : undefined;
      },
      60_000,
    );
    assert.deepEqual(images, Array<string>(replicas).fill(pinned));
  });

  void it('admits pods untouched in a namespace labelled kpack-trust.io/ignore=true', async () => {
    assert.equal((await cluster.kubectl(['create', 'namespace', 'escape'])).code, 0);
    const label = await cluster.kubectl([
      'label',
      'namespace',
      'escape',
      'kpack-trust.io/ignore=true',
    ]);
    assert.equal(label.code, 0, label.stderr);
    // The ServiceAccount admission plugin needs the namespace's default ServiceAccount, which
    // kube-controller-manager creates shortly after the namespace.
    await eventually(
      'the default ServiceAccount of "escape"',
      async () =>
        (await cluster.kubectl(['get', 'serviceaccount', 'default', '-n', 'escape'])).code === 0
          ? true
          : undefined,
      60_000,
    );
    const signedPod = await create(pod('tagged', signed.reference, 'escape'));
    assert.equal(signedPod.code, 0, signedPod.stderr);
    assert.equal(await storedImage('tagged', 'escape'), signed.reference, 'not pinned');
    const unsignedPod = await create(pod('unsigned', unsignedRef, 'escape'));
    assert.equal(unsignedPod.code, 0, unsignedPod.stderr);
    assert.equal(await storedImage('unsigned', 'escape'), unsignedRef);
  });
});
