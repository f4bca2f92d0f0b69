import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTrustError } from '../src/errors.js';
import {
  formatImageReference,
  gunOf,
  parseImageReference,
  type ImageReference,
} from '../src/reference/image-reference.js';
import { notaryServerFor } from '../src/reference/notary-servers.js';

const HEX = 'c0ffee'.repeat(10) + 'abcd';
const SHA = `sha256:${HEX}`;

interface Valid {
  readonly input: string;
  readonly registry: string;
  readonly path: string;
  readonly tag?: string;
  readonly digest?: string;
  readonly canonical: string;
}

const valid: Valid[] = [
  // Familiar names normalize onto Docker Hub; single elements are official images.
  {
    input: 'alpine',
    registry: 'docker.io',
    path: 'library/alpine',
    tag: 'latest',
    canonical: 'docker.io/library/alpine:latest',
  },
  {
    input: 'alpine:3.19',
    registry: 'docker.io',
    path: 'library/alpine',
    tag: '3.19',
    canonical: 'docker.io/library/alpine:3.19',
  },
  {
    input: 'user/app',
    registry: 'docker.io',
    path: 'user/app',
    tag: 'latest',
    canonical: 'docker.io/user/app:latest',
  },
  {
    input: 'user/team/app:v1',
    registry: 'docker.io',
    path: 'user/team/app',
    tag: 'v1',
    canonical: 'docker.io/user/team/app:v1',
  },
  {
    input: 'docker.io/alpine',
    registry: 'docker.io',
    path: 'library/alpine',
    tag: 'latest',
    canonical: 'docker.io/library/alpine:latest',
  },
  {
    input: 'docker.io/library/alpine:edge',
    registry: 'docker.io',
    path: 'library/alpine',
    tag: 'edge',
    canonical: 'docker.io/library/alpine:edge',
  },
  {
    input: 'index.docker.io/alpine',
    registry: 'docker.io',
    path: 'library/alpine',
    tag: 'latest',
    canonical: 'docker.io/library/alpine:latest',
  },
  {
    input: 'index.docker.io/user/app:1',
    registry: 'docker.io',
    path: 'user/app',
    tag: '1',
    canonical: 'docker.io/user/app:1',
  },
  // Only docker.io and index.docker.io are Docker Hub aliases.
  {
    input: 'registry-1.docker.io/library/alpine',
    registry: 'registry-1.docker.io',
    path: 'library/alpine',
    tag: 'latest',
    canonical: 'registry-1.docker.io/library/alpine:latest',
  },
  // The first element is a registry when it holds '.' or ':' or is localhost.
  {
    input: 'ghcr.io/org/team/app',
    registry: 'ghcr.io',
    path: 'org/team/app',
    tag: 'latest',
    canonical: 'ghcr.io/org/team/app:latest',
  },
  {
    input: 'localhost/app',
    registry: 'localhost',
    path: 'app',
    tag: 'latest',
    canonical: 'localhost/app:latest',
  },
  {
    input: 'localhost:5000/app:v1',
    registry: 'localhost:5000',
    path: 'app',
    tag: 'v1',
    canonical: 'localhost:5000/app:v1',
  },
  {
    input: 'myhost:5000/app',
    registry: 'myhost:5000',
    path: 'app',
    tag: 'latest',
    canonical: 'myhost:5000/app:latest',
  },
  {
    input: '127.0.0.1:5000/demo/app:v1',
    registry: '127.0.0.1:5000',
    path: 'demo/app',
    tag: 'v1',
    canonical: '127.0.0.1:5000/demo/app:v1',
  },
  {
    input: 'registry.example.com:443/a/b/c',
    registry: 'registry.example.com:443',
    path: 'a/b/c',
    tag: 'latest',
    canonical: 'registry.example.com:443/a/b/c:latest',
  },
  {
    input: 'xn--n3h.com/myimage:xn--n3h.com',
    registry: 'xn--n3h.com',
    path: 'myimage',
    tag: 'xn--n3h.com',
    canonical: 'xn--n3h.com/myimage:xn--n3h.com',
  },
  {
    input: 'b.gcr.io/test.example.com/my-app:test.example.com',
    registry: 'b.gcr.io',
    path: 'test.example.com/my-app',
    tag: 'test.example.com',
    canonical: 'b.gcr.io/test.example.com/my-app:test.example.com',
  },
  {
    input: 'sub-dom1.foo.com/bar/baz/quux',
    registry: 'sub-dom1.foo.com',
    path: 'bar/baz/quux',
    tag: 'latest',
    canonical: 'sub-dom1.foo.com/bar/baz/quux:latest',
  },
  // Without a '/', "host:port" is a familiar name with a tag, as in Docker.
  {
    input: 'test.com:5000',
    registry: 'docker.io',
    path: 'library/test.com',
    tag: '5000',
    canonical: 'docker.io/library/test.com:5000',
  },
  {
    input: 'localhost',
    registry: 'docker.io',
    path: 'library/localhost',
    tag: 'latest',
    canonical: 'docker.io/library/localhost:latest',
  },
  {
    input: 'localhost:5000',
    registry: 'docker.io',
    path: 'library/localhost',
    tag: '5000',
    canonical: 'docker.io/library/localhost:5000',
  },
  {
    input: '192.168.1.1',
    registry: 'docker.io',
    path: 'library/192.168.1.1',
    tag: 'latest',
    canonical: 'docker.io/library/192.168.1.1:latest',
  },
  // Docker's quirk: an uppercase first element is taken to be a registry (paths are lowercase).
  { input: 'Foo/bar', registry: 'Foo', path: 'bar', tag: 'latest', canonical: 'Foo/bar:latest' },
  // IPv6 registries in brackets.
  {
    input: '[::1]:5000/app',
    registry: '[::1]:5000',
    path: 'app',
    tag: 'latest',
    canonical: '[::1]:5000/app:latest',
  },
  {
    input: '[2001:db8::1]/repo:tag',
    registry: '[2001:db8::1]',
    path: 'repo',
    tag: 'tag',
    canonical: '[2001:db8::1]/repo:tag',
  },
  {
    input: '[2001:db8:1:2:3:4:5:6]:5000/repo',
    registry: '[2001:db8:1:2:3:4:5:6]:5000',
    path: 'repo',
    tag: 'latest',
    canonical: '[2001:db8:1:2:3:4:5:6]:5000/repo:latest',
  },
  // Separators: '.', '_', '__', runs of '-'.
  {
    input: 'x/a.b_c__d-e---f',
    registry: 'docker.io',
    path: 'x/a.b_c__d-e---f',
    tag: 'latest',
    canonical: 'docker.io/x/a.b_c__d-e---f:latest',
  },
  {
    input: 'test_com',
    registry: 'docker.io',
    path: 'library/test_com',
    tag: 'latest',
    canonical: 'docker.io/library/test_com:latest',
  },
  // Tags may have uppercase, '.', '-' after the first character.
  {
    input: 'app:Latest_1.0-rc',
    registry: 'docker.io',
    path: 'library/app',
    tag: 'Latest_1.0-rc',
    canonical: 'docker.io/library/app:Latest_1.0-rc',
  },
  {
    input: 'app:_x',
    registry: 'docker.io',
    path: 'library/app',
    tag: '_x',
    canonical: 'docker.io/library/app:_x',
  },
  {
    input: `app:${'t'.repeat(128)}`,
    registry: 'docker.io',
    path: 'library/app',
    tag: 't'.repeat(128),
    canonical: `docker.io/library/app:${'t'.repeat(128)}`,
  },
  // Digests: no default tag when a digest is given; tag and digest together.
  {
    input: `alpine@${SHA}`,
    registry: 'docker.io',
    path: 'library/alpine',
    digest: SHA,
    canonical: `docker.io/library/alpine@${SHA}`,
  },
  {
    input: `127.0.0.1:5000/demo/app:v1@${SHA}`,
    registry: '127.0.0.1:5000',
    path: 'demo/app',
    tag: 'v1',
    digest: SHA,
    canonical: `127.0.0.1:5000/demo/app:v1@${SHA}`,
  },
  {
    input: `[::1]:5000/app@${SHA}`,
    registry: '[::1]:5000',
    path: 'app',
    digest: SHA,
    canonical: `[::1]:5000/app@${SHA}`,
  },
  // The whole name may be 255 characters.
  {
    input: `example.com/${'a'.repeat(243)}`,
    registry: 'example.com',
    path: 'a'.repeat(243),
    tag: 'latest',
    canonical: `example.com/${'a'.repeat(243)}:latest`,
  },
];

