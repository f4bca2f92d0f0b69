/** The real notary stack on loopback for end-to-end tests and demos: the public surface. */
export {
  ensureBinaries,
  requireBinary,
  INSTALL_COMMAND,
  STACK_BINARIES,
  type BinaryPaths,
  type BinarySearchOptions,
  type StackBinary,
} from './binaries.js';
export {
  createCertificates,
  createDelegationKey,
  type CertificatePair,
  type DelegationKey,
  type StackCertificates,
} from './certs.js';
export {
  startStack,
  type NotaryStack,
  type StackOptions,
  type StackProcess,
  type TrustServiceMode,
} from './stack.js';
export type { TokenIssuer, TokenRequestRecord } from './token-issuer.js';
export {
  DEFAULT_PASSPHRASE,
  NotaryCliError,
  addDelegation,
  addSigner,
  addTarget,
  importKey,
  initRepo,
  listDelegations,
  listTargets,
  lookup,
  notaryCli,
  parseDelegationList,
  parseTargetList,
  publish,
  removeTarget,
  rootVersion,
  rotateKey,
  rotateRoot,
  runNotary,
  type CliResult,
  type DelegationRecord,
  type HelperOptions,
  type NotaryCliOptions,
  type NotaryEndpoint,
  type Passphrases,
  type TargetRecord,
} from './notary-cli.js';
export {
  buildOciImage,
  fetchManifest,
  pushImage,
  tarOneFile,
  writeOciLayout,
  type FetchedManifest,
  type OciImage,
  type PushImageOptions,
  type PushedImage,
  type RegistryEndpoint,
} from './images.js';
export { writeVerifierConfig, type StackVerifierConfig } from './verifier-config.js';
export { rootKeyIds } from './root-key.js';
export { writeKeysDir } from './keys-dir.js';
