/**
 * The real edges of the `kpack-completion` step — files, HTTPS clients, the clock, and running
 * kpack's own binary — shared by `kpack-trust-signer kpack-completion` (main.ts) and the single
 * executable the completion image runs as `/cnb/process/completion` (completion-main.ts).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { NotaryHttpClient, TrustError } from '@kpack-trust/common';
import { readTextFile } from '../files.js';
import { RegistryHttpClient } from '../registry/manifest-client.js';
import { runKpackCompletion, type CompletionEnvironment } from './completion.js';

/** Signals a kubelet or a terminal sends that kpack's binary must see too. */
const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'];

/**
 * Runs `file` as kpack's completion would run: same stdio, same environment, `argv0` as its
 * argv[0]. The exec(2) a Go or shell wrapper would use is not available in Node, so this is the
 * closest equivalent: spawn with stdio inherited (kpack's output goes straight to the container
 * log), forward every termination signal to the child while it runs, and report its exit code —
 * or 128 + the signal number when a signal ended it, as a shell would — for the caller to exit
 * with. `argv0` matters: when `file` is a CNB launcher symlink (`/cnb/process/kpack-completion`),
 * the launcher picks the process type from the base name of argv[0], so it must read `completion`.
 */
export function runProgram(file: string, argv0: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { argv0, stdio: 'inherit', env: process.env });
    const forward = (signal: NodeJS.Signals): void => {
      child.kill(signal);
    };
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const stopForwarding = (): void => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    };
    child.on('error', (error: NodeJS.ErrnoException) => {
      stopForwarding();
      reject(
        new TrustError(
          'INPUT_INVALID',
          { source: file, problem: error.code ?? error.message },
          `${file} cannot be started (${error.code ?? error.message})`,
        ),
      );
    });
    child.on('exit', (code, signal) => {
      stopForwarding();
      resolve(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0)));
    });
  });
}

/** The environment of a real run. */
export function processCompletionEnvironment(): CompletionEnvironment {
  return {
    env: process.env,
    stdout: (line) => process.stdout.write(`${line}\n`),
    stderr: (line) => process.stderr.write(`${line}\n`),
    readTextFile,
    connectNotary: (options) => new NotaryHttpClient(options),
    connectRegistry: (options) => new RegistryHttpClient(options),
    now: () => new Date(),
    runProgram,
  };
}

/** Runs the step on this process's real edges and resolves with the exit code. */
export function runCompletionProcess(argv: readonly string[]): Promise<number> {
  return runKpackCompletion(argv, processCompletionEnvironment());
}
