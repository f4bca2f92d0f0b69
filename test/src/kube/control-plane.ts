/**
 * A real Kubernetes control plane on loopback, as controller-runtime's envtest runs one: etcd,
 * kube-apiserver and (optionally) kube-controller-manager built from their Go modules
 * (`scripts/kube-binaries.sh`), on free 127.0.0.1 ports, with throw-away certificates from an
 * in-memory CA. No scheduler and no kubelet: objects are created, admitted, reconciled by the
 * controllers and garbage-collected, but no container ever runs.
 *
 * Every process is started through the stack's `launchDaemon`, so `stop()` (or the exit hooks of a
 * crashed run) kills exactly what was started here; every run has its own ports and temp dir, so a
 * leftover run never blocks the next one.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCa, type TestCertificate } from '@kpack-trust/common/testing';
import {
  forgetOnExit,
  freePort,
  httpOk,
  httpsOk,
  launchDaemon,
  removeOnExit,
  type Daemon,
} from '../stack/processes.js';
import { ensureKubeBinaries, type KubeBinaries } from './binaries.js';
import { kubectlBinary } from './kubectl.js';

/** Turns on kube-apiserver's ImagePolicyWebhook admission plugin. */
export interface ImagePolicyWebhookSetup {
  /**
   * The `apiserver.config.k8s.io/v1` AdmissionConfiguration file, as docs/operator-guide.md and the
   * chart's NOTES tell operators to write it; the files it names must exist.
   */
  readonly admissionConfigFile: string;
}

/** How to start the control plane. */
export interface ControlPlaneOptions {
  /** Adds `--enable-admission-plugins=NodeRestriction,ImagePolicyWebhook` and the config file. */
  readonly imagePolicyWebhook?: ImagePolicyWebhookSetup;
  /**
   * Extra kube-apiserver flags, verbatim (`--name=value`); a flag given here replaces the one this
   * module would set, so the operator guide's own flags can be passed as printed.
   */
  readonly apiserverFlags?: readonly string[];
  /**
   * Runs kube-controller-manager too (default true): service-account tokens, Deployments →
   * ReplicaSets → Pods, garbage collection. Without it the `default` ServiceAccount is created here.
   */
  readonly controllerManager?: boolean;
}

/** The fields of an `audit.k8s.io/v1` Event the tests read. */
export interface AuditEvent {
  readonly verb: string;
  readonly stage: string;
  readonly objectRef?: {
    readonly resource?: string;
    readonly namespace?: string;
    readonly name?: string;
  };
  readonly responseStatus?: { readonly code?: number; readonly reason?: string };
  /** Who made the request, as the apiserver authenticated it. */
  readonly user?: { readonly username?: string; readonly groups?: readonly string[] };
  readonly annotations?: Readonly<Record<string, string>>;
}

/** What one kubectl invocation printed. */
export interface KubectlResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code (non-zero on a refused request). */
  readonly code: number;
}

/** Who a kubeconfig from {@link ControlPlane.writeKubeconfig} authenticates as. */
export interface KubeconfigIdentity {
  /**
   * A client certificate from the cluster's CA with this CN (the RBAC user name), or — with
   * `untrustedCa` — from a CA the apiserver does not trust. Default: the admin's certificate.
   */
  readonly user?: string;
  /** The certificate's O (the RBAC group); at most one, as the test CA writes one O. */
  readonly group?: string;
  /** Signs the client certificate with a fresh CA the apiserver never heard of (→ 401). */
  readonly untrustedCa?: boolean;
  /** A bearer token instead of a client certificate. */
  readonly token?: string;
  /** The context's namespace. */
  readonly namespace?: string;
}

