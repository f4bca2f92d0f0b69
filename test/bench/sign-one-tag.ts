/**
 * Benchmark (not a test): whole-process time to sign one tag into an existing repository with
 * `kpack-trust-signer`, beside `notary addhash` + `notary publish` doing the same, in one run against
 * the real loopback stack, as a build pod would: the CLI starts from a trust dir holding only the
 * targets key (no metadata cache; a fresh copy each run), ours from a keys dir and `--root-key-id`.
 * Neither asks the registry (the CLI never does, so ours runs with `--size --no-registry-check`;
 * another series shows the registry check's cost). `node -e 0` is timed in every run too: what the
 * signer adds is its time minus Node's own start-up, and the goal is that this is at most the
 * notary CLI's whole time (ratio ≤ 1.0). A floor is timed too: sign-floor.cts, the same exchange
 * and one signature from a one-file Node program that verifies nothing — what of that budget Node
 * alone spends before a signer does anything it must.
 *
 *   npm run build && node test/dist/bench/sign-one-tag.js [runs]     (default 15 runs each)
 *   SIGNER_MAIN=path/to/main.js …    times another build of the signer's entry point
 *
 * The signer is timed as its image runs it: the bundled entry point (signer/dist/bundle/main.js,
 * made afresh here by scripts/bundle-signer.mjs) under the
 * Node flags of the Dockerfile's signer ENTRYPOINT, and, as another series, the compiled modules as
 * tsc left them (signer/dist/src/main.js) under the same flags.
 *
 * Runs are paired: each run times every series back to back (in an order that rotates), and the
 * ratio is the median over the runs of (signer − node) / notary, so drift in the machine's load
 * hits both sides of each ratio alike. Prints one JSON object: medians in milliseconds per series,
 * the paired ratios, and the load average.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PublicKey, encodePrivateKeyPem, generateSigningKey } from '@kpack-trust/common';
import {
  DEFAULT_PASSPHRASE,
  lookup,
  pushImage,
  runBareNode,
  runNotary,
  signerImageEntrypoint,
  startStack,
  writeKeysDir,
} from '@kpack-trust/e2e';

const UNBUNDLED = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const BUNDLED = fileURLToPath(
  new URL('../bundle/main.js', import.meta.resolve('@kpack-trust/signer')),
);
// Always bundled afresh (under a second): an older bundle would time code that changed since in
// @kpack-trust/common, whose compiled files the signer's own main.js does not reflect.
if (process.env['SIGNER_MAIN'] === undefined) {
  const script = fileURLToPath(new URL('../../../scripts/bundle-signer.mjs', import.meta.url));
  execFileSync(process.execPath, [script], { stdio: ['ignore', 'ignore', 'inherit'] });
}
const MAIN = process.env['SIGNER_MAIN'] ?? BUNDLED;
/** The floor: the same exchange by a Node program that verifies nothing (sign-floor.cts). */
const FLOOR = fileURLToPath(new URL('sign-floor.cjs', import.meta.url));
const runs = Number(process.argv[2] ?? 15);
if (!Number.isSafeInteger(runs) || runs < 1)
  throw new Error(`runs must be a positive integer, got ${process.argv[2]}`);

const NODE_FLAGS = signerImageEntrypoint().nodeFlags;

