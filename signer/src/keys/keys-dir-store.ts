/**
 * kpack's shipped key layout: a mounted Secret directory (`/var/notary/v1`) holding `<key id>.key`
 * — an encrypted PKCS#8 targets or delegation key, exactly as `~/.docker/trust/private` holds it —
 * and `password`. An optional second directory in the same layout holds the root key (plus, when
 * it came from our Kubernetes store, `root.crt`) for builds that must create the repository.
 *
 * This store never generates keys: what is mounted is what we sign with.
 */
import { TrustError } from '@kpack-trust/common';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import {
  chooseKeyFile,
  delegationCandidates,
  describeEntries,
  keyFileHeaders,
  openKeyFile,
  passwordCandidates,
  rootCertificateFor,
  type KeyFileEntry,
  type OpenedKey,
  type PassphraseCandidate,
} from './key-files.js';
import type { KeyStore, RepositoryKeys } from './key-store.js';
import type { KeyPassphrases } from './passphrases.js';

/** Where the keys-dir store reads from. */
export interface KeysDirStoreOptions {
  /** The targets/delegation key directory (`--keys-dir`), kpack's `<id>.key` + `password`. */
  readonly dir: string;
  /** The root key directory in the same layout, needed only to create or re-sign root. */
  readonly rootDir?: string;
  /**
   * The delegation the caller signs into (`targets/releases`). A key whose `role:` header names it
   * (or its last path segment, as `docker trust` writes) is returned under that name; failing
   * that, a header-less key or one with a signer's name.
   */
  readonly delegation?: string;
  /** Passphrases from the environment; the directory's `password` file is tried first. */
  readonly passphrases?: KeyPassphrases;
  /** The clock used to judge a stored root certificate; the system clock by default. */
  readonly now?: () => Date;
}

/** A directory's key files and password, as read once. */
interface KeyDirectory {
  readonly dir: string;
  readonly entries: readonly KeyFileEntry[];
  readonly password: string | undefined;
  readonly rootCertificate: string | undefined;
}

/** Keys read from kpack-style mounted Secret directories. */
export class KeysDirStore implements KeyStore {
  /** Names the directories (never their contents). */
  readonly description: string;
  readonly #options: KeysDirStoreOptions;

  /** Reads nothing until `load`. */
  constructor(options: KeysDirStoreOptions) {
    this.#options = options;
    this.description =
      `keys dir ${options.dir}` +
      (options.rootDir === undefined ? '' : ` (root: ${options.rootDir})`);
  }

  /** Reads and decrypts the keys for `gun`; never generates one, so `createIfMissing` is not read. */
  async load(gun: string): Promise<RepositoryKeys> {
    const { dir, rootDir, delegation, passphrases = {} } = this.#options;
    const targetsDir = await readKeyDirectory(dir);
    const opened = new Map<string, OpenedKey>();
    const open = (entry: KeyFileEntry): KeyObject => {
      let key = opened.get(entry.name);
      if (!key) {
        key = openKeyFile(
          entry,
          candidates(targetsDir, passphrases.targets, 'KPACK_TRUST_TARGETS_PASSPHRASE'),
          `key file ${join(dir, entry.name)}`,
          `put a "password" file beside it or set KPACK_TRUST_TARGETS_PASSPHRASE`,
          setBy(passphrases.targets, 'KPACK_TRUST_TARGETS_PASSPHRASE'),
        );
        opened.set(entry.name, key);
      }
      return key.privateKey;
    };

    const targetsEntry = chooseKeyFile(targetsDir.entries, 'targets', gun);
    const delegations = new Map<string, KeyObject>();
    for (const entry of targetsDir.entries) {
      const { role } = keyFileHeaders(entry.pem);
      if (role?.startsWith('targets/') && !delegations.has(role))
        delegations.set(role, open(entry));
    }
    if (delegation !== undefined && !delegations.has(delegation)) {
      const signers = delegationCandidates(targetsDir.entries);
      const segment = delegation.split('/').at(-1) ?? delegation;
      const entry = chooseKeyFile(signers, delegation, gun, [segment]) ?? signers[0];
      if (entry) delegations.set(delegation, open(entry));
    }
    if (targetsEntry === undefined && delegations.size === 0) {
      // `docker trust key generate NAME` heads its file `role: NAME`: a signer's key, which this
      // store files under a delegation only when told which one.
      const signer = delegationCandidates(targetsDir.entries)[0];
      const hint =
        signer === undefined
          ? ''
          : `; ${signer.name} looks like a docker trust signer's key: give --delegation ` +
            '(e.g. targets/releases), or run kpack-completion, which picks the roles as kpack does';
      const problem = `holds no targets or delegation key (found: ${describeEntries(targetsDir.entries)})${hint}`;
      throw new TrustError(
        'KEY_STORE_INVALID',
        { store: `keys dir ${dir}`, problem },
        `keys dir ${dir} ${problem}`,
      );
    }

    const root = rootDir === undefined ? undefined : await this.#loadRoot(rootDir, gun);
    return {
      ...(root === undefined ? {} : { root }),
      ...(targetsEntry === undefined ? {} : { targets: open(targetsEntry) }),
      delegations,
      created: false,
    };
  }

