/**
 * What kpack cannot pass per Image — the notary CA, the root pin, the delegation — and every path
 * kpack mounts, read once from the environment (baked into the completion image with `ENV`, since
 * kpack sets the completion container's env itself). Pure: an env record in, frozen settings out.
 */
import { TrustError } from '@kpack-trust/common';

/** The settings of one `kpack-completion` run. */
export interface CompletionSettings {
  /** lifecycle's report, `/var/report/report.toml`. */
  readonly reportFile: string;
  /** The Secret `spec.notary.v1.secretRef` mounted by kpack: `<key id>.key` and `password`. */
  readonly notaryKeysDir: string;
  /** Where kpack mounts each registry Secret, `/var/build-secrets/<name>`. */
  readonly buildSecretsDir: string;
  /** kpack's own completion binary, run after signing. */
  readonly kpackCompletion: string;
  /** The argv[0] it is started with (the CNB launcher picks its process type from it). */
  readonly kpackCompletionArgv0: string;
  /** A PEM file with the notary server's CA, trusted besides the public roots. */
  readonly notaryCaFile?: string;
  /** Root key ids the repository's root must be signed by. */
  readonly rootKeyIds: readonly string[];
  /** Trust whatever root the server serves, as kpack does (off unless asked for). */
  readonly trustOnFirstUse: boolean;
  /** Sign exactly this delegation instead of kpack's choice. */
  readonly delegation?: string;
  /** A PEM file with the registry's CA. */
  readonly registryCaFile?: string;
  /** Registries reachable over plain HTTP after HTTPS fails (loopback always is). */
  readonly insecureRegistries: readonly string[];
}

/** Every variable read, its default and its meaning: the table in signer/README.md. */
export const COMPLETION_VARIABLES = {
  reportDir: 'KPACK_TRUST_REPORT_DIR',
  notaryKeysDir: 'KPACK_TRUST_NOTARY_KEYS_DIR',
  buildSecretsDir: 'KPACK_TRUST_BUILD_SECRETS_DIR',
  kpackCompletion: 'KPACK_TRUST_KPACK_COMPLETION',
  kpackCompletionArgv0: 'KPACK_TRUST_KPACK_COMPLETION_ARGV0',
  notaryCa: 'KPACK_TRUST_NOTARY_CA',
  rootKeyId: 'KPACK_TRUST_ROOT_KEY_ID',
  trustOnFirstUse: 'KPACK_TRUST_ROOT_TRUST_ON_FIRST_USE',
  delegation: 'KPACK_TRUST_DELEGATION',
  registryCa: 'KPACK_TRUST_REGISTRY_CA',
  insecureRegistries: 'KPACK_TRUST_INSECURE_REGISTRIES',
} as const;

/** kpack v0.17.2's paths (`cmd/completion/main.go`, `build_pod.go`). */
export const KPACK_PATHS = {
  reportDir: '/var/report',
  notaryKeysDir: '/var/notary/v1',
  buildSecretsDir: '/var/build-secrets',
  kpackCompletion: '/cnb/process/kpack-completion',
  completionCommand: '/cnb/process/completion',
} as const;

const KEY_ID = /^[0-9a-f]{64}$/;
const DELEGATION = /^targets(?:\/[-a-z0-9_]+)+$/;

function invalid(variable: string, problem: string): TrustError {
  return new TrustError(
    'CONFIG_INVALID',
    { source: 'environment', path: variable, problem },
    `${variable}: ${problem}.`,
  );
}

/** A variable's trimmed value; undefined when unset or blank. */
function setting(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

/** kpack's own completion binary and its argv[0]: all a build not asking for Notary needs, and never invalid. */
export function kpackCompletionProgram(env: Readonly<Record<string, string | undefined>>): {
  readonly file: string;
  readonly argv0: string;
} {
  const V = COMPLETION_VARIABLES;
  return {
    file: setting(env, V.kpackCompletion) ?? KPACK_PATHS.kpackCompletion,
    argv0: setting(env, V.kpackCompletionArgv0) ?? KPACK_PATHS.completionCommand,
  };
}

/** Reads the settings; throws CONFIG_INVALID naming the variable at fault. */
export function completionSettings(
  env: Readonly<Record<string, string | undefined>>,
): CompletionSettings {
  const V = COMPLETION_VARIABLES;
  const get = (name: string): string | undefined => setting(env, name);
  const list = (name: string): string[] =>
    (get(name) ?? '').split(/[\s,]+/).filter((item) => item !== '');

  const rootKeyIds = list(V.rootKeyId);
  for (const id of rootKeyIds) {
    if (!KEY_ID.test(id)) invalidThrow(V.rootKeyId, `"${id}" is not a 64-hex-digit key id`);
  }
  const tofuText = get(V.trustOnFirstUse) ?? 'false';
  if (tofuText !== 'true' && tofuText !== 'false') {
    invalidThrow(V.trustOnFirstUse, `"${tofuText}" is neither true nor false`);
  }
  const delegation = get(V.delegation);
  if (delegation !== undefined && !DELEGATION.test(delegation)) {
    invalidThrow(V.delegation, `"${delegation}" is not a delegation role such as targets/releases`);
  }
  const notaryCaFile = get(V.notaryCa);
  const registryCaFile = get(V.registryCa);
  const reportDir = get(V.reportDir) ?? KPACK_PATHS.reportDir;
  const program = kpackCompletionProgram(env);
  return Object.freeze({
    reportFile: `${reportDir.replace(/\/+$/, '')}/report.toml`,
    notaryKeysDir: get(V.notaryKeysDir) ?? KPACK_PATHS.notaryKeysDir,
    buildSecretsDir: get(V.buildSecretsDir) ?? KPACK_PATHS.buildSecretsDir,
    kpackCompletion: program.file,
    kpackCompletionArgv0: program.argv0,
    ...(notaryCaFile === undefined ? {} : { notaryCaFile }),
    rootKeyIds,
    trustOnFirstUse: tofuText === 'true',
    ...(delegation === undefined ? {} : { delegation }),
    ...(registryCaFile === undefined ? {} : { registryCaFile }),
    insecureRegistries: list(V.insecureRegistries),
  });
}

function invalidThrow(variable: string, problem: string): never {
  throw invalid(variable, problem);
}
