/**
 * Notices when files the server depends on (TLS certificate and key, client CA, the config file)
 * may have changed. Kubernetes updates Secret and ConfigMap volumes by swapping a `..data`
 * symlink in the file's directory, which a watch on the file itself never sees, so the
 * directories are watched, every event (debounced) triggers a check, and a slow poll covers file
 * systems without change events. The callback compares contents itself; this only says "look".
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from './logger.js';

/** Timing of the checks. */
export interface FileWatchOptions {
  /** Events within this window are folded into one check; default 200 ms. */
  readonly debounceMs?: number;
  /** A check at least this often even without events; default 30 s; 0 disables polling. */
  readonly pollMs?: number;
  readonly logger: Logger;
  /** Names the watched set in logs (`tls`, `config`). */
  readonly label: string;
}

/** A running watch; close() stops its watchers and timers. */
export interface FileWatch {
  close(): void;
}

/** Calls `check` (never concurrently with itself) after changes in the directories of `paths`. */
export function watchFiles(
  paths: readonly string[],
  check: () => Promise<void>,
  options: FileWatchOptions,
): FileWatch {
  const debounceMs = options.debounceMs ?? 200;
  const pollMs = options.pollMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;

  const run = (): void => {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = check()
      .catch((error: unknown) => {
        options.logger.error('watch.check-failed', { watch: options.label, error });
      })
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          run();
        }
      });
  };
  const schedule = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(run, debounceMs);
    timer.unref();
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((path) => dirname(path)))) {
    try {
      const watcher = watch(dir, { persistent: false }, schedule);
      watcher.on('error', (error) => {
        options.logger.warn('watch.error', { watch: options.label, dir, error });
      });
      watchers.push(watcher);
    } catch (error) {
      // The poll still notices changes; say why events will not.
      options.logger.warn('watch.unavailable', { watch: options.label, dir, error });
    }
  }
  const poll = pollMs > 0 ? setInterval(run, pollMs) : undefined;
  poll?.unref();

  return {
    close(): void {
      closed = true;
      if (timer) clearTimeout(timer);
      if (poll) clearInterval(poll);
      for (const watcher of watchers) watcher.close();
    },
  };
}
