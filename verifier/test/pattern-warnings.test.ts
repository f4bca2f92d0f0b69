/**
 * Image patterns that are valid but can match no normalized name: each is reported as a config
 * warning naming the key path, the pattern and the fix, and patterns that can match are not.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseImageReference } from '@kpack-trust/common';
import { imagePatternNeverMatches } from '../src/config/pattern-warnings.js';
import { compileImageGlob } from '../src/policy/glob.js';
import { PREAMBLE, configFrom } from './support/engine.js';

const NO_HOST =
  'never matches: it has no registry host, and images are matched by their normalized name, ' +
  'which starts with one ("nginx" is docker.io/library/nginx); write "docker.io/%s" for ' +
  'Docker Hub, or name the registry';
const PATH = (segment: string): string =>
  `never matches: "${segment}" can be no repository path component (lowercase letters and ` +
  'digits joined by ".", "_", "__" or "-"; "*" and "**" are the only wildcards, brackets are literal)';

/** Pattern → the warning, and the references someone writing it most likely meant. */
const NEVER: readonly (readonly [string, string, readonly string[]])[] = [
  [
    'library/*',
    NO_HOST.replace('%s', 'library/*'),
    ['nginx', 'library/nginx', 'docker.io/library/nginx'],
  ],
  ['team/[abc', NO_HOST.replace('%s', 'team/[abc'), ['team/a', 'docker.io/team/abc']],
  ['team/*', NO_HOST.replace('%s', 'team/*'), ['team/app', 'docker.io/team/app']],
  ['docker.io/team/[abc', PATH('[abc'), ['docker.io/team/a', 'docker.io/team/abc']],
  ['registry.example.com/Team/*', PATH('Team'), ['registry.example.com/team/app']],
  ['registry.example.com/team/App*', PATH('App*'), ['registry.example.com/team/app']],
  ['**/App', PATH('App'), ['registry.example.com/app', 'app']],
  [
    'docker.io/alpine',
    'never matches: a Docker Hub name always has two or more path components ("alpine" is ' +
      'docker.io/library/alpine); write "docker.io/library/alpine"',
    ['alpine', 'docker.io/alpine', 'index.docker.io/alpine'],
  ],
  [
    'docker.io/*',
    'never matches: a Docker Hub name always has two or more path components ("alpine" is ' +
      'docker.io/library/alpine); write "docker.io/library/*"',
    ['alpine', 'user/app'],
  ],
  [
    'index.docker.io/library/*',
    'never matches: image names are normalized to "docker.io" (write "docker.io/library/*")',
    ['index.docker.io/library/alpine', 'alpine'],
  ],
  [
    'reg_istry.example/app',
    'never matches: "reg_istry.example" is not a registry host[:port], and images are matched by ' +
      'their normalized name, which starts with one ("*" and "**" are the only wildcards)',
    [],
  ],
  [
    '*_x.example/app',
    'never matches: "*_x.example" holds characters no registry host[:port] has',
    [],
  ],
];

/** Patterns that can match, each with a reference whose normalized name it matches. */
const CAN_MATCH: readonly (readonly [string, string])[] = [
  ['127.0.0.1:5000/demo/*', '127.0.0.1:5000/demo/app:v1'],
  ['docker.io/library/*', 'nginx'],
  ['docker.io/*/app', 'team/app'],
  ['docker.io/**', 'team/app'],
  ['**', 'alpine'],
  ['**/app', 'registry.example.com/team/app'],
  ['localhost/app', 'localhost/app'],
  ['localhost:5000/**', 'localhost:5000/a/b/c'],
  ['[::1]:5000/demo/**', '[::1]:5000/demo/app'],
  ['*.example.com/team/*', 'registry.example.com/team/app'],
  ['registry.example.com/team/app-*', 'registry.example.com/team/app-api'],
  ['Registry.example.com/team/app', 'Registry.example.com/team/app'],
];

describe('image patterns that match nothing', () => {
  it('names why and the fix, and none of the names meant matches', () => {
    for (const [pattern, warning, meant] of NEVER) {
      assert.equal(imagePatternNeverMatches(pattern), warning, pattern);
      const glob = compileImageGlob(pattern);
      for (const reference of meant) {
        assert.ok(!glob.regex.test(parseImageReference(reference).name), `${pattern} ${reference}`);
      }
    }
  });

  it('are not reported when they can match', () => {
    for (const [pattern, reference] of CAN_MATCH) {
      assert.equal(imagePatternNeverMatches(pattern), undefined, pattern);
      assert.ok(compileImageGlob(pattern).regex.test(parseImageReference(reference).name), pattern);
    }
  });

  it('are config warnings naming the source, key path and pattern; the config still loads', () => {
    const config = configFrom(
      `${PREAMBLE}
rules:
  - images: "library/*"
    allow: true
  - images: ["127.0.0.1:5000/demo/*", "docker.io/team/[abc"]
    deny: true
`,
    );
    assert.equal(config.rules.length, 2);
    assert.deepEqual(config.warnings, [
      `config: rules[0].images "library/*" ${NO_HOST.replace('%s', 'library/*')}`,
      `config: rules[1].images[1] "docker.io/team/[abc" ${PATH('[abc')}`,
    ]);
    assert.ok(Object.isFrozen(config.warnings));
  });

  it('leave a config without such patterns with no warnings', () => {
    const config = configFrom(
      `${PREAMBLE}\nrules:\n  - images: "docker.io/library/*"\n    allow: true\n`,
    );
    assert.deepEqual(config.warnings, []);
  });
});
