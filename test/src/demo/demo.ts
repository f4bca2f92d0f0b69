/**
 * The end-to-end demo (the README's first command): the real notary stack on loopback, a kpack-style
 * build signed by kpack-trust-signer with keys generated into Kubernetes Secrets on first use, and
 * kpack-trust-verifier answering ImageReviews — then a table of what it admitted and denied, and why.
 *
 * Everything runs on 127.0.0.1 and stops by itself. notary-server, notary-signer, docker-registry
 * and skopeo are Debian's real binaries. With `--cluster`, the Secrets live in the real
 * kube-apiserver (built from k8s.io/kubernetes, test/src/kube/control-plane.ts), which then asks
 * the verifier about Pods through its ImagePolicyWebhook plugin. Without it, the Secrets live in
 * test/src/kube/fake-apiserver.ts: the plain demo must stay fast, and starting etcd,
 * kube-apiserver and kube-controller-manager (and building them on a fresh machine) would
 * multiply its run time for a step that only stores two Secrets.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControlPlane, type ControlPlane, type KubectlResult } from '../kube/control-plane.js';
import { startFakeApiserver, type FakeApiserver } from '../kube/fake-apiserver.js';
import { pushImage, startStack, type NotaryStack } from '../stack/index.js';
import { freePort, killOnExit } from '../stack/processes.js';
import { repoRoot } from '../repo.js';

/** One row of the demo's result table. */
export interface DemoRow {
  readonly image: string;
  readonly expected: 'allowed' | 'denied';
  readonly allowed: boolean;
  readonly reason: string;
  readonly ms: number;
}

/** What `--cluster` showed: kube-apiserver's own answers to kubectl, with the verifier as backend. */
export interface ClusterAct {
  /** `kubectl version` against the apiserver. */
  readonly version: KubectlResult;
  /** `kubectl get secrets -n builds`: the key Secrets the signer created in this apiserver. */
  readonly secrets: KubectlResult;
  /** `kubectl run` of the signed image, and what the apiserver stored as its image. */
  readonly signed: KubectlResult;
  readonly storedImage: string;
  /** `kubectl run` of the unsigned image: refused by the apiserver with our reason. */
  readonly unsigned: KubectlResult;
  readonly unsignedImage: string;
}

