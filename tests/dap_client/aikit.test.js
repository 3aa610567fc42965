'use strict';
// DAP conformance of `aikit debug`, driven by VS Code's own test client (DebugClient from
// @vscode/debugadapter-testsupport). Each test starts its own `aikit debug` process and ends it.
//
//   AIKIT_BIN=/path/to/aikit node --test aikit.test.js    (default: ../../.venv/bin/aikit)
//
// DebugClient.start(port) connects to a running adapter and then waits for events without any
// time limit (its "debugging the tests" mode), so every wait here goes through within().
// Line numbers refer to fixtures/*.lua.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const {
  PROGRAM, ERRORS, LOOP, THREAD, TEST,
  within, event, spawnAdapter, listenTcp, connectTcp, startTcp, connectStdio, launch, stopAfter, evaluate, topFrameId, record, stdoutOf,
} = require('./helpers');

test('initialize reports the capabilities aikit implements, then the initialized event', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  const initialized = event(dc, 'initialized');
  const caps = (await dc.initializeRequest()).body;
  await initialized;
  for (const name of ['supportsConfigurationDoneRequest', 'supportsConditionalBreakpoints',
    'supportsHitConditionalBreakpoints', 'supportsLogPoints', 'supportsEvaluateForHovers', 'supportsSetVariable',
    'supportsExceptionInfoRequest', 'supportsTerminateRequest', 'supportsLoadedSourcesRequest']) {
    assert.equal(caps[name], true, name);
  }
  assert.equal(caps.supportsStepBack, false);
  assert.deepEqual(caps.exceptionBreakpointFilters.map((f) => f.filter), ['raised', 'uncaught']);
  for (const f of caps.exceptionBreakpointFilters) assert.equal(typeof f.label, 'string');

  const threads = (await dc.threadsRequest()).body.threads;
  assert.deepEqual(threads, [{ id: 1, name: 'Lua' }]);
  // Requests aikit does not implement fail with a message instead of going unanswered.
  await assert.rejects(dc.stepBackRequest(THREAD), /does not support the 'stepBack' request/);
});

test('hitBreakpoint: launch, setBreakpoints and configurationDone stop at the breakpoint', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  const [, , trace] = await within(dc.hitBreakpoint({ program: PROGRAM }, { path: PROGRAM, line: 10 }),
    'hitBreakpoint at program.lua:10');
  const top = trace.body.stackFrames[0];
  assert.equal(top.name, 'main chunk');
  assert.deepEqual(top.source, { name: 'program.lua', path: PROGRAM });
  assert.equal(trace.body.totalFrames, 1);
});

// The start race, repeated: DebugClient.hitBreakpoint (launch alongside the configuration) and the
// same with attach; then a VS Code-like configuration done before the attach, which must still
// stop (the script waits for both). Each round is a fresh `aikit debug --port 0` process.
const ROUNDS = 4;
const REPEATED = { timeout: 30000 * ROUNDS };

async function attachAndHit(dc, port, configurationFirst) {
  const configured = dc.waitForEvent('initialized')
    .then(() => dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [{ line: 10 }] }))
    .then(() => dc.configurationDoneRequest());
  const initialized = dc.initializeRequest();
  const attached = configurationFirst ? Promise.all([initialized, configured]).then(() => dc.attachRequest({ port }))
    : initialized.then(() => dc.attachRequest({ port }));
  const [, , trace] = await Promise.all([configured, attached, dc.assertStoppedLocation('breakpoint', { path: PROGRAM, line: 10 })]);
  return trace;
}

async function runToTheEnd(dc) {
  const terminated = event(dc, 'terminated');
  await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [] });
  await dc.continueRequest(THREAD);
  await terminated;
}

for (const [name, hit] of [
  ['hitBreakpoint (launch)', (dc) => dc.hitBreakpoint({ program: PROGRAM }, { path: PROGRAM, line: 10 })],
  ['attach alongside the configuration', (dc, port) => attachAndHit(dc, port, false)],
  ['attach after configurationDone', (dc, port) => attachAndHit(dc, port, true)],
]) {
  test(`${name} stops at the breakpoint in each of ${ROUNDS} fresh sessions`, REPEATED, async (t) => {
    for (let round = 0; round < ROUNDS; round++) {
      const adapter = await listenTcp(t, PROGRAM);
      const dc = await connectTcp(adapter);
      const [, , trace] = await within(Promise.resolve(hit(dc, adapter.port)).then((r) => (Array.isArray(r) ? r : [null, null, r])),
        `round ${round}: the stop at program.lua:10`);
      assert.equal(trace.body.stackFrames[0].line, 10, `round ${round}`);
      await runToTheEnd(dc);
      await within(dc.disconnectRequest({}), 'disconnect');
      assert.equal((await within(adapter.exited, 'aikit debug to exit')).code, 0, `round ${round}`);
    }
  });
}

