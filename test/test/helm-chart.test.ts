/**
 * The Helm chart (charts/kpack-trust) rendered by a real Helm binary: `helm lint --strict` and
 * `helm template` for the default values and each values file in charts/kpack-trust/ci/, every
 * rendered object validated against the Kubernetes (and cert-manager / prometheus-operator CRD)
 * schemas of the kubernetes-models packages, the rendered verifier config loaded by the verifier's
 * own parseConfig against the files the pod would actually have mounted, what NOTES.txt prints for
 * kube-apiserver, and bad values rejected with Helm's exact message.
 *
 * The kubernetes-models validators check types, required fields, formats and enums; like the
 * Kubernetes OpenAPI they are built from, they do not reject unknown fields, so the tests below
 * also assert the fields that matter by value.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { describe, it } from 'node:test';
import {
  isMap,
  isScalar,
  parseAllDocuments,
  parseDocument,
  parse as parseYaml,
  stringify,
} from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Secret } from 'kubernetes-models/v1/Secret';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { ValidatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { parseConfig, type VerifierConfig } from '@kpack-trust/verifier';
import { CHART_DIR, runHelm } from './support/helm.js';

const RELEASE = 'rel';
const NAMESPACE = 'trust';
const VERIFIER = `${RELEASE}-kpack-trust-verifier`;
const SIGNER = `${RELEASE}-kpack-trust-signer`;
const CI_DIR = join(CHART_DIR, 'ci');
const CHECK = `${VERIFIER}-config-check`;
/** verifier.image.repository has no default; the ci/ values files set it, bare renders get this. */
const IMAGE_REPOSITORY = 'registry.example.com/platform/kpack-trust-verifier';
const WITH_IMAGE = ['--set', `verifier.image.repository=${IMAGE_REPOSITORY}`] as const;

/** A rendered Kubernetes object, as parsed YAML. */
type K8sObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
};

type Validate = (object: K8sObject) => void;

function validator(model: new (data: never) => { validate(): void }): Validate {
  return (object) => {
    new model(object as never).validate();
  };
}

/** Every kind the chart may render; a kind missing here fails the test rather than going unchecked. */
const VALIDATORS: Readonly<Record<string, Validate>> = {
  'v1/ConfigMap': validator(ConfigMap),
  'v1/Service': validator(Service),
  'v1/ServiceAccount': validator(ServiceAccount),
  'apps/v1/Deployment': validator(Deployment),
  'policy/v1/PodDisruptionBudget': validator(PodDisruptionBudget),
  'rbac.authorization.k8s.io/v1/Role': validator(Role),
  'rbac.authorization.k8s.io/v1/RoleBinding': validator(RoleBinding),
  'rbac.authorization.k8s.io/v1/ClusterRole': validator(ClusterRole),
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': validator(ClusterRoleBinding),
  'networking.k8s.io/v1/NetworkPolicy': validator(NetworkPolicy),
  'cert-manager.io/v1/Certificate': validator(Certificate),
  'monitoring.coreos.com/v1/ServiceMonitor': validator(ServiceMonitor),
  'monitoring.coreos.com/v1/PrometheusRule': validator(PrometheusRule),
  'batch/v1/Job': validator(Job),
  'v1/Secret': validator(Secret),
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': validator(
    MutatingWebhookConfiguration,
  ),
  'admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration': validator(
    ValidatingWebhookConfiguration,
  ),
};

/** `-f` for a values file (relative to charts/kpack-trust/ci/, or absolute) and extra flags. */
function valuesArgs(valuesFile: string | undefined, extra: readonly string[]): string[] {
  return [
    ...(valuesFile
      ? ['-f', isAbsolute(valuesFile) ? valuesFile : join(CI_DIR, valuesFile)]
      : WITH_IMAGE),
    ...extra,
  ];
}

/** `helm template` of the chart; fails the test with Helm's stderr when it does not render. */
function render(valuesFile?: string, extra: readonly string[] = []): K8sObject[] {
  const run = runHelm([
    'template',
    RELEASE,
    CHART_DIR,
    '--namespace',
    NAMESPACE,
    ...valuesArgs(valuesFile, extra),
  ]);
  assert.equal(run.status, 0, run.stderr);
  return parseAllDocuments(run.stdout)
    .map((doc) => doc.toJS() as unknown)
    .filter((object): object is K8sObject => object !== null && typeof object === 'object');
}

/** What `helm install --dry-run=client` prints as NOTES (no cluster is contacted). */
function notes(valuesFile?: string, extra: readonly string[] = []): string {
  const run = runHelm([
    'install',
    RELEASE,
    CHART_DIR,
    '--namespace',
    NAMESPACE,
    '--dry-run=client',
    '--output',
    'json',
    ...valuesArgs(valuesFile, extra),
  ]);
  assert.equal(run.status, 0, run.stderr);
  const release = JSON.parse(run.stdout) as { info: { notes: string } };
  return release.info.notes;
}

/** Helm's error output for values that must not render. */
function rejection(args: readonly string[]): string {
  const run = runHelm([
    'template',
    RELEASE,
    CHART_DIR,
    '--namespace',
    NAMESPACE,
    ...WITH_IMAGE,
    ...args,
  ]);
  assert.notEqual(run.status, 0, 'helm template should have failed');
  assert.equal(run.stdout, '');
  return run.stderr;
}

