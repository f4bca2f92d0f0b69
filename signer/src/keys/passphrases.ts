/**
 * Key passphrases given through the environment. They are never prompted for and never logged;
 * a store's own `password` entry (kpack's layout) is tried before them.
 */

/** Passphrases by role; an absent or empty value means "not given". */
export interface KeyPassphrases {
  /** Opens (and, when a store generates one, encrypts) the root key. */
  readonly root?: string;
  /** Opens (and encrypts) the targets key; also tried for delegation keys. */
  readonly targets?: string;
}

/** The variables the signer reads. */
export const PASSPHRASE_VARIABLES = {
  root: 'KPACK_TRUST_ROOT_PASSPHRASE',
  targets: 'KPACK_TRUST_TARGETS_PASSPHRASE',
} as const;

/** Reads `KPACK_TRUST_ROOT_PASSPHRASE` and `KPACK_TRUST_TARGETS_PASSPHRASE`; empty counts as unset. */
export function passphrasesFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): KeyPassphrases {
  const root = env[PASSPHRASE_VARIABLES.root];
  const targets = env[PASSPHRASE_VARIABLES.targets];
  return {
    ...(root === undefined || root === '' ? {} : { root }),
    ...(targets === undefined || targets === '' ? {} : { targets }),
  };
}
