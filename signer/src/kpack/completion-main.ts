/**
 * The entry point of the completion image's single executable, installed as
 * `/cnb/process/completion`: kpack starts it with its completion arguments and nothing else (no
 * subcommand word), so argv after the program is kpack's vector. Written without top-level await:
 * it is bundled to one CommonJS file for Node's single-executable applications.
 */
import { runCompletionProcess } from './process.js';

runCompletionProcess(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`kpack-trust-signer kpack-completion: error: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
