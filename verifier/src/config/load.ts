/**
 * Reads the configuration file from disk: the only file access of config loading, so the parser
 * stays testable with an in-memory reader.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { configError } from './fields.js';
import { parseConfig } from './parse.js';
import type { VerifierConfig } from './types.js';

/** Loads, validates and freezes the configuration at `path`; throws CONFIG_INVALID naming the problem. */
export async function loadConfig(path: string): Promise<VerifierConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    throw configError(absolute, '', `cannot be read (${code})`);
  }
  // Files the config names are small (CA bundles, PEM keys, a docker config.json).
  return parseConfig(text, dirname(absolute), (file) => readFileSync(file, 'utf8'), absolute);
}
