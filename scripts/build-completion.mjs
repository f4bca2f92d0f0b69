#!/usr/bin/env node
// Builds the completion image's program: one executable, no shell, no node_modules, made with
// Node's single-executable applications (SEA). kpack's completion image has no shell and no Node,
// and kpack starts `/cnb/process/completion` directly, so what sits there must be a binary.
//
//   node scripts/build-completion.mjs [--out FILE] [--libs DIR]
//     (after `npx tsc -b`; default signer/dist/sea/completion; --libs copies the C++ runtime there)
//   node scripts/build-completion.mjs --layout KPACK_ROOT LAYOUT_DIR
//     (the Dockerfile's file moves, in Node because the build bases may have no coreutils)
//
// 1. esbuild bundles signer/dist/src/kpack/completion-main.js and everything it imports
//    (@kpack-trust/common, smol-toml) into one CommonJS file: a SEA's main script is CommonJS and
//    can `require` only Node's built-ins.
// 2. `node --experimental-sea-config` turns it into a blob; postject injects the blob into a copy
//    of this node binary (Node 20 has no `--build-sea`).
// 3. The result is started once with no arguments and this node as the stand-in for kpack's
//    binary, and must hand over to it: a smoke test that the bundle loads.
//
// The executable needs what this node binary needs: glibc, which kpack's image has, and libstdc++
// and libgcc_s, which it may not — `--libs DIR` copies those two (found in this process's own
// memory map, so no ldd or shell is needed) for the Dockerfile's `completion` target.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const layoutIndex = process.argv.indexOf('--layout');
if (layoutIndex !== -1) {
  layout(process.argv[layoutIndex + 1], process.argv[layoutIndex + 2]);
  process.exit(0);
}

/**
 * The completion image's moves, into LAYOUT_DIR (copied over kpack's image afterwards): kpack's
 * /cnb/process/completion (a symlink to the CNB launcher in a buildpacks-built image, kept a
 * symlink) or /ko-app/completion (a ko-built one) becomes /cnb/process/kpack-completion, and
 * /cnb/process/completion (and /ko-app/completion when kpack's image had one) points at ours.
 */
function layout(kpackRoot, dir) {
  if (kpackRoot === undefined || dir === undefined)
    throw new Error('--layout KPACK_ROOT LAYOUT_DIR');
  const cnb = join(kpackRoot, 'cnb/process/completion');
  const ko = join(kpackRoot, 'ko-app/completion');
  const moved = join(dir, 'cnb/process/kpack-completion');
  mkdirSync(dirname(moved), { recursive: true });
  const isThere = (path) =>
    existsSync(path) || lstatSync(path, { throwIfNoEntry: false }) !== undefined;
  if (isThere(cnb) && lstatSync(cnb).isSymbolicLink()) symlinkSync(readlinkSync(cnb), moved);
  else if (isThere(cnb)) copyFileSync(cnb, moved);
  else if (isThere(ko)) copyFileSync(ko, moved);
  else throw new Error(`${kpackRoot} has neither /cnb/process/completion nor /ko-app/completion`);
  if (!lstatSync(moved).isSymbolicLink()) chmodSync(moved, 0o755);
  symlinkSync('/kpack-trust/completion', join(dir, 'cnb/process/completion'));
  if (isThere(ko)) {
    mkdirSync(join(dir, 'ko-app'), { recursive: true });
    symlinkSync('/kpack-trust/completion', join(dir, 'ko-app/completion'));
  }
  process.stdout.write(
    `${dir}: kpack's completion → /cnb/process/kpack-completion, ours in its place\n`,
  );
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'signer', 'package.json'));
const outIndex = process.argv.indexOf('--out');
const out = resolve(
  outIndex === -1 ? join(root, 'signer/dist/sea/completion') : process.argv[outIndex + 1],
);
const libsIndex = process.argv.indexOf('--libs');
const libs = libsIndex === -1 ? undefined : resolve(process.argv[libsIndex + 1]);
const work = mkdtempSync(join(tmpdir(), 'kpack-trust-sea-'));

const bundle = join(work, 'completion.cjs');
const esbuild = require('esbuild');
const result = esbuild.buildSync({
  entryPoints: [join(root, 'signer/dist/src/kpack/completion-main.js')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  outfile: bundle,
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});
const inputs = Object.keys(result.metafile.inputs);
// The Kubernetes client has no business in a build step's binary; fail loudly if it creeps in.
if (inputs.some((file) => file.includes('@kubernetes/client-node'))) {
  throw new Error('the completion bundle pulls in @kubernetes/client-node');
}

const blob = join(work, 'completion.blob');
const config = join(work, 'sea-config.json');
writeFileSync(
  config,
  JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true }),
);
execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: 'inherit' });

mkdirSync(dirname(out), { recursive: true });
copyFileSync(process.execPath, out);
chmodSync(out, 0o755);
const { inject } = require('postject');
await inject(out, 'NODE_SEA_BLOB', readFileSync(blob), {
  sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
});

// Smoke test: no notary flag, so the step hands over to "kpack's binary" — here this node, which
// reads an empty script from stdin and exits 0 (no /bin/true needed: build bases may lack one).
execFileSync(out, [], {
  env: { KPACK_TRUST_KPACK_COMPLETION: process.execPath, PATH: '' },
  input: '',
  stdio: ['pipe', 'inherit', 'inherit'],
});
if (libs !== undefined) {
  mkdirSync(libs, { recursive: true });
  const mapped = readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[5])
    .filter((path) => path !== undefined && path.startsWith('/'));
  for (const name of ['libstdc++.so.6', 'libgcc_s.so.1']) {
    const stem = name.slice(0, name.indexOf('.so'));
    const path = mapped.find((p) => p.split('/').pop()?.startsWith(`${stem}.so`));
    if (path === undefined) throw new Error(`node has no ${name} mapped; is it linked statically?`);
    copyFileSync(realpathSync(path), join(libs, name));
  }
}
rmSync(work, { recursive: true, force: true });
process.stdout.write(`${out}: single executable, ${inputs.length} modules bundled\n`);
