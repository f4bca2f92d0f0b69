/**
 * Where the pod is in each object the admission webhooks are sent, and which of its images need a
 * decision. `/validate` reads the pod template of every pod-carrying workload (so `kubectl apply`
 * of an unsigned Deployment fails at once, rather than later as a ReplicaSet's FailedCreate
 * event); `/mutate` reads Pods themselves.
 *
 * Containers are listed as the ImagePolicyWebhook plugin lists them — containers, then
 * initContainers, then ephemeralContainers — and the number of them is checked before any is read,
 * so a pod of a million containers costs one comparison.
 */
import type { AdmissionRequest } from './admission-review.js';
import { describe, isRecord, type JsonRecord } from './json-shape.js';

/** The three lists of a pod spec that name images. */
export type ContainerList = 'containers' | 'initContainers' | 'ephemeralContainers';

const CONTAINER_LISTS: readonly ContainerList[] = [
  'containers',
  'initContainers',
  'ephemeralContainers',
];

/** One container whose image needs a decision, and where it is in its list. */
export interface PodContainer {
  readonly list: ContainerList;
  readonly index: number;
  readonly image: string;
}

/** The pod template of an object: its metadata and pod spec. */
export interface PodTemplate {
  readonly metadata: JsonRecord;
  readonly spec: JsonRecord;
}

/**
 * Where each workload keeps its pod template, by `group/kind` (the core group is empty); an empty
 * path means the object is the pod. CronJobs nest theirs in the job template.
 */
const TEMPLATE_PATHS: ReadonlyMap<string, readonly string[]> = new Map([
  ['/Pod', []],
  ['/ReplicationController', ['spec', 'template']],
  ['apps/Deployment', ['spec', 'template']],
  ['apps/ReplicaSet', ['spec', 'template']],
  ['apps/StatefulSet', ['spec', 'template']],
  ['apps/DaemonSet', ['spec', 'template']],
  ['batch/Job', ['spec', 'template']],
  ['batch/CronJob', ['spec', 'jobTemplate', 'spec', 'template']],
]);

/** The kinds `/validate` reads, as `group/kind` (core group empty): what the chart registers. */
export const WORKLOAD_KINDS: readonly string[] = [...TEMPLATE_PATHS.keys()];

/** True when the request is about a Pod (core group). */
export function isPod(kind: AdmissionRequest['kind']): boolean {
  return kind.group === '' && kind.kind === 'Pod';
}

/** The pod template, none (a template-less ReplicationController), or why the object is unusable. */
export type TemplateLookup =
  | { readonly ok: true; readonly template: PodTemplate | undefined }
  | { readonly ok: false; readonly problem: string };

/**
 * The pod template of `object` of `kind`. An absent template holds no pods (the apiserver's own
 * validation refuses one where it is required); a present one of the wrong shape is malformed.
 */
export function podTemplateOf(kind: AdmissionRequest['kind'], object: JsonRecord): TemplateLookup {
  const path = TEMPLATE_PATHS.get(`${kind.group}/${kind.kind}`);
  if (path === undefined) {
    const name = kind.group === '' ? kind.kind : `${kind.group}/${kind.kind}`;
    return {
      ok: false,
      problem: `objects of kind ${JSON.stringify(name)} carry no pod template this webhook reads`,
    };
  }
  let node: JsonRecord = object;
  let at = 'object';
  for (const field of path) {
    const next = node[field] ?? undefined;
    at = `${at}.${field}`;
    if (next === undefined) return { ok: true, template: undefined };
    if (!isRecord(next))
      return { ok: false, problem: `${at} must be an object, got ${describe(next)}` };
    node = next;
  }
  const metadata = node['metadata'] ?? {};
  if (!isRecord(metadata)) {
    return { ok: false, problem: `${at}.metadata must be an object, got ${describe(metadata)}` };
  }
  const spec = node['spec'] ?? undefined;
  if (spec === undefined) {
    // A Pod always has a spec; a template without one has no containers to run.
    return path.length === 0
      ? { ok: false, problem: 'object.spec must be an object, got nothing' }
      : { ok: true, template: undefined };
  }
  if (!isRecord(spec))
    return { ok: false, problem: `${at}.spec must be an object, got ${describe(spec)}` };
  return { ok: true, template: { metadata, spec } };
}

