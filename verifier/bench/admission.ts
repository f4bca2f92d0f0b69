/**
 * Benchmark (not a test): cached `/mutate` AdmissionReviews beside cached ImageReviews of the same
 * pod, against the same verifier process, in one run — the throughput of the admission webhook
 * path as a share of the ImagePolicyWebhook path's.
 *
 *   npm run build && npm run bench:verifier-admission
 *   node verifier/dist/bench/admission.js [--seconds 5] [--connections 16] [--rounds 5]
 *     [--pod kubectl-run|minimal]    (minimal: a Pod of one container and nothing else)
 *     [--only mutate|image-policy]   (one path and its bare twin, e.g. with BENCH_PROFILE_DIR=dir
 *                                     for a CPU profile)
 *
 * Each path gets what kube-apiserver sends it for one pod created with `kubectl run`: the
 * ImagePolicyWebhook plugin a small ImageReview of the image, the webhook dispatcher the whole
 * defaulted Pod (managedFields, the service-account token volume, tolerations, …) in an
 * AdmissionReview, each under a uid of its own and with a token volume of its own
 * (`kube-api-access-<random>`, which the ServiceAccount admission plugin gives every Pod before the
 * webhooks see it), so that no two AdmissionReviews are alike, as from a real apiserver. The
 * verifier parses each AdmissionReview (the ImageReviews of one pod template are byte-identical and
 * are parsed once), keeps the pinning patch beside the memoised status, and the engine decides
 * both each time. The server is the real stack (bench/
 * fixture.ts: HTTPS listener, app, engine with a warm trust cache, metrics, a log line per
 * decision to /dev/null) in a child process; this process drives the load over raw TLS sockets
 * (bench/load.ts). The result is the median of the per-round ratios, against the goal (≥ 0.9),
 * with the same share computed from the server's CPU time per request (less sensitive to other
 * load on the machine than req/s).
 *
 * Beside it, in the same rounds (each round in another order), a bare server in the same child
 * that does only what every implementation must: it answers the repeated ImageReview unread (as
 * the parse memo lets the verifier), and parses each AdmissionReview, reads its uid and images,
 * and answers the verifier's own pinning reply under that uid. The difference between its two
 * paths is what reading and parsing an AdmissionReview costs; the verifier's ImagePolicyWebhook
 * path plus that cost gives `bestShare`, the most an implementation that reads the whole
 * AdmissionReview can reach against the goal.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  GUN,
  IMAGE,
  benchTls,
  memoryFetcher,
  signedRepository,
  startBareServer,
  startVerifier,
  writeBenchConfig,
} from './fixture.js';
import { closedLoop, jsonPost, percentile, rate, type LoadTarget } from './load.js';

const { values } = parseArgs({
  options: {
    serve: { type: 'string' },
    dir: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '5' },
    only: { type: 'string' },
    pod: { type: 'string', default: 'kubectl-run' },
  },
});

const GOAL = 0.9;

/** What the ImagePolicyWebhook plugin sends for the pod. */
const IMAGE_REVIEW = JSON.stringify({
  apiVersion: 'imagepolicy.k8s.io/v1alpha1',
  kind: 'ImageReview',
  spec: { containers: [{ image: IMAGE }], annotations: {}, namespace: 'default' },
});

/** The Pod `kubectl run app --image=…` makes, as the dispatcher sends it after defaulting. */
const POD = {
  kind: 'Pod',
  apiVersion: 'v1',
  metadata: {
    name: 'app',
    namespace: 'default',
    creationTimestamp: null,
    labels: { run: 'app' },
    managedFields: [
      {
        manager: 'kubectl-run',
        operation: 'Update',
        apiVersion: 'v1',
        time: '2026-12-06T12:00:00Z',
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': { 'f:labels': { '.': {}, 'f:run': {} } },
          'f:spec': {
            'f:containers': {
              'k:{"name":"app"}': {
                '.': {},
                'f:image': {},
                'f:imagePullPolicy': {},
                'f:name': {},
                'f:resources': {},
                'f:terminationMessagePath': {},
                'f:terminationMessagePolicy': {},
              },
            },
            'f:dnsPolicy': {},
            'f:enableServiceLinks': {},
            'f:restartPolicy': {},
            'f:schedulerName': {},
            'f:securityContext': {},
            'f:terminationGracePeriodSeconds': {},
          },
        },
      },
    ],
  },
  spec: {
    volumes: [
      {
        name: 'kube-api-access-7x2kq',
        projected: {
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            {
              downwardAPI: {
                items: [
                  {
                    path: 'namespace',
                    fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' },
                  },
                ],
              },
            },
          ],
          defaultMode: 420,
        },
      },
    ],
    containers: [
      {
        name: 'app',
        image: IMAGE,
        resources: {},
        volumeMounts: [
          {
            name: 'kube-api-access-7x2kq',
            readOnly: true,
            mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
          },
        ],
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
        imagePullPolicy: 'IfNotPresent',
      },
    ],
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 30,
    dnsPolicy: 'ClusterFirst',
    serviceAccountName: 'default',
    serviceAccount: 'default',
    securityContext: {},
    schedulerName: 'default-scheduler',
    tolerations: [
      {
        key: 'node.kubernetes.io/not-ready',
        operator: 'Exists',
        effect: 'NoExecute',
        tolerationSeconds: 300,
      },
      {
        key: 'node.kubernetes.io/unreachable',
        operator: 'Exists',
        effect: 'NoExecute',
        tolerationSeconds: 300,
      },
    ],
    priority: 0,
    enableServiceLinks: true,
    preemptionPolicy: 'PreemptLowerPriority',
  },
  status: {},
};

