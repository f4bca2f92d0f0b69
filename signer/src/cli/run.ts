/**
 * The `kpack-trust-signer` command: parse, read the inputs, wire the flow, print one JSON summary
 * on stdout and progress on stderr, return the exit code. Every edge (files, network clients, key
 * store, clock) arrives through {@link CliEnvironment}, so main.ts alone touches the real ones.
 */
import {
  TrustError,
  dockerConfigCredentials,
  isTrustError,
  firstCredentials,
  type CredentialSource,
  type MetadataFetcher,
  type MetadataPublisher,
  type NotaryClientOptions,
} from '@kpack-trust/common';
import type { KeyStore } from '../keys/key-store.js';
import type { KeyStoreOptions } from '../keys/index.js';
import { passphrasesFromEnv } from '../keys/passphrases.js';
import { withPinnedRoot } from '../keys/pinned-root.js';
import { buildImageOf, type BuildImage } from '../publish/build-image.js';
import { signBuild } from '../publish/sign-build.js';
import type { ManifestLookup, RegistryClientOptions } from '../registry/manifest-client.js';
import { parseLifecycleReport } from '../report/lifecycle-report.js';
import { parseArguments, type ParsedCommand, type SignCommand } from './args.js';
import { caBundleProblem } from './ca-bundle.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';
import { HELP_TEXT } from './help.js';

/** Everything the command touches outside itself. */
export interface CliEnvironment {
  /** Environment variables (passphrases, DOCKER_CONFIG). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly homeDir: string;
  /** Writes one line (without its newline) to stdout / stderr. */
  readonly stdout: (line: string) => void;
  readonly stderr: (line: string) => void;
  /** A file's text, or undefined when it does not exist; other failures throw INPUT_INVALID. */
  readonly readTextFile: (path: string) => Promise<string | undefined>;
  /** May load the store's module lazily (the Kubernetes client alone takes most of a second to import). */
  readonly createKeyStore: (options: KeyStoreOptions) => KeyStore | Promise<KeyStore>;
  readonly connectNotary: (
    options: NotaryClientOptions,
  ) => MetadataFetcher & MetadataPublisher & { close(): void };
  readonly connectRegistry: (options: RegistryClientOptions) => ManifestLookup & { close(): void };
  readonly now: () => Date;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  /** Shown by `--version`. */
  readonly version?: string;
}

const PREFIX = 'kpack-trust-signer: ';

/** The one line printed after a command-line mistake. */
export const USAGE_POINTER =
  'run "kpack-trust-signer --help" for the commands, flags and exit codes';

/** Runs the command line `argv` (without node and the script) and returns the exit code. */
export async function runCli(
  argv: readonly string[],
  environment: CliEnvironment,
): Promise<number> {
  const say = (line: string): void => {
    environment.stderr(PREFIX + line);
  };
  let parsed: ParsedCommand;
  try {
    parsed = parseArguments(argv);
  } catch (err) {
    // A usage mistake: the reason and where to look, not three screens of help burying it.
    say(`error: ${describe(err)}`);
    say(USAGE_POINTER);
    return exitCodeFor(err);
  }
  try {
    if (parsed.command === 'help') {
      for (const line of HELP_TEXT.trimEnd().split('\n')) environment.stdout(line);
      return ExitCode.OK;
    }
    if (parsed.command === 'version') {
      environment.stdout(environment.version ?? 'unknown');
      return ExitCode.OK;
    }
    return await sign(parsed, environment, say);
  } catch (err) {
    say(`error: ${describe(err)}`);
    return exitCodeFor(err);
  }
}

async function sign(
  command: SignCommand,
  environment: CliEnvironment,
  say: (line: string) => void,
): Promise<number> {
  // Every local input is read and checked before the first connection, so a typo in a path is
  // reported as bad input (exit 2), not as whatever the network happens to answer.
  const image = await readBuild(command, environment);
  const credentials = await readCredentials(command, environment);
  const notaryCa =
    command.notaryCa === undefined
      ? undefined
      : await requireCaFile(command.notaryCa, environment, '--notary-ca');
  const registryCa =
    command.registryCa === undefined
      ? undefined
      : await requireCaFile(command.registryCa, environment, '--registry-ca');
  const keyStore = await openKeyStore(command, image.gun, environment);

  const notary = environment.connectNotary({
    baseUrl: command.notaryUrl,
    ...(notaryCa === undefined ? {} : { ca: notaryCa }),
    ...(credentials === undefined ? {} : { credentials }),
    userAgent: 'kpack-trust-signer',
  });
  const registry = command.registryCheck
    ? environment.connectRegistry({
        ...(credentials === undefined ? {} : { credentials }),
        ...(registryCa === undefined ? {} : { ca: registryCa }),
        insecureRegistries: command.insecureRegistries,
      })
    : undefined;
  try {
    say(`keys from ${keyStore.description}`);
    const summary = await signBuild(
      {
        image,
        ...(command.delegation === undefined ? {} : { role: command.delegation }),
        rootKeyIds: command.rootKeyIds,
      },
      {
        notary,
        keyStore,
        ...(registry === undefined ? {} : { registry }),
        now: environment.now,
        ...(environment.sleep === undefined ? {} : { sleep: environment.sleep }),
        ...(environment.random === undefined ? {} : { random: environment.random }),
        progress: say,
      },
    );
    environment.stdout(JSON.stringify(summary));
    return ExitCode.OK;
  } finally {
    notary.close();
    registry?.close();
  }
}

