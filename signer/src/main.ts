#!/usr/bin/env node
/**
 * The `kpack-trust-signer` executable: the only module that wires real I/O — files, the notary
 * and registry HTTPS clients, the key store, the clock — into the command and sets the exit code.
 */
import { homedir } from 'node:os';
import { NotaryHttpClient, packageVersion } from '@kpack-trust/common';
import { readTextFile } from './files.js';
import { runCli } from './cli/run.js';
import type { KeyStore, KeyStoreOptions } from './keys/index.js';
import { RegistryHttpClient } from './registry/manifest-client.js';

/**
 * The keys-dir store is loaded on its own: importing the Kubernetes client costs most of a second,
 * which every build would otherwise pay even when its keys come from a mounted directory.
 */
async function createKeyStore(options: KeyStoreOptions): Promise<KeyStore> {
  if (options.kind === 'directory') {
    const { KeysDirStore } = await import('./keys/keys-dir-store.js');
    return new KeysDirStore({
      dir: options.dir,
      passphrases: options.passphrases,
      ...(options.rootDir === undefined ? {} : { rootDir: options.rootDir }),
      ...(options.delegation === undefined ? {} : { delegation: options.delegation }),
    });
  }
  return (await import('./keys/index.js')).createKeyStore(options);
}

const argv = process.argv.slice(2);
if (argv[0] === 'kpack-completion') {
  // kpack's completion step: its own module, so builds do not load the Kubernetes client either.
  const { runCompletionProcess } = await import('./kpack/process.js');
  process.exitCode = await runCompletionProcess(argv.slice(1));
} else if (argv[0] === 'controller') {
  // The long-running controller that signs finished kpack Builds (signer/src/controller/).
  const { runControllerCommand } = await import('./controller/command.js');
  process.exitCode = await runControllerCommand(argv.slice(1), process.env);
} else {
  process.exitCode = await runCli(argv, {
    env: process.env,
    homeDir: homedir(),
    stdout: (line) => process.stdout.write(`${line}\n`),
    stderr: (line) => process.stderr.write(`${line}\n`),
    readTextFile,
    createKeyStore,
    connectNotary: (options) => new NotaryHttpClient(options),
    connectRegistry: (options) => new RegistryHttpClient(options),
    now: () => new Date(),
    // Read only when asked for: every build pays for whatever start-up does.
    ...(argv[0] === '--version'
      ? { version: packageVersion('@kpack-trust/signer', import.meta.url) }
      : {}),
  });
}