/**
 * `--pod minimal`: the same image in a Pod of nothing else, to tell the cost of parsing a real
 * Pod from the cost of the rest of the path. Not what an apiserver sends.
 */
const MINIMAL_POD = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'app', namespace: 'default' },
  spec: { containers: [{ name: 'app', image: IMAGE }] },
};

if (values.pod !== 'kubectl-run' && values.pod !== 'minimal') {
  throw new Error(`--pod must be kubectl-run or minimal, got ${values.pod ?? ''}`);
}

/**
 * The AdmissionReview the dispatcher sends for that Pod, under `uid` (the apiserver makes a new
 * one per call), with the Pod's token volume named `kube-api-access-<token>`.
 */
function admissionReview(uid: string, token = '7x2kq'): string {
  const object = values.pod === 'minimal' ? MINIMAL_POD : POD;
  return JSON.stringify({
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: 'app',
      namespace: 'default',
      operation: 'CREATE',
      userInfo: {
        username: 'kubernetes-admin',
        groups: ['kubeadm:cluster-admins', 'system:authenticated'],
      },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1', fieldManager: 'kubectl-run' },
    },
  }).replaceAll('kube-api-access-7x2kq', `kube-api-access-${token}`);
}

/** Five characters of the alphabet Kubernetes' generated name suffixes use. */
function nameSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return Array.from(randomBytes(5), (b) => alphabet[b % alphabet.length]).join('');
}

/** Requests sent in turn on /mutate, each under its own uid and with its own token volume. */
const MUTATE_REQUESTS: readonly Buffer[] = Array.from({ length: 4096 }, () =>
  jsonPost('/mutate', admissionReview(randomUUID(), nameSuffix())),
);
const ADMISSION_REVIEW = admissionReview(randomUUID());

/** Each of `requests` in turn. */
function rotating(requests: readonly Buffer[]): () => Buffer {
  let next = 0;
  return () => {
    const request = requests[next] as Buffer;
    next = (next + 1) % requests.length;
    return request;
  };
}

/** A load target whose request the load generator reads once per send. */
function target(port: number, ca: string, request: () => Buffer): LoadTarget {
  return {
    port,
    ca,
    get request(): Buffer {
      return request();
    },
  };
}

function emit(record: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

async function serveChild(dir: string): Promise<void> {
  const repo = await signedRepository(GUN);
  const config = await writeBenchConfig(dir, repo.rootKeys[0]?.publicKey.id ?? '');
  const { listener, engine } = await startVerifier(config, memoryFetcher(repo));
  const warm = await engine.review({
    containers: [{ image: IMAGE }],
    annotations: {},
    namespace: 'default',
  });
  if (!warm.allowed) throw new Error(`the fixture image is not admitted: ${warm.reason ?? ''}`);
  // The bare server beside it: what the verifier answers, from a server that does only what every
  // implementation must. ImageReviews of one template repeat byte for byte, so it answers them
  // unread (as the verifier's parse memo lets it); an AdmissionReview never repeats, so it parses
  // each, reads the uid and the containers' images, and answers the verifier's pinning reply under
  // that uid — no policy, no trust cache, no metrics, no log.
  const tlsFiles = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') };
  const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  const imageReply = await post(listener.port, ca, '/', IMAGE_REVIEW);
  const uid = randomUUID();
  const mutateReply = await post(listener.port, ca, '/mutate', admissionReview(uid));
  const [head, tail] = mutateReply.toString('utf8').split(JSON.stringify(uid));
  if (head === undefined || tail === undefined) throw new Error('the /mutate reply has no uid');
  const replyHead = Buffer.from(head);
  const replyTail = Buffer.from(tail);
  const bare = await startBareServer(tlsFiles, (path, body) => {
    if (path !== '/mutate') return imageReply;
    const review = JSON.parse(body.toString('utf8')) as AdmissionReviewShape;
    const spec = review.request.object.spec;
    let images = 0;
    for (const list of [spec.containers, spec.initContainers, spec.ephemeralContainers]) {
      for (const container of list ?? []) if (typeof container.image === 'string') images += 1;
    }
    if (images === 0) throw new Error('an AdmissionReview without images');
    const uidBytes = Buffer.from(JSON.stringify(review.request.uid));
    return Buffer.concat([replyHead, uidBytes, replyTail]);
  });
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'cpu') process.send?.({ type: 'cpu', usage: process.cpuUsage() });
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ type: 'ready', port: listener.port, barePort: bare.port });
}

