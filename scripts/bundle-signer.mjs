#!/usr/bin/env node
// Bundles the signer's entry point for fast start-up: esbuild turns signer/dist/src/main.js (after
// `npx tsc -b`) and what it imports (@kpack-trust/common, smol-toml) into signer/dist/bundle/main.js
// plus chunks for what main.js imports lazily (the controller, kpack's completion step, the Kubernetes
// Secret store). A build pod starts the signer once per build: resolving and reading ~80 small ES
// modules was about 40 ms of CPU of each run (npm run bench:sign); one file is read and compiled
// instead. @kubernetes/client-node stays outside, loaded from node_modules only by the subcommands
// and key store that need it.
//
//   node scripts/bundle-signer.mjs        (the signer image's entry point is the result)
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'signer/dist/bundle');
// esbuild is a dev dependency of the signer workspace, where npm may have installed it.
const require = createRequire(join(root, 'signer/package.json'));
const esbuild = require('esbuild');

rmSync(outdir, { recursive: true, force: true });
const result = esbuild.buildSync({
  entryPoints: [join(root, 'signer/dist/src/main.js')],
  bundle: true,
  // ES modules with code splitting: each dynamic import() stays a separate file, loaded only when
  // its subcommand or key store runs.
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir,
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  external: ['@kubernetes/client-node'],
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});
const main =
  result.metafile.outputs[join('signer/dist/bundle/main.js')] ??
  Object.entries(result.metafile.outputs).find(([file]) => file.endsWith('bundle/main.js'))?.[1];
if (main === undefined) throw new Error('esbuild wrote no signer/dist/bundle/main.js');
// The entry point must not import the Kubernetes client before a subcommand asks for it.
if (
  main.imports.some(
    (entry) => entry.path === '@kubernetes/client-node' && entry.kind === 'import-statement',
  )
) {
  throw new Error('signer/dist/bundle/main.js imports @kubernetes/client-node eagerly');
}
const files = Object.keys(result.metafile.outputs).length;
process.stdout.write(
  `signer bundle: signer/dist/bundle/main.js (${Math.round(main.bytes / 1024)} KiB, ${files} files)\n`,
);
