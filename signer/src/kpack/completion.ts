/**
 * `kpack-trust-signer kpack-completion`: the program kpack runs as `/cnb/process/completion`
 * (kpack v0.17.2). With `-notary-v1-url` it signs the build into Notary v1 from lifecycle's report
 * with the key in kpack's notary Secret; then — always, and only if signing succeeded — it runs
 * kpack's own completion binary with the same arguments minus `-notary-v1-url`, so kpack's cosign
 * signing and the build metadata it writes to the termination message keep working and kpack does
 * not sign a second time. Every edge arrives through {@link CompletionEnvironment}.
 */
import { TrustError, isTrustError, type CredentialSource } from '@kpack-trust/common';
import type { MetadataFetcher, MetadataPublisher, NotaryClientOptions } from '@kpack-trust/common';
import { caBundleProblem } from '../cli/ca-bundle.js';
import { ExitCode, exitCodeFor } from '../cli/exit-codes.js';
import { notaryUrlProblem, type NotaryUrlProblem } from '../cli/notary-url.js';
import { buildImageOf } from '../publish/build-image.js';
import { signBuild, type SignSummary } from '../publish/sign-build.js';
import type { ManifestLookup, RegistryClientOptions } from '../registry/manifest-client.js';
import { parseLifecycleReport } from '../report/lifecycle-report.js';
import { mentionsNotary, parseCompletionArguments, type CompletionArguments } from './arguments.js';
import { buildSecretCredentials } from './build-secrets.js';
import { KpackNotaryKeyStore } from './notary-key.js';
import { chooseKpackRoles } from './roles.js';
import { completionSettings, kpackCompletionProgram, type CompletionSettings } from './settings.js';

/** Everything the step touches outside itself; main wires the real ones. */
export interface CompletionEnvironment {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Writes one line (without its newline). */
  readonly stdout: (line: string) => void;
  readonly stderr: (line: string) => void;
  /** A file's text, or undefined when it does not exist; other failures throw. */
  readonly readTextFile: (path: string) => Promise<string | undefined>;
  readonly connectNotary: (
    options: NotaryClientOptions,
  ) => MetadataFetcher & MetadataPublisher & { close(): void };
  readonly connectRegistry: (options: RegistryClientOptions) => ManifestLookup & { close(): void };
  readonly now: () => Date;
  /** Runs kpack's binary with `args` (argv[0] set to `argv0`) and resolves with its exit code. */
  readonly runProgram: (file: string, argv0: string, args: readonly string[]) => Promise<number>;
}

const PREFIX = 'kpack-trust-signer kpack-completion: ';

/** Runs the step for kpack's argument vector and returns the exit code. */
export async function runKpackCompletion(
  argv: readonly string[],
  environment: CompletionEnvironment,
): Promise<number> {
  const say = (line: string): void => {
    environment.stderr(PREFIX + line);
  };
  // kpack's binary is found without reading the Notary settings: those are read (and a bad one
  // fails the build) only when the build asks for Notary, so a cluster-wide mistake in them never
  // fails the builds that do not — they are handed to kpack untouched.
  const program = kpackCompletionProgram(environment.env);
  let args: CompletionArguments | undefined;
  try {
    try {
      args = parseCompletionArguments(argv);
    } catch (err) {
      // A vector this step cannot read is kpack's to judge — unless it asks for Notary.
      if (mentionsNotary(argv)) throw err;
    }
    if (args?.notaryUrl !== undefined) {
      const settings = completionSettings(environment.env);
      const summary = await signWithNotary(args, args.notaryUrl, settings, environment, say);
      environment.stdout(JSON.stringify(summary));
    }
  } catch (err) {
    say(`error: ${describe(err)}; kpack's completion was not run`);
    return exitCodeFor(err);
  }
  const forwarded = args?.forwarded ?? argv;
  try {
    return await environment.runProgram(program.file, program.argv0, forwarded);
  } catch (err) {
    say(`error: cannot run kpack's completion ${program.file}: ${describe(err)}`);
    return ExitCode.FAILED;
  }
}

