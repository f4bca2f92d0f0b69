/**
 * A test's own HTTP server standing in for the apiserver on loopback, and the kubeconfig that
 * points the controller's real client at it.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

/** Starts `server` on a free 127.0.0.1 port; resolves with a kubeconfig for it (no user credentials). */
export async function listenAsApiserver(server: Server): Promise<KubeConfig> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  // Plain HTTP on loopback: the client allows it only with skipTLSVerify (no TLS to verify).
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return config;
}
