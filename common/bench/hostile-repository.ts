/**
 * Benchmark (not a test): one update of a hostile repository whose root IS trusted (a `tofu` rule,
 * or a tenant holding its own GUN's targets and snapshot keys under a shared pin). targets
 * delegates to `--roles` roles; each lists `--keys` junk x509 keys of `--certs` certificates in its
 * own delegations.keys and signs `--targets` junk targets. Prints the decision, CPU, wall time and
 * the longest the event loop was blocked (the longest gap between ticks of a 1 ms timer): what
 * every other review and /healthz would have waited.
 *
 *   npm run build && node common/dist/bench/hostile-repository.js [-- --roles 8 --keys 1024
 *     --certs 10 --targets 0 --top-keys 0]
 *
 * `--top-keys N` lists N junk keys in targets itself instead (one role's parse, the longest single
 * block the collection-wide key cap allows).
 */
import { cpus } from 'node:os';
import type { JsonValue } from '../src/canonical/json.js';
import { isTrustError } from '../src/errors.js';
import { createRootCertificate } from '../src/keys/root-certificate.js';
import { generateSigningKey } from '../src/keys/signer.js';
import { keyIdOf } from '../src/keys/public-key.js';
import { FixtureRepository, MemoryFetcher, fakeManifest } from '../src/testing/index.js';
import { compileAnchor } from '../src/verify/anchor.js';
import { updateCollection } from '../src/verify/updater.js';
import { newWorkMeter } from '../src/work.js';

const arg = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const roles = arg('--roles', 8);
const keysPerRole = arg('--keys', 1024);
const certs = arg('--certs', 10);
const targetsPerRole = arg('--targets', 0);
const topKeys = arg('--top-keys', 0);
const now = new Date();
const gun = 'tenant.example.com/team/app';
const built = Date.now();

// Distinct bundles from a few certificates: bundle i is certificate digits of i in base POOL.
const POOL = 48;
const pems: string[] = [];
for (let i = 0; i < POOL; i++) {
  pems.push(await createRootCertificate(`junk-${i}`, generateSigningKey('ecdsa')));
}
let nextBundle = 0;
const junkKeys = (count: number): Record<string, JsonValue> => {
  const keys: Record<string, JsonValue> = {};
  for (let k = 0; k < count; k++) {
    let n = nextBundle++;
    const parts: string[] = [];
    for (let c = 0; c < certs; c++) {
      parts.push(pems[n % POOL] as string);
      n = Math.floor(n / POOL);
    }
    const json = {
      keytype: 'ecdsa-x509',
      keyval: { public: Buffer.from(parts.join(''), 'utf8').toString('base64'), private: null },
    };
    keys[keyIdOf(json)] = json;
  }
  return keys;
};
const junkTargets = (role: number): Record<string, JsonValue> => {
  const targets: Record<string, JsonValue> = {};
  for (let t = 0; t < targetsPerRole; t++) {
    const m = fakeManifest(`${role}-${t}`);
    targets[`tag-${t}`] = {
      length: m.length,
      hashes: { sha256: Buffer.from(m.digestHex, 'hex').toString('base64') },
    };
  }
  return targets;
};

const repo = await FixtureRepository.create(gun, now);
const signerKey = (await repo.addDelegation('targets/r0'))[0];
if (signerKey === undefined) throw new Error('no delegation key');
for (let r = 1; r < roles; r++) await repo.addDelegation(`targets/r${r}`, { keys: [signerKey] });
const overrides: Record<
  string,
  { signed: (s: Record<string, JsonValue>) => Record<string, JsonValue> }
> = {};
const names = Array.from({ length: roles }, (_, r) => `targets/r${r}`);
for (const [r, name] of names.entries()) {
  overrides[name] = {
    signed: (s) => ({
      ...s,
      targets: junkTargets(r),
      delegations: { keys: junkKeys(keysPerRole), roles: [] },
    }),
  };
}
if (topKeys > 0) {
  overrides['targets'] = {
    signed: (s) => {
      const delegations = s['delegations'] as { keys: Record<string, JsonValue> };
      Object.assign(delegations.keys, junkKeys(topKeys));
      return s;
    },
  };
}
await repo.publish(topKeys > 0 ? ['targets', ...names] : names, overrides);
const served = [...repo.files.values()].reduce((sum, b) => sum + b.byteLength, 0);
const buildSeconds = (Date.now() - built) / 1000;

const anchor = compileAnchor({ rootKeyIds: repo.rootKeys.map((k) => k.publicKey.id) }, gun);
const work = newWorkMeter();
// A 1 ms interval timer: the longest gap between its ticks is the longest the loop was blocked.
let longestGapNs = 0n;
let lastTick = process.hrtime.bigint();
const probe = setInterval(() => {
  const tick = process.hrtime.bigint();
  if (tick - lastTick > longestGapNs) longestGapNs = tick - lastTick;
  lastTick = tick;
}, 1);
const cpu = process.cpuUsage();
const started = process.hrtime.bigint();
let outcome: string;
try {
  const collection = await updateCollection(new MemoryFetcher(repo), gun, {
    anchor,
    now,
    work,
    invalidDelegations: 'record',
  });
  outcome = `ACCEPTED (${collection.targetsRoles.size} roles)`;
} catch (err) {
  outcome = isTrustError(err) ? `${err.code}: ${err.message}` : `INTERNAL: ${String(err)}`;
}
const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
const used = process.cpuUsage(cpu);
// One more timer turn, so that a block lasting until the end is recorded too.
await new Promise((resolve) => setTimeout(resolve, 5));
clearInterval(probe);
console.log(
  JSON.stringify({
    benchmark: 'hostile-repository',
    roles,
    keysPerRole,
    certsPerKey: certs,
    targetsPerRole,
    topKeys,
    servedMiB: Math.round((served / (1 << 20)) * 10) / 10,
    outcome,
    cpuMs: Math.round((used.user + used.system) / 1000),
    wallMs: Math.round(wallMs),
    longestBlockMs: Math.round(Number(longestGapNs) / 1e6),
    work,
    buildSeconds,
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown CPU',
  }),
);