async function readBuild(command: SignCommand, environment: CliEnvironment): Promise<BuildImage> {
  const input = command.input;
  if (input.kind === 'flags') {
    return buildImageOf(input.images, input.digest, input.size, '--image/--digest');
  }
  const text = await requireFile(input.file, environment, '--report');
  const report = parseLifecycleReport(text, input.file);
  return buildImageOf(report.tags, report.digest, report.manifestSize, input.file);
}

/** Named files must exist; the default docker config may be absent (anonymous access). */
async function readCredentials(
  command: SignCommand,
  environment: CliEnvironment,
): Promise<CredentialSource | undefined> {
  const sources: CredentialSource[] = [];
  if (command.dockerConfigs.length > 0) {
    for (const file of command.dockerConfigs) {
      sources.push(
        dockerConfigCredentials(
          parseJsonFile(await requireFile(file, environment, '--docker-config'), file),
          file,
        ),
      );
    }
  } else {
    const dir = environment.env['DOCKER_CONFIG'] ?? `${environment.homeDir}/.docker`;
    const file = `${dir.replace(/\/+$/, '')}/config.json`;
    const text = await environment.readTextFile(file);
    if (text === undefined) return undefined;
    sources.push(dockerConfigCredentials(parseJsonFile(text, file), file));
  }
  return firstCredentials(sources);
}

function parseJsonFile(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // No cause and no excerpt: a docker config holds passwords.
    throw new TrustError(
      'CREDENTIALS_INVALID',
      { source: file, problem: 'the file is not JSON' },
      `Cannot use ${file}: the file is not JSON.`,
    );
  }
}

async function requireFile(
  path: string,
  environment: CliEnvironment,
  flag: string,
): Promise<string> {
  const text = await environment.readTextFile(path);
  if (text === undefined) {
    throw new TrustError(
      'INPUT_INVALID',
      { source: path, problem: 'the file does not exist' },
      `${flag} ${path}: the file does not exist.`,
    );
  }
  return text;
}

/** A CA bundle must hold at least one PEM certificate that parses. */
async function requireCaFile(
  path: string,
  environment: CliEnvironment,
  flag: string,
): Promise<string> {
  const text = await requireFile(path, environment, flag);
  const problem = caBundleProblem(text);
  if (problem !== undefined) {
    throw new TrustError(
      'INPUT_INVALID',
      { source: path, problem },
      `${flag} ${path}: ${problem}.`,
    );
  }
  return text;
}

/**
 * The key store the flags name. A key directory is read and its keys decrypted here, before any
 * connection: a missing directory, a key file that does not parse or a wrong passphrase is bad
 * input. The directory store never generates keys, so this is the load the flow would make
 * anyway; its result is handed on instead of being read twice. (Kubernetes Secrets are remote:
 * that store checks its kubeconfig when created and reads the Secrets in the flow.)
 */
async function openKeyStore(
  command: SignCommand,
  gun: string,
  environment: CliEnvironment,
): Promise<KeyStore> {
  const store = withPinnedRoot(
    await environment.createKeyStore(keyStoreOptions(command, environment)),
    command.rootKeyIds,
  );
  if (command.keys.kind !== 'directory') return store;
  const preloaded = await store.load(gun, { createIfMissing: false });
  return {
    description: store.description,
    load: (loadGun, options) =>
      loadGun === gun && !options.createIfMissing
        ? Promise.resolve(preloaded)
        : store.load(loadGun, options),
  };
}

function keyStoreOptions(command: SignCommand, environment: CliEnvironment): KeyStoreOptions {
  const passphrases = passphrasesFromEnv(environment.env);
  if (command.keys.kind === 'kubernetes') return { ...command.keys, passphrases };
  return {
    ...command.keys,
    // The directory store picks the key filed for the delegation when it holds several.
    ...(command.delegation === undefined ? {} : { delegation: command.delegation }),
    passphrases,
  };
}

function describe(err: unknown): string {
  if (isTrustError(err)) return `${err.message} [${err.code}]`;
  if (err instanceof Error) return err.message;
  return String(err);
}