test('breakpoints on blank lines move to the next line of code; past the end they are unverified', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  const terminated = event(dc, 'terminated');
  let bps;
  await launch(dc, { program: PROGRAM }, async () => {
    bps = (await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [{ line: 6 }, { line: 500 }] })).body.breakpoints;
    await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [] }); // run without stopping
  });
  assert.equal(bps[0].verified, true);
  assert.equal(bps[0].line, 7);
  assert.equal(bps[1].verified, false);
  assert.match(bps[1].message, /past the last line/);
  await terminated;
});

test('stepIn, next and stepOut stop where a Lua programmer expects', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  await within(dc.hitBreakpoint({ program: PROGRAM }, { path: PROGRAM, line: 10 }), 'the breakpoint at line 10');
  await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [] });

  let [reason, frames] = await stopAfter(dc, () => dc.stepInRequest(THREAD));
  assert.equal(reason, 'step');
  assert.deepEqual(frames, [['add', 3], ['main chunk', 10]]);

  [reason, frames] = await stopAfter(dc, () => dc.nextRequest(THREAD));
  assert.deepEqual(frames, [['add', 4], ['main chunk', 10]]);

  [reason, frames] = await stopAfter(dc, () => dc.stepOutRequest(THREAD));
  assert.equal(reason, 'step');
  assert.deepEqual(frames, [['main chunk', 10]], 'stepOut ends in the caller, back on the calling line');

  [, frames] = await stopAfter(dc, () => dc.nextRequest(THREAD));
  assert.deepEqual(frames, [['main chunk', 9]]);
  [, frames] = await stopAfter(dc, () => dc.nextRequest(THREAD));
  assert.deepEqual(frames, [['main chunk', 10]]);
  const frameId = await topFrameId(dc);
  assert.equal((await evaluate(dc, 'i', frameId)).result, '2');
  assert.equal((await evaluate(dc, 'total', frameId)).result, '1');

  [, frames] = await stopAfter(dc, () => dc.nextRequest(THREAD));
  assert.deepEqual(frames, [['main chunk', 9]], 'next steps over the call to add');

  const terminated = event(dc, 'terminated');
  await dc.continueRequest(THREAD);
  await terminated;
});

