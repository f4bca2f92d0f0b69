/**
 * A complete Notary v1 repository held in memory, with every key local, for tests: it publishes the
 * files a notary server would serve and can corrupt one role at a time and re-chain its parents
 * (notary's "swizzler" idea), so a negative test fails at exactly the check it targets.
 */
import type { KeyObject } from 'node:crypto';
import { canonicalString, goHtmlEscape, parseJson, type JsonValue } from '../canonical/json.js';
import { PublicKey } from '../keys/public-key.js';
import { createRootCertificate } from '../keys/root-certificate.js';
import { generateSigningKey, localSigner, type MetadataSigner } from '../keys/signer.js';
import type { JsonObject } from '../metadata/fields.js';
import type {
  FileMeta,
  RootMetadata,
  SnapshotMetadata,
  TargetsMetadata,
  TimestampMetadata,
} from '../metadata/models.js';
import {
  rootJson,
  signMetadata,
  snapshotJson,
  targetsJson,
  timestampJson,
} from '../metadata/write.js';
import {
  imageTarget,
  newRoot,
  newTargets,
  nextSnapshot,
  nextTargets,
  nextTimestamp,
  withDelegation,
  type TargetChanges,
} from '../repository/edit.js';
import { sha256Hex } from './hash.js';

/** A private key with its notary public form and a signer. */
export interface FixtureKey {
  readonly privateKey: KeyObject;
  readonly publicKey: PublicKey;
  readonly signer: MetadataSigner;
}

/** Makes a fixture key: ecdsa by default; `certificateFor` wraps it in a notary root certificate for that GUN. */
export async function fixtureKey(
  options: {
    type?: 'ecdsa' | 'ed25519' | 'rsa';
    certificateFor?: string;
    notBefore?: Date;
    years?: number;
  } = {},
): Promise<FixtureKey> {
  const privateKey = generateSigningKey(options.type ?? 'ecdsa');
  const publicKey = options.certificateFor
    ? PublicKey.fromCertificatePem(
        await createRootCertificate(options.certificateFor, privateKey, {
          ...(options.notBefore ? { notBefore: options.notBefore } : {}),
          ...(options.years !== undefined ? { years: options.years } : {}),
        }),
      )
    : PublicKey.fromKeyObject(privateKey);
  return { privateKey, publicKey, signer: localSigner(privateKey, publicKey) };
}

/** How one role's next file is produced; every field overrides the honest default once. */
export interface RoleOverride {
  /** Rewrites the `signed` JSON before signing. */
  readonly signed?: (signed: JsonObject) => JsonObject;
  /** Signs with these instead of the role's keys. */
  readonly signers?: readonly MetadataSigner[];
  /** Rewrites the final file bytes (after signing). */
  readonly bytes?: (bytes: Buffer) => Buffer;
}

interface DelegationState {
  model: TargetsMetadata;
  keys: FixtureKey[];
}

/** A repository with all keys at hand; `files` is what a notary server would serve for it. */
export class FixtureRepository {
  readonly gun: string;
  now: Date;
  rootKeys: FixtureKey[];
  readonly targetsKey: FixtureKey;
  readonly snapshotKey: FixtureKey;
  readonly timestampKey: FixtureKey;
  root: RootMetadata;
  targets: TargetsMetadata;
  snapshot: SnapshotMetadata | undefined;
  timestamp: TimestampMetadata | undefined;
  readonly delegations = new Map<string, DelegationState>();
  /** Served files by name: `root.json`, `2.root.json`, `timestamp.json`, `snapshot.<hex>.json`, … */
  readonly files = new Map<string, Buffer>();
  private readonly roleBytes = new Map<string, Buffer>();

