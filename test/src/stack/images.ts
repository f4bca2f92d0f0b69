/**
 * Images for the stack's registry without a Docker engine: a minimal OCI image layout written by
 * hand (one uncompressed tar layer holding one small file, an OCI config, an OCI manifest), copied
 * to docker-registry with the real `skopeo`, and read back to learn the manifest digest and size
 * as the registry stores them — the digest and length a notary target must carry.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';

/** The part of a stack images need (a `NotaryStack` is one). */
export interface RegistryEndpoint {
  /** `127.0.0.1:<port>` of a plain-HTTP registry. */
  readonly registryHost: string;
  /** Scratch space for the OCI layouts. */
  readonly workDir: string;
}

/** How to build and push an image. */
export interface PushImageOptions {
  /** The content of the image's one file; different content, different digest. */
  readonly content?: string;
  /**
   * `oci` (default) pushes our OCI manifest byte for byte (`skopeo --preserve-digests`), so the
   * digest is known before the push; `docker` lets skopeo convert it to a Docker schema 2 manifest
   * (`--format v2s2`).
   */
  readonly format?: 'oci' | 'docker';
}

/** An image as the registry stores it. */
export interface PushedImage {
  /** `sha256:<hex>` of the manifest bytes the registry serves (its `Docker-Content-Digest`). */
  readonly digest: string;
  /** Length of those manifest bytes — a notary target's `length`. */
  readonly size: number;
  /** The manifest's media type as served. */
  readonly mediaType: string;
  /** `<registryHost>/<repo>:<tag>`. */
  readonly reference: string;
  /** `<registryHost>/<repo>` — the notary GUN for this image. */
  readonly gun: string;
}

/** A manifest fetched from the registry. */
export interface FetchedManifest {
  readonly status: number;
  readonly body: Buffer;
  readonly mediaType: string;
  /** The `Docker-Content-Digest` header. */
  readonly digestHeader: string | undefined;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';

/**
 * Every manifest type we may get back. docker-registry 2.8 answers a GET for an OCI manifest with
 * 404 MANIFEST_UNKNOWN, and for a schema 2 manifest with 400 MANIFEST_INVALID (it tries a schema 1
 * conversion), unless the client's Accept names the type.
 */
const MANIFEST_ACCEPT = [
  OCI_MANIFEST,
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes `value` as a NUL-terminated octal field of `width` bytes at `offset`. */
function octal(header: Buffer, offset: number, width: number, value: number): void {
  header.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'ascii');
}

/**
 * A POSIX ustar archive holding one regular file, with fixed metadata (mtime 0, root-owned), so
 * equal content gives equal bytes and so equal digests.
 */
export function tarOneFile(name: string, content: Buffer): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar member name too long: ${name}`);
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  octal(header, 100, 8, 0o644); // mode
  octal(header, 108, 8, 0); // uid
  octal(header, 116, 8, 0); // gid
  octal(header, 124, 12, content.length); // size
  octal(header, 136, 12, 0); // mtime
  header.write('        ', 148, 8, 'ascii'); // checksum field counts as spaces while summing
  header.write('0', 156, 1, 'ascii'); // typeflag: regular file
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  header.write('root', 265, 32, 'ascii');
  header.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  // Two zero blocks end the archive.
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

/** The blobs and manifest of a one-layer image. */
export interface OciImage {
  readonly manifest: Buffer;
  readonly manifestDigest: string;
  readonly blobs: ReadonlyMap<string, Buffer>;
}

/** Builds the one-layer OCI image for `content` in memory. */
export function buildOciImage(content: string): OciImage {
  const layer = tarOneFile('hello.txt', Buffer.from(content, 'utf8'));
  const layerDigest = `sha256:${sha256Hex(layer)}`;
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      // Uncompressed layer: the diff id is the layer digest.
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
    }),
  );
  const configDigest = `sha256:${sha256Hex(config)}`;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
      layers: [{ mediaType: OCI_LAYER_TAR, digest: layerDigest, size: layer.length }],
    }),
  );
  const manifestDigest = `sha256:${sha256Hex(manifest)}`;
  return {
    manifest,
    manifestDigest,
    blobs: new Map([
      [layerDigest, layer],
      [configDigest, config],
      [manifestDigest, manifest],
    ]),
  };
}

/** Writes `image` as an OCI image layout in `dir`, with `tag` as its ref name. */
export async function writeOciLayout(dir: string, image: OciImage, tag: string): Promise<void> {
  const blobDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  for (const [digest, bytes] of image.blobs) {
    await writeFile(join(blobDir, digest.slice('sha256:'.length)), bytes);
  }
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: image.manifestDigest,
          size: image.manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
}

/** Runs skopeo and rejects with its stderr on failure. */
function skopeo(args: readonly string[]): Promise<void> {
  const binary = requireBinary('skopeo');
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const output: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else {
        const text = Buffer.concat(output).toString('utf8');
        reject(new Error(`skopeo ${args.join(' ')} exited with ${code}: ${text}`));
      }
    });
  });
}

/** `GET /v2/<repo>/manifests/<reference>` (a tag or a digest), accepting every manifest type. */
export function fetchManifest(
  registryHost: string,
  repo: string,
  reference: string,
): Promise<FetchedManifest> {
  const url = `http://${registryHost}/v2/${repo}/manifests/${reference}`;
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Accept: MANIFEST_ACCEPT }, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const digest = res.headers['docker-content-digest'];
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks),
          mediaType: (res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '',
          digestHeader: typeof digest === 'string' ? digest : undefined,
        });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Builds a one-layer image, copies it to `<registryHost>/<repo>:<tag>` with skopeo, and returns the
 * digest and size of the manifest the registry then serves for the tag (checked against its
 * `Docker-Content-Digest` header, and in `oci` format against the manifest we wrote).
 */
