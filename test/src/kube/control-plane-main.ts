/**
 * `scripts/kube-control-plane.sh up` runs this in the background: it starts the control plane,
 * writes `<state dir>/control-plane.json` (its pid, the kubeconfig path, the server URL) once
 * `/readyz` answers, and keeps everything running until SIGTERM or SIGINT, then stops exactly what
 * it started and removes the state file.
 *
 *   node test/dist/src/kube/control-plane-main.js <state dir> [--image-policy-config FILE]
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startControlPlane } from './control-plane.js';

async function main(): Promise<void> {
  const [stateDir, flag, admissionConfigFile] = process.argv.slice(2);
  if (stateDir === undefined || (flag !== undefined && flag !== '--image-policy-config')) {
    throw new Error('usage: control-plane-main.js <state dir> [--image-policy-config FILE]');
  }
  const stateFile = join(stateDir, 'control-plane.json');
  const cluster = await startControlPlane(
    admissionConfigFile === undefined ? {} : { imagePolicyWebhook: { admissionConfigFile } },
  );
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await cluster.stop();
      await rm(stateFile, { force: true });
    })();
    return stopping;
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      void stop().then(() => process.exit(0));
    });
  }
  await writeFile(
    stateFile,
    `${JSON.stringify({
      pid: process.pid,
      kubeconfig: cluster.kubeconfigPath,
      server: cluster.server,
      dir: cluster.dir,
      versions: cluster.binaries.versions,
    })}\n`,
  );
  // Stay alive until a signal arrives: the daemons are unref'd children.
  setInterval(() => undefined, 1 << 30);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `control plane failed: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
