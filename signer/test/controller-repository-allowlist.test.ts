/**
 * The per-namespace repository allowlist (`--allow-repository NS=PREFIX`): prefixes match on
 * path-segment boundaries, hosts without case, Docker Hub's names as the reference parser
 * normalizes them; hostile or oversized entries refuse to start the controller.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseImageReference } from '@kpack-trust/common';
import {
  MAX_ALLOWLIST_ENTRIES,
  MAX_ALLOWLIST_NAMESPACES,
  MAX_PREFIXES_PER_NAMESPACE,
  MAX_PREFIX_LENGTH,
  RepositoryAllowlistError,
  parseRepositoryAllowlist,
  repositoryVerdict,
  type RepositoryAllowlist,
} from '../src/controller/repository-allowlist.js';

/** The verdict for an image reference, named as reconcile names its repository (the GUN). */
function verdictFor(list: RepositoryAllowlist, namespace: string, reference: string): string {
  return repositoryVerdict(list, namespace, parseImageReference(reference).name).kind;
}

function rejects(entries: string[], pattern: RegExp): void {
  assert.throws(
    () => parseRepositoryAllowlist(entries),
    (err: unknown) =>
      err instanceof RepositoryAllowlistError &&
      err.code === 'REPOSITORY_ALLOWLIST_INVALID' &&
      pattern.test(err.message),
  );
}

describe('repository prefixes', () => {
  const list = parseRepositoryAllowlist([
    'team-a=registry.example.com/team-a',
    'team-b=registry.example.com/team-b',
  ]);

  it('allow the prefix itself and repositories below it', () => {
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-a:v1'), 'allowed');
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-a/app:v1'), 'allowed');
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-a/x/y/z:v1'), 'allowed');
  });

  it('match on path-segment boundaries only', () => {
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-ab/app:v1'), 'refused');
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-a-b:v1'), 'refused');
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team:v1'), 'refused');
  });

  it("refuse another namespace's repository", () => {
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-b/app:v1'), 'refused');
    assert.equal(verdictFor(list, 'team-b', 'registry.example.com/team-a/app:v1'), 'refused');
  });

  it('compare hosts without case, and a port as part of the host', () => {
    const mixed = parseRepositoryAllowlist(['ns=Registry.Example.COM:5000/team']);
    assert.equal(verdictFor(mixed, 'ns', 'REGISTRY.example.com:5000/team/app:v1'), 'allowed');
    assert.equal(verdictFor(mixed, 'ns', 'registry.example.com/team/app:v1'), 'refused');
    assert.equal(verdictFor(mixed, 'ns', 'registry.example.com:5001/team/app:v1'), 'refused');
  });

  it("read Docker Hub's forms as the reference parser does", () => {
    const hub = parseRepositoryAllowlist([
      'ns=index.docker.io/team-a',
      'official=docker.io/library',
    ]);
    assert.equal(verdictFor(hub, 'ns', 'team-a/app:v1'), 'allowed');
    assert.equal(verdictFor(hub, 'ns', 'docker.io/team-a/app:v1'), 'allowed');
    assert.equal(verdictFor(hub, 'ns', 'INDEX.DOCKER.IO/team-a/app:v1'), 'allowed');
    assert.equal(verdictFor(hub, 'ns', 'team-ab/app:v1'), 'refused');
    assert.equal(verdictFor(hub, 'ns', 'alpine:3'), 'refused');
    assert.equal(verdictFor(hub, 'official', 'alpine:3'), 'allowed');
    assert.equal(verdictFor(hub, 'official', 'registry.example.com/library/x:1'), 'refused');
  });

  it('a bare host allows every repository of that host only', () => {
    const host = parseRepositoryAllowlist(['ns=registry.example.com']);
    assert.equal(verdictFor(host, 'ns', 'registry.example.com/any/app:v1'), 'allowed');
    assert.equal(verdictFor(host, 'ns', 'registry.example.com.evil/any/app:v1'), 'refused');
    assert.equal(verdictFor(host, 'ns', 'evil.registry.example.com/any/app:v1'), 'refused');
  });

  it('several prefixes of one namespace each allow, and duplicates are kept once', () => {
    const two = parseRepositoryAllowlist([
      'ns=registry.example.com/one',
      'ns=registry.example.com/two',
      'ns=REGISTRY.example.com/two',
    ]);
    assert.equal(two.byNamespace.get('ns')?.length, 2);
    assert.equal(verdictFor(two, 'ns', 'registry.example.com/two/app:v1'), 'allowed');
    assert.equal(verdictFor(two, 'ns', 'registry.example.com/three/app:v1'), 'refused');
  });

  it('the refusal names the namespace and its prefixes, never only "denied"', () => {
    const verdict = repositoryVerdict(list, 'team-a', 'registry.example.com/team-b/app');
    assert.equal(verdict.kind, 'refused');
    assert.equal(
      verdict.kind === 'refused' ? verdict.problem : '',
      'repository registry.example.com/team-b/app is not under one the operator allows namespace ' +
        '"team-a" (registry.example.com/team-a; --allow-repository); nothing was published',
    );
  });
});

