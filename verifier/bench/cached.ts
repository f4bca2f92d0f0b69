/**
 * Benchmark (not a test): cached ImageReview decisions over HTTPS keep-alive, side by side with a
 * bare Node https server that answers a constant ImageReview, in one run on one machine.
 *
 *   npm run build && npm run bench:verifier
 *   node verifier/dist/bench/cached.js [--seconds 5] [--connections 16] [--rate 1000] [--rounds 3]
 *     [--load both|node|wrk] [--log stdout|stdout-sync]
 *     [--server-cpus 1]        (e.g. under `taskset -c 0`: load generator and servers apart)
 *
 * Each server runs in its own child process whose stdout is a file, as a verifier's stdout is when
 * a container runtime captures it. The load comes from this process over raw TLS sockets
 * (bench/load.ts) and from wrk (`wrk -t1 -c16`, Debian's `wrk`, installed here when missing and
 * running as root), an independent load generator. The verifier is the real stack — app and HTTPS
 * listener, ImagePolicyEngine with a warm trust cache over an in-memory notary repository,
 * metrics, one JSON log line per decision written as `serve` writes it (`--log stdout`: pino's
 * asynchronous destination; `--log stdout-sync`: one synchronous write per line, as before). Each
 * round measures both servers (alternating which goes first): the closed-loop maximum from each
 * load generator (req/s, p50/p99 latency, server CPU per request), then the latency at a fixed
 * rate. Output: JSON lines — the environment, one line per server, load generator and round, then
 * the medians over the rounds against the goals (≥ 60 % of the bare server's req/s, by each load
 * generator; p99 < 5 ms at 1,000 reviews/s).
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
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
  type BenchLogSink,
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
    load: { type: 'string', default: 'both' },
    log: { type: 'string', default: 'stdout' },
  },
});

const LOAD = values.load;
if (LOAD !== 'both' && LOAD !== 'node' && LOAD !== 'wrk') {
  throw new Error(`--load must be both, node or wrk, not "${LOAD}"`);
}
const LOG = values.log;
if (LOG !== 'stdout' && LOG !== 'stdout-sync') {
  throw new Error(`--log must be stdout or stdout-sync, not "${LOG}"`);
}
const LOG_SINK: BenchLogSink = LOG;

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
const round3 = (value: number): number => round(value, 3);

// ---- child: one server ----
async function serveChild(kind: string, dir: string): Promise<void> {
  let port: number;
  if (kind === 'verifier') {
    const repo = await signedRepository(GUN);
    const config = await writeBenchConfig(dir, repo.rootKeys[0]?.publicKey.id ?? '');
    const { listener, engine } = await startVerifier(config, memoryFetcher(repo), LOG_SINK);
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
function startChild(
  args: readonly string[],
  stdoutFd: number,
): Promise<{ child: ChildProcess; port: number }> {
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
    stdio: ['ignore', stdoutFd, 'inherit', 'ipc'],
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
    load: 'node',
    round,
    connections: options.connections,
    ...summary(max),
    serverCpuMicrosPerRequest: round1(cpuMicrosPerRequest),
    loadAverage1m: Number((loadavg()[0] ?? 0).toFixed(2)),
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

/** wrk on PATH; installed from Debian when missing and running as root, else a clear refusal. */
function ensureWrk(): void {
  const found = (): boolean => {
    try {
      execFileSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (found()) return;
  const command = 'apt-get update && apt-get install -y wrk';
  if (process.getuid?.() !== 0) {
    throw new Error(
      `wrk is missing: install it with sudo sh -c '${command}', or run with --load node`,
    );
  }
  process.stderr.write(`wrk is missing; installing the Debian package: ${command}\n`);
  execFileSync('sh', ['-c', command], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (!found()) throw new Error('wrk is still missing after apt-get install');
}

/** The files wrk reads: the review body, and a Lua script that makes every request a POST of it. */
async function writeWrkScript(dir: string): Promise<string> {
  const body = `${dir}/review.json`;
  const script = `${dir}/review.lua`;
  await writeFile(body, REVIEW);
  await writeFile(
    script,
    [
      'wrk.method = "POST"',
      'wrk.headers["Content-Type"] = "application/json"',
      `local file = assert(io.open(${JSON.stringify(body)}, "rb"))`,
      'wrk.body = file:read("*a")',
      'file:close()',
      '',
    ].join('\n'),
  );
  return script;
}

function runWrk(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve(output);
      else reject(new Error(`wrk exited with ${String(code)}: ${output}`));
    });
  });
}

