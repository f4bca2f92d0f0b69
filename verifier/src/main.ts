#!/usr/bin/env node
/**
 * `kpack-trust-verifier`: the program's one entry point, where the engine, the HTTP layer and the
 * process lifecycle are wired together.
 *
 *   serve --config FILE                        the HTTPS ImagePolicyWebhook backend
 *   check --config FILE [--namespace NS] IMAGE…  the same decision for CI and humans
 *   check-config [--skip-tls] FILE               is this a config serve would start with?
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { packageVersion } from '@kpack-trust/common';
import { runCheck } from './cli/check.js';
import { CHECK_CONFIG_USAGE, runCheckConfig } from './cli/check-config.js';
import { loadConfig } from './config/load.js';
import { createLogSink } from './http/log-sink.js';
import { createJsonLogger, isLogLevel, type Logger } from './http/logger.js';
import { ImagePolicyEngine } from './policy/engine.js';
import { serve } from './server.js';

/** Where the CLI writes; injectable so tests can run it in-process. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

const USAGE = `Usage: kpack-trust-verifier <command> [options]

Commands:
  serve --config FILE                          run the HTTPS ImagePolicyWebhook backend
  check --config FILE [--namespace NS] IMAGE…  decide images as one pod and print the decision as JSON
  check-config [--skip-tls] FILE               validate a config file and the files it names, offline

Run "kpack-trust-verifier <command> --help" for the options of a command;
"kpack-trust-verifier --version" prints the version.
`;

const SERVE_USAGE = `Usage: kpack-trust-verifier serve --config FILE [--log-level LEVEL] [--drain-seconds N]

Serves the ImagePolicyWebhook over HTTPS as the config's "listen" section says:
  POST /, POST /image-policy   ImageReview (imagepolicy.k8s.io/v1alpha1)
  POST /mutate                 AdmissionReview of a Pod: decided; verified tags pinned to digests
  POST /validate               AdmissionReview of a workload: its pod template decided, never patched
  GET /healthz, /readyz        liveness; readiness (503 while shutting down)
  GET /metrics                 Prometheus metrics
A POST past the fixed load limits (bodies held, POSTs in flight) is answered 503 with
"Connection: close", unread; the apiserver retries it. GETs are never refused.
The config file and the TLS certificate, key and client CA are reloaded when they change (the
config also on SIGHUP); an invalid new config is logged and the previous one kept. SIGTERM or
SIGINT shuts down gracefully: readyz turns 503, in-flight reviews finish, the process exits 0;
a second one exits at once (143 or 130) with the logs written out. Logs are JSON lines on stdout.

Options:
  --config FILE        the verifier config (YAML)
  --log-level LEVEL    debug, info, warn or error (default: $LOG_LEVEL, else info)
  --drain-seconds N    answer readyz 503 for N seconds before closing the listener (default 0)
  -h, --help           this text

Exit status: 0 after a graceful shutdown, 2 when the server cannot start, 143/130 at a second
SIGTERM/SIGINT during the shutdown.
`;

const CHECK_USAGE = `Usage: kpack-trust-verifier check --config FILE [--namespace NS] IMAGE…

Decides the images as the webhook would decide one pod holding them in namespace NS (default
"default") and prints the decision as JSON: allowed, reason, audit annotations, and per image the
result, reason, digest, signing role and rule.

Options:
  --config FILE      the verifier config (YAML)
  --namespace NS     the pod's namespace (default "default")
  -h, --help         this text

Exit status: 0 allowed, 1 denied, 2 error (invalid config, no image, notary unavailable under
"failure: error").
`;

/** Thrown for a command line we cannot run; the message is shown with {@link usagePointer}. */
class UsageError extends Error {}

/** The one line shown after a usage mistake: where the usage of that command is. */
export function usagePointer(command: string | undefined): string {
  const help =
    command === 'serve' || command === 'check' || command === 'check-config'
      ? `kpack-trust-verifier ${command} --help`
      : 'kpack-trust-verifier --help';
  return `Run "${help}" for the usage.`;
}

type Parsed = ReturnType<typeof parseArgs>;

