/** The signer's public surface: the flow, its planning, inputs and the CLI, for embedding and tests. */
export { parseLifecycleReport, type ReportedImage } from './report/lifecycle-report.js';
export { buildImageOf, type BuildImage } from './publish/build-image.js';
export {
  planNewRepository,
  planUpdate,
  resignHorizon,
  roleSigner,
  type NewRepositoryInput,
  type PublishPlan,
  type Renewal,
  type SigningKeys,
  type TargetsChange,
  type UpdateInput,
} from './publish/plan.js';
export {
  backoff,
  signBuild,
  signingKeysOf,
  type SignBuildDependencies,
  type SignBuildOptions,
  type SignSummary,
} from './publish/sign-build.js';
export {
  RegistryHttpClient,
  parseChallenge,
  type LookupOptions,
  type ManifestLookup,
  type RegistryClientOptions,
} from './registry/manifest-client.js';
export {
  parseArguments,
  type BuildInput,
  type KeyFlags,
  type ParsedCommand,
  type SignCommand,
} from './cli/args.js';
export { ExitCode, exitCodeFor, type ExitCodeValue } from './cli/exit-codes.js';
export { HELP_TEXT } from './cli/help.js';
export { runCli, type CliEnvironment } from './cli/run.js';
export type { KeyStore, RepositoryKeys } from './keys/key-store.js';
export type {
  DirectoryKeyStoreOptions,
  KeyPassphrases,
  KeyStoreOptions,
  KubernetesKeyStoreOptions,
} from './keys/index.js';
