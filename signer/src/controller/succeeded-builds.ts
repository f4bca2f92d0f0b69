/**
 * The controller's memory of succeeded Builds by the Image that owns them, so that a Build signs
 * the tags every Build of its Image shares only when no newer Build of that Image has succeeded.
 *
 * kpack v0.17.2 `Image.generateTags` (pkg/apis/build/v1alpha2/image_builds.go) gives every Build
 * of an Image its `spec.tag` and `spec.additionalTags`, plus one tag of its own,
 * `<tag>-b<N>.<yyyymmdd>.<hhmmss>` (`b<N>.…` when the tag is `latest`; none under
 * `imageTaggingStrategy: None`). A shared tag signed at an older Build's digest after a newer Build
 * signed it moves the tag back (a restart's re-list queues `app-build-10` before `app-build-9`; a
 * retry outlives a newer Build; an operator re-runs an old Build). The rule is per tag: a tag is left
 * to the newest succeeded Build that lists it, so a Build's own tag is always its own, and a shared
 * tag that newer Builds dropped (additionalTags edited) stays with the newest Build that has it.
 *
 * "Newer" is kpack's own order: `creationTimestamp` (pkg/reconciler/image/build_list.go sorts an
 * Image's Builds ByCreationTimestamp, and image.go creates the next Build only once the last one
 * is no longer running). The apiserver sets it and no client can change it; the
 * `image.kpack.io/buildNumber` label is the Build creator's word and is not read. Equal timestamps,
 * or a missing one, count as newer on both sides: a tie withholds, it never signs.
 *
 * Whoever may create Builds can add a "newer" succeeded-looking Build naming the Image: that only
 * ever withholds shared tags from older Builds (fail closed) — it cannot make an older digest signed.
 *
 * Fed by the informer with every Build it lists or watches (signed or not), so a decision costs no
 * API call. Bounded: {@link SucceededBuildLimits}; past a bound the answer is `unknown` and the
 * Build withholds every tag. The informer passes no deletions, so an entry a complete list no longer
 * returns is dropped at that list's end, and reconcile re-reads a Build the index names before
 * believing it (a Build deleted since the last list is forgotten then).
 */
import { parseImageReference } from '@kpack-trust/common';
import type { BuildState } from './kpack.js';

/** What the index keeps of one succeeded Build. */
export interface SucceededBuild {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** The uid in its controlling owner reference: the Image whose Builds it is ordered among. */
  readonly imageUid: string;
  /** `metadata.creationTimestamp` in ms; undefined when absent or unreadable (then it counts as newest). */
  readonly createdMs: number | undefined;
  /** Its tags as `repository:tag`, normalised (see {@link tagKey}). */
  readonly tags: readonly string[];
}

/** What the index can say about the succeeded Builds newer than one Build. */
export type NewerBuilds =
  | { readonly kind: 'known'; readonly builds: readonly SucceededBuild[] }
  /** The index was over a bound for this Build: fail closed, sign nothing shared. */
  | { readonly kind: 'unknown'; readonly why: string }
  /** The controller stopped before its first complete list. */
  | { readonly kind: 'stopped' };

/** The index as reconcile sees it. */
export interface SucceededBuildIndex {
  /** Waits for the first complete list of every source, then answers from memory. */
  newerThan(build: BuildState): Promise<NewerBuilds>;
  /** Drops an entry a fresh read showed to be gone or no longer one of the Image's succeeded Builds. */
  forget(namespace: string, name: string): void;
}

/** The bounds of the index. */
export interface SucceededBuildLimits {
  /**
   * Newest Builds kept per Image (kpack's default successBuildHistoryLimit is 10). A Build older
   * than one evicted has that many newer succeeded Builds and is answered `unknown`.
   */
  readonly perImage: number;
  /** Entries per namespace; past it the namespace is answered `unknown` until a list fits. */
  readonly perNamespace: number;
}

const DEFAULT_LIMITS: SucceededBuildLimits = { perImage: 32, perNamespace: 10_000 };

interface Entry extends SucceededBuild {
  /** The list generation of its source in which it was last seen. */
  generation: number;
}

