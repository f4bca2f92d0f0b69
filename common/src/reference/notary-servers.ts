/**
 * Which notary server holds a registry's trust data. Docker's rule (docker/cli `trust.Server`):
 * Docker Hub's images are signed on `https://notary.docker.io`; any other registry is expected to
 * run its notary server on its own host and port. Deployments override this per registry.
 */

/** Docker Hub's notary server. */
const DOCKER_HUB_NOTARY = 'https://notary.docker.io';
/** Both names Docker uses for Docker Hub. */
const DOCKER_HUB_NAMES: readonly string[] = ['docker.io', 'index.docker.io'];

/** Docker's mapping: docker.io / index.docker.io → https://notary.docker.io; otherwise https://<registry host> — unless overridden. */
export function notaryServerFor(
  registry: string,
  overrides?: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
): string {
  const isDockerHub = DOCKER_HUB_NAMES.includes(registry);
  if (overrides !== undefined) {
    // An override for either Docker Hub name applies to both, as Docker treats them as one registry.
    const keys = isDockerHub ? [registry, ...DOCKER_HUB_NAMES] : [registry];
    for (const key of keys) {
      const url = lookup(overrides, key);
      if (url !== undefined) return url.replace(/\/+$/, '');
    }
  }
  return isDockerHub ? DOCKER_HUB_NOTARY : `https://${registry}`;
}

function lookup(
  overrides: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
  key: string,
): string | undefined {
  if (overrides instanceof Map) return (overrides as ReadonlyMap<string, string>).get(key);
  const record = overrides as Readonly<Record<string, string>>;
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
