/**
 * Micro-benchmark (not a test): full verification of a typical Notary v1 chain — root (certificate
 * key, pinned by id) → timestamp → snapshot → targets (50 tags) → targets/releases (50 tags) — from
 * bytes in memory, so it measures the trust core alone: parsing, canonical JSON, hashes, ECDSA.
 *
 *   npm run build && npm run bench:verify [-- --seconds 5]
 */
import { compileAnchor } from '../src/verify/anchor.js';
import { resolveTarget } from '../src/verify/resolve.js';
import { updateCollection } from '../src/verify/updater.js';
import { FixtureRepository, MemoryFetcher, fakeManifest } from '../src/testing/index.js';
import { imageTarget } from '../src/repository/edit.js';
import { cpus } from 'node:os';

const secondsArg = process.argv.indexOf('--seconds');
const seconds = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 3;
const now = new Date();
const gun = 'registry.example.com/team/app';

const repo = await FixtureRepository.create(gun, now);
const tags = (prefix: string): Map<string, ReturnType<typeof imageTarget>> =>
  new Map(
    Array.from({ length: 50 }, (_, i) => {
      const m = fakeManifest(`${prefix}${i}`);
      return [`${prefix}${i}`, imageTarget(m.digestHex, m.length)];
    }),
  );
await repo.changeTargets('targets', { set: tags('build-') });
await repo.addDelegation('targets/releases');
await repo.changeTargets('targets/releases', { set: tags('v1.') });

const fetcher = new MemoryFetcher(repo);
const anchor = compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }, gun);

// Warm up the JIT before measuring.
for (let i = 0; i < 50; i++) await updateCollection(fetcher, gun, { anchor, now });

let count = 0;
const started = process.hrtime.bigint();
const deadline = started + BigInt(Math.round(seconds * 1e9));
while (process.hrtime.bigint() < deadline) {
  const c = await updateCollection(fetcher, gun, { anchor, now });
  resolveTarget(c, 'v1.7');
  count++;
}
const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(
  JSON.stringify({
    benchmark: 'verify-chain',
    chain: 'root(x509, pinned) → timestamp → snapshot → targets(50) → targets/releases(50)',
    verifications: count,
    seconds: Number(elapsed.toFixed(2)),
    verificationsPerSecond: Math.round(count / elapsed),
    meanMs: Number(((elapsed * 1000) / count).toFixed(3)),
    node: process.version,
    cpu,
  }),
);
