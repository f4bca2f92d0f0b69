/**
 * Benchmark (not a test): a cold verifier decision — a fresh ImagePolicyEngine (empty trust cache,
 * new HTTPS connections) deciding a tag signed by the `notary` CLI — beside a cold `notary lookup`
 * of the same tag (a fresh trust dir), against the real loopback notary-server + notary-signer.
 * It lives in the test workspace because the stack does; the verifier's in-memory cold paths are
 * in verifier/bench/cold.ts.
 *
 *   npm run build && node test/dist/bench/verifier-cold.js [runs]     (default 10 runs each)
 *
 * Prints JSON lines: each series' median and p90 in milliseconds, then the ratio (goal < 0.5).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImagePolicyEngine, loadConfig } from '@kpack-trust/verifier';
import { addTarget, initRepo, runNotary, startStack } from '@kpack-trust/e2e';

const runs = Number(process.argv[2] ?? 10);
if (!Number.isSafeInteger(runs) || runs < 1) {
  throw new Error(`runs must be a positive integer, got ${String(process.argv[2])}`);
}

const REGISTRY = '127.0.0.1:5000';
const GUN = `${REGISTRY}/demo/app`;
const DIGEST = 'c'.repeat(64);

function emit(record: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function stats(samples: readonly number[]): { medianMs: number; p90Ms: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { medianMs: Number(at(0.5).toFixed(2)), p90Ms: Number(at(0.9).toFixed(2)) };
}

const stack = await startStack({ trustService: 'remote', registry: false });
const dir = await mkdtemp(join(tmpdir(), 'verifier-cold-'));
try {
  const trustDir = await stack.tempDir('signer-trust');
  await initRepo(stack, GUN, trustDir);
  await addTarget(stack, GUN, trustDir, 'v1', 1234, DIGEST);
  const root = JSON.parse(
    await readFile(join(trustDir, 'tuf', GUN, 'metadata', 'root.json'), 'utf8'),
  ) as { signed: { roles: { root: { keyids: string[] } } } };
  const rootKeyId = root.signed.roles.root.keyids[0] ?? '';
  const configPath = join(dir, 'verifier.yaml');
  await writeFile(
    configPath,
    [
      'listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }',
      'notary:',
      `  - { registry: "${REGISTRY}", server: "${stack.notaryUrl}", ca: "${stack.caFile}" }`,
      'rules:',
      `  - images: "${REGISTRY}/demo/*"`,
      `    trust: { rootKeys: ["${rootKeyId}"] }`,
      '',
    ].join('\n'),
  );
  const config = await loadConfig(configPath);
  const spec = { containers: [{ image: `${GUN}:v1` }], annotations: {}, namespace: 'default' };

  const verifier: number[] = [];
  const cli: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const engine = new ImagePolicyEngine({ config });
    let started = performance.now();
    const status = await engine.review(spec);
    verifier.push(performance.now() - started);
    await engine.close();
    if (!status.allowed) throw new Error(`the signed tag was denied: ${status.reason ?? ''}`);

    const lookupDir = await stack.tempDir('lookup');
    started = performance.now();
    await runNotary(stack, ['lookup', GUN, 'v1'], { trustDir: lookupDir });
    cli.push(performance.now() - started);
  }
  const ours = stats(verifier);
  const theirs = stats(cli);
  emit({ bench: 'cold-decision', series: 'verifier-engine', runs, ...ours });
  emit({ bench: 'cold-decision', series: 'notary-lookup', runs, ...theirs });
  const ratio = ours.medianMs / theirs.medianMs;
  emit({
    bench: 'cold-decision',
    ratio: Number(ratio.toFixed(3)),
    goal: 0.5,
    meetsGoal: ratio < 0.5,
  });
} finally {
  await stack.stop();
  await rm(dir, { recursive: true, force: true });
}