describe('namespaces without an entry', () => {
  it('sign as before by default', () => {
    const list = parseRepositoryAllowlist(['team-a=registry.example.com/team-a']);
    assert.equal(verdictFor(list, 'other', 'registry.example.com/team-a/app:v1'), 'unlisted');
  });

  it('sign nothing with --require-repository-allowlist', () => {
    const list = parseRepositoryAllowlist(['team-a=registry.example.com/team-a'], true);
    const verdict = repositoryVerdict(list, 'other', 'registry.example.com/team-a/app');
    assert.equal(verdict.kind, 'refused');
    assert.match(
      verdict.kind === 'refused' ? verdict.problem : '',
      /namespace "other" has no repository allowlist entry.*--require-repository-allowlist/,
    );
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-a/app:v1'), 'allowed');
  });

  it('an empty list with --require-repository-allowlist refuses everything', () => {
    const list = parseRepositoryAllowlist([], true);
    assert.equal(verdictFor(list, 'team-a', 'registry.example.com/team-a/app:v1'), 'refused');
  });
});

describe('hostile or malformed entries refuse to start', () => {
  it('an entry without NAMESPACE=', () => {
    rejects(['registry.example.com/team-a'], /not NAMESPACE=PREFIX/);
    rejects(['=registry.example.com/team-a'], /not NAMESPACE=PREFIX/);
    rejects(['Team=registry.example.com/team-a'], /not NAMESPACE=PREFIX/);
    rejects(['team.a=registry.example.com/team-a'], /not NAMESPACE=PREFIX/);
    rejects([`${'a'.repeat(64)}=registry.example.com/x`], /not NAMESPACE=PREFIX/);
  });

  it('a prefix that is empty, not a registry host, or not repository path components', () => {
    rejects(['ns='], /the prefix is empty/);
    rejects(['ns=team-a/app'], /must start with a registry host/);
    rejects(['ns=*'], /must start with a registry host/);
    rejects(['ns=https://registry.example.com/team'], /must start with a registry host/);
    rejects(['ns=registry.example.com/'], /path must be lowercase/);
    rejects(['ns=registry.example.com/team-a/'], /path must be lowercase/);
    rejects(['ns=registry.example.com//team-a'], /path must be lowercase/);
    rejects(['ns=registry.example.com/Team-A'], /path must be lowercase/);
    rejects(['ns=registry.example.com/team-a:v1'], /path must be lowercase/);
    rejects(['ns=registry.example.com/team-a@sha256:00'], /path must be lowercase/);
    rejects(['ns=registry.example.com/../team-b'], /path must be lowercase/);
    rejects(['ns=registry.example.com/team-a*'], /path must be lowercase/);
  });

  it('an over-long prefix, and the message does not repeat it whole', () => {
    const long = `registry.example.com/${'a'.repeat(MAX_PREFIX_LENGTH)}`;
    assert.throws(
      () => parseRepositoryAllowlist([`ns=${long}`]),
      (err: unknown) =>
        err instanceof RepositoryAllowlistError &&
        /longer than 255 characters/.test(err.message) &&
        err.message.length < 300,
    );
  });

  it('too many entries, namespaces or prefixes of one namespace', () => {
    const entries = (n: number, entry: (i: number) => string): string[] =>
      Array.from({ length: n }, (_, i) => entry(i));
    rejects(
      entries(MAX_ALLOWLIST_ENTRIES + 1, () => 'ns=registry.example.com/a'),
      /at most 1000 are read/,
    );
    rejects(
      entries(MAX_ALLOWLIST_NAMESPACES + 1, (i) => `ns-${i}=registry.example.com/a`),
      /more than 500 namespaces/,
    );
    rejects(
      entries(MAX_PREFIXES_PER_NAMESPACE + 1, (i) => `ns=registry.example.com/p${i}`),
      /more than 64 prefixes/,
    );
    // At the bounds themselves, the list is read.
    assert.equal(
      parseRepositoryAllowlist(
        entries(MAX_PREFIXES_PER_NAMESPACE, (i) => `ns=registry.example.com/p${i}`),
      ).byNamespace.get('ns')?.length,
      MAX_PREFIXES_PER_NAMESPACE,
    );
  });
});