/** A running control plane. */
export interface ControlPlane {
  /** A kubeconfig for a cluster admin (client certificate with O=system:masters). */
  readonly kubeconfigPath: string;
  /** The apiserver's URL, `https://127.0.0.1:<port>`. */
  readonly server: string;
  /** The CA that signed the apiserver's serving certificate and every client certificate (PEM). */
  readonly caPem: string;
  /** The temp dir holding certificates, kubeconfigs, etcd's data and every log. */
  readonly dir: string;
  readonly binaries: KubeBinaries;
  /**
   * kube-apiserver's audit log (JSON lines, level Metadata for every request): where the
   * ImagePolicyWebhook's audit annotations (`imagepolicywebhook.image-policy.k8s.io/…`) show.
   */
  readonly auditLogPath: string;
  /** Parses the audit log written so far. */
  auditEvents(): Promise<AuditEvent[]>;
  /** The log files of etcd, kube-apiserver and kube-controller-manager. */
  readonly logs: {
    readonly etcd: string;
    readonly apiserver: string;
    readonly controllerManager?: string;
  };
  /** Writes a kubeconfig (mode 0600) for the given identity at `file` and returns `file`. */
  writeKubeconfig(file: string, identity?: KubeconfigIdentity): Promise<string>;
  /** Runs the tests' kubectl against this apiserver as the admin; `input` goes to stdin. */
  kubectl(args: readonly string[], options?: { readonly input?: string }): Promise<KubectlResult>;
  /**
   * Restarts kube-apiserver on the same port and etcd with other admission settings (the
   * ImagePolicyWebhook configuration is read only at start, as on a real control plane).
   */
  restartApiserver(
    options: Pick<ControlPlaneOptions, 'imagePolicyWebhook' | 'apiserverFlags'>,
  ): Promise<void>;
  /** Stops kube-controller-manager, kube-apiserver and etcd, and removes the temp dir. */
  stop(): Promise<void>;
}

/** The Service IP range; its first address is the `kubernetes` Service, in the serving cert. */
const SERVICE_CIDR = '10.0.0.0/24';
const KUBERNETES_SERVICE_IP = '10.0.0.1';
/** The service-account token issuer, as kubeadm sets it. */
const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
/** A cold kube-apiserver on a busy 2-core machine takes a while to finish its post-start hooks. */
const APISERVER_START_MS = 90_000;
const KUBECTL_TIMEOUT_MS = 60_000;

/** A kubeconfig with everything embedded, for one user of the cluster at `server`. */
function kubeconfig(
  server: string,
  caPem: string,
  user: TestCertificate | { readonly token: string },
  name: string,
  namespace?: string,
): string {
  const b64 = (pem: string): string => Buffer.from(pem).toString('base64');
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'kpack-trust', cluster: { server, 'certificate-authority-data': b64(caPem) } },
      ],
      users: [
        {
          name,
          user:
            'token' in user
              ? { token: user.token }
              : {
                  'client-certificate-data': b64(user.certPem),
                  'client-key-data': b64(user.keyPem),
                },
        },
      ],
      contexts: [
        {
          name: 'kpack-trust',
          context: {
            cluster: 'kpack-trust',
            user: name,
            ...(namespace === undefined ? {} : { namespace }),
          },
        },
      ],
      'current-context': 'kpack-trust',
    },
    null,
    2,
  );
}

/** True when an HTTPS health endpoint of a component with a self-signed serving cert answers 200. */
function selfSignedHealthOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    // Only a loopback health probe of a process started here skips verification: the component
    // made its own serving certificate at start, and nothing is sent but the GET.
    const req = request(url, { rejectUnauthorized: false, timeout: 1000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => {
      resolve(false);
    });
    req.end();
  });
}

