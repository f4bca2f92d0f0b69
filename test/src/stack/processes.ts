/**
 * Starting, probing and stopping the stack's daemons. Every child started here is tracked, killed
 * on `stop()`, and killed again from the process's exit and signal hooks if a test run crashes —
 * nothing is ever killed that was not started here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { join } from 'node:path';

/** A daemon this module started and still owns. */
export interface Daemon {
  /** The name used in logs and errors (`notary-server`, …). */
  readonly name: string;
  readonly pid: number;
  /** The loopback port it listens on. */
  readonly port: number;
  /** Its stdout and stderr, interleaved. */
  readonly logFile: string;
  /** How many starts it took (more than one after losing a port race). */
  readonly attempts: number;
  /** True once the process has exited. */
  readonly exited: boolean;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  stop(): Promise<void>;
}

/** How to start one daemon on a port we choose. */
export interface DaemonSpec {
  /** Names the log file and the errors. */
  readonly name: string;
  /** Absolute path of the executable. */
  readonly binary: string;
  /** Directory for the log file; also the child's cwd. */
  readonly workDir: string;
  /** Writes whatever config the port needs and returns the arguments. */
  prepare(port: number): Promise<readonly string[]>;
  /** Resolves true once the daemon answers as healthy; false or a rejection means "not yet". */
  probe(port: number): Promise<boolean>;
  /** How long to wait for health; 20 s by default. */
  readonly timeoutMs?: number;
  /** Where ports come from; a free loopback port by default (tests inject races). */
  readonly allocatePort?: () => Promise<number>;
  /** Starts to try when the port was taken between allocation and bind; 4 by default. */
  readonly maxAttempts?: number;
  /** Extra environment on top of the scrubbed parent environment. */
  readonly env?: Readonly<Record<string, string>>;
}

/** How often a daemon's health is polled while it starts. */
const POLL_MS = 25;
/** How long `stop()` waits after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3000;
/** How much of a failed daemon's log an error quotes. */
const TAIL_BYTES = 3000;

/** Children started here that have not exited yet. */
const live = new Set<ChildProcess>();
let hooksInstalled = false;

/** Temporary work dirs of stacks that have not been stopped. */
const liveDirs = new Set<string>();

/** Removes `dir` from the exit hook too, should the process end before the stack is stopped. */
export function removeOnExit(dir: string): void {
  installHooks();
  liveDirs.add(dir);
}

/** Forgets a dir passed to {@link removeOnExit} (its owner removed it). */
export function forgetOnExit(dir: string): void {
  liveDirs.delete(dir);
}

/**
 * Kills `child` from the exit and signal hooks too, like a daemon {@link launchDaemon} started: for
 * a process started elsewhere (the demo's verifier, whose stderr goes to the terminal).
 */
export function killOnExit(child: ChildProcess): void {
  installHooks();
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** Kills what is still alive and removes live work dirs, synchronously (it runs on `exit`). */
function cleanUpNow(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort: a daemon killed a moment ago may still be writing its log
    }
  }
  liveDirs.clear();
}

/**
 * Makes sure a crashed or interrupted test run leaves no daemon behind. The signal handlers
 * re-raise the signal once nobody else listens for it, so the default behaviour (exit) is kept.
 */
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanUpNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanUpNow();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        if (port > 0) resolve(port);
        else reject(new Error('could not read the port of a loopback listener'));
      });
    });
  });
}

/** The last bytes of a log file, for error messages. */
export async function readTail(file: string, bytes = TAIL_BYTES): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
    const { size } = await handle.stat();
    const length = Math.min(size, bytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } catch (error) {
    return `(log ${file} unreadable: ${String(error)})`;
  } finally {
    await handle?.close();
  }
}

/**
 * The parent's environment minus the variables the daemons read as config overrides
 * (`NOTARY_SERVER_*`, `NOTARY_SIGNER_*`, `REGISTRY_*`), so a developer's shell cannot change them.
 */
export function scrubbedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('NOTARY_') || key.startsWith('REGISTRY_')) continue;
    env[key] = value;
  }
  return env;
}

