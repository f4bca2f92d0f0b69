import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogSink } from '../src/http/log-sink.js';
import { createJsonLogger } from '../src/http/logger.js';

const compiled = fileURLToPath(import.meta.url).includes('/dist/');
const CHILD = fileURLToPath(
  new URL(
    compiled ? './support/log-sink-child.js' : './support/log-sink-child.ts',
    import.meta.url,
  ),
);
const NODE_ARGS = compiled ? [CHILD] : ['--import', 'tsx', CHILD];

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'verifier-log-sink-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runChild(file: string, count: number, mode: 'crash' | 'exit'): Promise<number | null> {
  const child = spawn(process.execPath, [...NODE_ARGS, file, String(count), mode], {
    stdio: 'ignore',
  });
  return new Promise((resolve) => child.on('exit', resolve));
}

async function linesOf(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).split('\n').filter((line) => line !== '');
}

describe('createLogSink', () => {
  it('has written every line, in order, when flush() resolves', async () => {
    const file = join(dir, 'flush.log');
    // The sink closes a descriptor other than stdout/stderr when it is flushed.
    const logger = createJsonLogger({ sink: createLogSink(openSync(file, 'a')) });
    for (let i = 0; i < 5000; i += 1) logger.info('image.decision', { n: i });
    await logger.flush?.();
    const lines = await linesOf(file);
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as { n: number }).n),
      Array.from({ length: 5000 }, (_, i) => i),
    );
  });

  it('writes a lone line within the flush interval, without a flush', async () => {
    const file = join(dir, 'interval.log');
    const sink = createLogSink(openSync(file, 'a'), { flushIntervalMs: 100 });
    sink.write('{"event":"server.listening"}');
    const deadline = Date.now() + 5000;
    let lines = await linesOf(file);
    while (lines.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      lines = await linesOf(file);
    }
    assert.deepEqual(lines, ['{"event":"server.listening"}']);
    await sink.flush();
  });

  it('a crashing process writes its queued lines and the crash line out before exiting', async () => {
    const file = join(dir, 'crash.log');
    assert.equal(await runChild(file, 20_000, 'crash'), 70);
    const lines = await linesOf(file);
    assert.equal(lines.length, 20_001);
    assert.equal(lines.at(-1), '{"event":"process.crashed"}');
  });

  it('a process.exit elsewhere still writes the queue (pino hooks the exit event)', async () => {
    const file = join(dir, 'exit.log');
    assert.equal(await runChild(file, 20_000, 'exit'), 0);
    assert.equal((await linesOf(file)).length, 20_000);
  });
});

describe('log redaction', () => {
  it('replaces the values of fields named like credentials', () => {
    const lines: string[] = [];
    const logger = createJsonLogger({ write: (line) => lines.push(line) });
    logger.warn('x', { token: 'eyJ-secret', notaryPassword: 'hunter2', image: 'a:1' });
    const line = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
    assert.equal(line['token'], '[redacted]');
    assert.equal(line['notaryPassword'], '[redacted]');
    assert.equal(line['image'], 'a:1');
    assert.doesNotMatch(lines[0] ?? '', /hunter2|eyJ-secret/);
  });
});
