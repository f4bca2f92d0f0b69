// Runs after `tsc -b` (npm run build). tsc writes every file without the execute bit, so a
// program's compiled entry point, which starts with a shebang to be runnable on its own
// (./signer/dist/src/main.js), would fail with exit 126 after each rebuild. This gives each
// workspace's entry point and the files its package.json `bin` names the execute bit back.
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const { workspaces } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const workspace of workspaces) {
  const manifest = JSON.parse(readFileSync(join(root, workspace, 'package.json'), 'utf8'));
  const bins =
    typeof manifest.bin === 'string' ? [manifest.bin] : Object.values(manifest.bin ?? {});
  for (const file of [...bins, 'dist/src/main.js']) {
    const path = join(root, workspace, file);
    if (!existsSync(path) || !readFileSync(path, 'utf8').startsWith('#!')) continue;
    chmodSync(path, statSync(path).mode | 0o111);
  }
}
