// Runs node's test runner over the compiled tests (`*.test.js` under <workspace>/dist/test), one
// file at a time, each under a wall-clock deadline, and prints one line per file; a failing file's
// whole output is printed. Why not one `node --test dir`: on Node 20 a single hung test or a file
// that leaves a handle open stalls that run forever, silently, and a CI log of every test name is
// long enough to bury the one that matters. Here a stall fails the run naming the file, and the
// full output of every file goes to test-results/<suite>.log.
//
// --budget caps the whole suite, so even a run of hung files ends well inside CI's limit.
//
// Each file runs in its own process group (so a stop reaches what it started: notary-server, etcd,
// kube-apiserver, a go build), which also means Ctrl-C at the terminal does not reach it. So a
// SIGINT, SIGTERM or SIGHUP here, like a file's deadline, sends SIGTERM to the group — the file's
// exit hooks then stop its daemons and remove its /tmp work dirs — and SIGKILL only if the group is
// still alive a few seconds later. An interrupted run exits 128 + the signal's number.
//
//   node scripts/node-test.mjs [--suite=NAME] [--file-timeout=S] [--test-timeout=MS] [--budget=S]
//                              [--verbose] ws...
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { constants } from 'node:os';
import { join, relative } from 'node:path';

const options = {
  suite: 'tests',
  fileTimeoutS: 300,
  testTimeoutMs: 120_000,
  budgetS: 1800,
  verbose: false,
};
const workspaces = [];
for (const arg of process.argv.slice(2)) {
  const [flag, value] = arg.split(/=(.*)/s);
  if (flag === '--suite' && value) options.suite = value;
  else if (flag === '--file-timeout' && Number(value) > 0) options.fileTimeoutS = Number(value);
  else if (flag === '--test-timeout' && Number(value) > 0) options.testTimeoutMs = Number(value);
  else if (flag === '--budget' && Number(value) > 0) options.budgetS = Number(value);
  else if (flag === '--verbose') options.verbose = true;
  else if (!arg.startsWith('--')) workspaces.push(arg);
  else {
    console.error(`node-test: unknown option ${arg}`);
    process.exit(2);
  }
}
if (process.env.KPACK_TRUST_TEST_VERBOSE === '1') options.verbose = true;

function testFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return entry.name === 'support' ? [] : testFiles(path);
      return entry.name.endsWith('.test.js') ? [path] : [];
    })
    .sort();
}

const files = workspaces.flatMap((ws) => testFiles(join(ws, 'dist', 'test')));
if (files.length === 0) {
  console.error('node-test: no compiled tests found; run `npm run build` first');
  process.exit(1);
}

mkdirSync('test-results', { recursive: true });
const logPath = join('test-results', `${options.suite}.log`);
const log = createWriteStream(logPath);

const SUMMARY = /^ℹ (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm;

/** How long a stopped file's process group gets between SIGTERM and SIGKILL. */
const STOP_GRACE_MS = 5000;

/** The file running now: its group's id (until the group is reaped), name and output so far. */
let current;

/** Sends `signal` to the whole process group `pid` leads; false once the group is gone. */
function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** True while any process of the group `pid` led is alive (signal 0 only checks). */
const groupAlive = (pid) => signalGroup(pid, 0);

/** SIGTERM to the group, SIGKILL after the grace period; resolves once it is gone (or killed). */
async function stopGroup(pid) {
  if (!signalGroup(pid, 'SIGTERM')) return;
  for (let waited = 0; waited < STOP_GRACE_MS && groupAlive(pid); waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  signalGroup(pid, 'SIGKILL');
}

/** Runs one file under `node --test`; resolves with its output, exit status and whether it timed out. */
function runFile(file, timeoutS) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(
      process.execPath,
      ['--test', '--test-reporter=spec', `--test-timeout=${options.testTimeoutMs}`, file],
      // Its own process group, so a timeout also stops what the file started (notary-server, …).
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
        env: { ...process.env, FORCE_COLOR: '0' },
      },
    );
    const chunks = [];
    const collect = (chunk) => {
      chunks.push(chunk);
      if (options.verbose) process.stdout.write(chunk);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    if (child.pid !== undefined) current = { pid: child.pid, file, chunks };
    let timedOut = false;
    let killTimer;
    // SIGTERM first: a SIGKILL at once would skip the file's exit hooks, which stop its daemons and
    // remove its work dirs (etcd data, CA keys). reapGroup() below catches what outlives the file.
    const timer = setTimeout(() => {
      timedOut = true;
      if (!signalGroup(child.pid, 'SIGTERM')) child.kill('SIGTERM');
      killTimer = setTimeout(() => {
        if (!signalGroup(child.pid, 'SIGKILL')) child.kill('SIGKILL');
      }, STOP_GRACE_MS);
    }, timeoutS * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      const ms = Date.now() - started;
      void reapGroup(child.pid).then((leftRunning) => {
        current = undefined;
        const output = Buffer.concat(chunks).toString('utf8');
        resolve({ output, code, signal, timedOut, leftRunning, ms });
      });
    });
  });
}

