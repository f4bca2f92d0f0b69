/** End-to-end test support for kpack-trust: the real notary stack on loopback. */
export * from './stack/index.js';
export * from './kube/fake-apiserver.js';
export * from './kube/binaries.js';
export * from './kube/control-plane.js';
export { kpackModuleDir } from './kube/kpack-module.js';
export { kubectlBinary } from './kube/kubectl.js';
export { startVerifierProcess, type VerifierProcess } from './kube/verifier-process.js';
export { repoRoot, runBareNode, signerImageEntrypoint } from './repo.js';
export { eventually } from './eventually.js';