async function signWithNotary(
  args: CompletionArguments,
  notaryUrl: string,
  settings: CompletionSettings,
  environment: CompletionEnvironment,
  say: (line: string) => void,
): Promise<SignSummary> {
  requireHttps(notaryUrl);
  if (settings.rootKeyIds.length === 0 && !settings.trustOnFirstUse) {
    throw new TrustError(
      'CONFIG_INVALID',
      {
        source: 'environment',
        path: 'KPACK_TRUST_ROOT_KEY_ID',
        problem: 'no root key is pinned',
      },
      'KPACK_TRUST_ROOT_KEY_ID is not set: pin the root key id(s) of the repositories this ' +
        'image signs, or set KPACK_TRUST_ROOT_TRUST_ON_FIRST_USE=true to trust whatever root the ' +
        'notary server serves, as kpack does.',
    );
  }
  const reportText = await environment.readTextFile(settings.reportFile);
  if (reportText === undefined) {
    throw new TrustError(
      'INPUT_INVALID',
      { source: settings.reportFile, problem: 'the file does not exist' },
      `${settings.reportFile} does not exist: lifecycle's export wrote no report, so there is nothing to sign.`,
    );
  }
  const report = parseLifecycleReport(reportText, settings.reportFile);
  const image = buildImageOf(report.tags, report.digest, report.manifestSize, settings.reportFile);
  const credentials: CredentialSource = await buildSecretCredentials(
    args,
    settings.buildSecretsDir,
    environment.readTextFile,
  );
  const notaryCa = await optionalCaFile(
    settings.notaryCaFile,
    'KPACK_TRUST_NOTARY_CA',
    environment,
  );
  const registryCa = await optionalCaFile(
    settings.registryCaFile,
    'KPACK_TRUST_REGISTRY_CA',
    environment,
  );
  const keyStore = new KpackNotaryKeyStore(settings.notaryKeysDir);
  const keys = await keyStore.load();
  const key = keyStore.key;
  if (key !== undefined) {
    say(`key ${key.fileName} from ${settings.notaryKeysDir} (key id ${key.keyId})`);
    if (key.fileKeyId !== key.keyId) {
      say(
        `note: the file name says ${key.fileKeyId}; kpack itself would look the key up by that id`,
      );
    }
  }
  const signingKey = keys.targets;
  if (signingKey === undefined) throw new RangeError('the kpack key store always holds a key');

  const notary = environment.connectNotary({
    baseUrl: notaryUrl,
    ...(notaryCa === undefined ? {} : { ca: notaryCa }),
    credentials,
    userAgent: 'kpack-trust-signer',
  });
  const registry = environment.connectRegistry({
    credentials,
    ...(registryCa === undefined ? {} : { ca: registryCa }),
    insecureRegistries: settings.insecureRegistries,
  });
  try {
    return await signBuild(
      {
        image,
        rootKeyIds: settings.rootKeyIds,
        chooseRoles: (collection, _keys, tags) =>
          chooseKpackRoles(collection, signingKey, tags, settings.delegation),
      },
      { notary, keyStore, registry, now: environment.now, progress: say },
    );
  } finally {
    notary.close();
    registry.close();
  }
}

/** A CA bundle a variable names, checked by `sign --notary-ca`'s rule; the refusal names the variable. */
async function optionalCaFile(
  path: string | undefined,
  variable: string,
  environment: CompletionEnvironment,
): Promise<string | undefined> {
  if (path === undefined) return undefined;
  const text = await environment.readTextFile(path);
  if (text === undefined) {
    throw new TrustError(
      'CONFIG_INVALID',
      { source: 'environment', path: variable, problem: `${path} does not exist` },
      `${variable}: ${path} does not exist.`,
    );
  }
  const problem = caBundleProblem(text);
  if (problem !== undefined) {
    throw new TrustError(
      'CONFIG_INVALID',
      { source: 'environment', path: variable, problem: `${path}: ${problem}` },
      `${variable} ${path}: ${problem}.`,
    );
  }
  return text;
}

function describe(err: unknown): string {
  if (isTrustError(err)) return `${err.message.replace(/\s*\n\s*/g, ' ')} [${err.code}]`;
  if (err instanceof Error) return err.message.replace(/\s*\n\s*/g, ' ');
  return String(err);
}

/**
 * kpack passes the Image's URL as written, and Go's notary client would speak plain http to it.
 * We do not: the token exchange carries the build's registry credentials, and trust data read
 * over http can be swapped in transit. The rule is `sign --notary-url`'s (cli/notary-url.ts), so
 * the two entry points accept and refuse the same URLs. The URL is never echoed.
 */
function requireHttps(notaryUrl: string): void {
  const problem = notaryUrlProblem(notaryUrl);
  if (problem === undefined) return;
  const wording: Record<NotaryUrlProblem, string> = {
    'not-a-url':
      "-notary-v1-url is not a URL such as https://notary.example.com (the Image's spec.notary.v1.url)",
    'not-https':
      "-notary-v1-url must be an https:// URL, not http:// (set the Image's spec.notary.v1.url to the server's https address; KPACK_TRUST_NOTARY_CA trusts a private CA)",
    credentials:
      "-notary-v1-url must not hold credentials (the Image's spec.notary.v1.url); the build's registry Secrets log in to notary",
    'query-or-fragment':
      "-notary-v1-url must not have a query or fragment (the Image's spec.notary.v1.url)",
  };
  throw new TrustError(
    'CONFIG_INVALID',
    { source: 'argument', path: '-notary-v1-url', problem },
    wording[problem],
  );
}