  private constructor(
    gun: string,
    now: Date,
    rootKeys: FixtureKey[],
    t: FixtureKey,
    s: FixtureKey,
    ts: FixtureKey,
  ) {
    this.gun = gun;
    this.now = now;
    this.rootKeys = rootKeys;
    this.targetsKey = t;
    this.snapshotKey = s;
    this.timestampKey = ts;
    this.root = newRoot(
      {
        root: rootKeys.map((k) => k.publicKey),
        targets: [t.publicKey],
        snapshot: [s.publicKey],
        timestamp: [ts.publicKey],
      },
      now,
    );
    this.targets = newTargets(now);
  }

  /** A new repository, root key wrapped in a certificate for the GUN as notary does, published once. */
  static async create(
    gun: string,
    now: Date,
    options: { rootKeys?: FixtureKey[] } = {},
  ): Promise<FixtureRepository> {
    const rootKeys = options.rootKeys ?? [
      await fixtureKey({ certificateFor: gun, notBefore: new Date(now.getTime() - 3600_000) }),
    ];
    const repo = new FixtureRepository(
      gun,
      now,
      rootKeys,
      await fixtureKey(),
      await fixtureKey(),
      await fixtureKey(),
    );
    await repo.publishRoot();
    await repo.publish(['targets']);
    return repo;
  }

  /** The current bytes of a role as last published. */
  bytesOf(role: string): Buffer {
    const b = this.roleBytes.get(role);
    if (!b) throw new Error(`fixture has no ${role}`);
    return b;
  }

  /** Signs a tag into targets (or a delegation) and republishes. */
  async signTag(tag: string, digestHex: string, length: number, role = 'targets'): Promise<void> {
    await this.changeTargets(role, { set: new Map([[tag, imageTarget(digestHex, length)]]) });
  }

  /** Applies target changes to a role and republishes it with snapshot and timestamp. */
  async changeTargets(
    role: string,
    changes: TargetChanges,
    override?: RoleOverride,
  ): Promise<void> {
    if (role === 'targets') {
      this.targets = nextTargets(this.targets, changes, this.now);
    } else {
      const d = this.delegation(role);
      d.model = nextTargets(d.model, changes, this.now);
    }
    await this.publish([role], override ? { [role]: override } : {});
  }

  /** Delegates `name` (a child of targets or of another delegation) to new keys and publishes both. */
  async addDelegation(
    name: string,
    options: { keys?: FixtureKey[]; threshold?: number; paths?: string[] } = {},
  ): Promise<FixtureKey[]> {
    const keys = options.keys ?? [await fixtureKey()];
    const parentName = name.slice(0, name.lastIndexOf('/'));
    const spec = {
      name,
      keys: keys.map((k) => k.publicKey),
      ...(options.threshold !== undefined ? { threshold: options.threshold } : {}),
      ...(options.paths ? { paths: options.paths } : {}),
    };
    if (parentName === 'targets') {
      this.targets = nextTargets(withDelegation(this.targets, spec), {}, this.now);
    } else {
      const parent = this.delegation(parentName);
      parent.model = nextTargets(withDelegation(parent.model, spec), {}, this.now);
    }
    const model = { ...newTargets(this.now, 1) };
    this.delegations.set(name, { model, keys });
    await this.publish([parentName, name]);
    return keys;
  }

  /** Rotates the root to new keys; the new root is signed by the old and the new keys. */
  async rotateRoot(newKeys: FixtureKey[], override?: RoleOverride): Promise<void> {
    const old = this.rootKeys;
    this.rootKeys = newKeys;
    this.root = {
      ...newRoot(
        {
          root: newKeys.map((k) => k.publicKey),
          targets: [this.targetsKey.publicKey],
          snapshot: [this.snapshotKey.publicKey],
          timestamp: [this.timestampKey.publicKey],
        },
        this.now,
      ),
      version: this.root.version + 1,
    };
    await this.publishRoot(override ?? { signers: [...old, ...newKeys].map((k) => k.signer) });
    await this.publish([]);
  }