interface ImageRecord {
  readonly builds: Map<string, Entry>;
  /** The newest creation time evicted by the per-Image bound. */
  floorMs: number | undefined;
}

interface NamespaceRecord {
  readonly source: number;
  readonly images: Map<string, ImageRecord>;
  /** Build name → owning Image uid, to find an entry by name. */
  readonly byName: Map<string, string>;
  /** The generation in which an entry was last refused for the namespace bound, if any. */
  refusedIn: number | undefined;
}

/** The index the controller feeds from its informers; see the module comment. */
export class SucceededBuilds implements SucceededBuildIndex {
  private readonly limits: SucceededBuildLimits;
  private readonly namespaces = new Map<string, NamespaceRecord>();
  private readonly generations = new Map<number, number>();
  private readonly ready: Promise<boolean>;
  private settle: (synced: boolean) => void = () => undefined;

  constructor(limits: Partial<SucceededBuildLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.ready = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /** Records a Build the informer listed or watched from `source`; anything but a succeeded Build of an Image removes it. */
  observe(build: BuildState, source: number): void {
    const entry = entryOf(build, this.generation(source));
    if (entry === undefined) {
      this.forget(build.namespace, build.name);
      return;
    }
    let ns = this.namespaces.get(build.namespace);
    if (ns === undefined) {
      ns = { source, images: new Map(), byName: new Map(), refusedIn: undefined };
      this.namespaces.set(build.namespace, ns);
    }
    const previousImage = ns.byName.get(entry.name);
    if (previousImage !== undefined && previousImage !== entry.imageUid) {
      this.forget(build.namespace, build.name);
    }
    let image = ns.images.get(entry.imageUid);
    const known = image?.builds.has(entry.name) === true;
    if (!known && ns.byName.size >= this.limits.perNamespace) {
      ns.refusedIn = entry.generation;
      return;
    }
    if (image === undefined) {
      image = { builds: new Map(), floorMs: undefined };
      ns.images.set(entry.imageUid, image);
    }
    image.builds.set(entry.name, entry);
    ns.byName.set(entry.name, entry.imageUid);
    if (image.builds.size > this.limits.perImage) {
      const oldest = [...image.builds.values()].reduce((a, b) => (olderThan(b, a) ? b : a));
      image.builds.delete(oldest.name);
      ns.byName.delete(oldest.name);
      const evicted = oldest.createdMs ?? Number.POSITIVE_INFINITY;
      image.floorMs = Math.max(image.floorMs ?? evicted, evicted);
    }
  }

  /** A complete list of `source` ended: drop what it did not return, and start a new generation. */
  listed(source: number): void {
    const generation = this.generation(source);
    for (const [namespace, ns] of this.namespaces) {
      if (ns.source !== source) continue;
      for (const [uid, image] of ns.images) {
        for (const [name, entry] of image.builds) {
          if (entry.generation < generation) {
            image.builds.delete(name);
            ns.byName.delete(name);
          }
        }
        if (image.builds.size === 0) ns.images.delete(uid);
      }
      // Every Build of the namespace fitted in this list: the refusals it had are over.
      if (ns.refusedIn !== undefined && ns.refusedIn < generation) ns.refusedIn = undefined;
      if (ns.images.size === 0 && ns.refusedIn === undefined) this.namespaces.delete(namespace);
    }
    this.generations.set(source, generation + 1);
  }

  /** Every source has listed once: answers may be given. */
  synced(): void {
    this.settle(true);
  }

  /** The controller is stopping: a reconcile still waiting for the first list gets `stopped`. */
  stop(): void {
    this.settle(false);
  }

  /** How many Builds the index holds (for tests and logs). */
  get size(): number {
    let n = 0;
    for (const ns of this.namespaces.values()) n += ns.byName.size;
    return n;
  }

  async newerThan(build: BuildState): Promise<NewerBuilds> {
    if (!(await this.ready)) return { kind: 'stopped' };
    const ns = this.namespaces.get(build.namespace);
    if (ns?.refusedIn !== undefined) {
      return {
        kind: 'unknown',
        why: `namespace ${build.namespace} holds more than ${this.limits.perNamespace} succeeded Builds`,
      };
    }
    const imageUid = build.imageUid;
    const image = imageUid === undefined ? undefined : ns?.images.get(imageUid);
    if (image === undefined) return { kind: 'known', builds: [] };
    const created = createdMsOf(build);
    if (image.floorMs !== undefined && (created === undefined || created <= image.floorMs)) {
      return {
        kind: 'unknown',
        why: `its Image has more than ${this.limits.perImage} newer succeeded Builds`,
      };
    }
    const builds = [...image.builds.values()]
      .filter((other) => other.uid !== build.uid && isNewer(other.createdMs, created))
      .sort((a, b) => (olderThan(a, b) ? 1 : olderThan(b, a) ? -1 : 0));
    return { kind: 'known', builds };
  }

  forget(namespace: string, name: string): void {
    const ns = this.namespaces.get(namespace);
    const imageUid = ns?.byName.get(name);
    if (ns === undefined || imageUid === undefined) return;
    ns.byName.delete(name);
    const image = ns.images.get(imageUid);
    image?.builds.delete(name);
    if (image?.builds.size === 0) ns.images.delete(imageUid);
  }

  private generation(source: number): number {
    return this.generations.get(source) ?? 0;
  }
}

/**
 * Which of `build`'s tags are left to a newer succeeded Build of its Image, each with the newest
 * such Build's name; `newer` is what {@link SucceededBuildIndex.newerThan} answered (newest first).
 */
export function tagsLeftToNewer(
  build: Pick<BuildState, 'tags'>,
  newer: readonly SucceededBuild[],
): ReadonlyMap<string, string> {
  const left = new Map<string, string>();
  for (const tag of build.tags) {
    const key = tagKey(tag);
    if (key === undefined) continue;
    const holder = newer.find((other) => other.tags.includes(key));
    if (holder !== undefined && !left.has(tag)) left.set(tag, holder.name);
  }
  return left;
}

/**
 * A tag reference as `repository:tag`, the way the signer reads it (a bare repository is
 * `:latest`), so two spellings kpack could write for one tag compare equal; undefined when it
 * does not parse or names a digest.
 */
export function tagKey(reference: string): string | undefined {
  try {
    const parsed = parseImageReference(reference);
    if (parsed.digest !== undefined) return undefined;
    return `${parsed.name}:${parsed.tag ?? 'latest'}`;
  } catch {
    return undefined;
  }
}

/** Whether a Build created at `otherMs` is to be treated as newer than one created at `thisMs`. */
function isNewer(otherMs: number | undefined, thisMs: number | undefined): boolean {
  // Ties and unknown times count as newer: the cost is a withheld tag, never a rollback.
  if (otherMs === undefined || thisMs === undefined) return true;
  return otherMs >= thisMs;
}

/** Strict creation order for eviction and sorting; an unknown time sorts as newest. */
function olderThan(a: SucceededBuild, b: SucceededBuild): boolean {
  const x = a.createdMs ?? Number.POSITIVE_INFINITY;
  const y = b.createdMs ?? Number.POSITIVE_INFINITY;
  return x < y || (x === y && a.name < b.name);
}

function createdMsOf(build: BuildState): number | undefined {
  if (build.createdAt === undefined) return undefined;
  const ms = Date.parse(build.createdAt);
  return Number.isFinite(ms) ? ms : undefined;
}

function entryOf(build: BuildState, generation: number): Entry | undefined {
  if (build.succeeded !== 'True' || build.latestImage === undefined) return undefined;
  if (build.imageName === undefined || build.imageUid === undefined) return undefined;
  const tags: string[] = [];
  for (const tag of build.tags) {
    const key = tagKey(tag);
    if (key !== undefined && !tags.includes(key)) tags.push(key);
  }
  return {
    namespace: build.namespace,
    name: build.name,
    uid: build.uid,
    imageUid: build.imageUid,
    createdMs: createdMsOf(build),
    tags,
    generation,
  };
}