/** The containers to decide, too many to consider, or why the pod spec is malformed. */
export type ContainerSelection =
  | { readonly ok: true; readonly containers: readonly PodContainer[] }
  | { readonly ok: false; readonly tooMany: number }
  | { readonly ok: false; readonly tooMany?: undefined; readonly problem: string };

/** Every container of `spec` by list, or why not; `max` bounds the work before any is read. */
function containersOf(
  spec: JsonRecord,
  max: number,
):
  | { readonly ok: true; readonly containers: PodContainer[] }
  | Exclude<ContainerSelection, { ok: true }> {
  let total = 0;
  for (const list of CONTAINER_LISTS) {
    const raw = spec[list] ?? [];
    if (!Array.isArray(raw)) {
      return { ok: false, problem: `spec.${list} must be an array, got ${describe(raw)}` };
    }
    total += raw.length;
  }
  if (total > max) return { ok: false, tooMany: total };
  const containers: PodContainer[] = [];
  for (const list of CONTAINER_LISTS) {
    const raw = (spec[list] ?? []) as readonly unknown[];
    for (let index = 0; index < raw.length; index++) {
      const container = raw[index];
      if (!isRecord(container)) {
        return {
          ok: false,
          problem: `spec.${list}[${index}] must be an object, got ${describe(container)}`,
        };
      }
      const image = container['image'];
      // An image the kubelet would have to default is one nobody verified: malformed, not admitted.
      if (typeof image !== 'string' || image.length === 0) {
        return {
          ok: false,
          problem: `spec.${list}[${index}].image must be a non-empty string, got ${describe(image)}`,
        };
      }
      containers.push({ list, index, image });
    }
  }
  return { ok: true, containers };
}

/** `name` of a container, for matching it with the old object's. */
function nameAt(spec: JsonRecord, container: PodContainer): unknown {
  const entry = (spec[container.list] as readonly unknown[])[container.index];
  return isRecord(entry) ? entry['name'] : undefined;
}

/**
 * The containers of `spec` whose image needs a decision. On UPDATE (`old` given) only containers
 * that are new or whose image changed: the others were admitted when they were written, and
 * re-deciding them would let a label change fail on a tag re-signed since, and would ask the
 * apiserver to rewrite ephemeral containers it treats as immutable.
 */
export function containersToReview(
  spec: JsonRecord,
  old: JsonRecord | undefined,
  max: number,
): ContainerSelection {
  const current = containersOf(spec, max);
  if (!current.ok || old === undefined) return current;
  const before = containersOf(old, max);
  // An old object we cannot read vouches for nothing: decide everything.
  if (!before.ok) return current;
  const kept = new Set<string>();
  for (const container of before.containers) {
    const name = nameAt(old, container);
    if (typeof name === 'string') kept.add(`${container.list}\n${name}\n${container.image}`);
  }
  const changed = current.containers.filter((container) => {
    const name = nameAt(spec, container);
    return typeof name !== 'string' || !kept.has(`${container.list}\n${name}\n${container.image}`);
  });
  return { ok: true, containers: changed };
}

/** The apiserver forwards to ImagePolicyWebhook only annotations whose key contains this. */
const FORWARDED_ANNOTATION = '.image-policy.k8s.io/';

/**
 * The template's annotations the ImagePolicyWebhook plugin would forward, so both paths see the
 * same break-glass switch; or why they are malformed.
 */
export function forwardedAnnotations(
  metadata: JsonRecord,
):
  | { readonly ok: true; readonly annotations: Record<string, string> }
  | { readonly ok: false; readonly problem: string } {
  const raw = metadata['annotations'] ?? {};
  if (!isRecord(raw)) {
    return { ok: false, problem: `metadata.annotations must be an object, got ${describe(raw)}` };
  }
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!key.includes(FORWARDED_ANNOTATION)) continue;
    if (typeof value !== 'string') {
      return {
        ok: false,
        problem: `metadata.annotations[${JSON.stringify(key)}] must be a string, got ${describe(value)}`,
      };
    }
    // defineProperty, so a key named "__proto__" stays an ordinary own property.
    Object.defineProperty(annotations, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return { ok: true, annotations };
}