/** Resolves when the child has exited (immediately if it already has). */
function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Stops one child: SIGTERM, SIGKILL after the grace period, then waits for it to be reaped. */
async function stopChild(child: ChildProcess): Promise<void> {
  const exited = exitOf(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  // Hold the event loop open until the child is reaped, even though it was unref'd at start.
  child.ref();
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => {
        resolve(true);
      }, STOP_GRACE_MS);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** What one start attempt came to. */
type Attempt =
  | { readonly kind: 'healthy'; readonly child: ChildProcess }
  | { readonly kind: 'port-taken' }
  | { readonly kind: 'failed'; readonly error: Error };

/** Go's net package says this when another process bound the port first. */
const PORT_TAKEN = /address already in use/;

/**
 * Starts a daemon on a free port and waits until it is healthy. A start that loses the port to
 * another process (the port is free when chosen, taken when the daemon binds) is retried on a new
 * port; any other exit, or no health within the timeout, fails with the tail of its log.
 */
export async function launchDaemon(spec: DaemonSpec): Promise<Daemon> {
  installHooks();
  const maxAttempts = spec.maxAttempts ?? 4;
  const allocate = spec.allocatePort ?? freePort;
  const logFile = join(spec.workDir, `${spec.name}.log`);
  for (let attempt = 1; ; attempt++) {
    const port = await allocate();
    const args = await spec.prepare(port);
    const outcome = await startOnce(spec, port, args, logFile);
    if (outcome.kind === 'failed') throw outcome.error;
    if (outcome.kind === 'healthy') {
      const { child } = outcome;
      const pid = child.pid ?? -1;
      return {
        name: spec.name,
        pid,
        port,
        logFile,
        attempts: attempt,
        get exited() {
          return child.exitCode !== null || child.signalCode !== null;
        },
        stop: () => stopChild(child),
      };
    }
    if (attempt >= maxAttempts) {
      throw new Error(
        `${spec.name} lost its port to another process ${attempt} times in a row; log ${logFile}:\n` +
          (await readTail(logFile)),
      );
    }
  }
}

async function startOnce(
  spec: DaemonSpec,
  port: number,
  args: readonly string[],
  logFile: string,
): Promise<Attempt> {
  const fd = openSync(logFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn(spec.binary, args, {
      cwd: spec.workDir,
      env: { ...scrubbedEnv(), ...spec.env },
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  let spawnError: Error | undefined;
  child.on('error', (error) => {
    spawnError = error;
  });
  killOnExit(child);
  // A forgotten stop() must not keep the test process alive; the exit hook kills the child then.
  child.unref();

  const exited = exitOf(child);
  const deadline = Date.now() + (spec.timeoutMs ?? 20_000);
  const command = `${spec.binary} ${args.join(' ')}`;
  for (;;) {
    if (spawnError !== undefined) {
      return { kind: 'failed', error: new Error(`cannot start ${command}: ${spawnError.message}`) };
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = await readTail(logFile);
      if (PORT_TAKEN.test(tail)) return { kind: 'port-taken' };
      const how = child.exitCode !== null ? `code ${child.exitCode}` : `signal ${child.signalCode}`;
      return {
        kind: 'failed',
        error: new Error(
          `${spec.name} exited with ${how} before becoming healthy on 127.0.0.1:${port} ` +
            `(${command}); last lines of ${logFile}:\n${tail}`,
        ),
      };
    }
    // A probe that neither answers nor fails (a port some other process accepts on but never
    // answers, say) counts as "not yet" once the probe budget is spent.
    const healthy = await Promise.race([
      spec.probe(port).catch(() => false),
      delay(PROBE_TIMEOUT_MS * 2).then(() => false),
      exited.then(() => false),
    ]);
    if (healthy) return { kind: 'healthy', child };
    if (Date.now() >= deadline) {
      await stopChild(child);
      return {
        kind: 'failed',
        error: new Error(
          `${spec.name} did not become healthy on 127.0.0.1:${port} within ` +
            `${(spec.timeoutMs ?? 20_000) / 1000} s (${command}); last lines of ${logFile}:\n` +
            (await readTail(logFile)),
        ),
      };
    }
    await Promise.race([delay(POLL_MS), exited]);
  }
}

/** Per-probe budget: a probe that hangs is a "not yet". */
const PROBE_TIMEOUT_MS = 1000;

/** True when `GET url` answers 200 over plain HTTP. */
export function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { timeout: PROBE_TIMEOUT_MS }, (res) => {
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

/** True when `GET url` answers 200 over HTTPS with a certificate chaining to `ca`. */
export function httpsOk(url: string, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest(url, { ca, timeout: PROBE_TIMEOUT_MS, agent: false }, (res) => {
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

/** True when a TLS handshake (with a client certificate, for mutual TLS) completes on `port`. */
export function tlsHandshakeOk(port: number, options: ConnectionOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...options, timeout: PROBE_TIMEOUT_MS });
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve(socket.authorized);
    });
    socket.once('timeout', () => socket.destroy());
    socket.once('error', () => {
      resolve(false);
    });
    socket.once('close', () => {
      resolve(false);
    });
  });
}
