/**
 * An in-memory notary server for the signer's flow tests, answering as notary-server 0.7.0 was
 * observed to: 404 METADATA_NOT_FOUND for unknown files, `GET <role>.key` making a new key on every
 * call until a root lists one, 400 VERSION for a stale role, 400 INVALID_UPDATE for a second root
 * v1, a bad signature or a missing snapshot it cannot make itself; a new timestamp (and snapshot,
 * when it holds that key) on every accepted publish.
 */
import { createHash } from 'node:crypto';
import {
  PublicKey,
  TrustError,
  localSigner,
  nextSnapshot,
  nextTimestamp,
  parseEnvelope,
  parseRoot,
  parseSnapshot,
  parseTargets,
  parseTimestamp,
  signRole,
  verifyThreshold,
  type MetadataFetcher,
  type MetadataPublisher,
  type MetadataRequest,
  type PublicKeyJson,
  type PublishFile,
  type RootMetadata,
} from '@kpack-trust/common';
import { fixtureKey, type FixtureKey, type FixtureRepository } from '@kpack-trust/common/testing';

interface Repo {
  /** Current bytes per role. */
  readonly roles: Map<string, Buffer>;
  /** Served file names → bytes. */
  readonly files: Map<string, Buffer>;
  /** Keys the server holds, by key id. */
  readonly serverKeys: Map<string, FixtureKey>;
}

/** Serves and accepts metadata for any number of GUNs. */
export class MemoryNotary implements MetadataFetcher, MetadataPublisher {
  readonly repos = new Map<string, Repo>();
  /** `GET <role>.key` calls, as `gun role`. */
  readonly keyRequests: string[] = [];
  /** Accepted and refused publishes: the roles of each POST. */
  readonly publishes: { gun: string; roles: string[]; accepted: boolean }[] = [];
  /** Runs before each publish is applied (a concurrent writer's chance to get in first). */
  beforePublish: ((gun: string) => Promise<void>) | undefined;
  now: Date;

  constructor(now: Date) {
    this.now = now;
  }

  /** Serves an existing fixture repository; the server holds its timestamp key, and its snapshot key when asked. */
  serveFixture(repo: FixtureRepository, options: { serverSnapshot?: boolean } = {}): void {
    const roles = new Map<string, Buffer>();
    for (const role of ['root', 'targets', 'snapshot', 'timestamp', ...repo.delegations.keys()]) {
      try {
        roles.set(role, repo.bytesOf(role));
      } catch {
        // a delegation declared but never published
      }
    }
    const serverKeys = new Map<string, FixtureKey>([
      [repo.timestampKey.publicKey.id, repo.timestampKey],
    ]);
    if (options.serverSnapshot === true) {
      serverKeys.set(repo.snapshotKey.publicKey.id, repo.snapshotKey);
    }
    this.repos.set(repo.gun, { roles, files: new Map(repo.files), serverKeys });
  }

  fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
    const file =
      request.version !== undefined
        ? `${request.version}.${request.role}.json`
        : request.sha256Hex !== undefined
          ? `${request.role}.${request.sha256Hex}.json`
          : `${request.role}.json`;
    const bytes = this.repos.get(gun)?.files.get(file);
    if (bytes === undefined) return Promise.reject(status(gun, file, 404, 'METADATA_NOT_FOUND'));
    return Promise.resolve(Uint8Array.from(bytes));
  }

  async fetchServerKey(gun: string, role: 'timestamp' | 'snapshot'): Promise<PublicKeyJson> {
    this.keyRequests.push(`${gun} ${role}`);
    const repo = this.repo(gun);
    const rootBytes = repo.roles.get('root');
    if (rootBytes !== undefined) {
      const root = parseRoot(parseEnvelope(rootBytes, 'root').signed);
      const held = root.roles[role].keyIds.find((id) => repo.serverKeys.has(id));
      const key = held === undefined ? undefined : repo.serverKeys.get(held);
      if (key !== undefined) return key.publicKey.toJson();
    }
    const key = await fixtureKey();
    repo.serverKeys.set(key.publicKey.id, key);
    return key.publicKey.toJson();
  }

  async publish(gun: string, files: readonly PublishFile[]): Promise<void> {
    await this.beforePublish?.(gun);
    const repo = this.repo(gun);
    const roles = files.map((f) => f.role);
    const refuse = (code: string): TrustError => {
      this.publishes.push({ gun, roles, accepted: false });
      return status(gun, '', 400, code);
    };
    const incoming = new Map(files.map((f) => [f.role, Buffer.from(f.bytes)]));
    for (const [role, bytes] of incoming) {
      const current = repo.roles.get(role);
      if (current === undefined) continue;
      if (versionOf(role, bytes) <= versionOf(role, current)) {
        throw refuse(role === 'root' ? 'INVALID_UPDATE' : 'VERSION');
      }
    }
    const rootBytes = incoming.get('root') ?? repo.roles.get('root');
    if (rootBytes === undefined) throw refuse('INVALID_UPDATE');
    const root = parseRoot(parseEnvelope(rootBytes, 'root').signed);
    try {
      verifyThreshold('root', parseEnvelope(rootBytes, 'root'), root.roles.root, root.keys);
      const targets = incoming.get('targets');
      if (targets !== undefined) {
        verifyThreshold(
          'targets',
          parseEnvelope(targets, 'targets'),
          root.roles.targets,
          root.keys,
        );
      }
    } catch {
      throw refuse('INVALID_UPDATE');
    }
    let snapshotBytes: Buffer | undefined = incoming.get('snapshot');
    const snapshotKey = serverKeyFor(root, 'snapshot', repo);
    if (snapshotBytes === undefined && snapshotKey === undefined) throw refuse('INVALID_UPDATE');

    for (const [role, bytes] of incoming) {
      repo.roles.set(role, bytes);
      repo.files.set(`${role}.json`, bytes);
      repo.files.set(`${role}.${sha256Hex(bytes)}.json`, bytes);
      if (role === 'root') repo.files.set(`${versionOf(role, bytes)}.root.json`, bytes);
    }
    if (snapshotBytes === undefined && snapshotKey !== undefined) {
      const previous = repo.roles.get('snapshot');
      const changed = new Map<string, Uint8Array>();
      for (const [role, bytes] of repo.roles) {
        if (role !== 'snapshot' && role !== 'timestamp') changed.set(role, bytes);
      }
      const model = nextSnapshot(
        previous === undefined
          ? undefined
          : parseSnapshot(parseEnvelope(previous, 'snapshot').signed),
        changed,
        this.now,
      );
      snapshotBytes = await signRole(model, [
        localSigner(snapshotKey.privateKey, snapshotKey.publicKey),
      ]);
      repo.roles.set('snapshot', snapshotBytes);
      repo.files.set('snapshot.json', snapshotBytes);
      repo.files.set(`snapshot.${sha256Hex(snapshotBytes)}.json`, snapshotBytes);
    }
    const timestampKey = serverKeyFor(root, 'timestamp', repo);
    if (timestampKey !== undefined && snapshotBytes !== undefined) {
      const previous = repo.roles.get('timestamp');
      const model = nextTimestamp(
        previous === undefined
          ? undefined
          : parseTimestamp(parseEnvelope(previous, 'timestamp').signed),
        snapshotBytes,
        this.now,
      );
      const bytes = await signRole(model, [
        localSigner(timestampKey.privateKey, timestampKey.publicKey),
      ]);
      repo.roles.set('timestamp', bytes);
      repo.files.set('timestamp.json', bytes);
    }
    this.publishes.push({ gun, roles, accepted: true });
  }

  /** The current targets entries of a role, tag → sha256 hex. */
  targetsOf(gun: string, role = 'targets'): Map<string, string> {
    const bytes = this.repo(gun).roles.get(role);
    if (bytes === undefined) return new Map();
    const model = parseTargets(parseEnvelope(bytes, role).signed, role);
    return new Map(
      [...model.targets].map(([name, meta]) => [
        name,
        meta.hashes['sha256']?.toString('hex') ?? '',
      ]),
    );
  }

  /** The current root model. */
  rootOf(gun: string): RootMetadata {
    const bytes = this.repo(gun).roles.get('root');
    if (bytes === undefined) throw new Error(`no root for ${gun}`);
    return parseRoot(parseEnvelope(bytes, 'root').signed);
  }

  private repo(gun: string): Repo {
    let repo = this.repos.get(gun);
    if (repo === undefined) {
      repo = { roles: new Map(), files: new Map(), serverKeys: new Map() };
      this.repos.set(gun, repo);
    }
    return repo;
  }
}

function serverKeyFor(
  root: RootMetadata,
  role: 'snapshot' | 'timestamp',
  repo: Repo,
): FixtureKey | undefined {
  for (const id of root.roles[role].keyIds) {
    const key = repo.serverKeys.get(id);
    if (key !== undefined) return key;
  }
  return undefined;
}

function versionOf(role: string, bytes: Uint8Array): number {
  const signed = parseEnvelope(bytes, role).signed;
  return (signed as { version: number }).version;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function status(gun: string, file: string, code: number, serverCode: string): TrustError {
  const url = `memory://${gun}/_trust/tuf/${file}`;
  return new TrustError(
    'HTTP_STATUS',
    { url, status: code, serverCode },
    `${url}: ${code} ${serverCode}`,
  );
}

/** A PublicKey's id, for assertions. */
export function idOf(json: PublicKeyJson): string {
  return PublicKey.fromJson(json, { role: 'test', field: '$' }).id;
}
