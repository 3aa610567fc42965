'use strict';
// Shared by the DAP client tests: start `aikit debug` (TCP or stdio) with a DebugClient attached,
// bounded waits, and a teardown that always ends the adapter process.

const assert = require('node:assert/strict');
const cp = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

const AIKIT = path.resolve(__dirname, process.env.AIKIT_BIN || '../../.venv/bin/aikit');
const FIXTURES = path.join(__dirname, 'fixtures');
const PROGRAM = path.join(FIXTURES, 'program.lua');
const ERRORS = path.join(FIXTURES, 'error.lua');
const LOOP = path.join(FIXTURES, 'loop.lua');
const THREAD = { threadId: 1 };
const TEST = { timeout: 30000 };
const WAIT_MS = 15000;
const READY = /aikit debug: waiting for a debugger \(DAP\) on [\d.]+:(\d+)/;

const live = new Set(); // adapters still running: killed if this process ends early
process.on('exit', () => { for (const proc of live) proc.kill('SIGKILL'); });

/** `promise`, or a rejection naming `what` after `ms`. */
function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    timer.unref(); // a wait left behind by a finished test must not hold the run open
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function event(dc, name, ms) {
  return within(dc.waitForEvent(name), `the '${name}' event`, ms);
}

/** The environment of an adapter: ours without AIKIT_* settings, with a private data directory. */
function adapterEnv(dataDir) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('AIKIT_')) env[key] = value;
  }
  env.AIKIT_DATA_DIR = dataDir;
  return env;
}

/** Spawn `aikit ARGS`; the returned adapter records its output and exit. */
function spawnAdapter(t, args, stdin) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aikit-dap-test-'));
  const proc = cp.spawn(AIKIT, args, { env: adapterEnv(dataDir), stdio: [stdin, 'pipe', 'pipe'] });
  live.add(proc);
  const adapter = { proc, dataDir, stdout: '', stderr: '', dc: null };
  adapter.exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => { live.delete(proc); resolve({ code, signal }); });
  });
  adapter.spawned = new Promise((resolve, reject) => {
    proc.on('spawn', resolve);
    proc.on('error', (err) => reject(new Error(`cannot start ${AIKIT}: ${err.message} (set AIKIT_BIN)`)));
  });
  proc.stderr.setEncoding('utf8'); // stdout stays binary: DebugClient reads Buffers from it in --stdio mode
  proc.stdout.on('data', (data) => { adapter.stdout += data.toString('utf8'); });
  proc.stderr.on('data', (data) => { adapter.stderr += data; });
  t.after(() => shutdown(adapter));
  return adapter;
}

/** Disconnect (ending the debuggee), then make sure the process is gone. */
async function shutdown(adapter) {
  const { proc, dc } = adapter;
  if (dc && proc.exitCode === null && proc.signalCode === null) {
    await within(dc.disconnectRequest({ terminateDebuggee: true }), 'disconnect', 3000).catch(() => {});
  }
  if (dc) dc.stopAdapter(); // closes the socket (TCP mode)
  if (proc.stdin) proc.stdin.end();
  const gone = await within(adapter.exited, 'exit', 5000).catch(() => null);
  if (gone === null) {
    proc.kill('SIGKILL');
    await adapter.exited;
  }
  fs.rmSync(adapter.dataDir, { recursive: true, force: true });
}

/** `aikit debug --port 0 SCRIPT`, once it listens: the adapter, with `port` set. */
async function listenTcp(t, script) {
  const adapter = spawnAdapter(t, ['debug', '--port', '0', script], 'ignore');
  await adapter.spawned;
  adapter.port = await within(new Promise((resolve, reject) => {
    const look = () => {
      const m = READY.exec(adapter.stderr);
      if (m) resolve(Number(m[1]));
    };
    adapter.proc.stderr.on('data', look);
    look();
    adapter.exited.then(({ code }) => reject(new Error(`aikit debug exited (${code}) before listening:\n${adapter.stderr}`)));
  }), 'aikit debug to print its port', 30000);
  return adapter;
}

/** A DebugClient connected to an adapter's TCP port (DebugClient.start(port)). */
async function connectTcp(adapter, port = adapter.port) {
  const dc = new DebugClient(AIKIT, 'debug', 'aikit');
  await within(dc.start(port), `a connection to port ${port}`);
  // DebugClient does not handle socket errors (a write after the adapter exited would crash the run).
  dc._socket.on('error', (err) => { adapter.socketError = err; });
  adapter.dc = dc;
  return dc;
}

/** `aikit debug --port 0 SCRIPT` with a DebugClient connected to the port it prints. */
async function startTcp(t, script) {
  const adapter = await listenTcp(t, script);
  await connectTcp(adapter);
  return adapter;
}

/** initialize (waiting for `initialized`), launch, `configure()`, configurationDone. */
async function launch(dc, launchArgs, configure = async () => {}) {
  const initialized = event(dc, 'initialized');
  const init = await dc.initializeRequest();
  await initialized;
  await dc.launchRequest(launchArgs);
  await configure();
  await dc.configurationDoneRequest();
  return init.body;
}

/** Send a step/continue-like request and return [reason, [[frame name, line], ...]] of the next stop. */
async function stopAfter(dc, send) {
  const stopped = event(dc, 'stopped');
  await send();
  const ev = await stopped;
  assert.equal(ev.body.threadId, 1);
  const trace = await dc.stackTraceRequest(THREAD);
  return [ev.body.reason, trace.body.stackFrames.map((f) => [f.name, f.line]), trace.body.stackFrames, ev];
}

async function evaluate(dc, expression, frameId, context = 'watch') {
  return (await dc.evaluateRequest({ expression, frameId, context })).body;
}

async function topFrameId(dc) {
  return (await dc.stackTraceRequest(THREAD)).body.stackFrames[0].id;
}

/** Collect every event named `name` (from now on). */
function record(dc, name) {
  const seen = [];
  dc.on(name, (e) => seen.push(e));
  return seen;
}

function stdoutOf(outputs) {
  return outputs.filter((e) => e.body.category === 'stdout').map((e) => e.body.output).join('');
}

/** Connect a DebugClient to an adapter's stdin/stdout (`aikit debug --stdio`, as an IDE does). */
function connectStdio(adapter) {
  const dc = new DebugClient(AIKIT, 'debug', 'aikit');
  dc.defaultTimeout = WAIT_MS; // with pipes (no socket) DebugClient applies its own timeouts
  dc.connect(adapter.proc.stdout, adapter.proc.stdin);
  adapter.dc = dc;
  return dc;
}

module.exports = {
  AIKIT, FIXTURES, PROGRAM, ERRORS, LOOP, THREAD, TEST, WAIT_MS,
  within, event, spawnAdapter, listenTcp, connectTcp, startTcp, connectStdio, launch, stopAfter, evaluate, topFrameId, record, stdoutOf,
};
