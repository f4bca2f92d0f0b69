/**
 * The buildpacks lifecycle's `report.toml`, written by its exporter and read by kpack's completion
 * step: `[image] tags = [...]`, `digest = "sha256:…"`, and on newer lifecycles `manifest-size = N`.
 * Pure: text in, the build's image facts out.
 */
import { TrustError } from '@kpack-trust/common';
import { parse, TomlError } from 'smol-toml';

/** What a build exported: every tag it pushed, the manifest digest and (when known) its size. */
export interface ReportedImage {
  /** Image references as the lifecycle wrote them (`registry/repo:tag`). */
  readonly tags: readonly string[];
  /** `sha256:<64 lowercase hex>`. */
  readonly digest: string;
  /** Length of the manifest in bytes; absent on lifecycles older than 0.10. */
  readonly manifestSize?: number;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Parses `report.toml` text; `source` (the file's path) names it in errors. Throws INPUT_INVALID. */
export function parseLifecycleReport(text: string, source: string): ReportedImage {
  const fail = (problem: string): never => {
    throw new TrustError('INPUT_INVALID', { source, problem }, `${source}: ${problem}.`);
  };
  let document: Record<string, unknown>;
  try {
    document = parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      return fail(`not valid TOML (line ${err.line}, column ${err.column})`);
    }
    throw err;
  }
  const image = document['image'];
  if (!isTable(image)) return fail('has no [image] table; was the image exported?');

  const tags = image['tags'];
  if (!Array.isArray(tags) || tags.length === 0) {
    return fail('[image] tags must be a non-empty array of image references');
  }
  const tagList: string[] = [];
  for (const [i, tag] of tags.entries()) {
    if (typeof tag !== 'string' || tag === '') return fail(`[image] tags[${i}] is not a string`);
    tagList.push(tag);
  }

  const digest = image['digest'];
  if (typeof digest !== 'string' || digest === '') {
    return fail('[image] digest is missing; the export did not record a manifest digest');
  }
  if (!DIGEST.test(digest)) return fail(`[image] digest "${digest}" is not sha256:<64 hex>`);

  const size = image['manifest-size'];
  if (size === undefined) return { tags: tagList, digest };
  // smol-toml refuses integers beyond 2^53 at parse time, so a number is all that can arrive here.
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
    return fail('[image] manifest-size must be a positive integer');
  }
  return { tags: tagList, digest, manifestSize: size };
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