function validateAll(objects: readonly K8sObject[]): void {
  assert.ok(objects.length > 0);
  for (const object of objects) {
    const key = `${object.apiVersion}/${object.kind}`;
    const validate = VALIDATORS[key];
    assert.ok(validate, `no schema validator for ${key}: add one before the chart renders it`);
    try {
      validate(object);
    } catch (error) {
      assert.fail(
        `${key} ${object.metadata.name}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
}

function find(
  objects: readonly K8sObject[],
  kind: string,
  name: string,
  namespace = NAMESPACE,
): K8sObject {
  const found = objects.filter(
    (o) => o.kind === kind && o.metadata.name === name && o.metadata.namespace === namespace,
  );
  assert.equal(found.length, 1, `expected one ${kind} ${namespace}/${name}`);
  return found[0] as K8sObject;
}

/** The one cluster-scoped object of this kind and name (webhook configurations). */
function findClusterScoped(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.filter(
    (o) => o.kind === kind && o.metadata.name === name && o.metadata.namespace === undefined,
  );
  assert.equal(found.length, 1, `expected one cluster-scoped ${kind} ${name}`);
  return found[0] as K8sObject;
}

function kinds(objects: readonly K8sObject[]): string[] {
  return objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort();
}

/** Untyped access into parsed YAML, failing the test on a missing step. */
function at(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const step of path) {
    assert.ok(
      current !== null && typeof current === 'object',
      `no ${String(step)} in ${JSON.stringify(current)}`,
    );
    current = (current as Record<string | number, unknown>)[step];
  }
  return current;
}

interface PodFiles {
  /** Reads a file as the verifier container would see it, or throws ENOENT. */
  read(path: string): string;
}

/**
 * The verifier container's file system as far as the chart mounts it: ConfigMap volumes backed by
 * the rendered ConfigMaps, Secret volumes by stand-in contents, and extra volumes by `external`.
 */
function podFiles(
  objects: readonly K8sObject[],
  external: Readonly<Record<string, string>> = {},
): PodFiles {
  const deployment = find(objects, 'Deployment', VERIFIER);
  const pod = at(deployment, 'spec', 'template', 'spec') as {
    volumes: {
      name: string;
      configMap?: { name: string };
      secret?: { secretName: string; items?: { key: string; path: string }[] };
    }[];
    containers: { volumeMounts: { name: string; mountPath: string }[] }[];
  };
  const container = pod.containers[0];
  assert.ok(container);
  const secretStandIns: Readonly<Record<string, string>> = {
    'tls.crt': 'serving certificate',
    'tls.key': 'serving key',
    '.dockerconfigjson': '{"auths":{}}',
    'config.json': '{"auths":{}}',
  };
  return {
    read(path: string): string {
      for (const mount of container.volumeMounts) {
        if (!path.startsWith(`${mount.mountPath}/`)) continue;
        const file = path.slice(mount.mountPath.length + 1);
        const volume = pod.volumes.find((v) => v.name === mount.name);
        assert.ok(volume, `volume ${mount.name} is mounted but not defined`);
        if (volume.configMap) {
          const rendered = objects.find(
            (o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap?.name,
          );
          const content = rendered
            ? (at(rendered, 'data') as Record<string, string>)[file]
            : external[`${mount.name}/${file}`];
          if (content !== undefined) return content;
        }
        if (volume.secret) {
          const item = volume.secret.items?.find((i) => i.path === file);
          const content = item ? secretStandIns[item.key] : undefined;
          if (content !== undefined) return content;
        }
      }
      throw Object.assign(new Error(`ENOENT: ${path} is in no mounted volume`), { code: 'ENOENT' });
    },
  };
}

/** The rendered config.yaml, loaded by the verifier's parser against the pod's files. */
function loadRenderedConfig(
  objects: readonly K8sObject[],
  external: Readonly<Record<string, string>> = {},
): VerifierConfig {
  const configMap = find(objects, 'ConfigMap', VERIFIER);
  const text = (at(configMap, 'data') as Record<string, string>)['config.yaml'];
  assert.ok(text);
  const files = podFiles(objects, external);
  const config = parseConfig(
    text,
    '/etc/kpack-trust/config',
    (path) => files.read(path),
    'config.yaml',
  );
  // The listener's certificate and key are read when the server starts: they must be mounted too.
  files.read(config.listen.tls.cert);
  files.read(config.listen.tls.key);
  return config;
}

/** The paragraph of NOTES.txt that starts with `firstLine`, parsed as YAML. */
function notesBlock(text: string, firstLine: string): unknown {
  const block = text.split('\n\n').find((paragraph) => paragraph.startsWith(firstLine));
  assert.ok(block, `NOTES.txt has no block starting with ${firstLine}`);
  return parseYaml(block);
}

/** Values files of the scenarios, parsed, to compare rendered output with its input. */
function ciValues(file: string): unknown {
  return parseYaml(readFileSync(join(CI_DIR, file), 'utf8'));
}

describe('kpack-trust Helm chart', () => {
  describe('helm lint --strict', () => {
    for (const valuesFile of [
      undefined,
      'cert-manager-values.yaml',
      'network-monitoring-values.yaml',
      'mtls-values.yaml',
      'policy-values.yaml',
      'admission-webhooks-values.yaml',
      'admission-both-values.yaml',
    ]) {
      it(`passes with ${valuesFile ?? 'the default values'}`, () => {
        const run = runHelm(['lint', '--strict', CHART_DIR, ...valuesArgs(valuesFile, [])]);
        assert.equal(run.status, 0, run.stdout + run.stderr);
        assert.match(run.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      });
    }
  });

  describe('default values', () => {
    const objects = render();

    it('render exactly the verifier and the signer objects, all valid Kubernetes objects', () => {
      validateAll(objects);
      // No signer objects: signer.namespaces is empty by default, and never the release namespace.
      assert.deepEqual(kinds(objects), [
        `ConfigMap/${NAMESPACE}/${VERIFIER}`,
        `ConfigMap/${NAMESPACE}/${CHECK}`,
        `Deployment/${NAMESPACE}/${VERIFIER}`,
        `Job/${NAMESPACE}/${CHECK}`,
        `PodDisruptionBudget/${NAMESPACE}/${VERIFIER}`,
        `Service/${NAMESPACE}/${VERIFIER}`,
        `ServiceAccount/${NAMESPACE}/${VERIFIER}`,
      ]);
    });

    it('run two hardened verifier replicas with HTTPS probes and resource bounds', () => {
      const deployment = find(objects, 'Deployment', VERIFIER);
      assert.equal(at(deployment, 'spec', 'replicas'), 2);
      const pod = at(deployment, 'spec', 'template', 'spec');
      assert.deepEqual(at(pod, 'securityContext'), {
        fsGroup: 65532,
        runAsGroup: 65532,
        runAsNonRoot: true,
        runAsUser: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      assert.equal(at(pod, 'automountServiceAccountToken'), false);
      assert.equal(
        at(
          pod,
          'affinity',
          'podAntiAffinity',
          'preferredDuringSchedulingIgnoredDuringExecution',
          0,
          'podAffinityTerm',
          'topologyKey',
        ),
        'kubernetes.io/hostname',
      );
      const container = at(pod, 'containers', 0);
      assert.equal(at(container, 'image'), `${IMAGE_REPOSITORY}:0.1.0`);
      assert.deepEqual(at(container, 'args'), [
        'serve',
        '--config',
        '/etc/kpack-trust/config/config.yaml',
        '--log-level',
        'info',
        '--drain-seconds',
        '5',
      ]);
      assert.deepEqual(at(container, 'securityContext'), {
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
      });
      assert.deepEqual(at(container, 'livenessProbe', 'httpGet'), {
        path: '/healthz',
        port: 'https',
        scheme: 'HTTPS',
      });
      assert.deepEqual(at(container, 'readinessProbe', 'httpGet'), {
        path: '/readyz',
        port: 'https',
        scheme: 'HTTPS',
      });
      assert.deepEqual(at(container, 'resources'), {
        requests: { cpu: '100m', memory: '128Mi' },
        limits: { memory: '512Mi' },
      });
      assert.equal(at(pod, 'priorityClassName'), 'system-cluster-critical');
      // Soft anti-affinity: a surge pod can always be placed, so no ready pod is given up.
      assert.deepEqual(at(deployment, 'spec', 'strategy', 'rollingUpdate'), {
        maxUnavailable: 0,
        maxSurge: 1,
      });
      // One eviction at a time is allowed, so `kubectl drain` finishes.
      const pdb = find(objects, 'PodDisruptionBudget', VERIFIER);
      assert.equal(at(pdb, 'spec', 'maxUnavailable'), 1);
      assert.equal(at(pdb, 'spec', 'minAvailable'), undefined);
      assert.deepEqual(
        at(pdb, 'spec', 'selector', 'matchLabels'),
        at(deployment, 'spec', 'selector', 'matchLabels'),
      );
    });

    it('point the Service at the HTTPS port and mount the TLS Secret the NOTES name', () => {
      const service = find(objects, 'Service', VERIFIER);
      assert.deepEqual(at(service, 'spec', 'ports'), [
        { name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' },
      ]);
      const volumes = at(
        find(objects, 'Deployment', VERIFIER),
        'spec',
        'template',
        'spec',
        'volumes',
      );
      assert.equal(at(volumes, 1, 'secret', 'secretName'), `${VERIFIER}-tls`);
    });

    it('render a verifier config that the verifier loads, exempting its own namespace', () => {
      const config = loadRenderedConfig(objects);
      assert.equal(config.listen.port, 8443);
      assert.equal(config.listen.tls.cert, '/etc/kpack-trust/tls/tls.crt');
      assert.equal(config.listen.tls.clientCA, undefined);
      assert.deepEqual(config.notary, []);
      assert.deepEqual(config.rules, []);
      assert.deepEqual(config.exemptNamespaces, ['kube-system', NAMESPACE]);
      assert.equal(config.failure, 'deny');
      assert.equal(config.breakGlass.enabled, false);
    });

    it('give the signer exactly get (on its two key Secrets) and create on Secrets, in a build namespace', () => {
      const signed = render(undefined, ['--set', 'signer.namespaces={builds}']);
      validateAll(signed);
      const role = find(signed, 'Role', SIGNER, 'builds');
      assert.deepEqual(at(role, 'rules'), [
        {
          apiGroups: [''],
          resources: ['secrets'],
          verbs: ['get'],
          resourceNames: ['kpack-trust-root-key', 'kpack-trust-targets-key'],
        },
        { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      ]);
      const binding = find(signed, 'RoleBinding', SIGNER, 'builds');
      assert.deepEqual(at(binding, 'subjects'), [
        { kind: 'ServiceAccount', name: SIGNER, namespace: 'builds' },
      ]);
      assert.deepEqual(at(binding, 'roleRef'), {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'Role',
        name: SIGNER,
      });
    });

    it('print the AdmissionConfiguration, the webhook kubeconfig and the apiserver flags', () => {
      const text = notes();
      assert.deepEqual(notesBlock(text, 'apiVersion: apiserver.config.k8s.io/v1'), {
        apiVersion: 'apiserver.config.k8s.io/v1',
        kind: 'AdmissionConfiguration',
        plugins: [
          {
            name: 'ImagePolicyWebhook',
            configuration: {
              imagePolicy: {
                kubeConfigFile: '/etc/kubernetes/kpack-trust/webhook.kubeconfig',
                allowTTL: 300,
                denyTTL: 30,
                retryBackoff: 500,
                defaultAllow: false,
              },
            },
          },
        ],
      });
      const kubeconfig = notesBlock(text, 'apiVersion: v1\nkind: Config');
      assert.deepEqual(at(kubeconfig, 'clusters', 0, 'cluster'), {
        server: `https://${VERIFIER}.${NAMESPACE}.svc/image-policy`,
        'certificate-authority': '/etc/kubernetes/kpack-trust/verifier-ca.crt',
      });
      assert.equal(at(kubeconfig, 'current-context'), 'kpack-trust-verifier');
      assert.ok(text.includes('  --enable-admission-plugins=NodeRestriction,ImagePolicyWebhook\n'));
      assert.ok(
        text.includes(
          '  --admission-control-config-file=/etc/kubernetes/kpack-trust/admission-config.yaml\n',
        ),
      );
      assert.ok(
        text.includes(
          `kubectl -n ${NAMESPACE} get secret ${VERIFIER}-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > /etc/kubernetes/kpack-trust/verifier-ca.crt`,
        ),
      );
    });

    it('tell the operator to create the TLS Secret with the ca.crt the kubeconfig step extracts', () => {
      const text = notes();
      // `kubectl create secret tls` writes no ca.crt: the extracted CA file would be empty, and
      // kube-apiserver could verify no verifier certificate.
      assert.doesNotMatch(text, /^\s*kubectl .*create secret tls/m);
      assert.ok(
        text.includes(
          `  kubectl -n ${NAMESPACE} create secret generic ${VERIFIER}-tls --type=kubernetes.io/tls \\\n    --from-file=tls.crt --from-file=tls.key --from-file=ca.crt\n`,
        ),
      );
    });

    it('print the completion image an operator builds and hands kpack, not a container kpack has no place for', () => {
      const text = notes();
      assert.ok(!text.includes('- name: sign'));
      assert.ok(
        text.includes(
          `  docker build --target completion -t REGISTRY/kpack-trust-completion:0.1.0 \\\n    --build-arg KPACK_COMPLETION_IMAGE="$(kubectl -n kpack get configmap completion-image -o jsonpath='{.data.image}')" .\n`,
        ),
      );
      assert.ok(
        text.includes(
          '  FROM REGISTRY/kpack-trust-completion:0.1.0\n  ENV KPACK_TRUST_ROOT_KEY_ID=',
        ),
      );
      assert.ok(
        !text.includes('KPACK_TRUST_NOTARY_CA') && !text.includes('KPACK_TRUST_DELEGATION'),
      );
      assert.ok(
        text.includes(
          `  kubectl -n kpack patch configmap completion-image --type merge -p '{"data":{"image":"IMAGE@sha256:DIGEST"}}'\n  kubectl -n kpack rollout restart deployment kpack-controller\n`,
        ),
      );
      assert.match(text, /kpack\.io\/v1alpha1 \(v1alpha2 rejects spec\.notary\)/);
    });
  });

  describe('TLS from cert-manager (ci/cert-manager-values.yaml)', () => {
    const objects = render('cert-manager-values.yaml');

    it('render a valid Certificate for the Service names and the fixed cluster IP', () => {
      validateAll(objects);
      const certificate = find(objects, 'Certificate', VERIFIER);
      assert.equal(at(certificate, 'spec', 'secretName'), `${VERIFIER}-tls`);
      assert.equal(at(certificate, 'spec', 'commonName'), `${VERIFIER}.${NAMESPACE}.svc`);
      assert.deepEqual(at(certificate, 'spec', 'dnsNames'), [
        VERIFIER,
        `${VERIFIER}.${NAMESPACE}`,
        `${VERIFIER}.${NAMESPACE}.svc`,
        `${VERIFIER}.${NAMESPACE}.svc.cluster.local`,
        'image-policy.example.com',
      ]);
      assert.deepEqual(at(certificate, 'spec', 'ipAddresses'), ['10.96.200.10']);
      assert.deepEqual(at(certificate, 'spec', 'issuerRef'), {
        name: 'cluster-ca',
        kind: 'ClusterIssuer',
        group: 'cert-manager.io',
      });
      const deployment = find(objects, 'Deployment', VERIFIER);
      const volumes = at(deployment, 'spec', 'template', 'spec', 'volumes');
      assert.equal(at(volumes, 1, 'secret', 'secretName'), at(certificate, 'spec', 'secretName'));
      assert.equal(at(find(objects, 'Service', VERIFIER), 'spec', 'clusterIP'), '10.96.200.10');
    });

    it('pin the image by digest, require anti-affinity, roll one pod at a time and budget by maxUnavailable', () => {
      const deployment = find(objects, 'Deployment', VERIFIER);
      const pod = at(deployment, 'spec', 'template', 'spec');
      assert.equal(
        at(pod, 'containers', 0, 'image'),
        'registry.example.com/platform/kpack-trust-verifier@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae',
      );
      assert.equal(at(deployment, 'spec', 'replicas'), 3);
      assert.equal(
        at(
          pod,
          'affinity',
          'podAntiAffinity',
          'requiredDuringSchedulingIgnoredDuringExecution',
          0,
          'topologyKey',
        ),
        'kubernetes.io/hostname',
      );
      assert.equal(at(pod, 'priorityClassName'), 'system-cluster-critical');
      // Hard anti-affinity with replicas = nodes leaves a surge pod nowhere to go: replace in place.
      assert.deepEqual(at(deployment, 'spec', 'strategy', 'rollingUpdate'), {
        maxUnavailable: 1,
        maxSurge: 0,
      });
      const pdb = at(find(objects, 'PodDisruptionBudget', VERIFIER), 'spec');
      assert.equal(at(pdb, 'maxUnavailable'), 1);
      assert.equal(at(pdb, 'minAvailable'), undefined);
    });

    it('exempt cert-manager’s namespace, so the verifier’s certificate can always be renewed', () => {
      assert.deepEqual(loadRenderedConfig(objects).exemptNamespaces, [
        'kube-system',
        NAMESPACE,
        'cert-manager',
      ]);
    });

    it('print the webhook URL with the fixed IP', () => {
      const kubeconfig = notesBlock(
        notes('cert-manager-values.yaml'),
        'apiVersion: v1\nkind: Config',
      );
      assert.equal(
        at(kubeconfig, 'clusters', 0, 'cluster', 'server'),
        'https://10.96.200.10/image-policy',
      );
    });
  });

  describe('NetworkPolicy and ServiceMonitor (ci/network-monitoring-values.yaml)', () => {
    const objects = render('network-monitoring-values.yaml');

    it('render both, valid, with egress to DNS and each notary port', () => {
      validateAll(objects);
      const policy = find(objects, 'NetworkPolicy', VERIFIER);
      assert.deepEqual(at(policy, 'spec', 'ingress'), [
        {
          ports: [{ port: 'https', protocol: 'TCP' }],
          from: [{ ipBlock: { cidr: '10.0.0.0/24' } }],
        },
        // Prometheus, on the same port (/metrics shares it with the reviews).
        {
          ports: [{ port: 'https', protocol: 'TCP' }],
          from: at(
            ciValues('network-monitoring-values.yaml'),
            'verifier',
            'networkPolicy',
            'metricsFrom',
          ),
        },
      ]);
      const egress = at(policy, 'spec', 'egress') as unknown[];
      assert.deepEqual(at(egress, 0, 'ports'), [
        { port: 53, protocol: 'UDP' },
        { port: 53, protocol: 'TCP' },
      ]);
      // 4443 from notary.example.com:4443, 443 from notary.docker.io and extraEgressPorts, 8443 extra.
      assert.deepEqual(at(egress, 1, 'ports'), [
        { port: 443, protocol: 'TCP' },
        { port: 4443, protocol: 'TCP' },
        { port: 8443, protocol: 'TCP' },
      ]);
      assert.deepEqual(at(egress, 1, 'to', 0, 'ipBlock', 'except'), ['169.254.169.254/32']);
      assert.deepEqual(
        at(policy, 'spec', 'podSelector', 'matchLabels'),
        at(find(objects, 'Deployment', VERIFIER), 'spec', 'selector', 'matchLabels'),
      );
    });

    it('scrape /metrics over HTTPS, verifying the serving certificate', () => {
      const monitor = find(objects, 'ServiceMonitor', VERIFIER);
      assert.equal(at(monitor, 'metadata', 'labels', 'release'), 'prometheus');
      assert.deepEqual(at(monitor, 'spec', 'endpoints'), [
        {
          port: 'https',
          scheme: 'https',
          path: '/metrics',
          interval: '15s',
          scrapeTimeout: '10s',
          tlsConfig: {
            serverName: `${VERIFIER}.${NAMESPACE}.svc`,
            ca: { secret: { name: 'verifier-serving-cert', key: 'ca.crt' } },
          },
        },
      ]);
    });

    it('ship the guide’s alerts as a PrometheusRule on the ServiceMonitor’s job label', () => {
      const rule = find(objects, 'PrometheusRule', VERIFIER);
      assert.equal(at(rule, 'metadata', 'labels', 'release'), 'prometheus');
      const rules = at(rule, 'spec', 'groups', 0, 'rules') as { alert: string; expr: string }[];
      // The same alerts, by name, as the guide's §8 block.
      const guide = readFileSync(join(CHART_DIR, '../../docs/operator-guide.md'), 'utf8');
      const section = guide.slice(guide.indexOf('## 8. Metrics and alerts'));
      const guideAlerts = [...section.matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
      assert.ok(guideAlerts.length >= 9);
      assert.deepEqual(
        rules.map((r) => r.alert),
        guideAlerts,
      );
      // Every expression is scoped to the series the chart's ServiceMonitor scrapes.
      for (const { alert, expr } of rules) {
        assert.match(expr, new RegExp(`job="${VERIFIER}"`), alert);
      }
    });

    it('render a config with both notary servers that the verifier loads', () => {
      const config = loadRenderedConfig(objects);
      assert.deepEqual(
        config.notary.map((n) => [n.registry, n.server, n.timeoutMs]),
        [
          ['registry.example.com', 'https://notary.example.com:4443', 10_000],
          ['docker.io', 'https://notary.docker.io', 10_000],
        ],
      );
    });
  });

  describe('mutual TLS (ci/mtls-values.yaml)', () => {
    const objects = render('mtls-values.yaml');
    const clientCa = at(ciValues('mtls-values.yaml'), 'verifier', 'tls', 'clientCA') as string;
    const servingCa = at(ciValues('mtls-values.yaml'), 'verifier', 'tls', 'caBundle') as string;

    it('demand the client CA in the config, shipped in the ConfigMap', () => {
      validateAll(objects);
      const config = loadRenderedConfig(objects);
      assert.equal(config.listen.tls.clientCA, '/etc/kpack-trust/config/client-ca.crt');
      const data = at(find(objects, 'ConfigMap', VERIFIER), 'data') as Record<string, string>;
      assert.equal(data['client-ca.crt'], clientCa);
      assert.equal(config.rules[0]?.action, 'deny');
    });

    it('probe the port with TCP, since the kubelet has no client certificate', () => {
      const container = at(
        find(objects, 'Deployment', VERIFIER),
        'spec',
        'template',
        'spec',
        'containers',
        0,
      );
      assert.deepEqual(at(container, 'livenessProbe', 'tcpSocket'), { port: 'https' });
      assert.deepEqual(at(container, 'readinessProbe', 'tcpSocket'), { port: 'https' });
      assert.equal(at(container, 'livenessProbe', 'httpGet'), undefined);
    });

    it('leave the signer out when it is disabled', () => {
      assert.deepEqual(
        objects.filter((o) => o.metadata.name === SIGNER),
        [],
      );
    });

    it('print a kubeconfig with the serving CA embedded and the apiserver client certificate', () => {
      const kubeconfig = notesBlock(notes('mtls-values.yaml'), 'apiVersion: v1\nkind: Config');
      assert.equal(
        at(kubeconfig, 'clusters', 0, 'cluster', 'certificate-authority-data'),
        Buffer.from(servingCa).toString('base64'),
      );
      assert.deepEqual(at(kubeconfig, 'users', 0), {
        name: 'kube-apiserver',
        user: {
          'client-certificate': '/etc/kubernetes/kpack-trust/apiserver-client.crt',
          'client-key': '/etc/kubernetes/kpack-trust/apiserver-client.key',
        },
      });
    });
  });

  describe('several notary servers and every policy key (ci/policy-values.yaml)', () => {
    const objects = render('policy-values.yaml');
    const values = ciValues('policy-values.yaml');
    const notaryCa = at(values, 'verifier', 'notary', 0, 'ca') as string;
    const external = { 'local-notary-ca/local-notary-ca.crt': notaryCa };

    it('render valid objects, with the signer in both build namespaces', () => {
      validateAll(objects);
      for (const namespace of ['builds', 'builds-staging']) {
        find(objects, 'ServiceAccount', SIGNER, namespace);
        const role = find(objects, 'Role', SIGNER, namespace);
        assert.deepEqual(at(role, 'rules', 0, 'resourceNames'), [
          'kpack-trust-root-key',
          'kpack-trust-targets-key',
          'app-a-root-key',
        ]);
        const binding = find(objects, 'RoleBinding', SIGNER, namespace);
        assert.equal(at(binding, 'subjects', 0, 'namespace'), namespace);
        const data = at(find(objects, 'ConfigMap', SIGNER, namespace), 'data');
        assert.deepEqual(data, {
          KPACK_TRUST_NOTARY_URL: 'https://notary.example.com:4443',
          KPACK_TRUST_NAMESPACE: namespace,
          KPACK_TRUST_ROOT_KEY_SECRET: 'kpack-trust-root-key',
          KPACK_TRUST_TARGETS_KEY_SECRET: 'kpack-trust-targets-key',
          KPACK_TRUST_DELEGATION: 'targets/releases',
          'notary-ca.crt': notaryCa,
        });
      }
      assert.deepEqual(
        objects.filter((o) => o.metadata.name === SIGNER && o.metadata.namespace === NAMESPACE),
        [],
      );
      const pod = at(find(objects, 'Deployment', VERIFIER), 'spec', 'template', 'spec');
      assert.deepEqual(at(pod, 'imagePullSecrets'), [
        { name: 'regcred' },
        { name: 'other-regcred' },
      ]);
      assert.equal(
        at(find(objects, 'Service', VERIFIER), 'metadata', 'labels', 'team'),
        'platform',
      );
    });

    it('render a config the verifier loads, naming only files the pod has', () => {
      const config = loadRenderedConfig(objects, external);
      const [first, second, third] = config.notary;
      assert.equal(first?.caFile, '/etc/kpack-trust/config/notary-ca-0.crt');
      assert.equal(first?.caPem, notaryCa);
      assert.equal(first?.timeoutMs, 5000);
      assert.equal(
        first?.credentialsFile,
        '/etc/kpack-trust/notary-credentials/0/.dockerconfigjson',
      );
      assert.equal(second?.caFile, '/etc/kpack-trust/extra/local-notary-ca.crt');
      assert.equal(second?.server, 'https://127.0.0.1:4443/notary');
      assert.equal(second?.credentialsFile, '/etc/kpack-trust/notary-credentials/1/config.json');
      assert.equal(third?.caFile, undefined);
      assert.deepEqual(
        config.rules.map((r) => [r.name, r.action, r.requireDigest, r.detectionMode]),
        [
          ['releases', 'verify', true, false],
          ['local-ca', 'verify', false, true],
          ['registry.example.com/experiments/*', 'verify', false, false],
          ['docker.io/library/*', 'allow', false, false],
          ['**', 'deny', false, false],
        ],
      );
      const releases = config.rules[0];
      assert.ok(releases?.action === 'verify');
      assert.deepEqual(releases.namespaces, ['prod-*']);
      assert.deepEqual(releases.excludeNamespaces, ['prod-sandbox']);
      assert.deepEqual(
        releases.trust.signers.map((s) => [
          s.role,
          s.keyIds.length,
          s.canonicalIds.length,
          s.threshold,
        ]),
        [
          ['targets/releases', 1, 1, 1],
          ['targets/qa', 1, 0, 1],
        ],
      );
      assert.equal(releases.trust.signersThreshold, 1);
      assert.deepEqual(config.exemptNamespaces, ['kube-system', 'kpack', NAMESPACE]);
      assert.equal(config.failure, 'error');
      assert.deepEqual(config.breakGlass, {
        enabled: true,
        annotation: 'platform.image-policy.k8s.io/break-glass',
      });
      assert.deepEqual(config.cache, {
        maxRepositories: 5000,
        ttlSeconds: 120,
        maxTrustStates: 50_000,
        staleIfErrorSeconds: 1800,
        negativeTtlSeconds: 2,
        refreshAheadSeconds: 20,
      });
      assert.deepEqual(config.circuitBreaker, { failureThreshold: 3, cooldownSeconds: 20 });
    });

    it('carry a digest of the CA files in config.yaml, so a CA-only change reloads the verifier', () => {
      // The verifier reloads when config.yaml changes; the CA files beside it are only re-read then.
      const changedValues = structuredClone(values) as { verifier: { notary: { ca: string }[] } };
      const firstServer = changedValues.verifier.notary[0];
      assert.ok(firstServer);
      firstServer.ca = at(ciValues('mtls-values.yaml'), 'verifier', 'tls', 'clientCA') as string;
      const dir = mkdtempSync(join(tmpdir(), 'kpack-trust-chart-'));
      try {
        const file = join(dir, 'values.yaml');
        writeFileSync(file, stringify(changedValues));
        const configLines = (rendered: readonly K8sObject[]): string[] =>
          (
            (at(find(rendered, 'ConfigMap', VERIFIER), 'data') as Record<string, string>)[
              'config.yaml'
            ] ?? ''
          ).split('\n');
        const before = configLines(objects);
        const after = configLines(render(file));
        assert.equal(after.length, before.length);
        const differing = before.filter((line, i) => line !== after[i]);
        assert.equal(differing.length, 1, 'only the digest line differs');
        assert.match(
          differing[0] ?? '',
          /^# CA files \(sha256 of their contents; a change here makes the verifier reload\): [0-9a-f]{64}$/,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('print the completion image with the notary CA, the delegation and the notary URL', () => {
      const text = notes('policy-values.yaml');
      assert.ok(
        text.includes(
          [
            '  FROM REGISTRY/kpack-trust-completion:0.1.0',
            `  # notary-ca.crt: the notary-ca.crt key of ConfigMap "${SIGNER}"`,
            '  COPY notary-ca.crt /kpack-trust/notary-ca.crt',
            '  ENV KPACK_TRUST_NOTARY_CA=/kpack-trust/notary-ca.crt',
            '  ENV KPACK_TRUST_ROOT_KEY_ID="ROOT_KEY_ID_OF_EACH_REPOSITORY"',
            '  ENV KPACK_TRUST_DELEGATION=targets/releases',
          ].join('\n'),
        ),
      );
      assert.ok(text.includes('spec.notary.v1.url: https://notary.example.com:4443 and'));
      const data = at(find(objects, 'ConfigMap', SIGNER, 'builds'), 'data') as Record<
        string,
        string
      >;
      assert.ok('notary-ca.crt' in data, 'the CA the NOTES point at is in the ConfigMap');
    });

    it('mount each notary credentials Secret where the config looks for it', () => {
      const pod = at(find(objects, 'Deployment', VERIFIER), 'spec', 'template', 'spec');
      const volumes = at(pod, 'volumes') as { name: string }[];
      assert.deepEqual(
        volumes.filter((v) => v.name.startsWith('notary-credentials')),
        [
          {
            name: 'notary-credentials-0',
            secret: {
              secretName: 'notary-pull-secret',
              items: [{ key: '.dockerconfigjson', path: '.dockerconfigjson' }],
            },
          },
          {
            name: 'notary-credentials-1',
            secret: {
              secretName: 'local-notary-credentials',
              items: [{ key: 'config.json', path: 'config.json' }],
            },
          },
        ],
      );
    });
  });

  describe('admission webhooks with a generated CA (ci/admission-webhooks-values.yaml)', () => {
    const objects = render('admission-webhooks-values.yaml');
    const mutating = findClusterScoped(objects, 'MutatingWebhookConfiguration', VERIFIER);
    const validating = findClusterScoped(objects, 'ValidatingWebhookConfiguration', VERIFIER);
    const webhookOf = (configuration: K8sObject): Record<string, unknown> => {
      const webhooks = at(configuration, 'webhooks') as Record<string, unknown>[];
      assert.equal(webhooks.length, 1);
      return webhooks[0] as Record<string, unknown>;
    };

    it('render both webhook configurations and the TLS Secret, all valid Kubernetes objects', () => {
      validateAll(objects);
      const rendered = kinds(objects);
      for (const expected of [
        `MutatingWebhookConfiguration//${VERIFIER}`,
        `ValidatingWebhookConfiguration//${VERIFIER}`,
        `Secret/${NAMESPACE}/${VERIFIER}-tls`,
        `Deployment/${NAMESPACE}/${VERIFIER}`,
      ]) {
        assert.ok(rendered.includes(expected), `${expected} in ${rendered.join(', ')}`);
      }
    });

    it('fail closed, without side effects, in v1 only, leaving excluded and labelled namespaces out', () => {
      for (const [configuration, path] of [
        [mutating, '/mutate'],
        [validating, '/validate'],
      ] as const) {
        const webhook = webhookOf(configuration);
        assert.equal(webhook['failurePolicy'], 'Fail');
        assert.equal(webhook['sideEffects'], 'None');
        assert.deepEqual(webhook['admissionReviewVersions'], ['v1']);
        assert.equal(webhook['timeoutSeconds'], 20);
        assert.deepEqual(at(webhook, 'namespaceSelector'), {
          matchExpressions: [
            { key: 'kpack-trust.io/ignore', operator: 'NotIn', values: ['true'] },
            {
              key: 'kubernetes.io/metadata.name',
              operator: 'NotIn',
              values: ['kube-system', NAMESPACE, 'monitoring'],
            },
          ],
        });
        assert.deepEqual(at(webhook, 'clientConfig', 'service'), {
          name: VERIFIER,
          namespace: NAMESPACE,
          path,
          port: 443,
        });
      }
      assert.equal(webhookOf(mutating)['reinvocationPolicy'], 'IfNeeded');
    });

    it('send Pod creation and ephemeral containers to /mutate, every pod-carrying workload to /validate', () => {
      const resources = (configuration: K8sObject): string[] =>
        (webhookOf(configuration)['rules'] as { operations: string[]; resources: string[] }[])
          .flatMap((rule) => rule.resources.map((r) => `${r} ${rule.operations.join(',')}`))
          .sort();
      assert.deepEqual(resources(mutating), [
        'pods CREATE,UPDATE',
        'pods/ephemeralcontainers UPDATE',
      ]);
      assert.deepEqual(resources(validating), [
        'cronjobs CREATE,UPDATE',
        'daemonsets CREATE,UPDATE',
        'deployments CREATE,UPDATE',
        'jobs CREATE,UPDATE',
        'pods CREATE,UPDATE',
        'pods/ephemeralcontainers UPDATE',
        'replicasets CREATE,UPDATE',
        'replicationcontrollers CREATE,UPDATE',
        'statefulsets CREATE,UPDATE',
      ]);
    });

    it('keep the generated Secret when a later revision stops rendering it, so the pods can still mount it', () => {
      // admission.mode imagePolicyWebhook renders no Secret: without the keep policy, switching to
      // it would delete the one the verifier pods mount.
      const secret = find(objects, 'Secret', `${VERIFIER}-tls`);
      assert.equal(at(secret, 'metadata', 'annotations', 'helm.sh/resource-policy'), 'keep');
      const switched = render('admission-webhooks-values.yaml', [
        '--set',
        'admission.mode=imagePolicyWebhook',
      ]);
      assert.equal(switched.filter((o) => o.kind === 'Secret').length, 0);
      assert.ok(
        (
          at(find(switched, 'Deployment', VERIFIER), 'spec', 'template', 'spec', 'volumes') as {
            secret?: { secretName: string };
          }[]
        ).some((v) => v.secret?.secretName === `${VERIFIER}-tls`),
      );
    });

    it('generate a CA whose serving certificate covers the Service names, in the Secret the pods mount', () => {
      const secret = find(objects, 'Secret', `${VERIFIER}-tls`);
      const data = at(secret, 'data') as Record<string, string>;
      const pem = (key: string): string => Buffer.from(data[key] ?? '', 'base64').toString('utf8');
      const ca = new X509Certificate(pem('ca.crt'));
      const leaf = new X509Certificate(pem('tls.crt'));
      assert.ok(ca.ca, 'ca.crt is a CA certificate');
      assert.ok(leaf.verify(ca.publicKey), 'tls.crt is issued by ca.crt');
      assert.ok(leaf.checkPrivateKey(createPrivateKey(pem('tls.key'))));
      for (const name of [
        VERIFIER,
        `${VERIFIER}.${NAMESPACE}.svc`,
        `${VERIFIER}.${NAMESPACE}.svc.cluster.local`,
      ]) {
        assert.equal(leaf.checkHost(name), name);
      }
      for (const configuration of [mutating, validating]) {
        assert.equal(at(webhookOf(configuration), 'clientConfig', 'caBundle'), data['ca.crt']);
      }
      const volumes = at(
        find(objects, 'Deployment', VERIFIER),
        'spec',
        'template',
        'spec',
        'volumes',
      );
      assert.ok(
        (volumes as { secret?: { secretName: string } }[]).some(
          (v) => v.secret?.secretName === `${VERIFIER}-tls`,
        ),
      );
    });

    it('print what the webhooks do and their bootstrap order, not apiserver files or a Secret to create', () => {
      const text = notes('admission-webhooks-values.yaml');
      // The chart made the TLS Secret and registered the webhooks: nothing for kube-apiserver.
      assert.ok(!text.includes('ImagePolicyWebhook cannot be registered by a chart'));
      assert.ok(!text.includes('admission-config.yaml'));
      assert.ok(!text.includes('create secret generic'));
      assert.ok(
        text.includes(
          `The chart generated a CA and the serving certificate into the TLS Secret "${VERIFIER}-tls"`,
        ),
      );
      assert.ok(
        text.includes(
          `registered with failurePolicy Fail: pods in every namespace are now sent to the verifier except\nkube-system, ${NAMESPACE}, monitoring and namespaces labelled kpack-trust.io/ignore=true.`,
        ),
      );
      assert.match(
        text,
        /install with verifier\.config\.detectionMode=true and\nadmission\.webhooks\.failurePolicy=Ignore/,
      );
      assert.ok(!text.includes('failurePolicy is Ignore'));
    });

    it('admit unchecked while the verifier is down only with failurePolicy Ignore, said in the NOTES', () => {
      const extra = ['--set', 'admission.webhooks.failurePolicy=Ignore'];
      const ignoring = render('admission-webhooks-values.yaml', extra);
      validateAll(ignoring);
      for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
        const configuration = findClusterScoped(ignoring, kind, VERIFIER);
        assert.equal(at(configuration, 'webhooks', 0, 'failurePolicy'), 'Ignore');
      }
      assert.match(
        notes('admission-webhooks-values.yaml', extra),
        /failurePolicy is Ignore: while the verifier cannot be reached, every pod is admitted unchecked/,
      );
    });

    it('render a verifier config that exempts what the webhooks leave out', () => {
      const config = loadRenderedConfig(objects);
      assert.deepEqual([...config.exemptNamespaces].sort(), [
        'kube-system',
        'monitoring',
        NAMESPACE,
      ]);
    });
  });

  describe('both modes, CA injected by cert-manager (ci/admission-both-values.yaml)', () => {
    const objects = render('admission-both-values.yaml');

    it('annotate both configurations for the CA injector, with no caBundle and no generated Secret', () => {
      validateAll(objects);
      const certificate = find(objects, 'Certificate', VERIFIER);
      for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
        const configuration = findClusterScoped(objects, kind, VERIFIER);
        assert.deepEqual(at(configuration, 'metadata', 'annotations'), {
          'cert-manager.io/inject-ca-from': `${NAMESPACE}/${certificate.metadata.name}`,
        });
        const webhooks = at(configuration, 'webhooks') as Record<string, unknown>[];
        assert.equal(at(webhooks[0], 'clientConfig', 'caBundle'), undefined);
      }
      assert.equal(objects.filter((o) => o.kind === 'Secret').length, 0);
    });

    it('leave cert-manager’s namespace out of both webhooks, as the verifier exempts it', () => {
      // A verifier that cannot be reached exempts nothing: cert-manager must still start, or the
      // certificate the webhooks are called with is never renewed.
      for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
        const configuration = findClusterScoped(objects, kind, VERIFIER);
        assert.deepEqual(
          at(configuration, 'webhooks', 0, 'namespaceSelector', 'matchExpressions', 1),
          {
            key: 'kubernetes.io/metadata.name',
            operator: 'NotIn',
            values: ['kube-system', NAMESPACE, 'cert-manager'],
          },
        );
      }
      assert.deepEqual([...loadRenderedConfig(objects).exemptNamespaces].sort(), [
        'cert-manager',
        'kube-system',
        NAMESPACE,
      ]);
    });

    it('mirror every exact exempt namespace into the webhooks, never a glob', () => {
      const withGlobs = render('admission-both-values.yaml', [
        '--set',
        'verifier.config.exemptNamespaces={kube-system,ci-*,monitoring}',
        '--set',
        'admission.webhooks.excludeNamespaces={logging}',
      ]);
      const validating = findClusterScoped(withGlobs, 'ValidatingWebhookConfiguration', VERIFIER);
      assert.deepEqual(
        at(validating, 'webhooks', 0, 'namespaceSelector', 'matchExpressions', 1, 'values'),
        ['kube-system', NAMESPACE, 'monitoring', 'cert-manager', 'logging'],
      );
      assert.match(
        notes('admission-both-values.yaml', [
          '--set',
          'verifier.config.exemptNamespaces={kube-system,ci-*}',
        ]),
        /the exempt globs ci-\* are\nstill sent to them/,
      );
    });

    it('send only pods to /validate when validateWorkloads is false', () => {
      const validating = findClusterScoped(objects, 'ValidatingWebhookConfiguration', VERIFIER);
      const rules = at(validating, 'webhooks', 0, 'rules') as { resources: string[] }[];
      assert.deepEqual(
        rules.flatMap((r) => r.resources),
        ['pods', 'pods/ephemeralcontainers'],
      );
    });

    it('still print the ImagePolicyWebhook configuration for kube-apiserver', () => {
      const text = notes('admission-both-values.yaml');
      assert.ok(text.includes('ImagePolicyWebhook cannot be registered by a chart'));
      assert.ok(text.includes('-- Admission webhooks --'));
      assert.ok(!text.includes('create secret generic'));
    });
  });

  describe('admission webhooks with an existing TLS Secret', () => {
    it('put verifier.tls.caBundle into both configurations', () => {
      const caPem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      const objects = render(undefined, [
        '--set',
        'admission.mode=admissionWebhooks',
        '--set',
        'verifier.tls.existingSecret=verifier-tls',
        '--set-string',
        `verifier.tls.caBundle=${caPem}`,
      ]);
      validateAll(objects);
      const expected = Buffer.from(caPem).toString('base64');
      for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
        const configuration = findClusterScoped(objects, kind, VERIFIER);
        assert.equal(at(configuration, 'webhooks', 0, 'clientConfig', 'caBundle'), expected);
      }
      assert.equal(objects.filter((o) => o.kind === 'Secret').length, 0);
    });

    it('refuse to render without the CA bundle', () => {
      assert.match(
        rejection([
          '--set',
          'admission.mode=both',
          '--set',
          'verifier.tls.existingSecret=verifier-tls',
        ]),
        /admission\.mode admissionWebhooks\/both with verifier\.tls\.existingSecret needs verifier\.tls\.caBundle/,
      );
    });
  });

  describe('the config check hook and the config checksum', () => {
    const objects = render('policy-values.yaml');
    const job = find(objects, 'Job', CHECK);
    const hookConfigMap = find(objects, 'ConfigMap', CHECK);

    it('run check-config before install and upgrade, on a hook copy of exactly the ConfigMap', () => {
      validateAll(objects);
      for (const hook of [job, hookConfigMap]) {
        assert.equal(
          at(hook, 'metadata', 'annotations', 'helm.sh/hook'),
          'pre-install,pre-upgrade',
        );
      }
      // The ConfigMap exists before the Job that mounts it.
      assert.ok(
        Number(at(hookConfigMap, 'metadata', 'annotations', 'helm.sh/hook-weight')) <
          Number(at(job, 'metadata', 'annotations', 'helm.sh/hook-weight')),
      );
      assert.deepEqual(at(hookConfigMap, 'data'), at(find(objects, 'ConfigMap', VERIFIER), 'data'));
      const container = at(job, 'spec', 'template', 'spec', 'containers', 0);
      assert.deepEqual(at(container, 'args'), [
        'check-config',
        '/etc/kpack-trust/config/config.yaml',
      ]);
      assert.equal(
        at(container, 'image'),
        at(
          find(objects, 'Deployment', VERIFIER),
          'spec',
          'template',
          'spec',
          'containers',
          0,
          'image',
        ),
      );
      assert.equal(at(job, 'spec', 'backoffLimit'), 0);
    });

    it('mount every file the config names where the verifier pods have it', () => {
      const pod = (o: K8sObject): { volumeMounts: { mountPath: string }[] } =>
        at(o, 'spec', 'template', 'spec', 'containers', 0) as {
          volumeMounts: { mountPath: string }[];
        };
      assert.deepEqual(
        pod(job).volumeMounts.map((m) => m.mountPath),
        pod(find(objects, 'Deployment', VERIFIER)).volumeMounts.map((m) => m.mountPath),
      );
    });

    it('skip the TLS files on a first install without an existing Secret, check them on upgrade', () => {
      const args = (o: K8sObject[]): unknown =>
        at(find(o, 'Job', CHECK), 'spec', 'template', 'spec', 'containers', 0, 'args');
      assert.deepEqual(args(render()), [
        'check-config',
        '--skip-tls',
        '/etc/kpack-trust/config/config.yaml',
      ]);
      const upgraded = render(undefined, ['--is-upgrade']);
      assert.deepEqual(args(upgraded), ['check-config', '/etc/kpack-trust/config/config.yaml']);
      const volumes = at(find(upgraded, 'Job', CHECK), 'spec', 'template', 'spec', 'volumes');
      assert.deepEqual(at(volumes, 1, 'secret', 'secretName'), `${VERIFIER}-tls`);
      assert.equal(at(volumes, 1, 'secret', 'optional'), true);
    });

    it('roll the pods when the config changes, and only then', () => {
      const checksum = (extra: readonly string[]): unknown =>
        at(
          find(render(undefined, extra), 'Deployment', VERIFIER),
          'spec',
          'template',
          'metadata',
          'annotations',
          'checksum/config',
        );
      const base = checksum([]);
      assert.match(String(base), /^[0-9a-f]{64}$/);
      assert.equal(checksum(['--set', 'verifier.logLevel=debug']), base);
      assert.notEqual(checksum(['--set', 'verifier.config.detectionMode=true']), base);
    });

    it('keep the Job name within a label value’s 63 characters for the longest release names', () => {
      const long = render(undefined, ['--set', `fullnameOverride=${'x'.repeat(60)}`]);
      const jobs = long.filter((o) => o.kind === 'Job');
      assert.equal(jobs.length, 1);
      assert.ok((jobs[0]?.metadata.name.length ?? 64) <= 63, jobs[0]?.metadata.name);
      validateAll(long);
    });

    it('keep every name the chart renders or refers to within 63 characters for a 53-character release name', () => {
      // Helm's longest release name; every optional object on, so every suffix is rendered.
      const release = `${'r'.repeat(40)}-long-release`;
      assert.equal(release.length, 53);
      const run = runHelm([
        'template',
        release,
        CHART_DIR,
        '--namespace',
        NAMESPACE,
        ...WITH_IMAGE,
        '--set',
        'admission.mode=both',
        '--set',
        'verifier.serviceMonitor.enabled=true',
        '--set-string',
        `verifier.tls.caBundle=${at(ciValues('mtls-values.yaml'), 'verifier', 'tls', 'caBundle') as string}`,
        '--set',
        'verifier.networkPolicy.enabled=true',
        '--set',
        'verifier.prometheusRule.enabled=true',
        '--set',
        'signer.namespaces={builds}',
        '--set',
        'signer.image.repository=registry.example.com/platform/kpack-trust-signer',
        '--set',
        'signer.controller.enabled=true',
        '--set',
        'signer.controller.buildCredentialsClusterWide=true',
        '--set',
        'signer.controller.serviceMonitor.enabled=true',
      ]);
      assert.equal(run.status, 0, run.stderr);
      const objects = parseAllDocuments(run.stdout)
        .map((doc) => doc.toJS() as unknown)
        .filter((o): o is K8sObject => o !== null && typeof o === 'object');
      validateAll(objects);
      const names: string[] = [];
      const collect = (value: unknown): void => {
        if (Array.isArray(value)) value.forEach(collect);
        else if (value !== null && typeof value === 'object') {
          for (const [key, inner] of Object.entries(value)) {
            if ((key === 'name' || key === 'secretName') && typeof inner === 'string')
              names.push(inner);
            else collect(inner);
          }
        }
      };
      collect(objects);
      const tooLong = names.filter((name) => name.length > 63);
      assert.deepEqual(tooLong, []);
      // The suffixed names were cut (the base is 52 characters), and stay apart.
      const controllerNames = objects
        .map((o) => o.metadata.name)
        .filter((name) => name.includes('-signer-controller'));
      assert.ok(
        controllerNames.some((name) => name.endsWith('-signer-controller-build-credentials')),
      );
      assert.ok(controllerNames.some((name) => name.endsWith('-signer-controller-metrics')));
      assert.equal(
        new Set(objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`))
          .size,
        objects.length,
      );
      // cert-manager refuses a commonName over 64 bytes; the Certificate goes without one then.
      const issued = runHelm([
        'template',
        release,
        CHART_DIR,
        '--namespace',
        NAMESPACE,
        '-f',
        join(CI_DIR, 'cert-manager-values.yaml'),
        '--show-only',
        'templates/verifier-certificate.yaml',
      ]);
      assert.equal(issued.status, 0, issued.stderr);
      const certificate = parseDocument(issued.stdout).toJS() as K8sObject;
      validateAll([certificate]);
      assert.equal(at(certificate, 'spec', 'commonName'), undefined);
      assert.ok(
        (at(certificate, 'spec', 'dnsNames') as string[]).includes(
          `${certificate.metadata.name}.${NAMESPACE}.svc`,
        ),
      );
    });

    it('is left out when configCheck.enabled is false', () => {
      const objects = render(undefined, ['--set', 'verifier.configCheck.enabled=false']);
      assert.equal(objects.filter((o) => o.metadata.name === CHECK).length, 0);
    });
  });

  describe('a ServiceMonitor in the release namespace with tls.caBundle', () => {
    it('verify against tls.caBundle, since an existing TLS Secret may hold no ca.crt', () => {
      const caPem = at(ciValues('mtls-values.yaml'), 'verifier', 'tls', 'caBundle') as string;
      const objects = render(undefined, [
        '--set',
        'verifier.serviceMonitor.enabled=true',
        '--set',
        'verifier.tls.existingSecret=verifier-tls',
        '--set-string',
        `verifier.tls.caBundle=${caPem}`,
      ]);
      validateAll(objects);
      const monitor = find(objects, 'ServiceMonitor', VERIFIER);
      assert.deepEqual(at(monitor, 'spec', 'endpoints', 0, 'tlsConfig', 'ca'), {
        configMap: { name: `${VERIFIER}-metrics-ca`, key: 'ca.crt' },
      });
      assert.equal(
        at(find(objects, 'ConfigMap', `${VERIFIER}-metrics-ca`), 'data', 'ca.crt'),
        caPem,
      );
    });
  });

  describe('a ServiceMonitor in another namespace', () => {
    it('verify against a CA ConfigMap written in its namespace, never the release namespace’s Secret', () => {
      const caPem = at(ciValues('mtls-values.yaml'), 'verifier', 'tls', 'caBundle') as string;
      const objects = render(undefined, [
        '--set',
        'verifier.serviceMonitor.enabled=true',
        '--set',
        'verifier.serviceMonitor.namespace=monitoring',
        '--set',
        'verifier.tls.existingSecret=verifier-tls',
        '--set-string',
        `verifier.tls.caBundle=${caPem}`,
      ]);
      validateAll(objects);
      const monitor = find(objects, 'ServiceMonitor', VERIFIER, 'monitoring');
      assert.deepEqual(at(monitor, 'spec', 'endpoints', 0, 'tlsConfig', 'ca'), {
        configMap: { name: `${VERIFIER}-metrics-ca`, key: 'ca.crt' },
      });
      const ca = find(objects, 'ConfigMap', `${VERIFIER}-metrics-ca`, 'monitoring');
      assert.equal(at(ca, 'data', 'ca.crt'), caPem);
    });
  });

  describe('the schema validator itself', () => {
    it('rejects a Deployment with a wrong type, so the checks above can fail', () => {
      const deployment = structuredClone(find(render(), 'Deployment', VERIFIER));
      (deployment['spec'] as Record<string, unknown>)['replicas'] = 'two';
      assert.throws(
        () => VALIDATORS['apps/v1/Deployment']?.(deployment),
        /data\/spec\/replicas must be integer/,
      );
    });
  });

  describe('values.yaml', () => {
    it('has a comment on every key', () => {
      const document = parseDocument(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8'));
      const missing: string[] = [];
      const walk = (node: unknown, path: string): void => {
        if (!isMap(node)) return;
        node.items.forEach((pair, i) => {
          const key = isScalar(pair.key) ? String(pair.key.value) : '(complex key)';
          const name = path === '' ? key : `${path}.${key}`;
          // The first key's comment attaches to the enclosing map (or, at the top, the document).
          const own = isScalar(pair.key) ? pair.key.commentBefore : undefined;
          const inherited =
            i === 0
              ? (node.commentBefore ?? (path === '' ? document.commentBefore : undefined))
              : undefined;
          if (!(own ?? inherited)) missing.push(name);
          walk(pair.value, name);
        });
      };
      walk(document.contents, '');
      assert.deepEqual(missing, []);
    });
  });

  describe('bad values', () => {
    const schemaError = (where: string, problem: string): string =>
      `Error: values don't meet the specifications of the schema(s) in the following chart(s):\nkpack-trust:\n- at '${where}': ${problem}\n\n`;

    it('reject an unknown key', () => {
      assert.equal(
        rejection(['--set', 'verifier.bogus=1']),
        schemaError('/verifier', "additional properties 'bogus' not allowed"),
      );
    });

    it('reject an unknown key inside a rule', () => {
      assert.equal(
        rejection([
          '--set',
          'verifier.config.rules[0].images=x',
          '--set',
          'verifier.config.rules[0].allow=true',
          '--set',
          'verifier.config.rules[0].rootKey=abc',
        ]),
        schemaError('/verifier/config/rules/0', "additional properties 'rootKey' not allowed"),
      );
    });

    it('reject a wrong type', () => {
      assert.equal(
        rejection(['--set-string', 'verifier.replicaCount=two']),
        schemaError('/verifier/replicaCount', 'got string, want integer'),
      );
    });

    it('reject a value outside an enum', () => {
      assert.equal(
        rejection(['--set', 'verifier.config.failure=open']),
        schemaError('/verifier/config/failure', "value must be one of 'deny', 'error'"),
      );
    });

    it('reject an unknown admission mode', () => {
      assert.equal(
        rejection(['--set', 'admission.mode=webhooks']),
        schemaError(
          '/admission/mode',
          "value must be one of 'imagePolicyWebhook', 'admissionWebhooks', 'both'",
        ),
      );
    });

    it('reject a webhook timeout above the apiserver maximum of 30 seconds', () => {
      assert.equal(
        rejection(['--set', 'admission.webhooks.timeoutSeconds=31']),
        schemaError('/admission/webhooks/timeoutSeconds', 'maximum: got 31, want 30'),
      );
    });

    it('reject a root key id that is not 64 hex digits', () => {
      assert.equal(
        rejection([
          '--set',
          'verifier.config.rules[0].images=x',
          '--set',
          'verifier.config.rules[0].trust.rootKeys[0]=ABC',
        ]),
        schemaError(
          '/verifier/config/rules/0/trust/rootKeys/0',
          "'ABC' does not match pattern '^[0-9a-f]{64}$'",
        ),
      );
    });

    it('reject both an existing TLS Secret and cert-manager', () => {
      assert.match(
        rejection([
          '--set',
          'verifier.tls.existingSecret=a',
          '--set',
          'verifier.tls.certManager.enabled=true',
        ]),
        /^Error: execution error at \(kpack-trust\/templates\/validate\.yaml:5:4\): verifier\.tls: set either existingSecret or certManager\.enabled, not both\n/,
      );
    });

    it('reject cert-manager without an issuer', () => {
      assert.match(
        rejection(['--set', 'verifier.tls.certManager.enabled=true']),
        /^Error: execution error at \(kpack-trust\/templates\/validate\.yaml:5:4\): verifier\.tls\.certManager\.issuerRef\.name is required when certManager\.enabled is true\n/,
      );
    });

    it('reject the same registry twice in verifier.notary', () => {
      assert.match(
        rejection([
          '--set',
          'verifier.notary[0].registry=docker.io',
          '--set',
          'verifier.notary[0].server=https://a.example',
          '--set',
          'verifier.notary[1].registry=docker.io',
          '--set',
          'verifier.notary[1].server=https://b.example',
        ]),
        /: verifier\.notary: registry docker\.io is listed twice\n/,
      );
    });
    it('require the verifier image in the operator’s registry, with no Docker Hub default', () => {
      const run = runHelm(['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE]);
      assert.notEqual(run.status, 0);
      assert.match(
        run.stderr,
        /verifier\.image\.repository is required: the image as pushed to your registry, e\.g\. registry\.example\.com\/platform\/kpack-trust-verifier/,
      );
    });

    for (const [key, over] of [
      ['allowTTL', 1801],
      ['denyTTL', 1801],
      ['retryBackoff', 300001],
    ] as const) {
      it(`reject webhook.${key} outside what kube-apiserver accepts, and 0, its silent default`, () => {
        const max = over - 1;
        assert.equal(
          rejection(['--set', `verifier.webhook.${key}=${over}`]),
          schemaError(
            `/verifier/webhook/${key}`,
            `maximum: got ${over.toLocaleString('en-US')}, want ${max.toLocaleString('en-US')}`,
          ),
        );
        assert.equal(
          rejection(['--set', `verifier.webhook.${key}=-2`]),
          schemaError(`/verifier/webhook/${key}`, 'minimum: got -2, want -1'),
        );
        assert.match(
          rejection(['--set', `verifier.webhook.${key}=0`]),
          new RegExp(
            `verifier\\.webhook\\.${key}: 0 makes kube-apiserver silently use its default`,
          ),
        );
        // -1 (no cache / no wait) and the bounds themselves are what the apiserver accepts.
        for (const accepted of [-1, 1, max]) {
          const text = notes(undefined, ['--set', `verifier.webhook.${key}=${accepted}`]);
          assert.match(text, new RegExp(`\n {8}${key}: ${accepted}\n`));
        }
      });
    }

    it('reject a trust section that pins nothing', () => {
      assert.equal(
        rejection([
          '--set',
          'verifier.config.rules[0].images=x',
          '--set-json',
          'verifier.config.rules[0].trust={}',
        ]),
        schemaError('/verifier/config/rules/0/trust', 'minProperties: got 0, want 1'),
      );
      assert.match(
        rejection([
          '--set',
          'verifier.config.rules[0].images=x',
          '--set-json',
          'verifier.config.rules[0].trust={"signers":[{"role":"targets","keys":["k"]}]}',
        ]),
        /: verifier\.config\.rules\[0\] \(x\): trust pins no root key, certificate or CA/,
      );
    });

    it('reject a rule with both allow and deny', () => {
      assert.match(
        rejection([
          '--set',
          'verifier.config.rules[0].images=x',
          '--set',
          'verifier.config.rules[0].allow=true',
          '--set',
          'verifier.config.rules[0].deny=true',
        ]),
        /: verifier\.config\.rules\[0\] \(x\): needs exactly one of allow: true, deny: true or trust/,
      );
    });

    it('reject a notary registry written as a URL', () => {
      assert.match(
        rejection([
          '--set',
          'verifier.notary[0].registry=https://registry.example.com',
          '--set',
          'verifier.notary[0].server=https://notary.example.com',
        ]),
        /: verifier\.notary: registry "https:\/\/registry\.example\.com" must be a registry host\[:port\]/,
      );
    });

    it('reject fewer than two replicas and a budget that allows no eviction', () => {
      assert.equal(
        rejection(['--set', 'verifier.replicaCount=1']),
        schemaError('/verifier/replicaCount', 'minimum: got 1, want 2'),
      );
      assert.match(
        rejection(['--set', 'verifier.podDisruptionBudget.maxUnavailable=0']),
        /: verifier\.podDisruptionBudget\.maxUnavailable: 0 allows no eviction/,
      );
      assert.match(
        rejection([
          '--set',
          'verifier.podDisruptionBudget.maxUnavailable=',
          '--set',
          'verifier.podDisruptionBudget.minAvailable=2',
        ]),
        /: verifier\.podDisruptionBudget\.minAvailable 2 with replicaCount 2 keeps 2 pods up, which allows no eviction/,
      );
    });

    it('reject a minAvailable string or percentage that keeps every replica up, as the disruption controller rounds it', () => {
      const budget = (minAvailable: string, replicas = 2): string[] => [
        '--set',
        `verifier.replicaCount=${replicas}`,
        '--set',
        'verifier.podDisruptionBudget.maxUnavailable=',
        '--set-string',
        `verifier.podDisruptionBudget.minAvailable=${minAvailable}`,
      ];
      for (const [minAvailable, replicas, kept] of [
        ['2', 2, 2], // a string of digits is a count, not a percentage
        ['51%', 2, 2], // ceil(1.02)
        ['100%', 3, 3],
        ['67%', 3, 3], // ceil(2.01)
      ] as const) {
        assert.match(
          rejection(budget(minAvailable, replicas)),
          new RegExp(
            `: verifier\\.podDisruptionBudget\\.minAvailable ${minAvailable} with replicaCount ${replicas} keeps ${kept} pods up, which allows no eviction`,
          ),
        );
      }
      for (const [minAvailable, replicas] of [
        ['50%', 2],
        ['66%', 3],
        ['1', 2],
      ] as const) {
        const pdb = find(
          render(undefined, budget(minAvailable, replicas)),
          'PodDisruptionBudget',
          VERIFIER,
        );
        assert.equal(String(at(pdb, 'spec', 'minAvailable')), minAvailable);
      }
      assert.match(
        rejection(['--set-string', 'verifier.podDisruptionBudget.maxUnavailable=00%']),
        /: verifier\.podDisruptionBudget\.maxUnavailable: 0 allows no eviction/,
      );
    });

    it('reject a signer build namespace the verifier exempts', () => {
      for (const namespace of [NAMESPACE, 'kube-system']) {
        assert.match(
          rejection(['--set', `signer.namespaces={${namespace}}`]),
          new RegExp(`: signer\\.namespaces: ${namespace} is exempt from the verifier`),
        );
      }
      assert.match(
        rejection([
          '--set',
          'verifier.config.exemptNamespaces={kube-system,ci-*}',
          '--set',
          'signer.namespaces={ci-builds}',
        ]),
        /: signer\.namespaces: ci-builds is exempt from the verifier/,
      );
    });

    it('reject a signer build namespace the verifier never sees, with or without the verifier in this release', () => {
      const unchecked =
        /: signer\.namespaces: builds is exempt from the verifier \(or is kube-system, the release namespace, or left out of the admission webhooks\)/;
      // Left out of the admission webhooks: the verifier is never asked about its pods.
      assert.match(
        rejection([
          '--set',
          'admission.mode=admissionWebhooks',
          '--set',
          'admission.webhooks.excludeNamespaces={builds}',
          '--set',
          'signer.namespaces={builds}',
        ]),
        unchecked,
      );
      // The same namespace is a build namespace when the webhooks do call the verifier for it.
      render(undefined, [
        '--set',
        'admission.mode=admissionWebhooks',
        '--set',
        'signer.namespaces={builds}',
      ]);
      // kube-system even when exemptNamespaces no longer names it.
      assert.match(
        rejection([
          '--set',
          'verifier.config.exemptNamespaces=null',
          '--set',
          'signer.namespaces={kube-system}',
        ]),
        /: signer\.namespaces: kube-system is exempt from the verifier/,
      );
      // The release namespace without the verifier: its Role would reach the controller's key Secrets.
      assert.match(
        rejection(['--set', 'verifier.enabled=false', '--set', `signer.namespaces={${NAMESPACE}}`]),
        new RegExp(`: signer\\.namespaces: ${NAMESPACE} is exempt from the verifier`),
      );
    });

    it('reject mutual TLS with the admission webhooks, which kube-apiserver calls without a client certificate', () => {
      for (const mode of ['admissionWebhooks', 'both']) {
        assert.match(
          rejection(['-f', join(CI_DIR, 'mtls-values.yaml'), '--set', `admission.mode=${mode}`]),
          new RegExp(
            `: verifier\\.tls\\.clientCA \\(mutual TLS\\) cannot be used with admission\\.mode ${mode}: kube-apiserver sends admission webhooks no client certificate`,
          ),
        );
      }
    });

    it('reject a NetworkPolicy that would keep Prometheus out of /metrics', () => {
      assert.match(
        rejection([
          '--set',
          'verifier.serviceMonitor.enabled=true',
          '--set',
          'verifier.networkPolicy.enabled=true',
          '--set',
          'verifier.networkPolicy.ingressFrom[0].ipBlock.cidr=10.0.0.0/24',
        ]),
        /: verifier\.networkPolicy\.ingressFrom admits only the listed peers and serviceMonitor is enabled: add Prometheus/,
      );
    });

    it('reject a ServiceMonitor in another namespace with no CA it could read there', () => {
      assert.match(
        rejection([
          '--set',
          'verifier.serviceMonitor.enabled=true',
          '--set',
          'verifier.serviceMonitor.namespace=monitoring',
        ]),
        /: verifier\.serviceMonitor\.namespace monitoring: Prometheus reads the scrape CA in the ServiceMonitor's namespace/,
      );
    });
  });
  describe('the signer controller (signer.controller)', () => {
    const CONTROLLER = `${SIGNER}-controller`;
    const enabled = [
      '--set',
      'signer.image.repository=registry.example.com/platform/kpack-trust-signer',
      '--set',
      'signer.controller.enabled=true',
      '--set',
      'signer.controller.serviceMonitor.enabled=true',
      '--set',
      'signer.controller.notary.defaultUrl=https://notary.example',
      '--set',
      'signer.controller.notary.allowedUrls={https://second.example}',
      // Every namespace, with the Build's own registry credentials: the cluster-wide Secret grant,
      // which must be asked for by name (refused without it, below).
      '--set',
      'signer.controller.buildCredentialsClusterWide=true',
    ];

    it('is not rendered unless enabled', () => {
      assert.deepEqual(
        render().filter((o) => o.metadata.name.startsWith(CONTROLLER)),
        [],
      );
    });

    it('renders valid objects: Deployment, ServiceAccount, RBAC, Service, PDB, ServiceMonitor', () => {
      const objects = render(undefined, enabled);
      validateAll(objects);
      const mine = kinds(objects.filter((o) => o.metadata.name.startsWith(CONTROLLER)));
      assert.deepEqual(mine, [
        `ClusterRole//${CONTROLLER}-build-credentials`,
        `ClusterRole//${CONTROLLER}-builds`,
        `ClusterRoleBinding//${CONTROLLER}-build-credentials`,
        `ClusterRoleBinding//${CONTROLLER}-builds`,
        `Deployment/${NAMESPACE}/${CONTROLLER}`,
        `PodDisruptionBudget/${NAMESPACE}/${CONTROLLER}`,
        `Role/${NAMESPACE}/${CONTROLLER}-keys`,
        `RoleBinding/${NAMESPACE}/${CONTROLLER}-keys`,
        `Service/${NAMESPACE}/${CONTROLLER}-metrics`,
        `ServiceAccount/${NAMESPACE}/${CONTROLLER}`,
        `ServiceMonitor/${NAMESPACE}/${CONTROLLER}`,
      ]);
      const container = at(
        find(objects, 'Deployment', CONTROLLER),
        'spec',
        'template',
        'spec',
        'containers',
        0,
      );
      const args = at(container, 'args') as string[];
      assert.equal(args[0], 'controller');
      assert.ok(args.includes(`--namespace=${NAMESPACE}`));
      assert.ok(args.includes('--default-notary-url=https://notary.example'));
      assert.ok(args.includes('--allow-notary-url=https://second.example'));
      assert.ok(args.includes('--max-key-secrets-per-namespace=200'));
      assert.ok(args.includes('--max-workers-per-namespace=1'));
      assert.ok(args.includes('--sign-timeout=60'));
      assert.deepEqual(at(container, 'readinessProbe', 'httpGet'), {
        path: '/readyz',
        port: 'metrics',
      });
    });

    it('writes Secrets and Leases only in its own namespace; the Builds role holds no Secret', () => {
      const objects = render(undefined, enabled);
      assert.deepEqual(
        at(findClusterScoped(objects, 'ClusterRole', `${CONTROLLER}-builds`), 'rules'),
        [
          {
            apiGroups: ['kpack.io'],
            resources: ['builds'],
            verbs: ['get', 'list', 'watch', 'patch'],
          },
          { apiGroups: ['kpack.io'], resources: ['images'], verbs: ['get'] },
          { apiGroups: [''], resources: ['events'], verbs: ['create'] },
        ],
      );
      assert.deepEqual(at(find(objects, 'Role', `${CONTROLLER}-keys`), 'rules'), [
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'create'] },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
        {
          apiGroups: ['coordination.k8s.io'],
          resources: ['leases'],
          resourceNames: ['kpack-trust-signer-controller'],
          verbs: ['get', 'update'],
        },
      ]);
    });

    it("reads a build namespace's service accounts and Secrets only with buildCredentials: service-account (the default)", () => {
      const objects = render(undefined, enabled);
      assert.deepEqual(
        at(findClusterScoped(objects, 'ClusterRole', `${CONTROLLER}-build-credentials`), 'rules'),
        [{ apiGroups: [''], resources: ['serviceaccounts', 'secrets'], verbs: ['get'] }],
      );
      const argsOf = (rendered: typeof objects): string[] =>
        at(
          find(rendered, 'Deployment', CONTROLLER),
          'spec',
          'template',
          'spec',
          'containers',
          0,
          'args',
        ) as string[];
      assert.ok(argsOf(objects).includes('--build-credentials=service-account'));

      const own = render(undefined, [
        ...enabled,
        '--set',
        'signer.controller.buildCredentials=controller',
      ]);
      validateAll(own);
      assert.deepEqual(
        own.filter((o) => o.metadata.name === `${CONTROLLER}-build-credentials`),
        [],
      );
      assert.ok(argsOf(own).includes('--build-credentials=controller'));
      const scoped = render(undefined, [
        ...enabled,
        '--set',
        'signer.controller.watchNamespaces={builds}',
        '--set',
        'signer.controller.buildCredentials=controller',
      ]);
      assert.ok(
        !JSON.stringify(
          at(find(scoped, 'Role', `${CONTROLLER}-builds`, 'builds'), 'rules'),
        ).includes('secrets'),
      );
      assert.match(
        rejection(['--set', 'signer.controller.buildCredentials=both']),
        /buildCredentials/,
      );
    });

    it('refuses get on every Secret in the cluster unless buildCredentialsClusterWide asks for it', () => {
      const byDefault = enabled.filter(
        (a) => a !== 'signer.controller.buildCredentialsClusterWide=true',
      );
      byDefault.splice(byDefault.lastIndexOf('--set'), 1);
      assert.equal(byDefault.length, enabled.length - 2);
      assert.match(
        rejection(byDefault),
        /: signer\.controller: buildCredentials service-account with watchNamespaces \[\] would let the controller get every Secret in the cluster; list the build namespaces in signer\.controller\.watchNamespaces \(a Role in each\), set signer\.controller\.buildCredentials=controller, or grant it cluster-wide with signer\.controller\.buildCredentialsClusterWide=true/,
      );
      // Either documented way out renders, and neither reads Secrets cluster-wide.
      for (const extra of [
        ['--set', 'signer.controller.watchNamespaces={builds}'],
        ['--set', 'signer.controller.buildCredentials=controller'],
      ]) {
        const objects = render(undefined, [...byDefault, ...extra]);
        validateAll(objects);
        for (const clusterRole of objects.filter((o) => o.kind === 'ClusterRole')) {
          assert.ok(
            !JSON.stringify(at(clusterRole, 'rules')).includes('secrets'),
            clusterRole.metadata.name,
          );
        }
      }
    });

    it('refuses a terminationGracePeriodSeconds not above signTimeoutSeconds', () => {
      // The default grace period (90 s) against a sign timeout equal to it: the kubelet could kill
      // the leader while it still publishes the Build in hand.
      const [first] = rejection([
        ...enabled,
        '--set',
        'signer.controller.signTimeoutSeconds=90',
      ]).split('\n');
      assert.equal(
        first,
        'Error: execution error at (kpack-trust/templates/validate.yaml:5:4): signer.controller.terminationGracePeriodSeconds (90) must be greater than signer.controller.signTimeoutSeconds (90), or a Build still being signed at SIGTERM is killed before it is published and the Lease released',
      );
      const objects = render(undefined, [
        ...enabled,
        '--set',
        'signer.controller.signTimeoutSeconds=89',
      ]);
      const deployment = objects.find(
        (o) => o.kind === 'Deployment' && o.metadata.name === CONTROLLER,
      );
      assert.ok(deployment);
      assert.equal(at(deployment, 'spec', 'template', 'spec', 'terminationGracePeriodSeconds'), 90);
    });

    it('with watchNamespaces: a Role per namespace and no ClusterRole', () => {
      const objects = render(undefined, [
        ...enabled,
        '--set',
        'signer.controller.watchNamespaces={builds,staging}',
      ]);
      validateAll(objects);
      assert.equal(objects.filter((o) => o.kind.startsWith('Cluster')).length, 0);
      for (const namespace of ['builds', 'staging']) {
        assert.deepEqual(
          (at(find(objects, 'Role', `${CONTROLLER}-builds`, namespace), 'rules') as unknown[]).at(
            -1,
          ),
          { apiGroups: [''], resources: ['serviceaccounts', 'secrets'], verbs: ['get'] },
        );
        find(objects, 'RoleBinding', `${CONTROLLER}-builds`, namespace);
      }
      const args = at(
        find(objects, 'Deployment', CONTROLLER),
        'spec',
        'template',
        'spec',
        'containers',
        0,
        'args',
      ) as string[];
      assert.deepEqual(
        args.filter((a) => a.startsWith('--watch-namespace=')),
        ['--watch-namespace=builds', '--watch-namespace=staging'],
      );
    });

    it("passes each namespace's repository prefixes as --allow-repository NS=PREFIX, and none by default", () => {
      const argsOf = (extra: readonly string[]): string[] =>
        at(
          find(render(undefined, [...enabled, ...extra]), 'Deployment', CONTROLLER),
          'spec',
          'template',
          'spec',
          'containers',
          0,
          'args',
        ) as string[];
      const bare = argsOf([]);
      assert.deepEqual(
        bare.filter((a) => a.startsWith('--allow-repository') || a.startsWith('--require-repo')),
        [],
      );
      const listed = argsOf([
        '--set-json',
        'signer.controller.repositoryAllowlist={"team-b":["registry.example.com/team-b","docker.io/team-b"],"team-a":["registry.example.com/team-a"]}',
        '--set',
        'signer.controller.requireRepositoryAllowlist=true',
      ]);
      assert.deepEqual(
        listed.filter((a) => a.startsWith('--allow-repository') || a.startsWith('--require-repo')),
        [
          '--allow-repository=team-a=registry.example.com/team-a',
          '--allow-repository=team-b=registry.example.com/team-b',
          '--allow-repository=team-b=docker.io/team-b',
          '--require-repository-allowlist',
        ],
      );
    });

    it('refuses a repository allowlist entry that is not namespace: [registry prefix]', () => {
      for (const bad of [
        '{"Team-A":["registry.example.com/team-a"]}',
        '{"team-a":["team-a/app"]}',
        '{"team-a":["registry.example.com/team-a/"]}',
        '{"team-a":["registry.example.com/Team-A"]}',
        '{"team-a":[]}',
        '{"team-a":"registry.example.com/team-a"}',
      ]) {
        assert.match(
          rejection([...enabled, '--set-json', `signer.controller.repositoryAllowlist=${bad}`]),
          // Helm names the key for a bad value, and only the key itself for a bad key.
          /repositoryAllowlist|invalid propertyName 'Team-A'/,
          bad,
        );
      }
    });

    it('requires the signer image in the operator’s registry', () => {
      assert.match(
        // enabled without its first pair, the signer image.
        rejection(enabled.slice(2)),
        /signer\.image\.repository is required: the image as pushed to your registry, e\.g\. registry\.example\.com\/platform\/kpack-trust-signer/,
      );
    });

    it('refuses an http default notary URL and unknown keys', () => {
      assert.match(
        rejection(['--set', 'signer.controller.notary.defaultUrl=http://notary.example']),
        /defaultUrl/,
      );
      assert.match(rejection(['--set', 'signer.controller.bogus=1']), /bogus/);
      assert.match(
        rejection(['--set', 'signer.controller.maxKeySecretsPerNamespace=0']),
        /maxKeySecretsPerNamespace/,
      );
    });
  });
});