  async #loadRoot(
    rootDir: string,
    gun: string,
  ): Promise<{ privateKey: KeyObject; certificatePem?: string }> {
    const directory = await readKeyDirectory(rootDir);
    const store = `root keys dir ${rootDir}`;
    const entry = chooseKeyFile(directory.entries, 'root', gun);
    if (!entry) {
      const problem = `holds no root key (found: ${describeEntries(directory.entries)})`;
      throw new TrustError('KEY_STORE_INVALID', { store, problem }, `${store} ${problem}`);
    }
    const { privateKey } = openKeyFile(
      entry,
      candidates(directory, this.#options.passphrases?.root, 'KPACK_TRUST_ROOT_PASSPHRASE'),
      `key file ${join(rootDir, entry.name)}`,
      `put a "password" file beside it or set KPACK_TRUST_ROOT_PASSPHRASE`,
      setBy(this.#options.passphrases?.root, 'KPACK_TRUST_ROOT_PASSPHRASE'),
    );
    const now = this.#options.now?.() ?? new Date();
    const certificatePem =
      directory.rootCertificate === undefined
        ? undefined
        : rootCertificateFor(directory.rootCertificate, privateKey, gun, now, store);
    return certificatePem === undefined ? { privateKey } : { privateKey, certificatePem };
  }
}

/** The variable's name when the operator set it: every key it may open must then be encrypted. */
function setBy(passphrase: string | undefined, variable: string): string | undefined {
  return passphrase === undefined || passphrase === '' ? undefined : variable;
}

function candidates(
  directory: KeyDirectory,
  fromEnvironment: string | undefined,
  variable: string,
): PassphraseCandidate[] {
  const out =
    directory.password === undefined
      ? []
      : passwordCandidates(directory.password, `the password file in ${directory.dir}`);
  if (fromEnvironment !== undefined && fromEnvironment !== '') {
    out.push({ value: fromEnvironment, source: variable });
  }
  return out;
}

/**
 * Reads `*.key`, `password` and `root.crt` from a directory. Kubernetes mounts a Secret as
 * symlinks into a `..data` directory, so entries are read through their links and `..`-prefixed
 * names are skipped; files are taken in name order, the order kpack's ReadDir sees.
 */
async function readKeyDirectory(dir: string): Promise<KeyDirectory> {
  const store = `keys dir ${dir}`;
  let names: string[];
  try {
    names = (await readdir(dir)).filter((name) => !name.startsWith('..')).sort();
  } catch (err) {
    const problem = `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    throw new TrustError('KEY_STORE_INVALID', { store, problem }, `${store} ${problem}`);
  }
  const read = async (name: string): Promise<string | undefined> => {
    try {
      return await readFile(join(dir, name), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR') return undefined;
      const problem = `${name} cannot be read (${code ?? 'error'})`;
      throw new TrustError('KEY_STORE_INVALID', { store, problem }, `${store}: ${problem}`);
    }
  };
  const entries: KeyFileEntry[] = [];
  for (const name of names.filter((n) => n.endsWith('.key'))) {
    const pem = await read(name);
    if (pem !== undefined) entries.push({ name, pem });
  }
  return {
    dir,
    entries,
    password: names.includes('password') ? await read('password') : undefined,
    rootCertificate: names.includes('root.crt') ? await read('root.crt') : undefined,
  };
}
