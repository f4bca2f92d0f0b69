/**
 * `kpack-trust-verifier check`: the webhook's decision for a list of images, for CI and humans.
 * It loads the same config and runs the same engine as `serve`, prints the decision as JSON and
 * maps it to an exit code: 0 allowed, 1 denied, 2 error (bad config, no images, or notary
 * unavailable under `failure: error`).
 */
import { isTrustError, type DownloadLimits } from '@kpack-trust/common';
import { loadConfig } from '../config/load.js';
import { ImagePolicyEngine, type PodDecision } from '../policy/engine.js';
import type { FetcherFactory } from '../trust/notary-clients.js';

/** What the command prints and how it exits. */
export interface CheckResult {
  readonly exitCode: 0 | 1 | 2;
  /** Pretty-printed JSON, newline-terminated. */
  readonly output: string;
  /** The config's warnings (patterns that match nothing), also in the JSON; for stderr. */
  readonly warnings?: readonly string[];
}

/** Test hooks; the command line uses none of them. */
export interface CheckOptions {
  readonly now?: () => Date;
  readonly fetcherFor?: FetcherFactory;
  readonly limits?: Partial<DownloadLimits>;
}

/** Decides `images` as one pod in `namespace` under the config at `configPath`. */
export async function runCheck(
  configPath: string,
  images: readonly string[],
  namespace = 'default',
  options: CheckOptions = {},
): Promise<CheckResult> {
  if (images.length === 0) {
    return failed(
      'USAGE',
      'check needs at least one image: check --config FILE [--namespace NS] IMAGE…',
    );
  }
  let engine: ImagePolicyEngine | undefined;
  try {
    const config = await loadConfig(configPath);
    engine = new ImagePolicyEngine({
      config,
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.fetcherFor === undefined ? {} : { fetcherFor: options.fetcherFor }),
      ...(options.limits === undefined ? {} : { limits: options.limits }),
    });
    const decision = await engine.decide({
      containers: images.map((image) => ({ image })),
      annotations: {},
      namespace,
    });
    return {
      exitCode: decision.status.allowed ? 0 : 1,
      output: render(decision, namespace, config.warnings),
      ...(config.warnings.length === 0 ? {} : { warnings: config.warnings }),
    };
  } catch (error) {
    if (isTrustError(error)) return failed(error.code, error.message);
    return failed('INTERNAL', error instanceof Error ? error.message : String(error));
  } finally {
    await engine?.close();
  }
}

function render(decision: PodDecision, namespace: string, warnings: readonly string[]): string {
  const { status } = decision;
  const document = {
    allowed: status.allowed,
    namespace,
    ...(status.reason === undefined ? {} : { reason: status.reason }),
    auditAnnotations: status.auditAnnotations ?? {},
    images: decision.images.map((d) => ({
      image: d.image,
      result: d.result,
      code: d.code,
      reason: d.reason,
      ...(d.digest === undefined ? {} : { digest: d.digest }),
      ...(d.role === undefined ? {} : { role: d.role }),
      ...(d.tag === undefined ? {} : { tag: d.tag }),
      ...(d.rule === undefined ? {} : { rule: d.rule }),
      durationMs: Math.round(d.durationMs * 10) / 10,
    })),
    ...(warnings.length === 0 ? {} : { warnings }),
  };
  return `${JSON.stringify(document, null, 2)}\n`;
}

function failed(code: string, message: string): CheckResult {
  return { exitCode: 2, output: `${JSON.stringify({ error: { code, message } }, null, 2)}\n` };
}