/** Merges flag lists; a later `--name=…` replaces an earlier one of the same name. */
function mergeFlags(base: readonly string[], overrides: readonly string[]): string[] {
  const name = (flag: string): string => flag.split('=')[0] ?? flag;
  const overridden = new Set(overrides.map(name));
  return [...base.filter((flag) => !overridden.has(name(flag))), ...overrides];
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts etcd, kube-apiserver and kube-controller-manager and waits until they are ready. */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binaries = await ensureKubeBinaries();
  const kubectlPath = kubectlBinary();
  const dir = await mkdtemp(join(tmpdir(), 'kpack-trust-kube-'));
  removeOnExit(dir);
  const daemons: Daemon[] = [];
  let apiserver: Daemon | undefined;
  const stopAll = async (): Promise<void> => {
    // Controllers first, then the apiserver, then its storage, each reaped before the next.
    for (const daemon of [...daemons].reverse()) await daemon.stop();
    daemons.length = 0;
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    forgetOnExit(dir);
  };
  try {
    const ca = createTestCa({ commonName: 'kpack-trust kube CA' });
    const serving = ca.issue({
      commonName: 'kube-apiserver',
      subjectAltNames: [
        'IP:127.0.0.1',
        `IP:${KUBERNETES_SERVICE_IP}`,
        'DNS:localhost',
        'DNS:kubernetes',
        'DNS:kubernetes.default',
        'DNS:kubernetes.default.svc',
        'DNS:kubernetes.default.svc.cluster.local',
      ],
    });
    // system:masters is the group RBAC's bootstrap policy binds to cluster-admin.
    const admin = ca.issue({
      commonName: 'kpack-trust-admin',
      organization: 'system:masters',
      usage: 'client',
    });
    // The user name RBAC's bootstrap policy grants the controller manager's own permissions to.
    const controllerManagerUser = ca.issue({
      commonName: 'system:kube-controller-manager',
      usage: 'client',
    });
    const serviceAccountKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const files = {
      ca: join(dir, 'ca.crt'),
      servingCert: join(dir, 'apiserver.crt'),
      servingKey: join(dir, 'apiserver.key'),
      saKey: join(dir, 'sa.key'),
      saPub: join(dir, 'sa.pub'),
      adminKubeconfig: join(dir, 'admin.kubeconfig'),
      auditPolicy: join(dir, 'audit-policy.yaml'),
      auditLog: join(dir, 'audit.log'),
      controllerManagerKubeconfig: join(dir, 'controller-manager.kubeconfig'),
    };
    await writeFile(files.ca, ca.certPem);
    await writeFile(
      files.auditPolicy,
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n',
    );
    await writeFile(files.servingCert, serving.certPem + ca.certPem);
    await writeFile(files.servingKey, serving.keyPem, { mode: 0o600 });
    await writeFile(
      files.saKey,
      serviceAccountKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      { mode: 0o600 },
    );
    await writeFile(
      files.saPub,
      serviceAccountKey.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    );

    const etcd = await launchDaemon({
      name: 'etcd',
      binary: binaries.etcd,
      workDir: dir,
      timeoutMs: 30_000,
      prepare: async (port) => {
        const peer = `http://127.0.0.1:${await freePort()}`;
        const client = `http://127.0.0.1:${port}`;
        const data = join(dir, `etcd-${port}`);
        await mkdir(data, { mode: 0o700 });
        return [
          '--name=kpack-trust',
          `--data-dir=${data}`,
          `--listen-client-urls=${client}`,
          `--advertise-client-urls=${client}`,
          `--listen-peer-urls=${peer}`,
          `--initial-advertise-peer-urls=${peer}`,
          `--initial-cluster=kpack-trust=${peer}`,
          // A throw-away store: no fsync (envtest does the same), quiet logs.
          '--unsafe-no-fsync=true',
          '--log-level=warn',
        ];
      },
      probe: (port) => httpOk(`http://127.0.0.1:${port}/health`),
    });
    daemons.push(etcd);

    const apiserverArgs = (
      port: number,
      opts: Pick<ControlPlaneOptions, 'imagePolicyWebhook' | 'apiserverFlags'>,
    ): string[] => {
      const base = [
        `--etcd-servers=http://127.0.0.1:${etcd.port}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${port}`,
        `--tls-cert-file=${files.servingCert}`,
        `--tls-private-key-file=${files.servingKey}`,
        `--client-ca-file=${files.ca}`,
        '--authorization-mode=Node,RBAC',
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${files.saPub}`,
        `--service-account-signing-key-file=${files.saKey}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        // The `kubernetes` Service would list 127.0.0.1, which EndpointSlice validation refuses
        // (loopback); nothing here needs in-cluster access to the apiserver through it.
        '--endpoint-reconciler-type=none',
        `--audit-policy-file=${files.auditPolicy}`,
        `--audit-log-path=${files.auditLog}`,
        '--profiling=false',
        ...(opts.imagePolicyWebhook
          ? [
              '--enable-admission-plugins=NodeRestriction,ImagePolicyWebhook',
              `--admission-control-config-file=${opts.imagePolicyWebhook.admissionConfigFile}`,
            ]
          : []),
      ];
      return mergeFlags(base, opts.apiserverFlags ?? []);
    };

    const launchApiserver = (
      opts: Pick<ControlPlaneOptions, 'imagePolicyWebhook' | 'apiserverFlags'>,
      port?: number,
    ): Promise<Daemon> =>
      launchDaemon({
        name: 'kube-apiserver',
        binary: binaries.kubeApiserver,
        workDir: dir,
        timeoutMs: APISERVER_START_MS,
        ...(port === undefined
          ? {}
          : { allocatePort: () => Promise.resolve(port), maxAttempts: 1 }),
        prepare: (p) => Promise.resolve(apiserverArgs(p, opts)),
        // /readyz is readable anonymously (system:public-info-viewer) and turns 200 only once
        // etcd is reachable and every post-start hook (RBAC bootstrap roles among them) is done.
        probe: (p) => httpsOk(`https://127.0.0.1:${p}/readyz`, ca.certPem),
      });

    apiserver = await launchApiserver(options);
    daemons.push(apiserver);
    const server = `https://127.0.0.1:${apiserver.port}`;
    await writeFile(files.adminKubeconfig, kubeconfig(server, ca.certPem, admin, 'admin'), {
      mode: 0o600,
    });

    const kubectl = (
      args: readonly string[],
      opts: { readonly input?: string } = {},
    ): Promise<KubectlResult> =>
      new Promise((resolve) => {
        const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir };
        delete env['KUBECONFIG'];
        const child = execFile(
          kubectlPath,
          ['--kubeconfig', files.adminKubeconfig, ...args],
          { env, timeout: KUBECTL_TIMEOUT_MS, maxBuffer: 16 << 20 },
          (error, stdout, stderr) => {
            const code =
              error === null ? 0 : typeof error.code === 'number' ? error.code : (error.code ?? 1);
            resolve({ stdout, stderr, code: typeof code === 'number' ? code : 1 });
          },
        );
        child.stdin?.end(opts.input ?? '');
      });

    let controllerManagerLog: string | undefined;
    if (options.controllerManager ?? true) {
      await writeFile(
        files.controllerManagerKubeconfig,
        kubeconfig(server, ca.certPem, controllerManagerUser, 'system:kube-controller-manager'),
        { mode: 0o600 },
      );
      const controllerManager = await launchDaemon({
        name: 'kube-controller-manager',
        binary: binaries.kubeControllerManager,
        workDir: dir,
        timeoutMs: 60_000,
        prepare: (port) =>
          Promise.resolve([
            `--kubeconfig=${files.controllerManagerKubeconfig}`,
            `--authentication-kubeconfig=${files.controllerManagerKubeconfig}`,
            `--authorization-kubeconfig=${files.controllerManagerKubeconfig}`,
            '--bind-address=127.0.0.1',
            `--secure-port=${port}`,
            `--cert-dir=${join(dir, `controller-manager-${port}`)}`,
            `--service-account-private-key-file=${files.saKey}`,
            `--root-ca-file=${files.ca}`,
            '--use-service-account-credentials=true',
            // Every controller that is on by default; no cloud provider, so none of the cloud
            // controllers. One instance only, so no leader election to wait for.
            '--controllers=*',
            '--leader-elect=false',
            `--service-cluster-ip-range=${SERVICE_CIDR}`,
            '--profiling=false',
          ]),
        probe: (port) => selfSignedHealthOk(`https://127.0.0.1:${port}/healthz`),
      });
      daemons.push(controllerManager);
      controllerManagerLog = controllerManager.logFile;
    }

    // Pods need their namespace's `default` ServiceAccount (the ServiceAccount admission plugin
    // refuses them until it exists): the controller manager creates it; without one, we do.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const sa = await kubectl(['get', 'serviceaccount', 'default', '-n', 'default', '-o', 'name']);
      if (sa.code === 0) break;
      if (!(options.controllerManager ?? true)) {
        const made = await kubectl(['create', 'serviceaccount', 'default', '-n', 'default']);
        if (made.code === 0 || made.stderr.includes('AlreadyExists')) break;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `the default ServiceAccount did not appear within 60 s (logs in ${dir}): ${sa.stderr}`,
        );
      }
      await delay(250);
    }

    let currentApiserver = apiserver;
    return {
      kubeconfigPath: files.adminKubeconfig,
      server,
      caPem: ca.certPem,
      dir,
      binaries,
      logs: {
        etcd: etcd.logFile,
        apiserver: apiserver.logFile,
        ...(controllerManagerLog === undefined ? {} : { controllerManager: controllerManagerLog }),
      },
      auditLogPath: files.auditLog,
      auditEvents: async () =>
        (await readFile(files.auditLog, 'utf8').catch(() => ''))
          .split('\n')
          .filter((line) => line.trim() !== '')
          .map((line) => JSON.parse(line) as AuditEvent),
      writeKubeconfig: async (file, identity = {}) => {
        const issuer = identity.untrustedCa ? createTestCa({ commonName: 'not the kube CA' }) : ca;
        const credentials =
          identity.token !== undefined
            ? { token: identity.token }
            : identity.user === undefined && !identity.untrustedCa
              ? admin
              : issuer.issue({
                  commonName: identity.user ?? 'kpack-trust-admin',
                  ...(identity.group === undefined ? {} : { organization: identity.group }),
                  usage: 'client',
                });
        const name = identity.user ?? (identity.token === undefined ? 'admin' : 'token');
        await writeFile(
          file,
          kubeconfig(server, ca.certPem, credentials, name, identity.namespace),
          { mode: 0o600 },
        );
        return file;
      },
      kubectl,
      restartApiserver: async (opts) => {
        const port = currentApiserver.port;
        await currentApiserver.stop();
        const index = daemons.indexOf(currentApiserver);
        currentApiserver = await launchApiserver(opts, port);
        daemons[index] = currentApiserver;
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