test('scopes, variables (paged table expansion), evaluate, setVariable and source', TEST, async (t) => {
  const adapter = await startTcp(t, PROGRAM);
  const { dc } = adapter;
  await within(dc.hitBreakpoint({ program: PROGRAM }, { path: PROGRAM, line: 12 }), 'the breakpoint at line 12');
  const frameId = await topFrameId(dc);

  const scopes = (await dc.scopesRequest({ frameId })).body.scopes;
  assert.deepEqual(scopes.map((s) => s.name), ['Locals', 'Upvalues', 'Globals']);
  assert.equal(scopes[0].presentationHint, 'locals');
  assert.equal(scopes[2].expensive, true);

  const locals = (await dc.variablesRequest({ variablesReference: scopes[0].variablesReference })).body.variables;
  const byName = Object.fromEntries(locals.map((v) => [v.name, v]));
  assert.deepEqual(Object.keys(byName).sort(), ['add', 'config', 'total']);
  assert.equal(byName.total.value, '15');
  assert.equal(byName.total.type, 'integer');
  assert.equal(byName.add.type, 'function');
  const config = byName.config;
  assert.equal(config.type, 'table');
  assert.ok(config.variablesReference > 0);
  assert.equal(config.namedVariables, 3);

  const fields = (await dc.variablesRequest({ variablesReference: config.variablesReference })).body.variables;
  assert.deepEqual(fields.map((v) => v.name), ['items', 'name', 'nested']);
  const items = fields[0];
  assert.equal(items.evaluateName, 'config.items');
  assert.equal(items.indexedVariables, 3);
  assert.equal(fields[1].value, '"aikit"');

  const all = (await dc.variablesRequest({ variablesReference: items.variablesReference })).body.variables;
  assert.deepEqual(all.map((v) => [v.name, v.value]), [['[1]', '10'], ['[2]', '20'], ['[3]', '30']]);
  const page = (await dc.variablesRequest({ variablesReference: items.variablesReference, filter: 'indexed', start: 1, count: 1 })).body.variables;
  assert.deepEqual(page.map((v) => [v.name, v.value]), [['[2]', '20']]);

  const globals = (await dc.variablesRequest({ variablesReference: scopes[2].variablesReference })).body.variables;
  assert.ok(globals.some((v) => v.name === 'arg'), 'the script\'s arg table is a global');

  assert.deepEqual(await evaluate(dc, 'total * 2 + #config.items', frameId), { result: '33', type: 'integer', variablesReference: 0 });
  assert.equal((await evaluate(dc, 'config.name', frameId, 'hover')).result, '"aikit"');
  const table = await evaluate(dc, 'config.nested', frameId, 'repl');
  assert.equal(table.type, 'table');
  const nested = (await dc.variablesRequest({ variablesReference: table.variablesReference })).body.variables;
  assert.deepEqual(nested.map((v) => [v.name, v.value]), [['deep', 'true']]);
  await assert.rejects(dc.evaluateRequest({ expression: 'nosuch.field', frameId, context: 'watch' }), /nosuch/);

  const set = (await dc.setVariableRequest({ variablesReference: scopes[0].variablesReference, name: 'total', value: '100' })).body;
  assert.equal(set.value, '100');
  await dc.setVariableRequest({ variablesReference: items.variablesReference, name: '[2]', value: '99' });
  assert.equal((await evaluate(dc, 'config.items[2]', frameId)).result, '99');

  const source = (await dc.sourceRequest({ source: { path: PROGRAM }, sourceReference: 0 })).body;
  assert.equal(source.content, fs.readFileSync(PROGRAM, 'utf8'));

  const outputs = record(dc, 'output');
  const terminated = event(dc, 'terminated');
  await dc.continueRequest(THREAD);
  await terminated;
  assert.equal(stdoutOf(outputs), 'total\t100\nname\taikit\n', 'the script saw the value set by setVariable');
});

test('conditional and hit-count breakpoints stop only when they hold', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  const stops = [];
  const firstStop = event(dc, 'stopped');
  await launch(dc, { program: PROGRAM }, async () => {
    const bps = (await dc.setBreakpointsRequest({
      source: { path: PROGRAM },
      breakpoints: [{ line: 3, condition: 'b == 4' }, { line: 10, hitCondition: '3' }],
    })).body.breakpoints;
    assert.deepEqual(bps.map((b) => [b.verified, b.line]), [[true, 3], [true, 10]]);
  });

  // Loop iterations 1 and 2 pass line 10 without stopping; the third hit stops.
  let ev = await firstStop;
  assert.equal(ev.body.reason, 'breakpoint');
  let frameId = await topFrameId(dc);
  assert.equal((await evaluate(dc, 'i', frameId)).result, '3');
  stops.push('hit');

  // add(6, 4) is the first call where b == 4.
  let [reason, frames] = await stopAfter(dc, () => dc.continueRequest(THREAD));
  assert.equal(reason, 'breakpoint');
  assert.deepEqual(frames, [['add', 3], ['main chunk', 10]]);
  frameId = await topFrameId(dc);
  assert.equal((await evaluate(dc, 'a', frameId)).result, '6');
  assert.equal((await evaluate(dc, 'b', frameId)).result, '4');
  stops.push('condition');

  // Neither breakpoint holds again: the script ends.
  const terminated = event(dc, 'terminated');
  dc.on('stopped', () => stops.push('unexpected'));
  await dc.continueRequest(THREAD);
  await terminated;
  assert.deepEqual(stops, ['hit', 'condition']);
});

test('a logpoint prints its interpolated message to the debug console and does not stop', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  const stops = record(dc, 'stopped');
  const logged = within(dc.assertOutput('console',
    'add returns 1 (0 + 1)\nadd returns 3 (1 + 2)\nadd returns 6 (3 + 3)\nadd returns 10 (6 + 4)\nadd returns 15 (10 + 5)\n'),
  'the logpoint messages');
  const terminated = event(dc, 'terminated');
  await launch(dc, { program: PROGRAM }, async () => {
    await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [{ line: 4, logMessage: 'add returns {sum} ({a} + {b})' }] });
  });
  await logged;
  await terminated;
  assert.equal(stops.length, 0);
});

