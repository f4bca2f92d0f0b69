/**
 * Benchmark (not a test): cached ImageReview decisions over HTTPS keep-alive, side by side with a
 * bare Node https server that answers a constant ImageReview, in one run on one machine.
 *
 *   npm run build && node verifier/dist/bench/cached.js [--seconds 5] [--connections 16] [--rate 1000]
 *
 * Each server runs in its own child process; this process drives the load over raw TLS sockets
 * (bench/load.ts). The verifier is the real stack — express app, ImagePolicyEngine with a warm
 * trust cache over an in-memory notary repository, metrics, one JSON log line per decision (to
 * /dev/null). Output: JSON lines — the environment, then per server the closed-loop maximum
 * (req/s, p50/p99 latency, server CPU per request) and the p99 at a fixed rate, then the ratios
 * against the goals (≥ 60 % of the bare server's req/s; p99 < 5 ms at 1,000 reviews/s).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
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
import { closedLoop, fixedRate, jsonPost, percentile, rate, type LoadResult } from './load.js';

interface ServerReady {
  readonly type: 'ready';
  readonly port: number;
}
interface CpuReport {
  readonly type: 'cpu';
  readonly usage: NodeJS.CpuUsage;
}
type ChildMessage = ServerReady | CpuReport;

const { values } = parseArgs({
  options: {
    serve: { type: 'string' },
    dir: { type: 'string' },
    reply: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
    rate: { type: 'string', default: '1000' },
  },
});

const REVIEW = JSON.stringify({
  apiVersion: 'imagepolicy.k8s.io/v1alpha1',
  kind: 'ImageReview',
  spec: { containers: [{ image: IMAGE }], annotations: {}, namespace: 'default' },
});

function emit(record: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

// ---- child: one server ----
async function serveChild(kind: string, dir: string): Promise<void> {
  let port: number;
  if (kind === 'verifier') {
    const repo = await signedRepository(GUN);
    const config = await writeBenchConfig(dir, repo.rootKeys[0]?.publicKey.id ?? '');
    const { listener, engine } = await startVerifier(config, memoryFetcher(repo));
    const warm = await engine.review({
      containers: [{ image: IMAGE }],
      annotations: {},
      namespace: 'default',
    });
    if (!warm.allowed) throw new Error(`the fixture image is not admitted: ${warm.reason ?? ''}`);
    port = listener.port;
  } else {
    const bare = await startBareServer(
      { cert: `${dir}/tls.crt`, key: `${dir}/tls.key` },
      values.reply ?? '',
    );
    port = bare.port;
  }
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'cpu') process.send?.({ type: 'cpu', usage: process.cpuUsage() });
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ type: 'ready', port } satisfies ServerReady);
}

// ---- parent: drive the load ----
function startChild(args: readonly string[]): Promise<{ child: ChildProcess; port: number }> {
  const profileDir = process.env['BENCH_PROFILE_DIR'];
  const child = fork(fileURLToPath(import.meta.url), [...args], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    // BENCH_PROFILE_DIR=dir writes a V8 CPU profile of each server process there.
    execArgv: [
      ...process.execArgv,
      ...(profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
    ],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (message: ChildMessage) => {
      if (message.type === 'ready') resolve({ child, port: message.port });
    });
    child.once('exit', (code) => {
      reject(new Error(`server child exited with ${String(code)}`));
    });
  });
}

function cpuOf(child: ChildProcess): Promise<NodeJS.CpuUsage> {
  return new Promise((resolve) => {
    const onMessage = (message: ChildMessage): void => {
      if (message.type !== 'cpu') return;
      child.off('message', onMessage);
      resolve(message.usage);
    };
    child.on('message', onMessage);
    child.send({ type: 'cpu' });
  });
}

function summary(result: LoadResult): Record<string, number> {
  return {
    requests: result.requests,
    errors: result.errors,
    reqPerSec: round(rate(result), 1),
    p50Ms: round(percentile(result.latenciesMs, 50)),
    p99Ms: round(percentile(result.latenciesMs, 99)),
    maxMs: round(percentile(result.latenciesMs, 100)),
  };
}

async function measure(
  name: string,
  server: { child: ChildProcess; port: number },
  ca: string,
  options: { seconds: number; connections: number; rate: number },
): Promise<{ max: LoadResult; fixed: LoadResult; cpuMicrosPerRequest: number }> {
  const target = { port: server.port, ca, request: jsonPost('/', REVIEW) };
  await closedLoop(target, { connections: options.connections, seconds: 1 }); // JIT warm-up
  const before = await cpuOf(server.child);
  const max = await closedLoop(target, {
    connections: options.connections,
    seconds: options.seconds,
  });
  const after = await cpuOf(server.child);
  const cpuMicros = after.user - before.user + (after.system - before.system);
  emit({
    bench: 'cached-review',
    server: name,
    mode: 'max',
    connections: options.connections,
    ...summary(max),
    serverCpuMicrosPerRequest: round(cpuMicros / Math.max(1, max.requests), 1),
  });
  const fixed = await fixedRate(target, {
    rate: options.rate,
    seconds: options.seconds,
    connections: Math.max(options.connections, 32),
  });
  emit({
    bench: 'cached-review',
    server: name,
    mode: 'fixed-rate',
    rate: options.rate,
    ...summary(fixed),
  });
  return { max, fixed, cpuMicrosPerRequest: cpuMicros / Math.max(1, max.requests) };
}

async function main(): Promise<void> {
  const options = {
    seconds: Number(values.seconds),
    connections: Number(values.connections),
    rate: Number(values.rate),
  };
  const cpu = cpus();
  emit({
    bench: 'environment',
    node: process.version,
    cpus: cpu.length,
    cpuModel: cpu[0]?.model ?? 'unknown',
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    ...options,
  });
  const tls = await benchTls();
  const ca = await readFile(tls.cert, 'utf8');
  const children: ChildProcess[] = [];
  try {
    const verifier = await startChild(['--serve', 'verifier', '--dir', tls.dir]);
    children.push(verifier.child);
    // The bare server answers exactly what the verifier answers, byte for byte.
    const sample = await closedLoopSample(verifier.port, ca);
    const bare = await startChild(['--serve', 'bare', '--dir', tls.dir, '--reply', sample]);
    children.push(bare.child);

    const v = await measure('verifier', verifier, ca, options);
    const b = await measure('bare-https', bare, ca, options);
    const ratio = rate(v.max) / rate(b.max);
    emit({
      bench: 'cached-review',
      result: 'comparison',
      verifierShareOfBare: round(ratio),
      // Throughput share when both servers are CPU-bound: less sensitive to the load generator.
      verifierCpuShareOfBare: round(b.cpuMicrosPerRequest / v.cpuMicrosPerRequest),
      goalShare: 0.6,
      meetsShareGoal: ratio >= 0.6,
      verifierP99MsAtRate: round(percentile(v.fixed.latenciesMs, 99)),
      goalP99Ms: 5,
      meetsLatencyGoal: percentile(v.fixed.latenciesMs, 99) < 5,
    });
  } finally {
    for (const child of children) child.kill();
    await rm(tls.dir, { recursive: true, force: true });
  }
}

/** One review through the verifier, checked to be an admission, returned as the raw body. */
async function closedLoopSample(port: number, ca: string): Promise<string> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        method: 'POST',
        ca,
        headers: { 'Content-Type': 'application/json' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          const parsed = JSON.parse(body) as { status?: { allowed?: boolean } };
          if (res.statusCode !== 200 || parsed.status?.allowed !== true) {
            reject(new Error(`the verifier did not admit the fixture image: ${body}`));
          } else resolve(body);
        });
      },
    );
    req.on('error', reject);
    req.end(REVIEW);
  });
}

if (values.serve !== undefined) {
  await serveChild(values.serve, values.dir ?? '.');
} else {
  await main();
}
