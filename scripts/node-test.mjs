// Runs node's test runner over the compiled tests of the named workspaces (dist/test), skipping a
// workspace that has no tests yet, so the suite grows without editing package.json each time.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('--'));
const dirs = args
  .filter((a) => !a.startsWith('--'))
  .map((ws) => `${ws}/dist/test`)
  .filter((dir) => existsSync(dir));
if (dirs.length === 0) {
  console.error('no compiled tests found; run `npm run build` first');
  process.exit(1);
}
const run = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...flags, ...dirs], {
  stdio: 'inherit',
});
process.exit(run.status ?? 1);
