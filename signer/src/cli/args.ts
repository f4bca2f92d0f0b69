/**
 * Command-line parsing for `kpack-trust-signer`. Strict: unknown flags, missing values, repeated
 * single-valued flags and mixed input or key sources are errors (INPUT_INVALID), since a signer
 * that guesses might sign the wrong thing. Both `--flag value` and `--flag=value` are accepted.
 */
import { TrustError } from '@kpack-trust/common';
import { notaryUrlProblem } from './notary-url.js';

/** Where the tags and digest come from. */
export type BuildInput =
  | { readonly kind: 'report'; readonly file: string }
  | {
      readonly kind: 'flags';
      readonly images: readonly string[];
      readonly digest: string;
      readonly size?: number;
    };

/** Which key store, as flags name it (passphrases come from the environment, not flags). */
export type KeyFlags =
  | {
      readonly kind: 'kubernetes';
      /** Absent: the kubeconfig context's namespace (in-cluster: the pod's). */
      readonly namespace?: string;
      readonly rootKeySecret: string;
      readonly targetsKeySecret: string;
      readonly kubeconfig?: string;
    }
  | {
      readonly kind: 'directory';
      readonly dir: string;
      /** A second directory in the same layout holding the root key (to create or re-sign root). */
      readonly rootDir?: string;
    };

/** A parsed `sign` command. */
export interface SignCommand {
  readonly command: 'sign';
  readonly notaryUrl: string;
  readonly notaryCa?: string;
  readonly input: BuildInput;
  readonly keys: KeyFlags;
  /** `targets/releases` etc.; `targets` when absent. */
  readonly delegation?: string;
  /** Docker config files with registry credentials; empty = the default location if it exists. */
  readonly dockerConfigs: readonly string[];
  /** Root key ids to pin when the key store holds no root key. */
  readonly rootKeyIds: readonly string[];
  readonly registryCa?: string;
  readonly insecureRegistries: readonly string[];
  /** False with `--no-registry-check`: trust the stated size, do not ask the registry. */
  readonly registryCheck: boolean;
}

/** What the command line asks for. */
export type ParsedCommand =
  SignCommand | { readonly command: 'help' } | { readonly command: 'version' };

interface FlagSpec {
  readonly repeatable?: boolean;
  /** A switch takes no value. */
  readonly switch?: boolean;
}

const FLAGS: Readonly<Record<string, FlagSpec>> = {
  'notary-url': {},
  'notary-ca': {},
  report: {},
  image: { repeatable: true },
  digest: {},
  size: {},
  delegation: {},
  'docker-config': { repeatable: true },
  'root-key-id': { repeatable: true },
  'registry-ca': {},
  'insecure-registry': { repeatable: true },
  'no-registry-check': { switch: true },
  'secret-store': {},
  namespace: {},
  'root-key-secret': {},
  'targets-key-secret': {},
  kubeconfig: {},
  'keys-dir': {},
  'root-keys-dir': {},
  help: { switch: true },
};

const DELEGATION = /^targets(?:\/[-a-z0-9_]+)+$/;
const KEY_ID = /^[0-9a-f]{64}$/;

function invalid(problem: string): TrustError {
  return new TrustError('INPUT_INVALID', { source: 'command line', problem }, `${problem}.`);
}

