/**
 * Image globs and rule selection: `*` within a segment, `**` across segments, most literal
 * characters first, then fewest wildcards, then namespace-limited rules, then file order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileImageGlob, compileNamespaceGlob } from '../src/policy/glob.js';
import { RuleSet } from '../src/policy/rules.js';
import { PREAMBLE, configFrom } from './support/engine.js';

function matches(pattern: string, name: string): boolean {
  return compileImageGlob(pattern).regex.test(name);
}

describe('image globs', () => {
  it('* stays within one path segment', () => {
    assert.ok(matches('127.0.0.1:5000/demo/*', '127.0.0.1:5000/demo/app'));
    assert.ok(!matches('127.0.0.1:5000/demo/*', '127.0.0.1:5000/demo/team/app'));
    assert.ok(!matches('127.0.0.1:5000/demo/*', '127.0.0.1:5000/demo'));
    assert.ok(matches('127.0.0.1:5000/demo/app-*', '127.0.0.1:5000/demo/app-web'));
    assert.ok(!matches('127.0.0.1:5000/demo/app-*', '127.0.0.1:5000/demo/web'));
    assert.ok(matches('*/library/*', 'docker.io/library/alpine'));
  });

  it('** spans any number of segments', () => {
    assert.ok(matches('127.0.0.1:5000/**', '127.0.0.1:5000/demo/app'));
    assert.ok(matches('127.0.0.1:5000/**', '127.0.0.1:5000/a/b/c/d'));
    assert.ok(!matches('127.0.0.1:5000/**', '127.0.0.2:5000/demo/app'));
    assert.ok(matches('127.0.0.1:5000/**/app', '127.0.0.1:5000/app'));
    assert.ok(matches('127.0.0.1:5000/**/app', '127.0.0.1:5000/x/y/app'));
    assert.ok(!matches('127.0.0.1:5000/**/app', '127.0.0.1:5000/x/y/apps'));
    assert.ok(matches('**/app', 'quay.io/team/app'));
    assert.ok(matches('**', 'docker.io/library/alpine'));
  });

  it('treats regex characters literally', () => {
    assert.ok(!matches('a.io/x/app', 'aXio/x/app'));
    assert.ok(matches('[::1]:5000/x/*', '[::1]:5000/x/app'));
  });

  it('measures specificity as literals, then wildcards (** weighs 2)', () => {
    const g = compileImageGlob('127.0.0.1:5000/demo/*');
    assert.equal(g.literals, '127.0.0.1:5000/demo/'.length);
    assert.equal(g.wildcards, 1);
    assert.equal(compileImageGlob('a.io/**').wildcards, 2);
    // The `/` beside a `**` segment is not counted: `**` may match no segment at all.
    assert.equal(compileImageGlob('a.io/x/**').literals, 'a.io/x'.length);
    assert.equal(compileImageGlob('a.io/**/y').literals, 'a.io/y'.length);
  });

  it('an exact pattern outranks x/** and x/**/y for the names both match', () => {
    const config = configFrom(`${PREAMBLE}
rules:
  - { name: sub, images: "registry.corp.com/payments/**", allow: true }
  - { name: exact, images: "registry.corp.com/payments", deny: true }
  - { name: middle, images: "registry.corp.com/a/**/b", allow: true }
  - { name: exact-ab, images: "registry.corp.com/a/b", deny: true }
`);
    const rules = new RuleSet(config.rules);
    assert.equal(rules.match('registry.corp.com/payments', 'default')?.name, 'exact');
    assert.equal(rules.match('registry.corp.com/payments/x', 'default')?.name, 'sub');
    assert.equal(rules.match('registry.corp.com/a/b', 'default')?.name, 'exact-ab');
    assert.equal(rules.match('registry.corp.com/a/x/b', 'default')?.name, 'middle');
  });

  it('namespace globs match whole names', () => {
    assert.ok(compileNamespaceGlob('tenant-*').test('tenant-a'));
    assert.ok(!compileNamespaceGlob('tenant-*').test('my-tenant-a'));
    assert.ok(compileNamespaceGlob('kube-system').test('kube-system'));
    assert.ok(!compileNamespaceGlob('kube-system').test('kube-system2'));
  });
});

describe('RuleSet', () => {
  const config = configFrom(`${PREAMBLE}
rules:
  - { name: registry, images: "127.0.0.1:5000/**", deny: true }
  - { name: demo, images: "127.0.0.1:5000/demo/*", allow: true }
  - { name: app, images: "127.0.0.1:5000/demo/app", deny: true }
  - { name: app-star, images: "127.0.0.1:5000/demo/ap*", allow: true }
  - { name: demo-prod, images: "127.0.0.1:5000/demo/*", namespaces: [prod], deny: true }
  - { name: demo-second, images: "127.0.0.1:5000/demo/*", allow: true }
  - { name: tools, images: ["127.0.0.1:5000/tools/*", "127.0.0.1:5000/tools/special/*"], allow: true, excludeNamespaces: ["ci-*"] }
  - { name: any, images: "**", allow: true, namespaces: [sandbox] }
`);
  const rules = new RuleSet(config.rules);
  const pick = (name: string, ns = 'default'): string | undefined => rules.match(name, ns)?.name;

  it('prefers the most literal characters', () => {
    assert.equal(pick('127.0.0.1:5000/demo/app'), 'app');
    assert.equal(pick('127.0.0.1:5000/demo/apx'), 'app-star');
    assert.equal(pick('127.0.0.1:5000/demo/web'), 'demo');
    assert.equal(pick('127.0.0.1:5000/other/web'), 'registry');
  });

  it('at equal specificity prefers a namespace-limited rule, then file order', () => {
    assert.equal(pick('127.0.0.1:5000/demo/web', 'prod'), 'demo-prod');
    assert.equal(pick('127.0.0.1:5000/demo/web', 'staging'), 'demo');
  });

  it('skips rules whose namespaces do not apply', () => {
    assert.equal(pick('127.0.0.1:5000/tools/x', 'default'), 'tools');
    assert.equal(pick('127.0.0.1:5000/tools/x', 'ci-42'), 'registry');
    assert.equal(pick('127.0.0.1:5000/tools/special/x', 'default'), 'tools');
    assert.equal(pick('quay.io/x/y', 'sandbox'), 'any');
  });

  it('matches nothing when no rule applies', () => {
    assert.equal(pick('quay.io/x/y', 'default'), undefined);
    assert.equal(pick('docker.io/library/alpine'), undefined);
  });
});