/**
 * Whether processes the file started are still running once it has exited (a server a test did not
 * stop). They get 5 s to finish exiting, then are killed, and the file fails: leaking a notary-server
 * into the next file's run is a bug of the test, not noise.
 */
async function reapGroup(pid) {
  if (pid === undefined) return false;
  for (let waited = 0; waited < STOP_GRACE_MS && groupAlive(pid); waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (!groupAlive(pid)) return false;
  signalGroup(pid, 'SIGKILL'); // false when it was gone in between
  return true;
}

/** Set once a signal asked the run to stop; the main loop then starts no further file. */
let interruption;

/**
 * Stops the running file's process group (SIGTERM, SIGKILL after the grace period), keeps its
 * output so far in the log, and exits 128 + the signal's number. A second signal kills at once.
 */
function interrupt(signal) {
  const code = 128 + constants.signals[signal];
  if (interruption !== undefined) {
    if (current !== undefined) signalGroup(current.pid, 'SIGKILL');
    process.exit(code);
  }
  // On SIGHUP the terminal may be gone; a failed write must not end the run before the clean-up.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  const running = current;
  interruption = (async () => {
    if (running !== undefined) {
      console.log(`${options.suite}: ${signal}: stopping ${relative('.', running.file)} …`);
      await stopGroup(running.pid);
      const output = Buffer.concat(running.chunks).toString('utf8');
      log.write(`\n===== ${relative('.', running.file)} (interrupted by ${signal})\n${output}`);
    }
    await new Promise((resolve) => log.end(resolve));
    console.log(`${options.suite}: interrupted by ${signal}; full output so far: ${logPath}`);
    process.exit(code);
  })();
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, interrupt);

const totals = { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
const failed = [];
const suiteStarted = Date.now();
console.log(`${options.suite}: ${files.length} files (full output: ${logPath})`);
for (const [index, file] of files.entries()) {
  const name = relative('.', file);
  const remainingS = options.budgetS - (Date.now() - suiteStarted) / 1000;
  if (remainingS <= 0) {
    failed.push(name);
    console.log(
      `✖ [${index + 1}/${files.length}] ${name}: not run, the ${options.budgetS} s budget is spent`,
    );
    continue;
  }
  const timeoutS = Math.min(options.fileTimeoutS, Math.ceil(remainingS));
  if (interruption !== undefined) await interruption; // never returns: it exits
  const result = await runFile(file, timeoutS);
  if (interruption !== undefined) await interruption;
  log.write(`\n===== ${name}\n${result.output}`);
  const counts = { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
  for (const [, key, value] of result.output.matchAll(SUMMARY)) counts[key] = Number(value);
  for (const key of Object.keys(totals)) totals[key] += counts[key];

  const problems = [];
  if (result.timedOut) {
    problems.push(`did not finish within ${timeoutS} s (a hung test, or a handle left open)`);
  } else if (result.code !== 0) {
    problems.push(`exited ${result.code ?? result.signal}`);
  }
  if (result.leftRunning) problems.push('left processes running after it exited (killed)');
  if (counts.tests === 0 && !result.timedOut) problems.push('ran no tests');
  if (counts.skipped + counts.todo > 0)
    problems.push(`${counts.skipped + counts.todo} skipped or todo`);
  const position = `[${index + 1}/${files.length}]`;
  const figures = `${counts.pass}/${counts.tests} passed, ${(result.ms / 1000).toFixed(1)} s`;
  if (problems.length === 0) {
    console.log(`✔ ${position} ${name}  ${figures}`);
  } else {
    failed.push(name);
    console.log(`✖ ${position} ${name}  ${figures}: ${problems.join('; ')}`);
    if (!options.verbose) console.log(result.output.replace(/^/gm, '    '));
  }
}
await new Promise((resolve) => log.end(resolve));

const seconds = ((Date.now() - suiteStarted) / 1000).toFixed(1);
console.log(
  `${options.suite}: ${totals.tests} tests in ${files.length} files, ${totals.pass} passed, ` +
    `${totals.fail} failed, ${totals.cancelled} cancelled, ${totals.skipped + totals.todo} skipped, ${seconds} s`,
);
if (failed.length > 0) {
  console.log(`${options.suite}: failed: ${failed.join(', ')}`);
  process.exit(1);
}