/** The whole demo's outcome. */
export interface DemoOutcome {
  readonly rows: DemoRow[];
  /** Present with `--cluster`. */
  readonly cluster?: ClusterAct;
}

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** Runs a built CLI of this repository and returns its stdout; fails with its stderr. */
function runCli(
  root: string,
  bin: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(root, bin), ...args],
      { env: { ...process.env, ...env }, maxBuffer: 8 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${bin} ${args[0] ?? ''} failed:\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** POSTs one ImageReview to the verifier over HTTPS and returns its status and the round-trip time. */
function review(
  url: string,
  ca: string,
  image: string,
): Promise<{ allowed: boolean; reason: string; ms: number }> {
  const body = JSON.stringify({
    apiVersion: 'imagepolicy.k8s.io/v1alpha1',
    kind: 'ImageReview',
    spec: { containers: [{ image }], annotations: {}, namespace: 'default' },
  });
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', ca, headers: { 'content-type': 'application/json' }, timeout: 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const ms = Number(process.hrtime.bigint() - started) / 1e6;
          try {
            const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
              status?: { allowed?: boolean; reason?: string };
            };
            resolve({
              allowed: parsed.status?.allowed === true,
              reason: parsed.status?.reason ?? '',
              ms,
            });
          } catch {
            reject(
              new Error(`verifier answered ${res.statusCode ?? '?'} with a body that is not JSON`),
            );
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function waitReady(url: string, ca: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the verifier exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = request(`${url}/readyz`, { ca, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => {
        resolve(false);
      });
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the verifier did not become ready within 20 s');
}

function table(rows: readonly DemoRow[]): string {
  const header = ['image', 'decision', 'ms', 'reason'];
  const cells = rows.map((r) => [
    r.image,
    r.allowed ? 'ALLOWED' : 'DENIED',
    r.ms.toFixed(1),
    r.allowed ? '-' : r.reason,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const fmt = (c: readonly string[]): string =>
    c.map((v, i) => (i === 3 ? v : v.padEnd(widths[i] ?? 0))).join('  ');
  return [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...cells.map(fmt)].join('\n');
}

/** Runs the whole demo and returns its rows (the caller prints or asserts them). */
export async function runDemo(): Promise<DemoRow[]> {
  return (await runDemoWith({ cluster: false })).rows;
}

/**
 * The real cluster: kube-apiserver (built from k8s.io/kubernetes) with its ImagePolicyWebhook
 * plugin pointed, through the files docs/operator-guide.md §4 describes, at the verifier that will
 * listen on `verifierUrl` (the apiserver reads them only at start; Secrets and namespaces are not
 * images, so it serves the signer before the verifier runs).
 */
async function startCluster(
  work: string,
  verifierUrl: string,
  caFile: string,
): Promise<ControlPlane> {
  const admissionConfig = join(work, 'admission-config.yaml');
  const webhookKubeconfig = join(work, 'webhook.kubeconfig');
  await writeFile(
    admissionConfig,
    [
      'apiVersion: apiserver.config.k8s.io/v1',
      'kind: AdmissionConfiguration',
      'plugins:',
      '  - name: ImagePolicyWebhook',
      '    configuration:',
      '      imagePolicy:',
      `        kubeConfigFile: ${webhookKubeconfig}`,
      '        allowTTL: 300',
      '        denyTTL: 30',
      '        retryBackoff: 500',
      '        defaultAllow: false',
      '',
    ].join('\n'),
  );
  await writeFile(
    webhookKubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '  - name: kpack-trust-verifier',
      '    cluster:',
      `      server: ${verifierUrl}/image-policy`,
      `      certificate-authority: ${caFile}`,
      'users:',
      '  - name: kube-apiserver',
      '    user: {}',
      'contexts:',
      '  - name: kpack-trust-verifier',
      '    context: { cluster: kpack-trust-verifier, user: kube-apiserver }',
      'current-context: kpack-trust-verifier',
      '',
    ].join('\n'),
  );
  log(
    'starting etcd, kube-apiserver (ImagePolicyWebhook → the verifier) and kube-controller-manager …',
  );
  return startControlPlane({ imagePolicyWebhook: { admissionConfigFile: admissionConfig } });
}

/** The real-cluster act: kubectl runs a signed and an unsigned image through the verifier. */
async function clusterAct(
  cluster: ControlPlane,
  signedImage: string,
  unsignedImage: string,
): Promise<ClusterAct> {
  const show = (command: string, result: KubectlResult): void => {
    log(`$ ${command}`);
    const out = `${result.stdout}${result.stderr}`.trimEnd();
    if (out) log(out.replace(/^/gm, '  '));
  };
  const version = await cluster.kubectl(['version']);
  show('kubectl version', version);
  const secrets = await cluster.kubectl([
    'get',
    'secrets',
    '-n',
    'builds',
    '-L',
    'kpack-trust.io/notary-role',
  ]);
  show('kubectl get secrets -n builds -L kpack-trust.io/notary-role', secrets);
  const signed = await cluster.kubectl(['run', 'app', `--image=${signedImage}`, '--restart=Never']);
  show(`kubectl run app --image=${signedImage} --restart=Never`, signed);
  const stored = await cluster.kubectl([
    'get',
    'pod',
    'app',
    '-o',
    'jsonpath={.spec.containers[0].image}',
  ]);
  show('kubectl get pod app -o jsonpath={.spec.containers[0].image}', stored);
  const unsigned = await cluster.kubectl([
    'run',
    'unsigned',
    `--image=${unsignedImage}`,
    '--restart=Never',
  ]);
  show(`kubectl run unsigned --image=${unsignedImage} --restart=Never`, unsigned);
  return { version, secrets, signed, storedImage: stored.stdout, unsigned, unsignedImage };
}

/** The demo, with or without the real-cluster act. */
export async function runDemoWith(options: { cluster: boolean }): Promise<DemoOutcome> {
  const root = repoRoot();
  const signerBin = 'signer/dist/src/main.js';
  const verifierBin = 'verifier/dist/src/main.js';
  let stack: NotaryStack | undefined;
  let apiserver: FakeApiserver | undefined;
  let verifier: ChildProcess | undefined;
  let cluster: ControlPlane | undefined;
  try {
    log('starting notary-signer, notary-server and docker-registry on 127.0.0.1 …');
    stack = await startStack({ trustService: 'remote' });
    const work = await stack.tempDir('demo');
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    let kubeconfig: string;
    if (options.cluster) {
      cluster = await startCluster(work, url, stack.caFile);
      const made = await cluster.kubectl(['create', 'namespace', 'builds']);
      if (made.code !== 0) throw new Error(`kubectl create namespace builds: ${made.stderr}`);
      kubeconfig = await cluster.writeKubeconfig(join(work, 'kubeconfig'), {
        namespace: 'builds',
      });
    } else {
      // The fast demo's Secrets: see the header for why this is the fake apiserver.
      apiserver = await startFakeApiserver();
      kubeconfig = await apiserver.writeKubeconfig(join(work, 'kubeconfig'), {
        namespace: 'builds',
      });
    }
    const registry = stack.registryHost;

    log('pushing demo images with skopeo …');
    const app = await pushImage(stack, 'demo/app', 'v1', { content: 'app build 1' });
    await pushImage(stack, 'demo/app', 'unsigned', { content: 'never signed' });
    const other = await pushImage(stack, 'demo/other', 'v1', { content: 'other team' });

    const sign = async (
      repo: string,
      tags: string[],
      digest: string,
      secrets: string,
    ): Promise<string> => {
      const report = join(work, `${secrets}-report.toml`);
      await writeFile(
        report,
        `[image]\ntags = [${tags.map((t) => JSON.stringify(`${registry}/${repo}:${t}`)).join(', ')}]\ndigest = "${digest}"\n`,
      );
      const out = await runCli(root, signerBin, [
        'sign',
        '--notary-url',
        stack?.notaryUrl ?? '',
        '--notary-ca',
        stack?.caFile ?? '',
        '--report',
        report,
        '--secret-store',
        'kubernetes',
        '--kubeconfig',
        kubeconfig,
        '--namespace',
        'builds',
        '--root-key-secret',
        `${secrets}-notary-root`,
        '--targets-key-secret',
        `${secrets}-notary-targets`,
      ]);
      const summary = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { rootKeyId?: string };
      if (!summary.rootKeyId) throw new Error(`the signer printed no rootKeyId: ${out}`);
      return summary.rootKeyId;
    };

    log(
      'kpack-trust-signer: signing demo/app:v1 and demo/app:latest (keys generated into Secrets) …',
    );
    const appRoot = await sign('demo/app', ['v1', 'latest'], app.digest, 'app');
    log(`  root key id to pin: ${appRoot}`);
    log('kpack-trust-signer: signing demo/other:v1 with its own, different root …');
    await sign('demo/other', ['v1'], other.digest, 'other');

    const config = join(work, 'verifier.yaml');
    await writeFile(
      config,
      [
        `listen: { port: ${port}, host: 127.0.0.1, tls: { cert: ${JSON.stringify(stack.certificates.server.certFile)}, key: ${JSON.stringify(stack.certificates.server.keyFile)} } }`,
        'notary:',
        `  - registry: "${registry}"`,
        `    server: ${stack.notaryUrl}`,
        `    ca: ${JSON.stringify(stack.caFile)}`,
        'rules:',
        `  - images: "${registry}/demo/*"`,
        `    trust: { rootKeys: ["${appRoot}"] }`,
        '',
      ].join('\n'),
    );
    log(
      `starting kpack-trust-verifier on https://127.0.0.1:${port} pinning root ${appRoot.slice(0, 12)}… …`,
    );
    verifier = spawn(process.execPath, [join(root, verifierBin), 'serve', '--config', config], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    // Not launchDaemon: its stderr is part of the demo's output. A SIGTERM or SIGHUP to the demo
    // must still not leave it listening (the stack's exit hooks kill it with the daemons).
    killOnExit(verifier);
    await waitReady(url, stack.caPem, verifier);

    const nobody = `sha256:${randomBytes(32).toString('hex')}`;
    const cases: [string, DemoRow['expected']][] = [
      [`${registry}/demo/app:v1`, 'allowed'],
      [`${registry}/demo/app@${app.digest}`, 'allowed'],
      [`${registry}/demo/app:unsigned`, 'denied'],
      [`${registry}/demo/other:v1`, 'denied'],
      [`${registry}/demo/app@${nobody}`, 'denied'],
    ];
    const rows: DemoRow[] = [];
    for (const [image, expected] of cases) {
      const r = await review(`${url}/image-policy`, stack.caPem, image);
      rows.push({ image, expected, ...r });
    }
    if (!cluster) return { rows };
    const act = await clusterAct(
      cluster,
      `${registry}/demo/app:v1`,
      `${registry}/demo/app:unsigned`,
    );
    return { rows, cluster: act };
  } finally {
    await cluster?.stop();
    if (verifier && verifier.exitCode === null) {
      verifier.kill('SIGTERM');
      await new Promise((r) => verifier?.once('exit', r));
    }
    await apiserver?.close();
    await stack?.stop();
  }
}

/** Entry point: print the table; exit 1 if any decision differs from what the demo expects. */
async function main(): Promise<void> {
  const withCluster = process.argv.includes('--cluster');
  const { rows, cluster } = await runDemoWith({ cluster: withCluster });
  process.stdout.write(`\n${table(rows)}\n\n`);
  const wrong = rows.filter((r) => r.allowed !== (r.expected === 'allowed'));
  if (cluster && (cluster.signed.code !== 0 || cluster.unsigned.code === 0)) {
    wrong.push({
      image: 'kubectl run (real kube-apiserver)',
      expected: 'allowed',
      allowed: false,
      reason: '',
      ms: 0,
    });
  }
  if (wrong.length > 0) {
    process.stderr.write(`unexpected decisions: ${wrong.map((r) => r.image).join(', ')}\n`);
    process.exitCode = 1;
  } else {
    log('every decision is as expected; everything started has been stopped.');
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
