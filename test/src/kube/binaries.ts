/**
 * The real Kubernetes control-plane binaries and kpack's completion binary, built from their Go
 * modules at the versions pinned in test/kube/<name>/go.mod by `scripts/kube-binaries.sh`, once,
 * into a cache directory that later runs reuse. Nothing here downloads a prebuilt binary.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../repo.js';

/** Paths of the built binaries and the versions they were built at. */
export interface KubeBinaries {
  /** The cache directory holding them (`KPACK_TRUST_KUBE_DIR`, or the default under ~/.cache). */
  readonly dir: string;
  readonly kubeApiserver: string;
  readonly kubeControllerManager: string;
  readonly etcd: string;
  /** kpack's `cmd/completion`, the program kpack runs as `/cnb/process/completion`. */
  readonly kpackCompletion: string;
  /** Release tags as pinned: `v1.35.4`, `v3.6.6`, `v0.17.2`. */
  readonly versions: { readonly kubernetes: string; readonly etcd: string; readonly kpack: string };
}

/** The command that builds the binaries, as a person would type it at the repository root. */
export const KUBE_BUILD_COMMAND = 'bash scripts/kube-binaries.sh';

/** The file the build writes last: its presence means every binary in the directory is complete. */
const STAMP = 'versions.json';

/** Reads the binaries of a finished build in `dir`, or undefined when it is missing or partial. */
function readBuilt(dir: string): KubeBinaries | undefined {
  const stamp = join(dir, STAMP);
  if (!existsSync(stamp)) return undefined;
  const versions = JSON.parse(readFileSync(stamp, 'utf8')) as KubeBinaries['versions'];
  const binaries: KubeBinaries = {
    dir,
    kubeApiserver: join(dir, 'kube-apiserver'),
    kubeControllerManager: join(dir, 'kube-controller-manager'),
    etcd: join(dir, 'etcd'),
    kpackCompletion: join(dir, 'completion'),
    versions,
  };
  for (const path of [
    binaries.kubeApiserver,
    binaries.kubeControllerManager,
    binaries.etcd,
    binaries.kpackCompletion,
  ]) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      return undefined;
    }
  }
  return binaries;
}

/** Runs the build script; resolves with its stdout, streams its progress lines to our stderr. */
function runScript(root: string, args: readonly string[], showProgress: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(root, 'scripts', 'kube-binaries.sh'), ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', showProgress ? 'inherit' : 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8').trim());
      else
        reject(
          new Error(
            `building the Kubernetes binaries failed (exit ${code ?? 'signal'}); run ` +
              `\`${KUBE_BUILD_COMMAND}\` at the repository root to see why` +
              (err.length > 0 ? `:\n${Buffer.concat(err).toString('utf8')}` : ''),
          ),
        );
    });
  });
}

/**
 * The cached binaries, built first by `scripts/kube-binaries.sh` when the cache is missing (that
 * takes a long while on a cold machine; `scripts/test.sh` builds them before the suites run).
 * Throws an error naming that command when they cannot be built.
 */
export async function ensureKubeBinaries(): Promise<KubeBinaries> {
  const root = repoRoot();
  const dir = await runScript(root, ['--print-dir'], false);
  const built = readBuilt(dir);
  if (built) return built;
  process.stderr.write(
    `Kubernetes binaries are not in ${dir}; building them (${KUBE_BUILD_COMMAND}) …\n`,
  );
  const builtDir = await runScript(root, [], true);
  const fresh = readBuilt(builtDir);
  if (!fresh) {
    throw new Error(
      `${KUBE_BUILD_COMMAND} finished but ${builtDir} lacks a binary or ${STAMP}; run it again`,
    );
  }
  return fresh;
}
