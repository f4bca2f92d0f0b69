/**
 * The argument vector kpack gives its completion container (kpack v0.17.2, `build_pod.go`), read
 * the way kpack's own `cmd/completion` reads it: Go's `flag` package. So `-name=value`,
 * `-name value`, `--name=value` and `--name value` all work; parsing stops at `--` or at the first
 * argument that is not a flag; a string flag given twice keeps the last value, a list flag keeps
 * them all. Pure: strings in, the parsed flags and the vector to hand on to kpack's binary out.
 */
import { TrustError } from '@kpack-trust/common';

/** kpack v0.17.2's `cmd/completion` flags: all take a value (no boolean flags). */
const STRING_FLAGS = ['notary-v1-url', 'cache-tag', 'termination-message-path'] as const;
const LIST_FLAGS = [
  'basic-docker',
  'dockercfg',
  'dockerconfig',
  'basic-git',
  'ssh-git',
  'blob',
  'cosign-annotations',
  'cosign-repositories',
  'cosign-docker-media-types',
] as const;

/** The flag this step consumes; every other argument goes on to kpack's binary unchanged. */
export const NOTARY_URL_FLAG = 'notary-v1-url';

/** A `-basic-docker=<secret>=<registry>` pair. */
export interface BasicDockerSecret {
  readonly secret: string;
  readonly registry: string;
}

/** What this step reads from kpack's arguments. */
export interface CompletionArguments {
  /** `-notary-v1-url`: present only when the Image has `spec.notary.v1`. */
  readonly notaryUrl?: string;
  /** `kubernetes.io/basic-auth` Secrets annotated for a registry. */
  readonly basicDocker: readonly BasicDockerSecret[];
  /** `kubernetes.io/dockerconfigjson` Secrets, then `kubernetes.io/dockercfg` ones, by name. */
  readonly dockerConfigSecrets: readonly string[];
  readonly dockerCfgSecrets: readonly string[];
  /** The vector for kpack's binary: the input minus the `-notary-v1-url` argument(s). */
  readonly forwarded: readonly string[];
}

function invalid(problem: string): TrustError {
  return new TrustError(
    'INPUT_INVALID',
    { source: "kpack's completion arguments", problem },
    `kpack's completion arguments: ${problem}.`,
  );
}

/**
 * Parses kpack's completion argv. Throws INPUT_INVALID where Go's `flag` would stop with an error:
 * an undefined flag, bad flag syntax, a flag without its value, a malformed `-basic-docker`.
 */
export function parseCompletionArguments(argv: readonly string[]): CompletionArguments {
  const strings = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const forwarded: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    // Go's flag: a lone "-" or a non-flag ends the flags; "--" ends them and is consumed.
    if (arg.length < 2 || !arg.startsWith('-')) break;
    if (arg === '--') {
      forwarded.push(arg);
      i++;
      break;
    }
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    if (body === '' || body.startsWith('-') || body.startsWith('=')) {
      throw invalid(`bad flag syntax: ${arg}`);
    }
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const isString = (STRING_FLAGS as readonly string[]).includes(name);
    if (!isString && !(LIST_FLAGS as readonly string[]).includes(name)) {
      throw invalid(
        `flag provided but not defined: -${name} (this step knows kpack v0.17.2's flags)`,
      );
    }
    let value: string;
    const consumed = [arg];
    if (eq !== -1) {
      value = body.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw invalid(`flag needs an argument: -${name}`);
      value = next;
      consumed.push(next);
      i++;
    }
    if (name !== NOTARY_URL_FLAG) forwarded.push(...consumed);
    if (isString) strings.set(name, value);
    else lists.set(name, [...(lists.get(name) ?? []), value]);
  }
  forwarded.push(...argv.slice(i));

  const basicDocker = (lists.get('basic-docker') ?? []).map((value): BasicDockerSecret => {
    // kpack splits on every "=" and wants exactly two parts.
    const parts = value.split('=');
    const [secret, registry] = parts;
    if (parts.length !== 2 || secret === undefined || registry === undefined) {
      throw invalid(`could not parse docker secret argument ${value}`);
    }
    return { secret, registry };
  });
  const notaryUrl = strings.get(NOTARY_URL_FLAG);
  return {
    // kpack signs only when the URL is non-empty (`notaryV1URL != ""`).
    ...(notaryUrl === undefined || notaryUrl === '' ? {} : { notaryUrl }),
    basicDocker,
    dockerConfigSecrets: lists.get('dockerconfig') ?? [],
    dockerCfgSecrets: lists.get('dockercfg') ?? [],
    forwarded,
  };
}

/**
 * Whether the vector asks for Notary at all, judged without parsing: when a newer kpack passes a
 * flag this step does not know, a build that does not use Notary is handed to kpack untouched.
 */
export function mentionsNotary(argv: readonly string[]): boolean {
  return argv.some((arg) => /^--?notary-v1-url(?:=|$)/.test(arg));
}
