/**
 * The RFC's key flow: the root and targets keys of an image live in two Kubernetes Secrets named
 * by the Image (`rootPrivateKeyRef`, `targetPrivateKeyRef`). The first build finds neither,
 * generates both (ECDSA P-256, as notary and docker do) and stores them; later builds read them
 * back. Public keys are left to the notary server, as the RFC says.
 *
 * Layout of each Secret (type Opaque, so the targets Secret is exactly what kpack's own
 * `spec.notary.v1.secretRef` mounts, and either Secret can be mounted for `--keys-dir`):
 *
 *   data:
 *     <canonical key id>.key  encrypted PKCS#8 PEM with `role:` (and, for targets, `gun:`)
 *                             headers — byte for byte the file notary and docker keep in
 *                             `~/.docker/trust/private`, so `notary key import` takes it as is
 *     password                the random passphrase that encrypts it (left out when the operator
 *                             supplies KPACK_TRUST_*_PASSPHRASE, so the Secret alone is not enough
 *                             to sign)
 *     root.crt                root Secret only: the self-signed `CN=<GUN>` certificate. Storing it
 *                             keeps the root key id (a hash of the certificate) stable from the
 *                             first build on, which is what the verifier pins.
 *   labels:       app.kubernetes.io/managed-by=kpack-trust-signer, kpack-trust.io/notary-role
 *   annotations:  kpack-trust.io/gun, kpack-trust.io/key-id (and root-key-id for root)
 *
 * Two first builds racing: each creates-if-absent; the loser's POST gets 409 AlreadyExists, it
 * discards the key it generated and reads the winner's back, so both sign with one key pair.
 */
import {
  PublicKey,
  TrustError,
  createRootCertificate,
  encodePrivateKeyPem,
  generateSigningKey,
} from '@kpack-trust/common';
import type { KubeConfig, V1Secret } from '@kubernetes/client-node';
import { randomBytes, type KeyObject } from 'node:crypto';
import {
  chooseKeyFile,
  describeEntries,
  openKeyFile,
  passwordCandidates,
  rootCertificateFor,
  type KeyFileEntry,
  type PassphraseCandidate,
} from './key-files.js';
import type { KeyStore, RepositoryKeys } from './key-store.js';
import { NamespacedSecrets, type SecretManifest } from './kubernetes-client.js';
import { PASSPHRASE_VARIABLES, type KeyPassphrases } from './passphrases.js';

/** Labels and annotations on the Secrets this store creates. */
export const SECRET_METADATA = {
  managedByLabel: 'app.kubernetes.io/managed-by',
  managedBy: 'kpack-trust-signer',
  roleLabel: 'kpack-trust.io/notary-role',
  gunAnnotation: 'kpack-trust.io/gun',
  keyIdAnnotation: 'kpack-trust.io/key-id',
  rootKeyIdAnnotation: 'kpack-trust.io/root-key-id',
} as const;

/** The Secret entries this store reads and writes (besides `<key id>.key`). */
export const SECRET_ENTRIES = { password: 'password', rootCertificate: 'root.crt' } as const;

/** Settings of the Kubernetes Secret store. */
export interface KubernetesSecretStoreOptions {
  /** A loaded client configuration (see loadKubeConfig). */
  readonly kubeConfig: KubeConfig;
  /** The namespace holding both Secrets (the Image's, where the build pod runs). */
  readonly namespace: string;
  /** The root key Secret's name. */
  readonly rootKeySecret: string;
  /** The targets key Secret's name. */
  readonly targetsKeySecret: string;
  /** Operator-supplied passphrases; with one, new keys are encrypted with it and no `password` is stored. */
  readonly passphrases?: KeyPassphrases;
  /** The clock for new root certificates and for judging stored ones. */
  readonly now?: () => Date;
  /** More labels for the Secrets it creates (the controller's source-namespace label, which its quota counts). */
  readonly labels?: Readonly<Record<string, string>>;
}

type Role = 'root' | 'targets';

// What one Secret yields.
interface StoredKey {
  readonly privateKey: KeyObject;
  readonly certificatePem?: string;
}

// A deletion between our 409 and our read is the only way round the loop; it does not recur.
const CREATE_ATTEMPTS = 3;
// DNS-1123 subdomain (Secret names) and label (namespaces), as the apiserver validates them.
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Root and targets keys in two Kubernetes Secrets, generated on an image's first build. */
export class KubernetesSecretStore implements KeyStore {
  /** Names the Secrets and the apiserver (never their contents). */
  readonly description: string;
  readonly #secrets: NamespacedSecrets;
  readonly #names: Readonly<Record<Role, string>>;
  readonly #passphrases: KeyPassphrases;
  readonly #now: () => Date;
  readonly #labels: Readonly<Record<string, string>>;

