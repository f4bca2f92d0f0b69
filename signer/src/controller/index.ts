/**
 * The controller's Kubernetes plumbing for the end-to-end tests, which drive it against the real
 * apiserver in-process (a response cap or deadline small enough to test is an option here, never a
 * flag of the program).
 */
export {
  KubeHttp,
  buildListWatch,
  discoverKpack,
  type KpackApi,
  type KubeHttpOptions,
} from './kube-api.js';
export {
  GoneError,
  PageTooLargeError,
  runInformer,
  type InformerOptions,
  type ListPage,
  type ListWatchClient,
  type WatchEvent,
} from './informer.js';
