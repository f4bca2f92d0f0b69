/**
 * The reconcile's two writes against a test's in-memory cluster, applied as the apiserver applies
 * them: a JSON merge patch of the Build's annotations (null deletes a key), and an Event appended.
 */
import assert from 'node:assert/strict';
import type { ControllerEvent, ReconcileDependencies } from '../../src/controller/reconcile.js';

/** The Builds (Kubernetes objects by name) and Events a test's cluster holds. */
export interface MemoryBuildCluster {
  readonly builds: Map<string, Record<string, unknown>>;
  readonly events: ControllerEvent[];
}

/** `annotateBuild` and `recordEvent` writing into `cluster`; a patch of an unknown Build fails. */
export function memoryBuildWrites(
  cluster: MemoryBuildCluster,
): Pick<ReconcileDependencies, 'annotateBuild' | 'recordEvent'> {
  return {
    annotateBuild: (build, patch) => {
      const object = cluster.builds.get(build.name);
      assert.ok(object, `Build ${build.name} exists`);
      const { annotations } = object['metadata'] as { annotations: Record<string, string> };
      for (const [k, v] of Object.entries(patch)) {
        if (v === null) Reflect.deleteProperty(annotations, k);
        else annotations[k] = v;
      }
      return Promise.resolve();
    },
    recordEvent: (event) => {
      cluster.events.push(event);
      return Promise.resolve();
    },
  };
}
