/**
 * Where the tests find the repository they test: its root, from src or dist, what the
 * Dockerfile says about how the signer image starts its program, and how to start Node as an
 * image does.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the directory holding the test workspace and the Dockerfile. */
export function repoRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'test', 'package.json'))) {
    const parent = join(dir, '..');
    if (parent === dir) throw new Error('cannot find the kpack-trust repository root');
    dir = parent;
  }
  return dir;
}

/** The signer image's ENTRYPOINT: Node's flags and the bundle it runs, as a repository path. */
export function signerImageEntrypoint(): { readonly nodeFlags: string[]; readonly script: string } {
  const dockerfile = readFileSync(join(repoRoot(), 'Dockerfile'), 'utf8');
  const line = /^ENTRYPOINT (\[.*"\/app\/signer\/dist\/bundle\/main\.js"\])$/m.exec(dockerfile);
  if (line?.[1] === undefined)
    throw new Error("no ENTRYPOINT for the signer's bundle in Dockerfile");
  const argv = JSON.parse(line[1]) as string[];
  return {
    nodeFlags: argv.slice(1, -1),
    script: join(repoRoot(), (argv.at(-1) ?? '').replace(/^\/app\//, '')),
  };
}

/**
 * Runs `node <args>` with an environment of PATH and HOME (nonexistent) alone, as in an image:
 * nothing of this machine's (NODE_OPTIONS, NODE_EXTRA_CA_CERTS, DOCKER_CONFIG) reaches it.
 */
export function runBareNode(
  args: readonly string[],
): Promise<{ readonly code: number | null; readonly stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, stderr });
    });
  });
}
