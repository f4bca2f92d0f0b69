/**
 * The real Debian binaries the loopback stack runs. They are found on PATH; when some are missing
 * and we run as root they are installed from Debian's packages, otherwise the error names the exact
 * command an operator should run.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Every executable the stack, the CLI wrapper and the image pusher start. */
export const STACK_BINARIES = [
  'notary',
  'notary-server',
  'notary-signer',
  'docker-registry',
  'skopeo',
] as const;

/** One of the executables in {@link STACK_BINARIES}. */
export type StackBinary = (typeof STACK_BINARIES)[number];

/** Absolute path of each stack executable. */
export type BinaryPaths = Readonly<Record<StackBinary, string>>;

/** The Debian packages that ship the notary stack (notary ships notary, -server and -signer). */
const STACK_PACKAGES = ['notary', 'docker-registry', 'skopeo'] as const;

/** What an operator runs to install the stack (root; `sudo sh -c '…'` otherwise). */
export const INSTALL_COMMAND = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${STACK_PACKAGES.join(' ')}`;

/** Where to look for executables; tests pass a PATH of their own. */
export interface BinarySearchOptions {
  /** A PATH-style list of directories; defaults to `process.env.PATH`. */
  readonly path?: string;
}

/** The absolute path of `name` on PATH, or undefined. */
function findOnPath(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** The error for executables that are missing and that we may not install. */
function missingError(missing: readonly string[]): Error {
  return new Error(
    `missing executables on PATH: ${missing.join(', ')} — the real notary stack needs Debian's ` +
      `packages; install them as root with: ${INSTALL_COMMAND}`,
  );
}

/** The absolute path of one executable; throws with the install command when it is not on PATH. */
export function requireBinary(name: string, options: BinarySearchOptions = {}): string {
  const found = findOnPath(name, options.path ?? process.env['PATH'] ?? '');
  if (found === undefined) throw missingError([name]);
  return found;
}

/** Paths of the binaries that are present, and the names of those that are not. */
function survey(path: string): {
  found: Partial<Record<StackBinary, string>>;
  missing: StackBinary[];
} {
  const found: Partial<Record<StackBinary, string>> = {};
  const missing: StackBinary[] = [];
  for (const name of STACK_BINARIES) {
    const at = findOnPath(name, path);
    if (at === undefined) missing.push(name);
    else found[name] = at;
  }
  return { found, missing };
}

/** Runs a command to completion, keeping its output for the error when it fails. */
function runQuietly(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${output}`));
    });
  });
}

/** `apt-get update` runs at most once per process, however many installs are attempted. */
let aptUpdated: Promise<void> | undefined;

/** Memoized result of the default (process PATH) check. */
let ensured: Promise<BinaryPaths> | undefined;

/**
 * Makes sure every stack executable is on PATH and returns their paths. Installs the Debian
 * packages when some are missing and we are root; otherwise throws an error naming
 * {@link INSTALL_COMMAND}.
 */
export function ensureBinaries(options: BinarySearchOptions = {}): Promise<BinaryPaths> {
  if (options.path !== undefined) return ensureOn(options.path);
  ensured ??= ensureOn(process.env['PATH'] ?? '').catch((error: unknown) => {
    ensured = undefined;
    throw error;
  });
  return ensured;
}

async function ensureOn(path: string): Promise<BinaryPaths> {
  const first = survey(path);
  if (first.missing.length === 0) return first.found as BinaryPaths;
  if (process.getuid?.() !== 0) throw missingError(first.missing);

  const packages: string[] = [...STACK_PACKAGES];
  process.stderr.write(
    `[stack] missing ${first.missing.join(', ')}; installing Debian packages: ${packages.join(' ')}\n`,
  );
  aptUpdated ??= runQuietly('apt-get', ['update']).catch((error: unknown) => {
    aptUpdated = undefined;
    throw error;
  });
  await aptUpdated;
  await runQuietly('apt-get', ['install', '-y', ...packages]);

  const second = survey(path);
  if (second.missing.length > 0) throw missingError(second.missing);
  return second.found as BinaryPaths;
}