test('the "uncaught" exception filter stops at an error() nothing catches', TEST, async (t) => {
  const adapter = await startTcp(t, ERRORS);
  const { dc } = adapter;
  const outputs = record(dc, 'output');
  const stopped = event(dc, 'stopped');
  await launch(dc, { program: ERRORS }, async () => {
    const resp = (await dc.setExceptionBreakpointsRequest({ filters: ['uncaught'] })).body;
    assert.deepEqual(resp.breakpoints, [{ verified: true }]);
  });
  const ev = await stopped;
  assert.equal(ev.body.reason, 'exception');
  assert.match(ev.body.text, /error\.lua:4: value too large: 3$/, 'the pcall-caught error(10) does not stop');
  const frames = (await dc.stackTraceRequest(THREAD)).body.stackFrames;
  assert.deepEqual(frames.map((f) => [f.name, f.line]), [['check', 4], ['main chunk', 12]]);
  assert.equal(frames[0].source.path, ERRORS);
  assert.equal((await evaluate(dc, 'value', frames[0].id)).result, '3');

  const info = (await dc.exceptionInfoRequest(THREAD)).body;
  assert.equal(info.exceptionId, 'LuaError');
  assert.match(info.description, /value too large: 3/);

  const exited = event(dc, 'exited');
  const terminated = event(dc, 'terminated');
  await dc.continueRequest(THREAD);
  assert.equal((await exited).body.exitCode, 1);
  await terminated;
  assert.equal(stdoutOf(outputs), 'caught\tfalse\n');
  await within(dc.disconnectRequest({}), 'disconnect');
  assert.equal((await within(adapter.exited, 'aikit debug to exit')).code, 1);
  assert.match(adapter.stderr, /value too large: 3/);
});

test('the "raised" exception filter also stops at an error that pcall catches', TEST, async (t) => {
  const { dc } = await startTcp(t, ERRORS);
  const stopped = event(dc, 'stopped');
  await launch(dc, { program: ERRORS }, async () => {
    await dc.setExceptionBreakpointsRequest({ filters: ['raised', 'uncaught'] });
  });
  let ev = await stopped;
  assert.equal(ev.body.reason, 'exception');
  assert.match(ev.body.text, /value too large: 10$/);
  let frames = (await dc.stackTraceRequest(THREAD)).body.stackFrames;
  assert.deepEqual(frames.map((f) => f.line), [4, 9]);

  let reason;
  [reason, frames, , ev] = await stopAfter(dc, () => dc.continueRequest(THREAD));
  assert.equal(reason, 'exception');
  assert.match(ev.body.text, /value too large: 3$/);
  assert.deepEqual(frames, [['check', 4], ['main chunk', 12]]);
  const terminated = event(dc, 'terminated');
  await dc.continueRequest(THREAD);
  await terminated;
});

test('the "raised" filter alone stops at an uncaught error too', {
  ...TEST,
}, async (t) => {
  const { dc } = await startTcp(t, ERRORS);
  const first = event(dc, 'stopped');
  await launch(dc, { program: ERRORS }, async () => {
    await dc.setExceptionBreakpointsRequest({ filters: ['raised'] });
  });
  assert.match((await first).body.text, /value too large: 10$/);
  // Both listeners first: the next stop may arrive before the continue response does.
  const terminated = event(dc, 'terminated');
  const stopped = event(dc, 'stopped');
  await dc.continueRequest(THREAD);
  const second = await Promise.race([stopped, terminated.then(() => null)]);
  assert.ok(second, 'no stop at check(3), which nothing catches');
  assert.match(second.body.text, /value too large: 3$/);
});

test('stopOnEntry stops before the script has run any line', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  const outputs = record(dc, 'output');
  const stopped = event(dc, 'stopped');
  await launch(dc, { program: PROGRAM, stopOnEntry: true });
  const ev = await stopped;
  assert.equal(ev.body.reason, 'entry');
  assert.equal(ev.body.threadId, 1);
  assert.equal(stdoutOf(outputs), '');
  const terminated = event(dc, 'terminated');
  await dc.continueRequest(THREAD);
  await terminated;
  assert.equal(stdoutOf(outputs), 'total\t15\nname\taikit\n');
});