/** A wrk latency such as `513.00us`, `1.23ms` or `1.01s`, in milliseconds. */
function wrkMillis(text: string | undefined): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text ?? '');
  if (match === null) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

/** Closed loop from wrk (`-t1 -c<connections>`, keep-alive): req/s, latency, server CPU per request. */
async function wrkRound(
  server: Server,
  script: string,
  options: { seconds: number; connections: number },
  round: number,
): Promise<{ reqPerSec: number; cpuMicrosPerRequest: number }> {
  const before = await cpuOf(server.child);
  const output = await runWrk([
    '-t1',
    `-c${String(options.connections)}`,
    `-d${String(options.seconds)}s`,
    '--latency',
    '-s',
    script,
    `https://127.0.0.1:${String(server.port)}/`,
  ]);
  const after = await cpuOf(server.child);
  const requests = Number(/(\d+) requests in /.exec(output)?.[1] ?? Number.NaN);
  const reqPerSec = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? Number.NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
    .exec(output)
    ?.slice(1)
    .reduce((sum, n) => sum + Number(n), 0);
  const latency = (p: number): number =>
    round3(wrkMillis(new RegExp(`^\\s+${String(p)}%\\s+(\\S+)`, 'm').exec(output)?.[1]));
  const cpuMicros = after.user - before.user + (after.system - before.system);
  const cpuMicrosPerRequest = cpuMicros / Math.max(1, requests);
  if (!Number.isFinite(reqPerSec)) throw new Error(`cannot read wrk's output: ${output}`);
  emit({
    bench: 'cached-review',
    server: server.name,
    mode: 'max',
    load: 'wrk',
    round,
    connections: options.connections,
    requests,
    errors: non2xx + (socketErrors ?? 0),
    reqPerSec: round1(reqPerSec),
    p50Ms: latency(50),
    p99Ms: latency(99),
    serverCpuMicrosPerRequest: round1(cpuMicrosPerRequest),
    loadAverage1m: Number((loadavg()[0] ?? 0).toFixed(2)),
  });
  return { reqPerSec, cpuMicrosPerRequest };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

interface RoundFigures {
  readonly reqPerSec: number;
  readonly cpuMicrosPerRequest: number;
}

/** The medians over the rounds of one load generator, and the verifier's share of the bare server. */
function comparison(
  verifierRounds: readonly RoundFigures[],
  bareRounds: readonly RoundFigures[],
): Record<string, unknown> {
  const med = (rows: readonly RoundFigures[], key: keyof RoundFigures): number =>
    median(rows.map((row) => row[key]));
  const share = med(verifierRounds, 'reqPerSec') / med(bareRounds, 'reqPerSec');
  const perRound = verifierRounds.map(
    (row, i) => row.reqPerSec / (bareRounds[i]?.reqPerSec ?? Number.NaN),
  );
  return {
    verifierReqPerSecMedian: round1(med(verifierRounds, 'reqPerSec')),
    bareReqPerSecMedian: round1(med(bareRounds, 'reqPerSec')),
    verifierShareOfBare: round(share),
    verifierShareOfBarePerRound: perRound.map((value) => round(value)),
    verifierShareOfBareMedianOfRounds: round(median(perRound)),
    verifierCpuMicrosPerRequestMedian: round1(med(verifierRounds, 'cpuMicrosPerRequest')),
    bareCpuMicrosPerRequestMedian: round1(med(bareRounds, 'cpuMicrosPerRequest')),
    goalShare: 0.6,
    meetsShareGoal: share >= 0.6,
  };
}

async function main(): Promise<void> {
  const options = {
    seconds: Number(values.seconds),
    connections: Number(values.connections),
    rate: Number(values.rate),
    rounds: Number(values.rounds),
  };
  const loaders = LOAD === 'both' ? (['node', 'wrk'] as const) : ([LOAD] as const);
  if (LOAD !== 'node') ensureWrk();
  const cpu = cpus();
  emit({
    bench: 'environment',
    node: process.version,
    cpus: cpu.length,
    cpuModel: cpu[0]?.model ?? 'unknown',
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    loadAverage: loadavg().map((l) => round(l, 2)),
    ...options,
    load: LOAD,
    log: LOG,
    serverCpus: values['server-cpus'] ?? 'any',
  });
  const tls = await benchTls();
  const ca = tls.caPem;
  const script = await writeWrkScript(tls.dir);
  // The servers' stdout: a file, as a container runtime's log capture is.
  const logFile = `${tls.dir}/stdout.log`;
  const logFd = openSync(logFile, 'a');
  const children: ChildProcess[] = [];
  try {
    const verifierChild = await startChild(
      ['--serve', 'verifier', '--dir', tls.dir, '--log', LOG],
      logFd,
    );
    children.push(verifierChild.child);
    // The bare server answers exactly what the verifier answers, byte for byte.
    const sample = await closedLoopSample(verifierChild.port, ca);
    const bareChild = await startChild(
      ['--serve', 'bare', '--dir', tls.dir, '--reply', sample],
      logFd,
    );
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
    const maxima = new Map<string, RoundFigures[]>();
    const latencies = new Map<Server, { p50Ms: number; p99Ms: number }[]>([
      [verifier, []],
      [bare, []],
    ]);
    for (let r = 1; r <= options.rounds; r += 1) {
      const order = r % 2 === 1 ? [verifier, bare] : [bare, verifier];
      for (const loader of loaders) {
        for (const server of order) {
          const figures =
            loader === 'wrk'
              ? await wrkRound(server, script, options, r)
              : await maxRound(server, ca, options, r);
          const key = `${loader}/${server.name}`;
          maxima.set(key, [...(maxima.get(key) ?? []), figures]);
        }
      }
      for (const server of order)
        latencies.get(server)?.push(await fixedRound(server, ca, options, r));
    }
    const p99 = median((latencies.get(verifier) ?? []).map((row) => row.p99Ms));
    const logBytes = statSync(logFile).size;
    emit({
      bench: 'cached-review',
      result: 'comparison',
      rounds: options.rounds,
      log: LOG,
      logFileMiB: round1(logBytes / 2 ** 20),
      ...Object.fromEntries(
        loaders.map((loader) => [
          loader,
          comparison(
            maxima.get(`${loader}/verifier`) ?? [],
            maxima.get(`${loader}/bare-https`) ?? [],
          ),
        ]),
      ),
      verifierP50MsAtRateMedian: round(
        median((latencies.get(verifier) ?? []).map((row) => row.p50Ms)),
      ),
      verifierP99MsAtRateMedian: round(p99),
      bareP99MsAtRateMedian: round(median((latencies.get(bare) ?? []).map((row) => row.p99Ms))),
      goalP99Ms: 5,
      meetsLatencyGoal: p99 < 5,
      loadAverage: loadavg().map((l) => round(l, 2)),
    });
  } finally {
    // Disconnecting lets each child exit on its own, which is when --cpu-prof writes its profile
    // (a signal would lose it); a child that does not go within 5 s is killed.
    await Promise.all(children.map(stopChild));
    closeSync(logFd);
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
