/**
 * Benchmark (not a test): N finished kpack Builds signed end to end by `kpack-trust-signer
 * controller` — real kube-apiserver + etcd with kpack's CRDs, the real notary stack — beside N
 * `kpack-trust-signer sign` processes run one after another (keys in Secrets of the same apiserver
 * for both). Each Build is the first of its own Image, so each signing also generates and stores a
 * root and a targets key and creates a repository.
 *
 *   npm run build && node test/dist/bench/controller-builds.js [N]      (default 100)
 *
 * Controller latency of a Build: from the status patch that marks it succeeded to the
 * `kpack-trust.io/signed-at` it records. Prints one JSON object.
 */
import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pushImage, startControlPlane, startStack, type PushedImage } from '@kpack-trust/e2e';

const MAIN = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const count = Number(process.argv[2] ?? 100);
if (!Number.isSafeInteger(count) || count < 1) throw new Error(`N must be a positive integer`);

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] ?? 0) * 10) / 10;
}

const stack = await startStack();
const cp = await startControlPlane({ controllerManager: false });
const children: ReturnType<typeof spawn>[] = [];
try {
  const kubectl = async (args: readonly string[], input?: string): Promise<string> => {
    const result = await cp.kubectl(args, input === undefined ? {} : { input });
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const { stdout } = await promisify(execFile)('/usr/local/go/bin/go', [
    'mod',
    'download',
    '-json',
    'github.com/pivotal/kpack@v0.17.2',
  ]);
  const kpackDir = (JSON.parse(stdout) as { Dir: string }).Dir;
  for (const crd of ['build.yaml', 'image.yaml']) {
    await kubectl(['apply', '-f', join(kpackDir, 'config', crd)]);
  }
  await kubectl([
    'wait',
    '--for=condition=Established',
    'crd/builds.kpack.io',
    'crd/images.kpack.io',
  ]);
  for (const ns of ['kpack-trust-system', 'bench', 'bench-cli'])
    await kubectl(['create', 'namespace', ns]);

  const pushedFor = async (prefix: string): Promise<PushedImage[]> => {
    const out: PushedImage[] = [];
    for (let i = 0; i < count; i++) {
      out.push(await pushImage(stack, `${prefix}/app-${i}`, 'v1', { content: `${prefix} ${i}\n` }));
    }
    return out;
  };
  const images = await pushedFor('bench');
  const cliImages = await pushedFor('bench-cli');

  const items = images.map((p, i) => ({
    apiVersion: 'kpack.io/v1alpha2',
    kind: 'Image',
    metadata: {
      name: `app-${i}`,
      namespace: 'bench',
      annotations: { 'kpack-trust.io/sign': 'true', 'kpack-trust.io/notary-url': stack.notaryUrl },
    },
    spec: { tag: `${p.gun}:v1` },
  }));
  await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  const uids = new Map(
    (
      JSON.parse(await kubectl(['get', 'images.kpack.io', '-n', 'bench', '-o', 'json'])) as {
        items: { metadata: { name: string; uid: string } }[];
      }
    ).items.map((i) => [i.metadata.name, i.metadata.uid]),
  );
  const builds = images.map((p, i) => ({
    apiVersion: 'kpack.io/v1alpha2',
    kind: 'Build',
    metadata: {
      name: `app-${i}-build-1`,
      namespace: 'bench',
      ownerReferences: [
        {
          apiVersion: 'kpack.io/v1alpha2',
          kind: 'Image',
          name: `app-${i}`,
          uid: uids.get(`app-${i}`),
          controller: true,
        },
      ],
    },
    spec: { tags: [`${p.gun}:v1`] },
  }));
  await kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: builds }),
  );

  const controller = spawn(
    process.execPath,
    [
      MAIN,
      'controller',
      '--kubeconfig',
      cp.kubeconfigPath,
      '--namespace',
      'kpack-trust-system',
      '--notary-ca',
      stack.caFile,
      '--allow-notary-url',
      stack.notaryUrl,
      '--listen',
      '127.0.0.1:0',
    ],
    {
      env: { PATH: process.env['PATH'] ?? '', HOME: stack.workDir },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(controller);
  await new Promise<void>((resolve) => {
    controller.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('"listed Builds"')) resolve();
    });
  });

  // Status patches straight over HTTPS with the admin client certificate: a kubectl process per
  // Build would dominate the figure.
  const config = JSON.parse(await readFile(cp.kubeconfigPath, 'utf8')) as {
    users: { user: Record<string, string> }[];
  };
  const user = config.users[0]?.user ?? {};
  const b64 = (key: string): string => Buffer.from(user[key] ?? '', 'base64').toString('utf8');
  const patchStatus = (name: string, latestImage: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const url = new URL(
        `/apis/kpack.io/v1alpha2/namespaces/bench/builds/${name}/status`,
        cp.server,
      );
      const body = JSON.stringify({
        status: { conditions: [{ type: 'Succeeded', status: 'True' }], latestImage },
      });
      const req = request(
        url,
        {
          method: 'PATCH',
          ca: cp.caPem,
          cert: b64('client-certificate-data'),
          key: b64('client-key-data'),
          headers: { 'content-type': 'application/merge-patch+json' },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) resolve();
            else reject(new Error(`PATCH ${name}: ${String(res.statusCode)}`));
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  const patchedAt = new Map<string, number>();
  const started = Date.now();
  for (const [i, p] of images.entries()) {
    const name = `app-${i}-build-1`;
    await patchStatus(name, `${p.gun}@${p.digest}`);
    patchedAt.set(name, Date.now());
  }
  let signedAt = new Map<string, number>();
  for (;;) {
    const list = JSON.parse(
      await kubectl(['get', 'builds.kpack.io', '-n', 'bench', '-o', 'json']),
    ) as {
      items: { metadata: { name: string; annotations?: Record<string, string> } }[];
    };
    signedAt = new Map(
      list.items
        .filter((b) => b.metadata.annotations?.['kpack-trust.io/signed-at'] !== undefined)
        .map((b) => [
          b.metadata.name,
          Date.parse(b.metadata.annotations?.['kpack-trust.io/signed-at'] ?? ''),
        ]),
    );
    const failed = list.items.filter(
      (b) => b.metadata.annotations?.['kpack-trust.io/signing-error'] !== undefined,
    );
    if (failed.length > 0)
      throw new Error(
        `${failed.length} Builds failed: ${failed[0]?.metadata.annotations?.['kpack-trust.io/signing-error']}`,
      );
    if (signedAt.size === count) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const latencies = [...signedAt].map(([name, at]) => at - (patchedAt.get(name) ?? at));
  const controllerTotal = Math.max(...signedAt.values()) - started;
  controller.kill('SIGTERM');

  const cliTimes: number[] = [];
  const cliStart = Date.now();
  for (const [i, p] of cliImages.entries()) {
    const t0 = Date.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          MAIN,
          'sign',
          '--notary-url',
          stack.notaryUrl,
          '--notary-ca',
          stack.caFile,
          '--image',
          `${p.gun}:v1`,
          '--digest',
          p.digest,
          '--secret-store',
          'kubernetes',
          '--kubeconfig',
          cp.kubeconfigPath,
          '--namespace',
          'bench-cli',
          '--root-key-secret',
          `app-${i}-root`,
          '--targets-key-secret',
          `app-${i}-targets`,
        ],
        {
          env: { PATH: process.env['PATH'] ?? '', HOME: stack.workDir },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      const err: Buffer[] = [];
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.on('close', (code) => {
        if (code === 0) resolve();
        else reject(new Error(Buffer.concat(err).toString()));
      });
    });
    cliTimes.push(Date.now() - t0);
  }
  const cliTotal = Date.now() - cliStart;

  process.stdout.write(
    `${JSON.stringify({
      builds: count,
      controller: {
        totalMs: controllerTotal,
        latencyP50Ms: percentile(latencies, 50),
        latencyP99Ms: percentile(latencies, 99),
      },
      signProcesses: {
        totalMs: cliTotal,
        perProcessP50Ms: percentile(cliTimes, 50),
        perProcessP99Ms: percentile(cliTimes, 99),
      },
    })}\n`,
  );
} finally {
  for (const child of children) child.kill('SIGKILL');
  await cp.stop();
  await stack.stop();
}
