/**
 * The signing key as kpack's `pkg/notary` finds it in `/var/notary/v1`: the first `*.key` file in
 * name order, whatever its PEM `role:` header says (`docker trust key generate my-key` writes
 * `role: my-key`), its key id being the file name, opened with the `password` file passed through
 * Go's `strings.TrimSpace`. The same key is offered for `targets` and for every delegation: which
 * roles it may sign is decided by the repository, once read (see roles.ts).
 */
import { PublicKey, TrustError } from '@kpack-trust/common';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openKeyFile } from '../keys/key-files.js';
import type { KeyStore, RepositoryKeys } from '../keys/key-store.js';

/** Go's `unicode.IsSpace` over Latin-1 and the Unicode spaces `strings.TrimSpace` strips. */
const GO_SPACE =
  '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const TRIM = new RegExp(`^${GO_SPACE}+|${GO_SPACE}+$`, 'gu');

/** `strings.TrimSpace`. */
export function goTrimSpace(text: string): string {
  return text.replace(TRIM, '');
}

/** A loaded kpack key: the id kpack uses (the file name) and the one it really has. */
export interface KpackNotaryKey {
  readonly fileName: string;
  /** The file name without `.key`: the key id kpack's crypto service files the key under. */
  readonly fileKeyId: string;
  /** The canonical id of the key itself (what a delegation made from its public key lists). */
  readonly keyId: string;
}

/** kpack's `/var/notary/v1` as a KeyStore that never creates keys. */
export class KpackNotaryKeyStore implements KeyStore {
  /** Names the directory, never its contents. */
  readonly description: string;
  readonly #dir: string;
  #loaded: { keys: RepositoryKeys; key: KpackNotaryKey } | undefined;

  /** Reads nothing until `load`. */
  constructor(dir: string) {
    this.#dir = dir;
    this.description = `kpack notary secret ${dir}`;
  }

  /** The key found by the last `load`, for progress lines and role choice. */
  get key(): KpackNotaryKey | undefined {
    return this.#loaded?.key;
  }

  /** Reads and decrypts the key (once); `gun` and `createIfMissing` do not matter to kpack's layout. */
  async load(): Promise<RepositoryKeys> {
    this.#loaded ??= await this.#read();
    return this.#loaded.keys;
  }

  async #read(): Promise<{ keys: RepositoryKeys; key: KpackNotaryKey }> {
    const dir = this.#dir;
    const store = `kpack notary secret ${dir}`;
    const fail = (problem: string): never => {
      throw new TrustError('KEY_STORE_INVALID', { store, problem }, `${store} ${problem}`);
    };
    let names: string[] = [];
    try {
      // Kubernetes mounts a Secret as symlinks into `..data`; Go's ReadDir sorts by name.
      names = (await readdir(dir)).filter((n) => !n.startsWith('..')).sort();
    } catch (err) {
      fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const fileName = names.find((n) => n.endsWith('.key'));
    if (fileName === undefined) {
      return fail(
        'holds no <key id>.key file (the Secret named by spec.notary.v1.secretRef needs the ' +
          'delegation or targets key, as ~/.docker/trust/private holds it, and its password)',
      );
    }
    const read = async (name: string): Promise<string | undefined> => {
      try {
        return await readFile(join(dir, name), 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return undefined;
        return fail(`: ${name} cannot be read (${code ?? 'error'})`);
      }
    };
    const pem = (await read(fileName)) ?? fail(`: ${fileName} vanished while being read`);
    const password = await read('password');
    const trimmed = password === undefined ? undefined : goTrimSpace(password);
    const { privateKey } = openKeyFile(
      { name: fileName, pem },
      trimmed === undefined ? [] : [{ value: trimmed, source: `${dir}/password` }],
      `key file ${join(dir, fileName)}`,
      'the Secret needs a "password" file with the passphrase of the key',
    );
    const key: KpackNotaryKey = {
      fileName,
      fileKeyId: fileName.slice(0, -'.key'.length),
      keyId: PublicKey.fromKeyObject(privateKey).id,
    };
    // One key for every role: the repository decides where it may sign.
    return { keys: { targets: privateKey, delegations: new Map(), created: false }, key };
  }
}
