/**
 * A MetadataFetcher over in-memory fixture repositories, resolving names exactly as notary-server
 * does (`<role>.json`, `<version>.<role>.json`, `<role>.<sha256>.json`) and enforcing maxBytes, with
 * a log of every request so tests can count fetches per role.
 */
import { TrustError } from '../errors.js';
import type { MetadataFetcher, MetadataRequest } from '../notary/remote.js';
import type { FixtureRepository } from './fixture-repository.js';

/** Serves FixtureRepositories by GUN. */
export class MemoryFetcher implements MetadataFetcher {
  readonly requests: string[] = [];
  private readonly repos = new Map<string, FixtureRepository>();

  constructor(...repos: FixtureRepository[]) {
    for (const r of repos) this.repos.set(r.gun, r);
  }

  /** Adds or replaces a repository. */
  serve(repo: FixtureRepository): void {
    this.repos.set(repo.gun, repo);
  }

  fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array> {
    const file =
      request.version !== undefined
        ? `${request.version}.${request.role}.json`
        : request.sha256Hex !== undefined
          ? `${request.role}.${request.sha256Hex}.json`
          : `${request.role}.json`;
    const url = `memory://${gun}/_trust/tuf/${file}`;
    this.requests.push(`${gun}/${file}`);
    const bytes = this.repos.get(gun)?.files.get(file);
    if (!bytes) {
      return Promise.reject(
        new TrustError(
          'HTTP_STATUS',
          { url, status: 404, serverCode: 'METADATA_NOT_FOUND' },
          `${url}: 404`,
        ),
      );
    }
    if (bytes.byteLength > request.maxBytes) {
      return Promise.reject(
        new TrustError(
          'DOWNLOAD_TOO_LARGE',
          { role: request.role, limit: request.maxBytes, url },
          `${url} exceeds ${request.maxBytes} bytes`,
        ),
      );
    }
    return Promise.resolve(Uint8Array.from(bytes));
  }
}