test('stopOnEntry stops in the script\'s main chunk, and next goes to its next line', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  const stopped = event(dc, 'stopped');
  await launch(dc, { program: PROGRAM, stopOnEntry: true });
  await stopped;
  const frames = (await dc.stackTraceRequest(THREAD)).body.stackFrames;
  // The first line that runs: Lua reports `local function add ... end` at its closing line.
  assert.deepEqual(frames.map((f) => [f.name, f.line]), [['main chunk', 5]]);
  assert.equal(frames[0].source.path, PROGRAM);
  const [reason, after] = await stopAfter(dc, () => dc.nextRequest(THREAD));
  assert.equal(reason, 'step');
  assert.deepEqual(after, [['main chunk', 7]]);
});

test('stepIn on a line calling a built-in (print) goes to the next line', TEST, async (t) => {
  const { dc } = await startTcp(t, PROGRAM);
  await within(dc.hitBreakpoint({ program: PROGRAM }, { path: PROGRAM, line: 12 }), 'the breakpoint at line 12');
  await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [] });
  const [, frames] = await stopAfter(dc, () => dc.stepInRequest(THREAD));
  assert.deepEqual(frames, [['main chunk', 13]]);
});

test('without breakpoints the script runs to the end: stdout as output events, exited 0, terminated', TEST, async (t) => {
  const adapter = await startTcp(t, PROGRAM);
  const { dc } = adapter;
  const stdout = within(dc.assertOutput('stdout', 'total\t15\nname\taikit\n'), 'the script\'s stdout');
  const exited = event(dc, 'exited');
  const terminated = event(dc, 'terminated');
  await launch(dc, { program: PROGRAM });
  await stdout;
  assert.equal((await exited).body.exitCode, 0);
  await terminated;
  await within(dc.disconnectRequest({}), 'disconnect');
  assert.deepEqual(await within(adapter.exited, 'aikit debug to exit'), { code: 0, signal: null });
  assert.equal(adapter.stdout, 'total\t15\nname\taikit\n', 'in TCP mode the script also writes to its terminal');
});

test('pause stops a running loop; terminate ends the script', TEST, async (t) => {
  const adapter = await startTcp(t, LOOP);
  const { dc } = adapter;
  const looping = within(dc.assertOutput('stdout', 'looping\n'), 'the loop to start');
  await launch(dc, { program: LOOP });
  await looping;
  const [reason, frames] = await stopAfter(dc, () => dc.pauseRequest(THREAD));
  assert.equal(reason, 'pause');
  assert.equal(frames.length, 1, `one frame, the main chunk: ${JSON.stringify(frames)}`);
  assert.equal(frames[0][0], 'main chunk');
  assert.ok(frames[0][1] >= 3 && frames[0][1] <= 6, `paused at line ${frames[0][1]}, inside the loop`);
  assert.equal((await evaluate(dc, 'n > 0', await topFrameId(dc))).result, 'true');

  const terminated = event(dc, 'terminated');
  await dc.terminateRequest({});
  await terminated;
  await within(dc.disconnectRequest({}), 'disconnect');
  const { code } = await within(adapter.exited, 'aikit debug to exit');
  assert.notEqual(code, 0);
});

test('--stdio: DAP on stdin/stdout, as an IDE starts its adapter; the launch request names the program', TEST, async (t) => {
  const adapter = spawnAdapter(t, ['debug', '--stdio'], 'pipe');
  await adapter.spawned;
  const dc = connectStdio(adapter);

  await dc.hitBreakpoint({ program: PROGRAM }, { path: PROGRAM, line: 12 });
  const frameId = await topFrameId(dc);
  assert.equal((await evaluate(dc, 'total', frameId)).result, '15');
  const stdout = dc.assertOutput('stdout', 'total\t15\nname\taikit\n');
  const exited = dc.waitForEvent('exited');
  const terminated = dc.waitForEvent('terminated');
  await dc.continueRequest(THREAD);
  await stdout;
  assert.equal((await exited).body.exitCode, 0);
  await terminated;
  await dc.disconnectRequest({});
  assert.equal((await within(adapter.exited, 'aikit debug to exit')).code, 0);
  assert.ok(adapter.stdout.startsWith('Content-Length: '), 'stdout carries DAP messages only');
  assert.ok(!adapter.stdout.includes('total\t15\n'), 'the script\'s output goes out as output events, not raw on stdout');
});
