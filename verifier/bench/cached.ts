/**
 * Benchmark (not a test): cached ImageReview decisions over HTTPS keep-alive, side by side with a
 * bare Node https server that answers a constant ImageReview, in one run on one machine.
 *
 *   npm run build && npm run bench:verifier
 *   node verifier/dist/bench/cached.js [--seconds 5] [--connections 16] [--rate 1000] [--rounds 3]
 *     [--server-cpus 1]        (e.g. under `taskset -c 0`: load generator and servers apart)
 *
 * Each server runs in its own child process; this process drives the load over raw TLS sockets
 * (bench/load.ts). The verifier is the real stack — app and HTTPS listener, ImagePolicyEngine with
 * a warm trust cache over an in-memory notary repository, metrics, one JSON log line per decision
 * (to /dev/null). Each round measures both servers (alternating which goes first): the closed-loop
 * maximum (req/s, p50/p99 latency, server CPU per request), then the latency at a fixed rate.
 * Output: JSON lines — the environment, one line per server and round, then the medians over the
 * rounds against the goals (≥ 60 % of the bare server's req/s; p99 < 5 ms at 1,000 reviews/s).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
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
    rounds: { type: 'string', default: '3' },
    'server-cpus': { type: 'string' },
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
const round1 = (value: number): number => round(value, 1);

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
  // BENCH_PROFILE_DIR=dir writes a V8 CPU profile of each server process there.
  const nodeArgs = [
    ...process.execArgv,
    ...(profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
  ];
  // --server-cpus LIST runs the servers under `taskset -c LIST` (Linux), so that on a small
  // machine the scheduler cannot put a server on the load generator's CPU.
  const cpuList = values['server-cpus'];
  const child = fork(fileURLToPath(import.meta.url), [...args], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    ...(cpuList === undefined
      ? { execArgv: nodeArgs }
      : { execPath: 'taskset', execArgv: ['-c', cpuList, process.execPath, ...nodeArgs] }),
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

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill(), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.connected) child.disconnect();
    else child.kill();
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

interface Server {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
}

/** Closed loop at full load: req/s, latency, and the server's CPU per request. */
async function maxRound(
  server: Server,
  ca: string,
  options: { seconds: number; connections: number },
  round: number,
): Promise<{ reqPerSec: number; cpuMicrosPerRequest: number }> {
  const target = { port: server.port, ca, request: jsonPost('/', REVIEW) };
  const before = await cpuOf(server.child);
  const max = await closedLoop(target, options);
  const after = await cpuOf(server.child);
  const cpuMicros = after.user - before.user + (after.system - before.system);
  const cpuMicrosPerRequest = cpuMicros / Math.max(1, max.requests);
  emit({
    bench: 'cached-review',
    server: server.name,
    mode: 'max',
    round,
    connections: options.connections,
    ...summary(max),
    serverCpuMicrosPerRequest: round1(cpuMicrosPerRequest),
  });
  return { reqPerSec: rate(max), cpuMicrosPerRequest };
}

/** Open loop at a fixed rate: latency percentiles. */
async function fixedRound(
  server: Server,
  ca: string,
  options: { seconds: number; connections: number; rate: number },
  round: number,
): Promise<{ p50Ms: number; p99Ms: number }> {
  const target = { port: server.port, ca, request: jsonPost('/', REVIEW) };
  const fixed = await fixedRate(target, {
    rate: options.rate,
    seconds: options.seconds,
    connections: Math.max(options.connections, 32),
  });
  emit({
    bench: 'cached-review',
    server: server.name,
    mode: 'fixed-rate',
    round,
    rate: options.rate,
    ...summary(fixed),
  });
  return {
    p50Ms: percentile(fixed.latenciesMs, 50),
    p99Ms: percentile(fixed.latenciesMs, 99),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const options = {
    seconds: Number(values.seconds),
    connections: Number(values.connections),
    rate: Number(values.rate),
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
    serverCpus: values['server-cpus'] ?? 'any',
  });
  const tls = await benchTls();
  const ca = tls.caPem;
  const children: ChildProcess[] = [];
  try {
    const verifierChild = await startChild(['--serve', 'verifier', '--dir', tls.dir]);
    children.push(verifierChild.child);
    // The bare server answers exactly what the verifier answers, byte for byte.
    const sample = await closedLoopSample(verifierChild.port, ca);
    const bareChild = await startChild(['--serve', 'bare', '--dir', tls.dir, '--reply', sample]);
    children.push(bareChild.child);
    const verifier: Server = { name: 'verifier', ...verifierChild };
    const bare: Server = { name: 'bare-https', ...bareChild };

    for (const server of [verifier, bare]) {
      // JIT warm-up, not measured.
      await closedLoop(
        { port: server.port, ca, request: jsonPost('/', REVIEW) },
        { connections: options.connections, seconds: 1 },
      );
    }
    // Rounds alternate which server goes first, so a burst of load from elsewhere on the machine
    // hits both alike; the medians are the result.
    const v: { reqPerSec: number; cpuMicrosPerRequest: number; p50Ms: number; p99Ms: number }[] =
      [];
    const b: typeof v = [];
    for (let r = 1; r <= options.rounds; r += 1) {
      const order = r % 2 === 1 ? [verifier, bare] : [bare, verifier];
      const max = new Map<Server, { reqPerSec: number; cpuMicrosPerRequest: number }>();
      for (const server of order) max.set(server, await maxRound(server, ca, options, r));
      const fixed = new Map<Server, { p50Ms: number; p99Ms: number }>();
      for (const server of order) fixed.set(server, await fixedRound(server, ca, options, r));
      for (const [server, into] of [
        [verifier, v],
        [bare, b],
      ] as const) {
        const m = max.get(server);
        const f = fixed.get(server);
        if (m !== undefined && f !== undefined) into.push({ ...m, ...f });
      }
    }
    const med = (rows: typeof v, key: keyof (typeof v)[number]): number =>
      median(rows.map((row) => row[key]));
    const share = med(v, 'reqPerSec') / med(b, 'reqPerSec');
    const p99 = med(v, 'p99Ms');
    emit({
      bench: 'cached-review',
      result: 'comparison',
      rounds: options.rounds,
      verifierReqPerSecMedian: round1(med(v, 'reqPerSec')),
      bareReqPerSecMedian: round1(med(b, 'reqPerSec')),
      verifierShareOfBare: round(share),
      verifierShareOfBarePerRound: v.map((row, i) =>
        round(row.reqPerSec / (b[i]?.reqPerSec ?? Number.NaN)),
      ),
      verifierCpuMicrosPerRequestMedian: round1(med(v, 'cpuMicrosPerRequest')),
      bareCpuMicrosPerRequestMedian: round1(med(b, 'cpuMicrosPerRequest')),
      goalShare: 0.6,
      meetsShareGoal: share >= 0.6,
      verifierP50MsAtRateMedian: round(med(v, 'p50Ms')),
      verifierP99MsAtRateMedian: round(p99),
      bareP99MsAtRateMedian: round(med(b, 'p99Ms')),
      goalP99Ms: 5,
      meetsLatencyGoal: p99 < 5,
    });
  } finally {
    // Disconnecting lets each child exit on its own, which is when --cpu-prof writes its profile
    // (a signal would lose it); a child that does not go within 5 s is killed.
    await Promise.all(children.map(stopChild));
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
