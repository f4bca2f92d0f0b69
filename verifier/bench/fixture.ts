/**
 * What the verifier benchmarks serve: the real engine, app and HTTPS listener over an in-memory
 * notary repository (a FixtureRepository behind a MemoryFetcher), or a bare Node https server that
 * answers a constant ImageReview — the baseline the verifier is compared with.
 */
import { openSync, writeSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FixtureRepository,
  MemoryFetcher,
  createTestCa,
  fakeManifest,
} from '@kpack-trust/common/testing';
import { imageTarget, type MetadataFetcher } from '@kpack-trust/common';
import { loadConfig } from '../src/config/load.js';
import { createApp } from '../src/http/app.js';
import { createLogSink } from '../src/http/log-sink.js';
import { DecisionLog, combineObservers, createJsonLogger } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import { ImagePolicyEngine } from '../src/policy/engine.js';
import { listenHttps, type HttpsListener } from '../src/server.js';

/** The registry and repository the benchmarks verify. */
export const REGISTRY = '127.0.0.1:5000';
export const GUN = `${REGISTRY}/demo/app`;
export const IMAGE = `${GUN}:v1`;

/**
 * A fresh directory with the verifier's serving certificate (tls.crt, tls.key: P-256, SAN 127.0.0.1
 * and localhost) and the PEM of the throw-away CA that issued it, for the load generator to trust.
 */
export async function benchTls(): Promise<{
  dir: string;
  cert: string;
  key: string;
  caPem: string;
}> {
  const dir = await mkdtemp(join(tmpdir(), 'verifier-bench-'));
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  const ca = createTestCa({ commonName: 'verifier bench CA' });
  const leaf = ca.issue({ commonName: 'localhost' });
  await Promise.all([
    writeFile(cert, leaf.certPem),
    writeFile(key, leaf.keyPem, { mode: 0o600 }),
    // For a benchmark's child process that talks to the servers it starts.
    writeFile(join(dir, 'ca.crt'), ca.certPem),
  ]);
  return { dir, cert, key, caPem: ca.certPem };
}

/** A signed repository: `tags` tags in `targets`, each for its own fake manifest digest. */
export async function signedRepository(gun: string, tags = 1): Promise<FixtureRepository> {
  const repo = await FixtureRepository.create(gun, new Date());
  await repo.changeTargets('targets', {
    set: new Map(
      Array.from({ length: tags }, (_, i) => {
        const manifest = fakeManifest(`${gun}:v${i + 1}`);
        return [`v${i + 1}`, imageTarget(manifest.digestHex, manifest.length)] as const;
      }),
    ),
  });
  return repo;
}

/** Writes a verifier config pinning `rootKeyId` for `127.0.0.1:5000/demo/*`; returns its path. */
export async function writeBenchConfig(
  dir: string,
  rootKeyId: string,
  extra = '',
): Promise<string> {
  const path = join(dir, 'verifier.yaml');
  await writeFile(
    path,
    [
      'listen: { port: 8443, host: 127.0.0.1, tls: { cert: tls.crt, key: tls.key } }',
      'notary:',
      `  - { registry: "${REGISTRY}", server: "https://127.0.0.1:4443" }`,
      'cache: { ttlSeconds: 3600, maxRepositories: 20000 }',
      'rules:',
      `  - images: "${REGISTRY}/demo/*"`,
      `    trust: { rootKeys: ["${rootKeyId}"] }`,
      extra,
      '',
    ].join('\n'),
  );
  return path;
}

/**
 * Where the benchmarked verifier's log lines go: `stdout` as `serve` writes them (pino's
 * asynchronous destination on fd 1, which the benchmark points at a file), `stdout-sync` as the
 * verifier wrote them before (one synchronous write per line), `devnull` synchronously to /dev/null.
 */
export type BenchLogSink = 'stdout' | 'stdout-sync' | 'devnull';

/** The verifier as `serve` runs it (engine, metrics, one log line per decision), over `fetcher`. */
export async function startVerifier(
  configPath: string,
  fetcher: MetadataFetcher,
  log: BenchLogSink = 'devnull',
): Promise<{ listener: HttpsListener; engine: ImagePolicyEngine }> {
  const config = await loadConfig(configPath);
  let logger;
  if (log === 'stdout') {
    logger = createJsonLogger({ sink: createLogSink(1) });
  } else {
    const fd = log === 'devnull' ? openSync('/dev/null', 'w') : 1;
    logger = createJsonLogger({ write: (line) => void writeSync(fd, `${line}\n`) });
  }
  const metrics = new VerifierMetrics();
  const engine = new ImagePolicyEngine({
    config,
    fetcherFor: () => fetcher,
    observer: combineObservers(metrics, new DecisionLog(logger)),
  });
  const listener = await listenHttps({
    handler: createApp({ reviewer: engine, metrics, logger }),
    port: 0,
    host: '127.0.0.1',
    tls: config.listen.tls,
    logger,
    metrics,
  });
  return { listener, engine };
}

/**
 * The baseline: reads the body, answers `reply` — no parsing, no policy, no logging. Given a
 * function instead, answers what it makes of the request's path and whole body (a ceiling that
 * does only the work every implementation must).
 */
export async function startBareServer(
  tls: { cert: string; key: string },
  reply: string | ((path: string, body: Buffer) => Buffer),
): Promise<{ port: number; close(): Promise<void> }> {
  const { readFile } = await import('node:fs/promises');
  const constant = typeof reply === 'string' ? Buffer.from(reply) : undefined;
  const server = createServer(
    {
      cert: await readFile(tls.cert),
      key: await readFile(tls.key),
      keepAliveTimeout: 120_000,
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => {
        if (constant === undefined) chunks.push(chunk);
      });
      req.on('end', () => {
        const body =
          constant ??
          (reply as (path: string, body: Buffer) => Buffer)(req.url ?? '/', Buffer.concat(chunks));
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
        res.end(body);
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('no address');
  return {
    port: address.port,
    close: () =>
      new Promise((resolve) =>
        server.close(() => {
          resolve();
        }),
      ),
  };
}

/** A fetcher over one in-memory repository. */
export function memoryFetcher(...repos: FixtureRepository[]): MemoryFetcher {
  return new MemoryFetcher(...repos);
}
