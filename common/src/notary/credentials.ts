/**
 * Registry credentials for the notary server's auth challenges. Docker sends the credentials of the
 * image's registry to the notary server (and its token service); the sources here answer "which
 * username and password for this host", with the host matched the way the Docker CLI matches the
 * `auths` keys of `~/.docker/config.json`.
 */
import { TrustError } from '../errors.js';

/** A username and password for HTTP Basic (directly, or to a token service). */
export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Answers which credentials to present to a host (`registry.example:5000`, `docker.io`). */
export interface CredentialSource {
  credentialsFor(host: string): Promise<Credentials | undefined>;
}

/** The same credentials for every host — for a notary server behind its own token service. */
export function staticCredentials(username: string, password: string): CredentialSource {
  const credentials: Credentials = Object.freeze({ username, password });
  return { credentialsFor: () => Promise.resolve(credentials) };
}

/**
 * The first source that knows the host answers, in order: docker's several config files, kpack's
 * several build Secrets (its keychain's `Append`: the first wins), a controller's own last.
 */
export function firstCredentials(sources: readonly CredentialSource[]): CredentialSource {
  return {
    async credentialsFor(host): Promise<Credentials | undefined> {
      for (const source of sources) {
        const found = await source.credentialsFor(host);
        if (found !== undefined) return found;
      }
      return undefined;
    },
  };
}

/** The key `docker login` writes for Docker Hub. */
const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';
/** Host names that all mean Docker Hub when looking up its credentials. */
const DOCKER_HUB_HOSTS: readonly string[] = [
  'docker.io',
  'index.docker.io',
  'registry-1.docker.io',
];

/**
 * Credentials from a parsed docker `config.json`. Each `auths` entry gives `auth` (base64 of
 * `user:password`) or `username` and `password`. Entries holding only an `identitytoken` (an
 * OAuth refresh token from a registry's own login flow) or only a credential helper's marker are
 * skipped: answering them would mean running helpers or an OAuth exchange, which this library does
 * not do. Every entry is checked up front, as `docker` does when it loads the file, so a broken
 * entry is reported at startup rather than on the first challenge.
 */
export function dockerConfigCredentials(
  configJson: unknown,
  source = 'docker config.json',
): CredentialSource {
  const fail = (problem: string): never => {
    throw new TrustError(
      'CREDENTIALS_INVALID',
      { source, problem },
      `Cannot use ${source}: ${problem}.`,
    );
  };
  if (!isRecord(configJson)) return fail('the document is not a JSON object');
  const auths = configJson['auths'];
  const entries = new Map<string, Credentials>();
  if (auths !== undefined) {
    if (!isRecord(auths)) return fail('"auths" is not an object');
    for (const [key, entry] of Object.entries(auths)) {
      if (!isRecord(entry)) return fail(`auths["${key}"] is not an object`);
      const credentials = entryCredentials(entry, (problem) => fail(`auths["${key}"]: ${problem}`));
      if (credentials !== undefined) entries.set(key, credentials);
    }
  }
  return {
    credentialsFor: (host) => Promise.resolve(matchHost(entries, host)),
  };
}

function entryCredentials(
  entry: Record<string, unknown>,
  fail: (problem: string) => never,
): Credentials | undefined {
  const auth = entry['auth'];
  if (auth !== undefined && auth !== '') {
    if (typeof auth !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(auth)) {
      return fail('"auth" is not base64');
    }
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    // The password may itself contain ':'; Docker splits at the first one.
    const colon = decoded.indexOf(':');
    if (colon === -1) return fail('"auth" does not decode to user:password');
    return Object.freeze({ username: decoded.slice(0, colon), password: decoded.slice(colon + 1) });
  }
  const username = entry['username'];
  const password = entry['password'];
  if (username === undefined && password === undefined) return undefined;
  if (typeof username !== 'string' || typeof password !== 'string') {
    return fail('"username" and "password" must both be strings');
  }
  if (username === '' && password === '') return undefined;
  return Object.freeze({ username, password });
}

/**
 * Docker's lookup: the key exactly as given, else the first key whose host part (scheme and path
 * stripped) equals the host. Docker Hub's credentials sit under `https://index.docker.io/v1/`.
 */
function matchHost(
  entries: ReadonlyMap<string, Credentials>,
  host: string,
): Credentials | undefined {
  const isDockerHub = DOCKER_HUB_HOSTS.includes(host);
  const exact = entries.get(isDockerHub ? DOCKER_HUB_AUTH_KEY : host) ?? entries.get(host);
  if (exact !== undefined) return exact;
  for (const [key, credentials] of entries) {
    const keyHost = hostOf(key);
    if (isDockerHub ? DOCKER_HUB_HOSTS.includes(keyHost) : keyHost === host) return credentials;
  }
  return undefined;
}

/** `https://registry.example:5000/v2/` → `registry.example:5000`. */
function hostOf(key: string): string {
  const scheme = key.indexOf('://');
  const rest = scheme === -1 ? key : key.slice(scheme + 3);
  const slash = rest.indexOf('/');
  return slash === -1 ? rest : rest.slice(0, slash);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