  /**
   * Republishes the named roles (applying one-shot overrides), then snapshot and timestamp so the
   * chain of hashes stays consistent — unless `snapshot`/`timestamp` overrides break it on purpose.
   */
  async publish(
    roles: readonly string[],
    overrides: Readonly<Record<string, RoleOverride>> = {},
  ): Promise<void> {
    const changed = new Map<string, Buffer>();
    for (const role of roles) {
      const bytes =
        role === 'targets'
          ? await this.sign(targetsJson(this.targets), [this.targetsKey.signer], overrides[role])
          : await this.sign(
              targetsJson(this.delegation(role).model),
              this.delegation(role).keys.map((k) => k.signer),
              overrides[role],
            );
      this.roleBytes.set(role, bytes);
      this.files.set(`${role}.json`, bytes);
      this.files.set(`${role}.${sha256Hex(bytes)}.json`, bytes);
      changed.set(role, bytes);
    }
    changed.set('root', this.bytesOf('root'));
    this.snapshot = nextSnapshot(this.snapshot, changed, this.now);
    const snapshotBytes = await this.sign(
      snapshotJson(this.snapshot),
      [this.snapshotKey.signer],
      overrides['snapshot'],
    );
    this.roleBytes.set('snapshot', snapshotBytes);
    this.files.set('snapshot.json', snapshotBytes);
    this.files.set(`snapshot.${sha256Hex(snapshotBytes)}.json`, snapshotBytes);
    this.timestamp = nextTimestamp(this.timestamp, snapshotBytes, this.now);
    const timestampBytes = await this.sign(
      timestampJson(this.timestamp),
      [this.timestampKey.signer],
      overrides['timestamp'],
    );
    this.roleBytes.set('timestamp', timestampBytes);
    this.files.set('timestamp.json', timestampBytes);
  }

  private async publishRoot(override?: RoleOverride): Promise<void> {
    const bytes = await this.sign(
      rootJson(this.root),
      this.rootKeys.map((k) => k.signer),
      override,
    );
    this.roleBytes.set('root', bytes);
    this.files.set('root.json', bytes);
    this.files.set(`${this.root.version}.root.json`, bytes);
    this.files.set(`root.${sha256Hex(bytes)}.json`, bytes);
  }

  /** Re-signs the current root (same version) with an override, without touching other roles. */
  async republishRoot(override: RoleOverride): Promise<void> {
    await this.publishRoot(override);
    await this.publish([]);
  }

  private delegation(role: string): DelegationState {
    const d = this.delegations.get(role);
    if (!d) throw new Error(`fixture has no delegation ${role}`);
    return d;
  }

  private async sign(
    signed: JsonObject,
    signers: readonly MetadataSigner[],
    override?: RoleOverride,
  ): Promise<Buffer> {
    const json = override?.signed ? override.signed(structuredClone(signed)) : signed;
    const bytes = await signMetadata(json, override?.signers ?? signers);
    return override?.bytes ? override.bytes(bytes) : bytes;
  }
}

/** Re-serialises wire bytes with one signature's first byte flipped (a "bad signature" corruption). */
export function flipSignatureBit(bytes: Buffer, index = 0): Buffer {
  const envelope = parseJson(bytes, 'fixture') as {
    signed: JsonValue;
    signatures: { sig: string }[];
  };
  const sig = envelope.signatures[index];
  if (!sig) throw new Error('no such signature');
  const raw = Buffer.from(sig.sig, 'base64');
  raw[0] = (raw[0] ?? 0) ^ 0x01;
  sig.sig = raw.toString('base64');
  return Buffer.from(
    goHtmlEscape(
      `{"signed":${canonicalString(envelope.signed)},"signatures":${JSON.stringify(envelope.signatures)}}`,
    ),
  );
}

/** Convenience for tests: a fake manifest digest and length. */
export function fakeManifest(seed: string): { digestHex: string; length: number } {
  return { digestHex: sha256Hex(Buffer.from(seed)), length: 500 + seed.length };
}

/** The target FileMeta for a fake manifest. */
export function fakeTarget(seed: string): FileMeta {
  const m = fakeManifest(seed);
  return imageTarget(m.digestHex, m.length);
}
