/**
 * `--version` for the programs: the version in their own package.json, found from the calling
 * module's URL, so that it is right from `dist/src/main.js` and from `src/main.ts` under tsx alike.
 */
import { readFileSync } from 'node:fs';

/** The `version` of package `name`'s package.json next to `moduleUrl`'s package, or "unknown". */
export function packageVersion(name: string, moduleUrl: string | URL): string {
  // dist/src/main.js is two levels below the package root; src/main.ts one.
  for (const relative of ['../../package.json', '../package.json']) {
    try {
      const manifest = JSON.parse(readFileSync(new URL(relative, moduleUrl), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (manifest.name === name && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // Not this one (absent, or not ours): try the next.
    }
  }
  return 'unknown';
}
