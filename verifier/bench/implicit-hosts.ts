/**
 * Benchmark (not a test): what N pods naming N distinct, unconfigured `host:port` registries leave
 * behind in one verifier process — the notary clients still open, the metric lines `/metrics`
 * serves, and RSS. Every host is a distinct loopback address (127.0.a.b) on port 1, so each fetch
 * is refused at once and nothing outside the machine is asked (up to 65,000 hosts).
 *
 *   npm run build && node --expose-gc verifier/dist/bench/implicit-hosts.js [--hosts 6000]
 *
 * Output: one JSON line.
 */
import { parseArgs } from 'node:util';
import { ImagePolicyEngine } from '../src/policy/engine.js';
import { parseConfig } from '../src/config/parse.js';
import { DecisionLog, combineObservers, createJsonLogger } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import { httpFetcherFactory, type FetcherFactory } from '../src/trust/notary-clients.js';

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '6000' },
    concurrency: { type: 'string', default: '50' },
  },
});
const hosts = Number(values.hosts);
const concurrency = Number(values.concurrency);

const gc = (globalThis as { gc?: () => void }).gc;
const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
const memory = (): { rssMiB: number; heapMiB: number } => {
  gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  return { rssMiB: mib(rss), heapMiB: mib(heapUsed) };
};

let created = 0;
let closed = 0;
const counting: FetcherFactory = (endpoint) => {
  created += 1;
  const client = httpFetcherFactory(endpoint);
  return {
    fetchMetadata: (...args) => client.fetchMetadata(...args),
    close: () => {
      closed += 1;
      client.close?.();
    },
  };
};

const config = parseConfig(
  `listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }
rules:
  - images: "**"
    trust: { rootKeys: ["${'a'.repeat(64)}"] }
`,
  '/etc/kpack-trust',
  () => '',
);
const metrics = new VerifierMetrics();
const log = new DecisionLog(createJsonLogger({ write: () => undefined }));
const engine = new ImagePolicyEngine({
  config,
  fetcherFor: counting,
  observer: combineObservers(metrics, log),
});

const metricLines = async (): Promise<number> =>
  (await metrics.exposition()).body.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
    .length;

const before = { ...memory(), metricLines: await metricLines() };
const started = performance.now();
let next = 0;
const reasons = new Set<string>();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < hosts) {
      const i = next++;
      const host = `127.0.${Math.floor(i / 254)}.${(i % 254) + 1}:1`;
      const status = await engine.review({
        containers: [{ image: `${host}/team/app:v1` }],
        annotations: {},
        namespace: 'default',
      });
      if (status.allowed) throw new Error(`${host} was admitted`);
      reasons.add((status.reason ?? '').replaceAll(host, 'HOST'));
    }
  }),
);
const after = { ...memory(), metricLines: await metricLines() };
process.stdout.write(
  `${JSON.stringify({
    hosts,
    seconds: Math.round(performance.now() - started) / 1000,
    clientsCreated: created,
    clientsOpen: created - closed,
    metricLines: after.metricLines,
    metricLinesBefore: before.metricLines,
    rssMiBBefore: before.rssMiB,
    rssMiBAfter: after.rssMiB,
    heapMiBBefore: before.heapMiB,
    heapMiBAfter: after.heapMiB,
    distinctReasons: [...reasons].slice(0, 5),
  })}\n`,
);
await engine.close();