const invalid: { readonly input: string; readonly problem: string }[] = [
  { input: '', problem: 'reference is empty' },
  { input: HEX, problem: 'a 64-character hex string is an image ID, not a repository name' },
  { input: ':justtag', problem: 'repository name is missing' },
  { input: `@${SHA}`, problem: 'repository name is missing' },
  { input: 'Uppercase:tag', problem: 'repository path "library/Uppercase" must be lowercase' },
  {
    input: 'test:5000/Uppercase/lowercase:tag',
    problem: 'repository path "Uppercase/lowercase" must be lowercase',
  },
  { input: 'ghcr.io/Org/app', problem: 'repository path "Org/app" must be lowercase' },
  {
    input: 'aa/asdf$$^/aa',
    problem:
      'path component "asdf$$^" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  { input: 'foo//bar', problem: 'repository path "foo//bar" has an empty component' },
  { input: 'foo/', problem: 'repository path "foo/" has an empty component' },
  { input: 'ghcr.io/', problem: 'repository path "" has an empty component' },
  {
    input: '-foo/bar',
    problem:
      'path component "-foo" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  {
    input: 'x/a..b',
    problem:
      'path component "a..b" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  {
    input: 'x/a___b',
    problem:
      'path component "a___b" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  {
    input: 'x/a-',
    problem:
      'path component "a-" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  {
    input: ' alpine',
    problem:
      'path component " alpine" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  {
    input: 'alpine:tag:more',
    problem:
      'path component "alpine:tag" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  {
    input: '[2001:db8::1]:5000',
    problem:
      'path component "[2001:db8::1]" must be lowercase letters and digits joined by ".", "_", "__" or "-"',
  },
  { input: 'foo:bar/baz', problem: 'registry "foo:bar" is not a valid host[:port]' },
  { input: '-registry.com/app', problem: 'registry "-registry.com" is not a valid host[:port]' },
  { input: 'registry-.com/app', problem: 'registry "registry-.com" is not a valid host[:port]' },
  { input: 'reg_istry.com/app', problem: 'registry "reg_istry.com" is not a valid host[:port]' },
  {
    input: '[fe80::1%eth0]:5000/repo',
    problem: 'registry "[fe80::1%eth0]:5000" is not a valid host[:port]',
  },
  {
    input: '[::ffff:1.2.3.4]/repo',
    problem: 'registry "[::ffff:1.2.3.4]" is not a valid host[:port]',
  },
  {
    input: `example.com/${'a'.repeat(244)}`,
    problem: 'repository name is 256 characters; at most 255 are allowed',
  },
  // distribution/reference's own long-name case, counted over the normalized docker.io name.
  {
    input: `${'a/'.repeat(128)}a:tag`,
    problem: 'repository name is 267 characters; at most 255 are allowed',
  },
  { input: 'alpine:', problem: 'tag is empty' },
  { input: `alpine:${'t'.repeat(129)}`, problem: 'tag is 129 characters; at most 128 are allowed' },
  {
    input: 'alpine:-bad',
    problem: 'tag "-bad" must be letters, digits and "_", then also "." or "-"',
  },
  {
    input: 'alpine:.bad',
    problem: 'tag ".bad" must be letters, digits and "_", then also "." or "-"',
  },
  {
    input: 'alpine:bad!',
    problem: 'tag "bad!" must be letters, digits and "_", then also "." or "-"',
  },
  { input: 'alpine:tä', problem: 'tag "tä" must be letters, digits and "_", then also "." or "-"' },
  { input: 'alpine@', problem: 'digest "" is not algorithm:hex with at least 32 hex digits' },
  {
    input: 'alpine@sha256:abc',
    problem: 'digest "sha256:abc" is not algorithm:hex with at least 32 hex digits',
  },
  {
    input: `alpine@sha256:${'g'.repeat(64)}`,
    problem: `digest "sha256:${'g'.repeat(64)}" is not algorithm:hex with at least 32 hex digits`,
  },
  {
    input: `alpine@256:${HEX}`,
    problem: `digest "256:${HEX}" is not algorithm:hex with at least 32 hex digits`,
  },
  {
    input: `alpine@${SHA}@${SHA}`,
    problem: `digest "${SHA}@${SHA}" is not algorithm:hex with at least 32 hex digits`,
  },
  {
    input: `alpine@sha512:${'f'.repeat(128)}`,
    problem: 'digest algorithm "sha512" is not supported; Notary v1 verifies sha256 only',
  },
  {
    input: `validname@invaliddigest:${HEX}`,
    problem: 'digest algorithm "invaliddigest" is not supported; Notary v1 verifies sha256 only',
  },
  {
    input: `alpine@sha256:${HEX.slice(1)}`,
    problem: 'a sha256 digest must be 64 lowercase hex digits',
  },
  { input: `alpine@sha256:${HEX}0`, problem: 'a sha256 digest must be 64 lowercase hex digits' },
  {
    input: `alpine@sha256:${HEX.toUpperCase()}`,
    problem: 'a sha256 digest must be 64 lowercase hex digits',
  },
];

void describe('parseImageReference', () => {
  for (const c of valid) {
    void it(`accepts ${JSON.stringify(c.input.length > 80 ? c.input.slice(0, 80) + '…' : c.input)}`, () => {
      const ref = parseImageReference(c.input);
      const expected: ImageReference = {
        registry: c.registry,
        path: c.path,
        name: `${c.registry}/${c.path}`,
        ...(c.tag === undefined ? {} : { tag: c.tag }),
        ...(c.digest === undefined ? {} : { digest: c.digest }),
        original: c.input,
      };
      assert.deepEqual(ref, expected);
      assert.equal(formatImageReference(ref), c.canonical);
      assert.equal(gunOf(ref), `${c.registry}/${c.path}`);
      // The canonical form is a fixed point.
      assert.deepEqual({ ...parseImageReference(c.canonical), original: c.input }, expected);
    });
  }

  for (const c of invalid) {
    void it(`rejects ${JSON.stringify(c.input.length > 80 ? c.input.slice(0, 80) + '…' : c.input)}`, () => {
      assert.throws(
        () => parseImageReference(c.input),
        (e: unknown) => {
          assert.ok(isTrustError(e, 'REFERENCE_INVALID'), String(e));
          assert.deepEqual(e.facts, { reference: c.input, problem: c.problem });
          return true;
        },
      );
    });
  }
});

void describe('notaryServerFor', () => {
  void it("maps Docker Hub's names to notary.docker.io", () => {
    assert.equal(notaryServerFor('docker.io'), 'https://notary.docker.io');
    assert.equal(notaryServerFor('index.docker.io'), 'https://notary.docker.io');
  });

  void it('maps any other registry to https on its own host and port', () => {
    assert.equal(notaryServerFor('ghcr.io'), 'https://ghcr.io');
    assert.equal(notaryServerFor('127.0.0.1:5000'), 'https://127.0.0.1:5000');
    assert.equal(notaryServerFor('[::1]:5000'), 'https://[::1]:5000');
    assert.equal(
      notaryServerFor(parseImageReference('registry-1.docker.io/x/y').registry),
      'https://registry-1.docker.io',
    );
  });

  void it('uses an override from a record or a map, without a trailing slash', () => {
    const record = { '127.0.0.1:5000': 'https://127.0.0.1:4443/' };
    assert.equal(notaryServerFor('127.0.0.1:5000', record), 'https://127.0.0.1:4443');
    assert.equal(notaryServerFor('127.0.0.1:5001', record), 'https://127.0.0.1:5001');
    const map = new Map([['ghcr.io', 'https://notary.internal:4443']]);
    assert.equal(notaryServerFor('ghcr.io', map), 'https://notary.internal:4443');
    assert.equal(notaryServerFor('docker.io', map), 'https://notary.docker.io');
  });

  void it('applies an override for either Docker Hub name to both', () => {
    const overrides = { 'index.docker.io': 'https://mirror.example' };
    assert.equal(notaryServerFor('docker.io', overrides), 'https://mirror.example');
    assert.equal(notaryServerFor('index.docker.io', overrides), 'https://mirror.example');
  });

  void it('ignores inherited record properties', () => {
    assert.equal(notaryServerFor('constructor', {}), 'https://constructor');
  });
});
