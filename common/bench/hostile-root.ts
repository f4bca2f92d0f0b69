/**
 * Benchmark (not a test): the CPU time of one decision on the hostile root.json of issue 11 — just
 * under 1 MiB, junk CA certificates behind the root key's leaf, junk keys, version 1000 with the 64
 * older versions served as well, all signed by the attacker's key — against a verifier that pins a
 * CA (the junk CAs carry its name). The decision must be a denial, in well under a second of CPU.
 *
 *   npm run build && npm run bench:hostile-root [-- --bytes 1044480 --junk-cas 600 --older 64
 *     --root-keys 1 --junk-keys N --junk-cas-named-like-pin 1]
 *
 * The default is the file of issue 11. Within this client's limits, the costliest variant keeps
 * every root key and bundle under its cap and pads the rest, so that the search back through
 * older roots runs: `-- --root-keys 60 --junk-cas 9 --junk-keys 0 --junk-cas-named-like-pin 0`.
 */
import { cpus } from 'node:os';
import { isTrustError, TrustError } from '../src/errors.js';
import type { MetadataFetcher, MetadataRequest } from '../src/notary/remote.js';
import { buildHostileRoot } from '../src/testing/hostile-root.js';
import { compileAnchor } from '../src/verify/anchor.js';
import { updateCollection } from '../src/verify/updater.js';
import { newWorkMeter } from '../src/work.js';

const arg = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const now = new Date();
const gun = 'evil.example.com/team/app';
const built = Date.now();
const hostile = buildHostileRoot({
  gun,
  now,
  bytes: arg('--bytes', (1 << 20) - 4096),
  junkCas: arg('--junk-cas', 600),
  olderVersions: arg('--older', 64),
  rootKeys: arg('--root-keys', 1),
  junkCasNamedLikePin: arg('--junk-cas-named-like-pin', 1) === 1,
  ...(process.argv.includes('--junk-keys') ? { junkKeys: arg('--junk-keys', 0) } : {}),
});
const buildSeconds = (Date.now() - built) / 1000;

const fetcher: MetadataFetcher = {
  fetchMetadata(fetchGun: string, request: MetadataRequest): Promise<Uint8Array> {
    const file =
      request.version === undefined ? `${request.role}.json` : `${request.version}.root.json`;
    const bytes = fetchGun === gun ? hostile.files.get(file) : undefined;
    if (bytes === undefined || bytes.byteLength > request.maxBytes) {
      const url = `memory://${fetchGun}/${file}`;
      return Promise.reject(
        new TrustError('HTTP_STATUS', { url, status: 404, serverCode: 'NOT_FOUND' }, url),
      );
    }
    return Promise.resolve(bytes);
  },
};

const anchor = compileAnchor({ caPem: [hostile.pinnedCaPem] }, gun);
const work = newWorkMeter();
const cpu = process.cpuUsage();
const started = process.hrtime.bigint();
let outcome: string;
try {
  await updateCollection(fetcher, gun, { anchor, now, work });
  outcome = 'ACCEPTED';
} catch (err) {
  outcome = isTrustError(err) ? err.code : `INTERNAL: ${String(err)}`;
}
const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
const used = process.cpuUsage(cpu);
console.log(
  JSON.stringify({
    benchmark: 'hostile-root',
    rootBytes: hostile.files.get('root.json')?.byteLength,
    version: hostile.version,
    olderVersionsServed: hostile.files.size - 1,
    outcome,
    cpuMs: Math.round((used.user + used.system) / 1000),
    wallMs: Math.round(wallMs),
    work,
    buildSeconds,
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown CPU',
  }),
);