/** What the bare server reads of an AdmissionReview. */
interface AdmissionReviewShape {
  request: {
    uid: string;
    object: { spec: Partial<Record<string, { image?: unknown }[]>> };
  };
}

/** POSTs `body` to the verifier and gives the reply's bytes. */
async function post(port: number, ca: string, path: string, body: string): Promise<Buffer> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        ca,
        headers: { 'Content-Type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          resolve(Buffer.concat(chunks));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function startChild(dir: string): Promise<{ child: ChildProcess; port: number; barePort: number }> {
  // BENCH_PROFILE_DIR=dir writes a V8 CPU profile of the server process there.
  const profileDir = process.env['BENCH_PROFILE_DIR'];
  const child = fork(fileURLToPath(import.meta.url), ['--serve', 'verifier', '--dir', dir], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    execArgv: [
      ...process.execArgv,
      ...(profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
    ],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (message: { type?: string; port?: number; barePort?: number }) => {
      if (message.type === 'ready') {
        resolve({ child, port: message.port ?? 0, barePort: message.barePort ?? 0 });
      }
    });
    child.once('exit', (code) => {
      reject(new Error(`server child exited with ${String(code)}`));
    });
  });
}

/** The server child's CPU time so far. */
function cpuOf(child: ChildProcess): Promise<NodeJS.CpuUsage> {
  return new Promise((resolve) => {
    const onMessage = (message: { type?: string; usage?: NodeJS.CpuUsage }): void => {
      if (message.type !== 'cpu' || message.usage === undefined) return;
      child.off('message', onMessage);
      resolve(message.usage);
    };
    child.on('message', onMessage);
    child.send({ type: 'cpu' });
  });
}

/** One request on each path, checked: an admission, and on /mutate the pinning patch. */
async function checkAnswers(port: number, ca: string): Promise<void> {
  const review = JSON.parse((await post(port, ca, '/', IMAGE_REVIEW)).toString('utf8')) as {
    status?: { allowed?: boolean };
  };
  if (review.status?.allowed !== true)
    throw new Error(`ImageReview not admitted: ${JSON.stringify(review)}`);
  const admission = JSON.parse(
    (await post(port, ca, '/mutate', ADMISSION_REVIEW)).toString('utf8'),
  ) as { response?: { allowed?: boolean; patch?: string } };
  const patch = Buffer.from(admission.response?.patch ?? '', 'base64').toString('utf8');
  if (admission.response?.allowed !== true || !patch.includes('@sha256:')) {
    throw new Error(`AdmissionReview not admitted with a pin: ${JSON.stringify(admission)}`);
  }
}

