/**
 * Benchmark (not a test): whole-process time to sign one tag into an existing repository with
 * `kpack-trust-signer`, beside `notary addhash` + `notary publish` doing the same, in one run against
 * the real loopback stack. Both sides hold the same targets key and trust the same root: the CLI
 * through its cached root.json, we through `--root-key-id`; neither asks the registry (the CLI never
 * does, so ours runs with `--size --no-registry-check`; a third series shows the registry check's cost).
 *
 *   npm run build && node test/dist/bench/sign-one-tag.js [runs]     (default 15 runs each)
 *
 * Prints one JSON object: medians in milliseconds per series and the ratio signer / notary.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PublicKey, encodePrivateKeyPem, generateSigningKey } from '@kpack-trust/common';
import { DEFAULT_PASSPHRASE, lookup, pushImage, runNotary, startStack } from '@kpack-trust/e2e';

const MAIN = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const runs = Number(process.argv[2] ?? 15);
if (!Number.isSafeInteger(runs) || runs < 1)
  throw new Error(`runs must be a positive integer, got ${process.argv[2]}`);

function signer(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'sign', ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const err: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`signer exited ${code}: ${Buffer.concat(err).toString('utf8')}`));
    });
  });
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
  const write = async (
    dir: string,
    key: ReturnType<typeof generateSigningKey>,
    role: string,
  ): Promise<string> => {
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, `${PublicKey.fromKeyObject(key).id}.key`),
      encodePrivateKeyPem(key, DEFAULT_PASSPHRASE, { role }),
    );
    await writeFile(join(dir, 'password'), DEFAULT_PASSPHRASE);
    return dir;
  };
  const keysDir = await write(join(base, 'targets'), targets, 'targets');
  const rootDir = await write(join(base, 'root'), root, 'root');
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

  const cliDir = await stack.tempDir('bench-cli');
  await mkdir(join(cliDir, 'private'), { recursive: true });
  await writeFile(
    join(cliDir, 'private', `${PublicKey.fromKeyObject(targets).id}.key`),
    encodePrivateKeyPem(targets, DEFAULT_PASSPHRASE, { role: 'targets', gun }),
  );
  // Warm the CLI's cache (its trust in the root) as a user's trust dir would be.
  const seeded = await lookup(stack, gun, 'seed', cliDir);
  const cached = JSON.parse(
    await readFile(join(cliDir, 'tuf', gun, 'metadata', 'root.json'), 'utf8'),
  ) as { signed: { roles: { root: { keyids: string[] } } } };
  const rootKeyId = cached.signed.roles.root.keyids[0] ?? '';

  const series: Record<'signer' | 'signerWithRegistryCheck' | 'notary', number[]> = {
    signer: [],
    signerWithRegistryCheck: [],
    notary: [],
  };
  const ours = ['--keys-dir', keysDir, '--root-key-id', rootKeyId];
  for (let i = 0; i < runs; i++) {
    // Interleaved, so drift in the machine's load hits every series alike.
    series.signer.push(
      await timed(() =>
        signer([
          ...common,
          '--image',
          `${gun}:ours-${i}`,
          '--digest',
          image.digest,
          '--size',
          String(seeded.size),
          '--no-registry-check',
          ...ours,
        ]),
      ),
    );
    series.signerWithRegistryCheck.push(
      await timed(() =>
        signer([...common, '--image', `${gun}:checked-${i}`, '--digest', image.digest, ...ours]),
      ),
    );
    series.notary.push(
      await timed(async () => {
        await runNotary(stack, ['addhash', gun, `cli-${i}`, String(seeded.size), '--sha256', hex], {
          trustDir: cliDir,
        });
        await runNotary(stack, ['publish', gun], { trustDir: cliDir });
      }),
    );
  }
  // Every signed tag must resolve, or the timings mean nothing.
  const reader = await stack.tempDir('bench-reader');
  for (const tag of [`ours-${runs - 1}`, `checked-${runs - 1}`, `cli-${runs - 1}`]) {
    const found = await lookup(stack, gun, tag, reader);
    if (found.sha256Hex !== hex) throw new Error(`${tag} resolves to ${found.sha256Hex}`);
  }
  const medians = {
    signer: median(series.signer),
    signerWithRegistryCheck: median(series.signerWithRegistryCheck),
    notary: median(series.notary),
  };
  console.log(
    JSON.stringify({
      benchmark: 'sign one tag into an existing repository (whole process)',
      runs,
      medianMs: medians,
      ratio: Math.round((medians.signer / medians.notary) * 100) / 100,
      ratioWithRegistryCheck:
        Math.round((medians.signerWithRegistryCheck / medians.notary) * 100) / 100,
      notary: 'notary addhash + notary publish (two processes)',
      node: process.version,
    }),
  );
} finally {
  await stack.stop();
}
