/**
 * docs/operator-guide.md against the code it describes: every shell command block names the test
 * (or demo) that runs it, and that test holds the command's flags and words; every verifier config
 * block loads; every metric and label it names is one the verifier registers, and every metric the
 * verifier registers is documented; every link resolves.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { createRootCertificate, generateSigningKey } from '@kpack-trust/common';
import { parseConfig } from '../src/config/parse.js';
import { METRIC_PREFIX, VerifierMetrics } from '../src/http/metrics.js';

// Docs are data: read them from the source tree whether this runs from source or from dist/test.
const compiled = fileURLToPath(import.meta.url).includes('/dist/');
const REPO = fileURLToPath(new URL(compiled ? '../../../' : '../../', import.meta.url));
const GUIDE = 'docs/operator-guide.md';

interface Block {
  readonly info: string;
  readonly body: string;
  /** 1-based line of the opening fence, for messages. */
  readonly line: number;
  /** The first non-blank line after the closing fence. */
  readonly next: string;
}

function read(path: string): string {
  return readFileSync(join(REPO, path), 'utf8');
}

function fencedBlocks(text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)$/.exec(lines[i] ?? '');
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i] ?? '');
    let j = i + 1;
    while (j < lines.length && (lines[j] ?? '').trim() === '') j++;
    blocks.push({
      info: open[1] ?? '',
      body: body.join('\n'),
      line: start + 1,
      next: lines[j] ?? '',
    });
  }
  return blocks;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens. */
function anchors(markdown: string): Set<string> {
  const result = new Set<string>();
  for (const match of markdown.matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = (match[1] ?? '')
      .toLowerCase()
      .replace(/[^a-z0-9 _-]/g, '')
      .replace(/ /g, '-');
    result.add(slug);
  }
  return result;
}

interface Exerciser {
  readonly file: string;
  readonly name: string;
  readonly via?: string;
}

/** `<!-- exercised by: FILE ("NAME") [via HELPER]; … -->` */
function exercisers(comment: string): Exerciser[] | undefined {
  const match = /^<!-- exercised by: (.+) -->$/.exec(comment);
  if (!match) return undefined;
  return (match[1] ?? '').split('; ').map((entry) => {
    const parts = /^(\S+) \("(.+)"\)(?: via (\S+))?$/.exec(entry);
    assert.ok(parts, `malformed exercised-by entry: ${entry}`);
    const [, file = '', name = '', via] = parts;
    return via === undefined ? { file, name } : { file, name, via };
  });
}

const guide = read(GUIDE);
const blocks = fencedBlocks(guide);

describe('docs/operator-guide.md', () => {
  it('names, after every shell command block, tests that run its flags and words', () => {
    const shell = blocks.filter((b) => b.info === 'sh');
    assert.ok(shell.length >= 10, `only ${shell.length} command blocks found`);
    for (const block of shell) {
      const where = `${GUIDE}:${block.line}`;
      const named = exercisers(block.next);
      assert.ok(named, `${where}: no "<!-- exercised by: … -->" after the block`);
      const sources = named.flatMap(({ file, name, via }) => {
        assert.ok(existsSync(join(REPO, file)), `${where}: ${file} does not exist`);
        const text = read(file);
        assert.ok(text.includes(name), `${where}: ${file} has no test named "${name}"`);
        if (via === undefined) return [text];
        assert.ok(existsSync(join(REPO, via)), `${where}: ${via} does not exist`);
        return [text, read(via)];
      });
      const tokens = block.body
        .replace(/\\\n/g, ' ')
        .split(/\s+/)
        .filter((t) => t !== '');
      for (const token of tokens) {
        // Flags, and bare words (subcommands, roles, store kinds); values like paths are free.
        if (!/^--?[a-z][a-z0-9-]*$/.test(token) && !/^[a-z]+$/.test(token)) continue;
        if (['kpack', 'notary'].some((program) => token.startsWith(program))) continue;
        assert.ok(
          sources.some((text) => text.includes(`'${token}'`) || text.includes(`"${token}"`)),
          `${where}: "${token}" appears in none of ${named.map((n) => n.file).join(', ')}`,
        );
      }
    }
  });

  describe('verifier config blocks', () => {
    let certificatePem = '';
    before(async () => {
      certificatePem = await createRootCertificate('example.com/pin', generateSigningKey());
    });

    it('load with the verifier config parser (files they name stubbed)', () => {
      const configs = blocks.filter((b) => b.info === 'yaml' && b.body.includes('listen:'));
      assert.ok(configs.length >= 3, `only ${configs.length} verifier configs found`);
      for (const block of configs) {
        assert.match(block.body, /^# verifier config\n/, `${GUIDE}:${block.line}: unmarked config`);
        const readFile = (path: string): string =>
          path.endsWith('.json') ? '{"auths":{}}' : certificatePem;
        assert.doesNotThrow(
          () =>
            parseConfig(block.body, '/etc/kpack-trust/config', readFile, `${GUIDE}:${block.line}`),
          `${GUIDE}:${block.line}`,
        );
      }
    });
  });

  it('names only metrics and labels the verifier registers, and documents all of them', async () => {
    const registry = new VerifierMetrics({ defaultMetrics: false }).registry;
    const labels = (name: string): readonly string[] => {
      const metric = registry.getSingleMetric(name) as
        { labelNames?: readonly string[] } | undefined;
      assert.ok(metric, `${GUIDE} names ${name}, which the verifier does not register`);
      return metric.labelNames ?? [];
    };
    const used = new Set<string>();
    for (const match of guide.matchAll(/(kpack_trust_verifier_[a-z_]+)(?:\{([^}]*)\})?/g)) {
      const written = match[1] ?? '';
      const suffix = /_(bucket|sum|count)$/.exec(written);
      const name =
        suffix && registry.getSingleMetric(written) === undefined
          ? written.slice(0, -suffix[0].length)
          : written;
      used.add(name);
      const known = [...labels(name), ...(suffix?.[1] === 'bucket' ? ['le'] : [])];
      for (const label of (match[2] ?? '').matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)) {
        assert.ok(known.includes(label[1] ?? ''), `${written} has no label ${label[1] ?? ''}`);
      }
    }
    const registered = (await registry.getMetricsAsJSON())
      .map((m) => m.name)
      .filter((n) => n.startsWith(METRIC_PREFIX));
    assert.deepEqual(
      registered.filter((n) => !used.has(n)),
      [],
      'metrics the guide does not document',
    );
  });

  it('links only to anchors and files that exist', () => {
    const own = anchors(guide);
    for (const match of guide.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1] ?? '';
      if (/^https?:/.test(target)) continue;
      const [path = '', anchor] = target.split('#');
      if (path === '') {
        assert.ok(own.has(anchor ?? ''), `no heading for #${anchor ?? ''}`);
        continue;
      }
      const file = join('docs', path);
      assert.ok(existsSync(join(REPO, file)), `${target}: ${file} does not exist`);
      if (anchor !== undefined) {
        assert.ok(anchors(read(file)).has(anchor), `${target}: no such heading in ${file}`);
      }
    }
  });
});
