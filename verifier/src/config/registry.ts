/**
 * Registry names as the network reads them. A pod's `REGISTRY.corp.com/app` and
 * `registry.corp.com:443/app` are pulled from the same registry as `registry.corp.com/app`: DNS and
 * TLS host names ignore case (RFC 4343, RFC 6125 6.4.1), and an https registry is on port 443
 * whether or not the reference says so (Go, which container runtimes are written in, reads
 * `:0443` as 443 too). The reference parser keeps the registry as written, so the verifier brings
 * every registry to one canonical spelling — host lowercased, the port in decimal without leading
 * zeros, `:443` dropped, Docker Hub's `index.docker.io` as `docker.io` (official images under
 * `library/`) — before it matches rules, picks the notary entry or forms the GUN.
 * Otherwise a spelling would bypass the entry (and its CA and credentials) and the rules written
 * for the registry, and be checked at `https://<as written>` instead.
 *
 * The GUN asked for is the canonical one too: what kpack signs (its image tags are lowercase, as
 * the signer writes GUNs) and what `docker trust` signs for the usual spelling. A repository signed
 * under another spelling is not found, and the image is denied: fail closed.
 */
import type { ImageReference } from '@kpack-trust/common';

/** Docker Hub's name in GUNs and rules, its legacy alias, and where its official images live. */
const DOCKER_HUB = 'docker.io';
const LEGACY_DOCKER_HUB = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
/** The port an https registry listens on when a reference names none. */
const DEFAULT_PORT = 443;
/** The highest TCP port: a larger number is left as written (nothing can connect to it). */
const MAX_PORT = 65_535;

/**
 * `host[:port]` in its canonical spelling (see the module comment). Wildcards of image patterns
 * pass through, so patterns are canonicalised by the same rule.
 */
export function canonicalRegistry(registry: string): string {
  // A bracketed IPv6 address holds colons of its own; its port follows the ']'.
  const bracket = registry.lastIndexOf(']');
  const colon = registry.lastIndexOf(':');
  const hasPort = colon !== -1 && colon > bracket;
  const host = (hasPort ? registry.slice(0, colon) : registry).toLowerCase();
  if (!hasPort) return dockerHub(host);
  const port = registry.slice(colon + 1);
  if (!/^[0-9]{1,10}$/.test(port) || Number(port) > MAX_PORT) return `${host}:${port}`;
  const number = Number(port);
  return number === DEFAULT_PORT ? dockerHub(host) : `${host}:${number}`;
}

/**
 * Docker Hub under one name: the reference parser folds `index.docker.io` into `docker.io` only as
 * written in lowercase, yet `INDEX.DOCKER.IO` and `index.docker.io:443` reach the same registry.
 */
function dockerHub(host: string): string {
  return host === LEGACY_DOCKER_HUB ? DOCKER_HUB : host;
}

/** `ref` with its registry, name and hence GUN in the canonical spelling; `ref` itself when already so. */
export function canonicalReference(ref: ImageReference): ImageReference {
  const registry = canonicalRegistry(ref.registry);
  if (registry === ref.registry) return ref;
  // A Docker Hub spelling the parser did not recognise keeps its official images under library/.
  const path =
    registry === DOCKER_HUB && !ref.path.includes('/') ? `${OFFICIAL_PREFIX}${ref.path}` : ref.path;
  return { ...ref, registry, path, name: `${registry}/${path}` };
}

/**
 * An image pattern matching canonical names: its registry segment canonicalised. A leading `**`
 * (any registry) and the path segments, which are lowercase in every name, are left as written.
 */
export function canonicalImagePattern(pattern: string): string {
  const slash = pattern.indexOf('/');
  const first = slash === -1 ? pattern : pattern.slice(0, slash);
  if (first === '**' || slash === -1) return pattern;
  return canonicalRegistry(first) + pattern.slice(slash);
}