/** Parses argv (without `node` and the script); throws INPUT_INVALID with a one-line reason. */
export function parseArguments(argv: readonly string[]): ParsedCommand {
  const [command, ...rest] = argv;
  if (command === undefined) {
    throw invalid('no command given; the commands are "sign", "kpack-completion" and "controller"');
  }
  if (command === '--help' || command === '-h' || command === 'help') return { command: 'help' };
  if (command === '--version') return { command: 'version' };
  if (command !== 'sign') {
    throw invalid(
      `unknown command "${command}"; the commands are "sign", "kpack-completion" and "controller"`,
    );
  }

  const values = new Map<string, string[]>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] ?? '';
    if (arg === '-h') {
      values.set('help', ['']);
      continue;
    }
    if (!arg.startsWith('--')) throw invalid(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = FLAGS[name];
    if (spec === undefined) throw invalid(`unknown flag --${name}`);
    let value: string;
    if (spec.switch === true) {
      if (eq !== -1) throw invalid(`--${name} takes no value`);
      value = '';
    } else if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = rest[i + 1];
      if (next === undefined || next.startsWith('--')) throw invalid(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (spec.switch !== true && value === '') throw invalid(`--${name} needs a non-empty value`);
    const list = values.get(name) ?? [];
    if (list.length > 0 && spec.repeatable !== true) throw invalid(`--${name} is given twice`);
    list.push(value);
    values.set(name, list);
  }
  if (values.has('help')) return { command: 'help' };

  const one = (name: string): string | undefined => values.get(name)?.[0];
  const all = (name: string): string[] => values.get(name) ?? [];
  const required = (name: string, why: string): string => {
    const v = one(name);
    if (v === undefined) throw invalid(`--${name} is required (${why})`);
    return v;
  };

  const notaryUrl = notaryUrlOf(required('notary-url', 'the notary server to publish to'));
  const input = buildInput(one, all);
  const keys = keyFlags(one);
  const delegation = one('delegation');
  if (delegation !== undefined && !DELEGATION.test(delegation)) {
    throw invalid(`--delegation "${delegation}" is not a delegation role such as targets/releases`);
  }
  const rootKeyIds = all('root-key-id');
  for (const id of rootKeyIds) {
    if (!KEY_ID.test(id)) throw invalid(`--root-key-id "${id}" is not a 64-hex-digit key id`);
  }
  const registryCheck = !values.has('no-registry-check');
  if (!registryCheck && input.kind === 'flags' && input.size === undefined) {
    throw invalid(
      '--no-registry-check needs --size: without the registry the manifest size is unknown',
    );
  }
  const notaryCa = one('notary-ca');
  const registryCa = one('registry-ca');
  return {
    command: 'sign',
    notaryUrl,
    ...(notaryCa === undefined ? {} : { notaryCa }),
    input,
    keys,
    ...(delegation === undefined ? {} : { delegation }),
    dockerConfigs: all('docker-config'),
    rootKeyIds,
    ...(registryCa === undefined ? {} : { registryCa }),
    insecureRegistries: all('insecure-registry'),
    registryCheck,
  };
}

/** `--notary-url` by the rule every entry point shares (notary-url.ts), worded for this flag. */
function notaryUrlOf(text: string): string {
  switch (notaryUrlProblem(text)) {
    case undefined:
      return text;
    case 'credentials':
      throw invalid('--notary-url must not hold credentials; give them in --docker-config');
    case 'not-https':
      throw invalid(
        '--notary-url must be an https:// URL, not http:// (notary serves trust data over TLS; give --notary-ca for a private CA)',
      );
    case 'query-or-fragment':
      throw invalid('--notary-url must not have a query or fragment');
    case 'not-a-url':
      throw invalid('--notary-url is not a URL such as https://notary.example.com');
  }
}

function buildInput(
  one: (name: string) => string | undefined,
  all: (name: string) => string[],
): BuildInput {
  const report = one('report');
  const images = all('image');
  const digest = one('digest');
  const sizeText = one('size');
  if (report !== undefined) {
    if (images.length > 0 || digest !== undefined || sizeText !== undefined) {
      throw invalid('give either --report or --image/--digest/--size, not both');
    }
    return { kind: 'report', file: report };
  }
  if (images.length === 0) {
    throw invalid('nothing to sign: give --report FILE, or --image REPO:TAG with --digest');
  }
  if (digest === undefined) throw invalid('--image needs --digest sha256:<hex>');
  if (sizeText === undefined) return { kind: 'flags', images, digest };
  if (!/^[1-9][0-9]*$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw invalid(`--size "${sizeText}" is not a positive integer`);
  }
  return { kind: 'flags', images, digest, size: Number(sizeText) };
}

function keyFlags(one: (name: string) => string | undefined): KeyFlags {
  const dir = one('keys-dir');
  const rootDir = one('root-keys-dir');
  const store = one('secret-store');
  const kubernetesFlags = ['namespace', 'root-key-secret', 'targets-key-secret', 'kubeconfig'];
  if (dir !== undefined) {
    if (store !== undefined || kubernetesFlags.some((f) => one(f) !== undefined)) {
      throw invalid('give either --keys-dir or --secret-store kubernetes and its flags, not both');
    }
    return { kind: 'directory', dir, ...(rootDir === undefined ? {} : { rootDir }) };
  }
  if (rootDir !== undefined) throw invalid('--root-keys-dir goes with --keys-dir');
  if (store === undefined) {
    throw invalid(
      'no keys: give --keys-dir DIR, or --secret-store kubernetes --root-key-secret NAME --targets-key-secret NAME',
    );
  }
  if (store !== 'kubernetes')
    throw invalid(`--secret-store "${store}" is unknown; only "kubernetes" is`);
  const need = (name: string): string => {
    const v = one(name);
    if (v === undefined) throw invalid(`--secret-store kubernetes needs --${name}`);
    return v;
  };
  const kubeconfig = one('kubeconfig');
  const namespace = one('namespace');
  return {
    kind: 'kubernetes',
    ...(namespace === undefined ? {} : { namespace }),
    rootKeySecret: need('root-key-secret'),
    targetsKeySecret: need('targets-key-secret'),
    ...(kubeconfig === undefined ? {} : { kubeconfig }),
  };
}