function median(list: readonly number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const options = {
    seconds: Number(values.seconds),
    connections: Number(values.connections),
    rounds: Number(values.rounds),
  };
  const cpu = cpus();
  emit({
    bench: 'environment',
    node: process.version,
    cpus: cpu.length,
    cpuModel: cpu[0]?.model ?? 'unknown',
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    loadAverage: loadavg().map((l) => round(l, 2)),
    ...options,
    pod: values.pod,
    imageReviewBytes: Buffer.byteLength(IMAGE_REVIEW),
    admissionReviewBytes: Buffer.byteLength(ADMISSION_REVIEW),
  });
  const tls = await benchTls();
  let child: ChildProcess | undefined;
  try {
    const started = await startChild(tls.dir);
    child = started.child;
    const { port, barePort } = started;
    await checkAnswers(port, tls.caPem);
    type Series = 'image-policy' | 'mutate' | 'bare-image-policy' | 'bare-mutate';
    const imageReview = rotating([jsonPost('/', IMAGE_REVIEW)]);
    const mutate = rotating(MUTATE_REQUESTS);
    const series: Record<Series, LoadTarget> = {
      'image-policy': target(port, tls.caPem, imageReview),
      mutate: target(port, tls.caPem, mutate),
      'bare-image-policy': target(barePort, tls.caPem, imageReview),
      'bare-mutate': target(barePort, tls.caPem, mutate),
    };
    const all = Object.keys(series) as Series[];
    const wanted = all.filter(
      (name) => values.only === undefined || name === values.only || name === `bare-${values.only}`,
    );
    for (const name of wanted) {
      // JIT warm-up, not measured.
      await closedLoop(series[name], { connections: options.connections, seconds: 1 });
    }
    const perSeries = Object.fromEntries(all.map((name) => [name, [] as number[]])) as Record<
      Series,
      number[]
    >;
    const cpuPerSeries = Object.fromEntries(all.map((name) => [name, [] as number[]])) as Record<
      Series,
      number[]
    >;
    const shares: number[] = [];
    const cpuShares: number[] = [];
    const bestShares: number[] = [];
    const bestCpuShares: number[] = [];
    const parseCosts: number[] = [];
    for (let r = 1; r <= options.rounds; r += 1) {
      // The order rotates, so no series always runs on a machine the one before it warmed.
      const order = wanted.map((_, i) => wanted[(i + r) % wanted.length] as Series);
      const measured: Partial<Record<Series, number>> = {};
      const cpuMeasured: Partial<Record<Series, number>> = {};
      for (const name of order) {
        const before = await cpuOf(child);
        const result = await closedLoop(series[name], {
          connections: options.connections,
          seconds: options.seconds,
        });
        const after = await cpuOf(child);
        const cpuMicros = after.user - before.user + (after.system - before.system);
        const cpuPerRequest = cpuMicros / Math.max(1, result.requests);
        measured[name] = rate(result);
        cpuMeasured[name] = cpuPerRequest;
        perSeries[name].push(rate(result));
        cpuPerSeries[name].push(cpuPerRequest);
        emit({
          bench: 'cached-admission',
          path: name,
          round: r,
          requests: result.requests,
          errors: result.errors,
          reqPerSec: round(rate(result), 1),
          p50Ms: round(percentile(result.latenciesMs, 50)),
          p99Ms: round(percentile(result.latenciesMs, 99)),
          serverCpuMicrosPerRequest: round(cpuPerRequest, 1),
        });
      }
      const ipw = measured['image-policy'] ?? Number.NaN;
      const ipwCpu = cpuMeasured['image-policy'] ?? Number.NaN;
      shares.push((measured.mutate ?? 0) / ipw);
      cpuShares.push(ipwCpu / (cpuMeasured.mutate ?? Number.NaN));
      // What reading and parsing an AdmissionReview costs beyond an ImageReview, on the bare server:
      // /mutate can cost no less than the ImagePolicyWebhook path plus that.
      const parseSeconds =
        1 / (measured['bare-mutate'] ?? Number.NaN) -
        1 / (measured['bare-image-policy'] ?? Number.NaN);
      const parseCpu =
        (cpuMeasured['bare-mutate'] ?? Number.NaN) -
        (cpuMeasured['bare-image-policy'] ?? Number.NaN);
      parseCosts.push(parseCpu);
      bestShares.push(1 / ipw / (1 / ipw + parseSeconds));
      bestCpuShares.push(ipwCpu / (ipwCpu + parseCpu));
    }
    const ratio = median(shares);
    const medianOf = (name: Series): number => round(median(perSeries[name]), 1);
    const cpuMedianOf = (name: Series): number => round(median(cpuPerSeries[name]), 1);
    emit({
      bench: 'cached-admission',
      result: 'comparison',
      rounds: options.rounds,
      imagePolicyReqPerSecMedian: medianOf('image-policy'),
      mutateReqPerSecMedian: medianOf('mutate'),
      mutateShareOfImagePolicy: round(ratio),
      mutateShareOfImagePolicyPerRound: shares.map((x) => round(x)),
      imagePolicyCpuMicrosPerRequestMedian: cpuMedianOf('image-policy'),
      mutateCpuMicrosPerRequestMedian: cpuMedianOf('mutate'),
      // The same share from server CPU per request: steadier than req/s on a busy machine.
      mutateShareByCpu: round(median(cpuShares)),
      mutateShareByCpuPerRound: cpuShares.map((x) => round(x)),
      // The bare server: what reading and parsing each AdmissionReview costs beyond answering the
      // repeated ImageReview, and the best share that leaves the verifier — its own ImageReview
      // path plus that cost, and nothing else on /mutate.
      bareImagePolicyCpuMicrosPerRequestMedian: cpuMedianOf('bare-image-policy'),
      bareMutateCpuMicrosPerRequestMedian: cpuMedianOf('bare-mutate'),
      admissionParseCpuMicrosMedian: round(median(parseCosts), 1),
      bestShare: round(median(bestShares)),
      bestSharePerRound: bestShares.map((x) => round(x)),
      bestShareByCpu: round(median(bestCpuShares)),
      bestShareByCpuPerRound: bestCpuShares.map((x) => round(x)),
      goalShare: GOAL,
      meetsShareGoal: ratio >= GOAL,
    });
  } finally {
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once('exit', resolve));
      child.disconnect();
      await exited;
    }
    await rm(tls.dir, { recursive: true, force: true });
  }
}

if (values.serve !== undefined) {
  await serveChild(values.dir ?? '.');
} else {
  await main();
}