// BENCH_PROFILE_DIR=dir writes a V8 CPU profile of every signer process there (node --cpu-prof).
const PROFILE_DIR = process.env['BENCH_PROFILE_DIR'];
const PROFILE = PROFILE_DIR === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`];

function signer(args: readonly string[], main = MAIN): Promise<void> {
  return node([...NODE_FLAGS, ...PROFILE, main, 'sign', ...args]);
}

/** Node as the image starts it (bare environment); a failure ends the benchmark with its stderr. */
async function node(args: readonly string[]): Promise<void> {
  const { code, stderr } = await runBareNode(args);
  if (code !== 0) throw new Error(`node exited ${code}: ${stderr}`);
}

async function timed(action: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await action();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const value =
    sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return Math.round((value ?? 0) * 10) / 10;
}

const stack = await startStack();
try {
  const image = await pushImage(stack, 'bench/app', 'seed');
  const gun = image.gun;
  const hex = image.digest.slice('sha256:'.length);

  // Keys: root and targets in kpack's directory layout; the targets key also in the CLI's trust dir.
  const root = generateSigningKey();
  const targets = generateSigningKey();
  const base = await stack.tempDir('bench-keys');
  const keysDir = await writeKeysDir(join(base, 'targets'), targets, 'targets');
  const rootDir = await writeKeysDir(join(base, 'root'), root, 'root');
  const common = ['--notary-url', stack.notaryUrl, '--notary-ca', stack.caFile];
  await signer([
    ...common,
    '--image',
    `${gun}:seed`,
    '--digest',
    image.digest,
    '--keys-dir',
    keysDir,
    '--root-keys-dir',
    rootDir,
  ]);

  // The build pod's trust dir: only the targets key. Each run copies it afresh (untimed), so the
  // CLI never starts from metadata an earlier run cached.
  const keyOnlyDir = await stack.tempDir('bench-cli-key-only');
  await mkdir(join(keyOnlyDir, 'private'), { recursive: true });
  await writeFile(
    join(keyOnlyDir, 'private', `${PublicKey.fromKeyObject(targets).id}.key`),
    encodePrivateKeyPem(targets, DEFAULT_PASSPHRASE, { role: 'targets', gun }),
  );
  const probeDir = await stack.tempDir('bench-cli-probe');
  const seeded = await lookup(stack, gun, 'seed', probeDir);
  const cached = JSON.parse(
    await readFile(join(probeDir, 'tuf', gun, 'metadata', 'root.json'), 'utf8'),
  ) as { signed: { roles: { root: { keyids: string[] } } } };
  const rootKeyId = cached.signed.roles.root.keyids[0] ?? '';

  const ours = ['--keys-dir', keysDir, '--root-key-id', rootKeyId];
  type Series =
    | 'node'
    | 'floor'
    | 'signerHelp'
    | 'signer'
    | 'signerUnbundled'
    | 'signerWithRegistryCheck'
    | 'notary';
  const series: Record<Series, number[]> = {
    node: [],
    floor: [],
    signerHelp: [],
    signer: [],
    signerUnbundled: [],
    signerWithRegistryCheck: [],
    notary: [],
  };
  const unchecked = (tag: string): string[] => [
    ...common,
    '--image',
    `${gun}:${tag}`,
    '--digest',
    image.digest,
    '--size',
    String(seeded.size),
    '--no-registry-check',
    ...ours,
  ];
  const runsDir = await stack.tempDir('bench-cli-runs');
  for (let i = 0; i < runs; i++) {
    const cliDir = join(runsDir, String(i));
    await cp(keyOnlyDir, cliDir, { recursive: true });
    const steps: [Series, () => Promise<void>][] = [
      ['node', () => node(['-e', '0'])],
      [
        'floor',
        () =>
          node([
            ...NODE_FLAGS,
            FLOOR,
            stack.notaryUrl,
            stack.caFile,
            gun,
            join(keysDir, `${PublicKey.fromKeyObject(targets).id}.key`),
            join(keysDir, 'password'),
          ]),
      ],
      ['signerHelp', () => node([...NODE_FLAGS, MAIN, '--help'])],
      ['signer', () => signer(unchecked(`ours-${i}`))],
      ['signerUnbundled', () => signer(unchecked(`unbundled-${i}`), UNBUNDLED)],
      [
        'signerWithRegistryCheck',
        () =>
          signer([...common, '--image', `${gun}:checked-${i}`, '--digest', image.digest, ...ours]),
      ],
      [
        'notary',
        async () => {
          await runNotary(
            stack,
            ['addhash', gun, `cli-${i}`, String(seeded.size), '--sha256', hex],
            { trustDir: cliDir },
          );
          await runNotary(stack, ['publish', gun], { trustDir: cliDir });
        },
      ],
    ];
    // The order rotates from run to run, so no series always follows another's disk or cache work.
    for (let k = 0; k < steps.length; k++) {
      const step = steps[(i + k) % steps.length];
      if (step !== undefined) series[step[0]].push(await timed(step[1]));
    }
    await rm(cliDir, { recursive: true, force: true });
  }
  // Every signed tag must resolve, or the timings mean nothing.
  const reader = await stack.tempDir('bench-reader');
  for (const tag of [
    `ours-${runs - 1}`,
    `unbundled-${runs - 1}`,
    `checked-${runs - 1}`,
    `cli-${runs - 1}`,
  ]) {
    const found = await lookup(stack, gun, tag, reader);
    if (found.sha256Hex !== hex) throw new Error(`${tag} resolves to ${found.sha256Hex}`);
  }
  const medians = Object.fromEntries(
    Object.entries(series).map(([name, values]) => [name, median(values)]),
  );
  // Per run: what the signer adds beyond Node's start-up, against the CLI's whole time.
  const paired = (name: Series): number[] =>
    series[name].map((ms, i) => (ms - (series.node[i] ?? 0)) / (series.notary[i] ?? Number.NaN));
  const ratio = (values: readonly number[]): number =>
    Math.round((median(values.map((v) => v * 1000)) / 1000) * 100) / 100;
  const addedRatio = ratio(paired('signer'));
  console.log(
    JSON.stringify({
      benchmark: 'sign one tag into an existing repository (whole process, paired runs)',
      runs,
      medianMs: medians,
      addedBeyondNodeMs: median(series.signer.map((ms, i) => ms - (series.node[i] ?? 0))),
      addedBeyondNodeOverNotary: addedRatio,
      addedBeyondNodeOverNotaryUnbundled: ratio(paired('signerUnbundled')),
      addedBeyondNodeOverNotaryWithRegistryCheck: ratio(paired('signerWithRegistryCheck')),
      // The same share for sign-floor.cts, which does the exchange and one signature and verifies
      // nothing: what of the goal's budget Node 20 alone already spends.
      floorBeyondNodeMs: median(series.floor.map((ms, i) => ms - (series.node[i] ?? 0))),
      floorBeyondNodeOverNotary: ratio(paired('floor')),
      helpBeyondNodeMs: median(series.signerHelp.map((ms, i) => ms - (series.node[i] ?? 0))),
      goal: 'addedBeyondNodeOverNotary <= 1.0',
      meetsGoal: addedRatio <= 1,
      signer: MAIN,
      nodeFlags: NODE_FLAGS,
      notary: 'notary addhash + notary publish (two processes), trust dir holding only the key',
      node: process.version,
      cpus: cpus().length,
      loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    }),
  );
} finally {
  await stack.stop();
}
