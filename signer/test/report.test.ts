/** report.toml parsing and the one-repository rule for a build's tags. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildImageOf } from '../src/publish/build-image.js';
import { parseLifecycleReport } from '../src/report/lifecycle-report.js';

const DIGEST = `sha256:${'a1'.repeat(32)}`;
const SOURCE = '/var/report/report.toml';

/** What lifecycle 0.17 writes, build metadata and all. */
const REPORT = `[image]
tags = ["registry.example:5000/team/app:latest", "registry.example:5000/team/app:b12"]
image-id = "sha256:${'c3'.repeat(32)}"
digest = "${DIGEST}"
manifest-size = 1083

[build]
[[build.bom]]
name = "node"
`;

function fails(text: string, problem: string): void {
  assert.throws(() => parseLifecycleReport(text, SOURCE), {
    code: 'INPUT_INVALID',
    facts: { source: SOURCE, problem },
  });
}

describe('parseLifecycleReport', () => {
  it('reads tags, digest and manifest size', () => {
    assert.deepEqual(parseLifecycleReport(REPORT, SOURCE), {
      tags: ['registry.example:5000/team/app:latest', 'registry.example:5000/team/app:b12'],
      digest: DIGEST,
      manifestSize: 1083,
    });
  });

  it('leaves the size out when an older lifecycle did not write it', () => {
    const report = parseLifecycleReport(
      `[image]\ntags = ["r.example/a:1"]\ndigest = "${DIGEST}"\n`,
      SOURCE,
    );
    assert.deepEqual(report, { tags: ['r.example/a:1'], digest: DIGEST });
  });

  it('refuses text that is not TOML, naming the line', () => {
    fails('[image\ntags = 1', 'not valid TOML (line 1, column 7)');
  });

  it('refuses a report without an [image] table (the export did not happen)', () => {
    fails('[build]\n', 'has no [image] table; was the image exported?');
    fails('image = "x"\n', 'has no [image] table; was the image exported?');
  });

  it('refuses missing, empty or non-string tags', () => {
    fails(
      `[image]\ndigest = "${DIGEST}"\n`,
      '[image] tags must be a non-empty array of image references',
    );
    fails(
      `[image]\ntags = []\ndigest = "${DIGEST}"\n`,
      '[image] tags must be a non-empty array of image references',
    );
    fails(`[image]\ntags = ["a:1", 2]\ndigest = "${DIGEST}"\n`, '[image] tags[1] is not a string');
  });

  it('refuses a missing or malformed digest', () => {
    fails(
      '[image]\ntags = ["a:1"]\n',
      '[image] digest is missing; the export did not record a manifest digest',
    );
    fails(
      '[image]\ntags = ["a:1"]\ndigest = "sha256:abc"\n',
      '[image] digest "sha256:abc" is not sha256:<64 hex>',
    );
    fails(
      `[image]\ntags = ["a:1"]\ndigest = "sha512:${'a1'.repeat(32)}"\n`,
      `[image] digest "sha512:${'a1'.repeat(32)}" is not sha256:<64 hex>`,
    );
  });

  it('refuses a manifest size that is not a positive integer', () => {
    for (const size of ['0', '-5', '1.5', '"12"']) {
      fails(
        `[image]\ntags = ["a:1"]\ndigest = "${DIGEST}"\nmanifest-size = ${size}\n`,
        '[image] manifest-size must be a positive integer',
      );
    }
  });
});

describe('buildImageOf', () => {
  it('normalizes tags into one GUN, deduplicated in order', () => {
    assert.deepEqual(
      buildImageOf(
        [
          'registry.example:5000/team/app:b12',
          'registry.example:5000/team/app',
          'registry.example:5000/team/app:b12',
        ],
        DIGEST,
        99,
        SOURCE,
      ),
      {
        gun: 'registry.example:5000/team/app',
        registry: 'registry.example:5000',
        path: 'team/app',
        tags: ['b12', 'latest'],
        digest: DIGEST,
        size: 99,
      },
    );
  });

  it('names Docker Hub images as docker trust does', () => {
    const image = buildImageOf(
      ['alpine:3', 'index.docker.io/library/alpine:edge'],
      DIGEST,
      undefined,
      SOURCE,
    );
    assert.equal(image.gun, 'docker.io/library/alpine');
    assert.deepEqual(image.tags, ['3', 'edge']);
    assert.equal('size' in image, false);
  });

  it('refuses tags in two repositories, naming both', () => {
    assert.throws(() => buildImageOf(['r.example/a:1', 'r.example/b:1'], DIGEST, 1, SOURCE), {
      code: 'INPUT_INVALID',
      facts: {
        source: SOURCE,
        problem:
          'the tags belong to 2 repositories (r.example/a, r.example/b); a build is signed into one repository, so nothing was published',
      },
    });
  });

  it('refuses a reference carrying a digest, a bad digest, a bad size and no tags', () => {
    assert.throws(() => buildImageOf([`r.example/a@${DIGEST}`], DIGEST, 1, SOURCE), {
      code: 'INPUT_INVALID',
    });
    assert.throws(() => buildImageOf(['r.example/a:1'], 'sha256:ABC', 1, SOURCE), {
      code: 'INPUT_INVALID',
      facts: {
        source: SOURCE,
        problem: 'the digest "sha256:ABC" is not sha256:<64 lowercase hex>',
      },
    });
    assert.throws(() => buildImageOf(['r.example/a:1'], DIGEST, 0, SOURCE), {
      code: 'INPUT_INVALID',
      facts: { source: SOURCE, problem: 'the manifest size 0 is not a positive integer' },
    });
    assert.throws(() => buildImageOf([], DIGEST, 1, SOURCE), {
      code: 'INPUT_INVALID',
      facts: { source: SOURCE, problem: 'no image tags to sign' },
    });
  });

  it('refuses a tag that is not an image reference', () => {
    assert.throws(() => buildImageOf(['r.example/Team/app:1'], DIGEST, 1, SOURCE), {
      code: 'REFERENCE_INVALID',
    });
  });
});