  /** Validates the names up front (the apiserver would refuse them later, less clearly). */
  constructor(options: KubernetesSecretStoreOptions) {
    const { namespace, rootKeySecret, targetsKeySecret } = options;
    const invalid = (source: string, problem: string): TrustError =>
      new TrustError('INPUT_INVALID', { source, problem }, `${source}: ${problem}`);
    if (namespace.length > 63 || !LABEL.test(namespace)) {
      throw invalid('--namespace', `"${namespace}" is not a valid Kubernetes namespace name`);
    }
    for (const [flag, name] of [
      ['--root-key-secret', rootKeySecret],
      ['--targets-key-secret', targetsKeySecret],
    ] as const) {
      if (name.length > 253 || !SUBDOMAIN.test(name)) {
        throw invalid(
          flag,
          `"${name}" is not a valid Secret name (a lowercase RFC 1123 subdomain)`,
        );
      }
    }
    if (rootKeySecret === targetsKeySecret) {
      throw invalid(
        '--targets-key-secret',
        'the root and targets keys need two different Secrets (each holds one key)',
      );
    }
    this.#names = { root: rootKeySecret, targets: targetsKeySecret };
    this.#passphrases = options.passphrases ?? {};
    this.#now = options.now ?? ((): Date => new Date());
    this.#labels = options.labels ?? {};
    this.#secrets = new NamespacedSecrets(
      options.kubeConfig,
      namespace,
      rbacHint(namespace, rootKeySecret, targetsKeySecret),
    );
    this.description = `Kubernetes Secrets "${rootKeySecret}" and "${targetsKeySecret}" in namespace "${namespace}" at ${this.#secrets.server}`;
  }

  /**
   * Reads both Secrets; with `createIfMissing`, creates whichever is absent (root first). Also
   * covers the partial state a failed first build leaves (root stored, targets not).
   * `created` is true when this call stored at least one new key.
   */
  async load(gun: string, options: { createIfMissing: boolean }): Promise<RepositoryKeys> {
    const [rootSecret, targetsSecret] = await Promise.all([
      this.#secrets.read(this.#names.root),
      this.#secrets.read(this.#names.targets),
    ]);
    // Decode what exists before creating anything: a broken Secret stops the build untouched.
    let root = rootSecret === undefined ? undefined : this.#decode(rootSecret, 'root', gun);
    let targets =
      targetsSecret === undefined ? undefined : this.#decode(targetsSecret, 'targets', gun);
    let created = false;
    if (options.createIfMissing) {
      if (root === undefined) {
        const outcome = await this.#createOrAdopt('root', gun);
        root = outcome.key;
        created ||= outcome.created;
      }
      if (targets === undefined) {
        const outcome = await this.#createOrAdopt('targets', gun);
        targets = outcome.key;
        created ||= outcome.created;
      }
    }
    return {
      ...(root === undefined ? {} : { root }),
      ...(targets === undefined ? {} : { targets: targets.privateKey }),
      delegations: new Map(),
      created,
    };
  }

  /** Create-if-absent: ours if the POST wins, otherwise the winner's, read back. */
  async #createOrAdopt(role: Role, gun: string): Promise<{ key: StoredKey; created: boolean }> {
    const name = this.#names[role];
    const generated = await this.#generate(role, gun);
    for (let attempt = 1; attempt <= CREATE_ATTEMPTS; attempt++) {
      if ((await this.#secrets.create(generated.secret)) === 'created') {
        return { key: generated.key, created: true };
      }
      const winner = await this.#secrets.read(name);
      if (winner !== undefined) return { key: this.#decode(winner, role, gun), created: false };
    }
    throw new TrustError(
      'HTTP_STATUS',
      { url: this.#secrets.urlOf(name), status: 409, serverCode: 'AlreadyExists' },
      `Secret "${this.#secrets.namespace}/${name}" was reported to exist ${CREATE_ATTEMPTS} times but could not be read back`,
    );
  }

  async #generate(role: Role, gun: string): Promise<{ key: StoredKey; secret: SecretManifest }> {
    const privateKey = generateSigningKey('ecdsa');
    const keyId = PublicKey.fromKeyObject(privateKey).canonicalId;
    const given = this.#passphrases[role];
    const supplied = given === undefined || given === '' ? undefined : given;
    const passphrase = supplied ?? randomBytes(32).toString('base64url');
    // Notary writes no gun header on root keys: one root key may serve several repositories.
    const pem = encodePrivateKeyPem(
      privateKey,
      passphrase,
      role === 'root' ? { role } : { role, gun },
    );
    const certificatePem =
      role === 'root'
        ? await createRootCertificate(gun, privateKey, { notBefore: this.#now() })
        : undefined;
    const base64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
    const data: Record<string, string> = { [`${keyId}.key`]: base64(pem) };
    if (supplied === undefined) data[SECRET_ENTRIES.password] = base64(passphrase);
    const annotations: Record<string, string> = {
      [SECRET_METADATA.gunAnnotation]: gun,
      [SECRET_METADATA.keyIdAnnotation]: keyId,
    };
    if (certificatePem !== undefined) {
      data[SECRET_ENTRIES.rootCertificate] = base64(certificatePem);
      annotations[SECRET_METADATA.rootKeyIdAnnotation] =
        PublicKey.fromCertificatePem(certificatePem).id;
    }
    const secret: SecretManifest = {
      name: this.#names[role],
      type: 'Opaque',
      labels: {
        ...this.#labels,
        [SECRET_METADATA.managedByLabel]: SECRET_METADATA.managedBy,
        [SECRET_METADATA.roleLabel]: role,
      },
      annotations,
      data,
    };
    return {
      key: certificatePem === undefined ? { privateKey } : { privateKey, certificatePem },
      secret,
    };
  }

  /** A stored Secret's key, or a KEY_STORE_INVALID / PRIVATE_KEY_INVALID naming what is wrong. */
  #decode(secret: V1Secret, role: Role, gun: string): StoredKey {
    const store = `Kubernetes Secret "${this.#secrets.namespace}/${this.#names[role]}"`;
    const data = secret.data ?? {};
    const text = (entry: string): string | undefined => {
      const value = data[entry];
      return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
    };
    const entries: KeyFileEntry[] = Object.keys(data)
      .filter((entry) => entry.endsWith('.key'))
      .sort()
      .map((entry) => ({ name: entry, pem: text(entry) ?? '' }));
    const invalid = (problem: string): TrustError =>
      new TrustError('KEY_STORE_INVALID', { store, problem }, `${store}: ${problem}`);
    if (entries.length === 0) {
      const present = Object.keys(data).sort();
      throw invalid(
        `has no "<key id>.key" entry (entries: ${present.length === 0 ? 'none' : present.join(', ')})`,
      );
    }
    const entry = chooseKeyFile(entries, role, gun);
    if (!entry) throw invalid(`holds no ${role} key (found: ${describeEntries(entries)})`);
    const variable = PASSPHRASE_VARIABLES[role];
    const password = text(SECRET_ENTRIES.password);
    const candidates: PassphraseCandidate[] =
      password === undefined
        ? []
        : passwordCandidates(password, `the "${SECRET_ENTRIES.password}" entry`);
    const supplied = this.#passphrases[role];
    const passphraseSet = supplied !== undefined && supplied !== '';
    if (passphraseSet) candidates.push({ value: supplied, source: variable });
    const { privateKey } = openKeyFile(
      entry,
      candidates,
      `${store} entry "${entry.name}"`,
      `add a "${SECRET_ENTRIES.password}" entry or set ${variable}`,
      // With the passphrase set the Secret alone must not sign (guide §3.1): no unencrypted key.
      passphraseSet ? variable : undefined,
    );
    if (role !== 'root') return { privateKey };
    const certificate = text(SECRET_ENTRIES.rootCertificate);
    const certificatePem =
      certificate === undefined
        ? undefined
        : rootCertificateFor(certificate, privateKey, gun, this.#now(), store);
    return certificatePem === undefined ? { privateKey } : { privateKey, certificatePem };
  }
}

/** The RBAC a 403 is missing, spelled out for the operator. */
function rbacHint(namespace: string, root: string, targets: string): string {
  return (
    `The signer's service account needs a Role in namespace "${namespace}" allowing "get" on ` +
    `secrets (may be limited by resourceNames to "${root}" and "${targets}") and "create" on ` +
    `secrets (RBAC cannot limit create by name), bound to it by a RoleBinding`
  );
}