export async function pushImage(
  stack: RegistryEndpoint,
  repo: string,
  tag: string,
  options: PushImageOptions = {},
): Promise<PushedImage> {
  const format = options.format ?? 'oci';
  const image = buildOciImage(options.content ?? `${repo}:${tag}\n`);
  const layoutRoot = join(stack.workDir, 'oci-layouts');
  await mkdir(layoutRoot, { recursive: true });
  const layout = await mkdtemp(join(layoutRoot, 'image-'));
  const reference = `${stack.registryHost}/${repo}:${tag}`;
  try {
    await writeOciLayout(layout, image, tag);
    await skopeo([
      // The default policy file may be absent on a minimal machine; these images are ours.
      '--insecure-policy',
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      '--dest-no-creds',
      // Without either flag skopeo keeps the OCI type but gzips the layer, rewriting the manifest.
      ...(format === 'oci' ? ['--preserve-digests'] : ['--format', 'v2s2']),
      `oci:${layout}:${tag}`,
      `docker://${reference}`,
    ]);
  } finally {
    await rm(layout, { recursive: true, force: true });
  }

  const served = await fetchManifest(stack.registryHost, repo, tag);
  if (served.status !== 200) {
    throw new Error(
      `registry answered ${served.status} for ${reference}: ${served.body.toString('utf8')}`,
    );
  }
  const digest = `sha256:${sha256Hex(served.body)}`;
  if (served.digestHeader !== digest) {
    throw new Error(
      `registry's Docker-Content-Digest ${served.digestHeader} differs from the served bytes' ${digest}`,
    );
  }
  if (format === 'oci' && digest !== image.manifestDigest) {
    throw new Error(
      `skopeo changed the manifest: pushed ${image.manifestDigest}, stored ${digest}`,
    );
  }
  return {
    digest,
    size: served.body.length,
    mediaType: served.mediaType,
    reference,
    gun: `${stack.registryHost}/${repo}`,
  };
}