function parse(
  args: readonly string[],
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'],
  positionals: boolean,
): Parsed {
  try {
    return parseArgs({
      args: [...args],
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: positionals,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

function stringOption(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === 'string' ? value : undefined;
}

/** Runs the command line; resolves to the exit status. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serveCommand(rest, io);
      case 'check':
        return await checkCommand(rest, io);
      case 'check-config':
        return await checkConfigCommand(rest, io);
      case '-h':
      case '--help':
      case 'help':
        io.stdout(USAGE);
        return 0;
      case '--version':
      case 'version':
        io.stdout(`${packageVersion('@kpack-trust/verifier', import.meta.url)}\n`);
        return 0;
      case undefined:
        throw new UsageError(
          'no command given; the commands are "serve", "check" and "check-config"',
        );
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    // The mistake and where to read more: a screen of usage would bury the one line that matters.
    io.stderr(`kpack-trust-verifier: ${error.message}\n${usagePointer(command)}\n`);
    return 2;
  }
}

/** A config's warnings, one stderr line each, besides the JSON that also holds them. */
function printWarnings(warnings: readonly string[] | undefined, io: CliIo): void {
  for (const warning of warnings ?? []) io.stderr(`kpack-trust-verifier: warning: ${warning}\n`);
}

async function checkConfigCommand(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parse(args, { 'skip-tls': { type: 'boolean' } }, true);
  if (parsed.values['help'] === true) {
    io.stdout(CHECK_CONFIG_USAGE);
    return 0;
  }
  const [file, ...extra] = parsed.positionals;
  if (file === undefined || extra.length > 0) throw new UsageError('name exactly one config FILE');
  const result = await runCheckConfig(file, { skipTls: parsed.values['skip-tls'] === true });
  printWarnings(result.warnings, io);
  (result.exitCode === 0 ? io.stdout : io.stderr)(result.output);
  return result.exitCode;
}

async function checkCommand(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parse(args, { config: { type: 'string' }, namespace: { type: 'string' } }, true);
  if (parsed.values['help'] === true) {
    io.stdout(CHECK_USAGE);
    return 0;
  }
  const config = stringOption(parsed, 'config');
  if (config === undefined) throw new UsageError('--config FILE is required');
  if (parsed.positionals.length === 0) throw new UsageError('name at least one IMAGE');
  const result = await runCheck(
    config,
    parsed.positionals,
    stringOption(parsed, 'namespace') ?? 'default',
  );
  printWarnings(result.warnings, io);
  io.stdout(result.output);
  return result.exitCode;
}

async function serveCommand(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parse(
    args,
    {
      config: { type: 'string' },
      'log-level': { type: 'string' },
      'drain-seconds': { type: 'string' },
    },
    false,
  );
  if (parsed.values['help'] === true) {
    io.stdout(SERVE_USAGE);
    return 0;
  }
  const configPath = stringOption(parsed, 'config');
  if (configPath === undefined) throw new UsageError('--config FILE is required');
  const level = stringOption(parsed, 'log-level') ?? io.env['LOG_LEVEL'] ?? 'info';
  if (!isLogLevel(level))
    throw new UsageError(`--log-level must be debug, info, warn or error, not "${level}"`);
  const drainText = stringOption(parsed, 'drain-seconds') ?? '0';
  const drainSeconds = Number(drainText);
  if (!/^\d+(\.\d+)?$/.test(drainText) || drainSeconds > 600) {
    throw new UsageError(
      `--drain-seconds must be a number of seconds up to 600, not "${drainText}"`,
    );
  }
  // Decision logs go to stdout through pino's asynchronous destination (http/log-sink.ts).
  const logger = createJsonLogger({ level, sink: createLogSink(1) });
  installCrashLogging(logger);

  let engine: ImagePolicyEngine | undefined;
  let running;
  try {
    running = await serve({
      configPath,
      logger,
      drainDelayMs: drainSeconds * 1000,
      engine: {
        loadConfig,
        createEngine: (config, observer) => (engine = new ImagePolicyEngine({ config, observer })),
      },
    });
  } catch (error) {
    logger.error('server.start-failed', { config: configPath, error });
    await logger.flush?.();
    io.stderr(
      `kpack-trust-verifier: cannot serve: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    await engine?.close();
    return 2;
  }
  await running.stopped;
  await engine?.close();
  return 0;
}

/** A bug must still leave one JSON line saying what happened before the process dies. */
function installCrashLogging(logger: Logger): void {
  const crashed = (error: unknown): void => {
    logger.error('process.crashed', { error });
    // process.exit does not wait for the sink's asynchronous writes: write the queue out now.
    logger.flushSync?.();
    process.exit(70);
  };
  process.on('uncaughtException', crashed);
  process.on('unhandledRejection', crashed);
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/** Runs the program on process.argv; the bin/ entry npm links calls it, as does a direct run. */
export function main(): void {
  const io: CliIo = {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    env: process.env,
  };
  runCli(process.argv.slice(2), io).then(
    (code) => {
      // serve leaves nothing worth waiting for once it has stopped (idle notary sockets, timers).
      if (process.argv[2] === 'serve') process.exit(code);
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(
        `kpack-trust-verifier: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exit(2);
    },
  );
}

if (invokedDirectly()) main();
