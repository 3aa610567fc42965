'use strict';
// The VS Code extension in editors/vscode, without VS Code: its package.json contributions agree
// with what extension.js handles, and the adapters its factory describes really work with aikit
// (the `launch` executable is spawned and driven over stdio, the `attach` server is connected to).
// A small stand-in for the `vscode` module records what the extension registers.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const {
  AIKIT, PROGRAM, THREAD, TEST, event, spawnAdapter, listenTcp, connectTcp, connectStdio, stopAfter,
} = require('./helpers');

const EXTENSION_DIR = path.resolve(__dirname, '../../editors/vscode');
const manifest = JSON.parse(fs.readFileSync(path.join(EXTENSION_DIR, 'package.json'), 'utf8'));

// ---- a stand-in for the parts of the vscode API the extension uses
class DebugAdapterExecutable {
  constructor(command, args, options) { Object.assign(this, { command, args, options }); }
}
class DebugAdapterServer {
  constructor(port, host) { Object.assign(this, { port, host }); }
}
const registered = { factories: {}, providers: {} };
const fakeVscode = {
  DebugAdapterExecutable,
  DebugAdapterServer,
  debug: {
    registerDebugAdapterDescriptorFactory(type, factory) { registered.factories[type] = factory; return { dispose() {} }; },
    registerDebugConfigurationProvider(type, provider) { registered.providers[type] = provider; return { dispose() {} }; },
  },
  window: {
    activeTextEditor: undefined,
    showErrorMessage(message) { registered.error = message; return Promise.resolve(undefined); },
  },
};
const realLoad = Module._load;
Module._load = function load(request, ...rest) {
  return request === 'vscode' ? fakeVscode : realLoad.call(this, request, ...rest);
};
const extension = require(path.join(EXTENSION_DIR, manifest.main));
Module._load = realLoad;

const context = { subscriptions: [] };
extension.activate(context);
const debuggerEntry = manifest.contributes.debuggers[0];
const factory = registered.factories[debuggerEntry.type];
const provider = registered.providers[debuggerEntry.type];

/** A configuration as VS Code would hand it over: ${file} and ${workspaceFolder} substituted. */
function substitute(configuration, file) {
  const text = JSON.stringify(configuration)
    .replaceAll('${file}', file)
    .replaceAll('${workspaceFolder}', path.dirname(file));
  return JSON.parse(text);
}

test('package.json contributes the "aikit" debugger for Lua, and extension.js registers it', () => {
  assert.equal(manifest.contributes.debuggers.length, 1);
  assert.equal(debuggerEntry.type, extension.DEBUG_TYPE);
  assert.equal(debuggerEntry.type, 'aikit');
  assert.equal(debuggerEntry.label, 'aikit Lua');
  assert.deepEqual(debuggerEntry.languages, ['lua']);
  assert.deepEqual(manifest.contributes.breakpoints, [{ language: 'lua' }]);
  assert.ok(manifest.activationEvents.includes(`onDebugResolve:${debuggerEntry.type}`));
  assert.ok(fs.existsSync(path.join(EXTENSION_DIR, manifest.main)));
  assert.ok(factory, 'a DebugAdapterDescriptorFactory is registered for the contributed type');
  assert.ok(provider, 'a DebugConfigurationProvider is registered for the contributed type');
  assert.equal(context.subscriptions.length, 2);
  // VS Code refuses an extension without these.
  for (const key of ['name', 'publisher', 'version', 'engines']) assert.ok(manifest[key], key);
  assert.match(manifest.engines.vscode, /^\^1\.\d+\.\d+$/);
});

test('the requests package.json describes are exactly those the factory handles', () => {
  const attributes = debuggerEntry.configurationAttributes;
  assert.deepEqual(Object.keys(attributes).sort(), ['attach', 'launch']);
  assert.deepEqual(Object.keys(attributes.launch.properties).sort(), ['aikitPath', 'args', 'cwd', 'program', 'stopOnEntry']);
  assert.deepEqual(attributes.launch.required, ['program']);
  assert.deepEqual(Object.keys(attributes.attach.properties).sort(), ['host', 'port']);
  assert.deepEqual(attributes.attach.required, ['port']);
  assert.throws(() => extension.adapterFor({ request: 'restart' }), /unknown request/);

  const configurations = [...debuggerEntry.initialConfigurations];
  for (const snippet of debuggerEntry.configurationSnippets) {
    assert.ok(snippet.label.startsWith('aikit Lua: '), snippet.label);
    configurations.push(snippet.body);
  }
  for (const configuration of configurations) {
    assert.equal(configuration.type, debuggerEntry.type);
    assert.ok(configuration.request in attributes, configuration.request);
    for (const required of attributes[configuration.request].required) assert.ok(required in configuration, required);
    for (const key of Object.keys(configuration)) {
      assert.ok(['type', 'request', 'name'].includes(key) || key in attributes[configuration.request].properties,
        `${key} of a ${configuration.request} configuration is described in configurationAttributes`);
    }
  }
  const requests = new Set(debuggerEntry.initialConfigurations.map((c) => c.request));
  assert.deepEqual([...requests].sort(), ['attach', 'launch']);
});

test('launch: the factory starts `aikit debug --stdio` (aikitPath, else aikit on PATH)', () => {
  let descriptor = factory.createDebugAdapterDescriptor({ configuration: { type: 'aikit', request: 'launch', program: 'x.lua' } });
  assert.ok(descriptor instanceof DebugAdapterExecutable);
  assert.equal(descriptor.command, 'aikit');
  assert.deepEqual(descriptor.args, ['debug', '--stdio']);
  assert.equal(descriptor.options, undefined);
  descriptor = factory.createDebugAdapterDescriptor({
    configuration: { type: 'aikit', request: 'launch', program: 'x.lua', aikitPath: '/opt/venv/bin/aikit', cwd: '/tmp' },
  });
  assert.equal(descriptor.command, '/opt/venv/bin/aikit');
  assert.deepEqual(descriptor.options, { cwd: '/tmp' });
});

test('attach: the factory connects to the port (host defaults to 127.0.0.1) and rejects a missing port', () => {
  let descriptor = factory.createDebugAdapterDescriptor({ configuration: { type: 'aikit', request: 'attach', port: 5678 } });
  assert.ok(descriptor instanceof DebugAdapterServer);
  assert.deepEqual({ ...descriptor }, { port: 5678, host: '127.0.0.1' });
  descriptor = factory.createDebugAdapterDescriptor({ configuration: { type: 'aikit', request: 'attach', port: '6000', host: 'localhost' } });
  assert.deepEqual({ ...descriptor }, { port: 6000, host: 'localhost' });
  assert.throws(() => factory.createDebugAdapterDescriptor({ configuration: { type: 'aikit', request: 'attach' } }), /"port"/);
});

test('F5 without launch.json debugs the active Lua file; a launch without program is refused', async () => {
  fakeVscode.window.activeTextEditor = { document: { languageId: 'lua' } };
  try {
    const resolved = provider.resolveDebugConfiguration(undefined, {});
    assert.deepEqual({ type: resolved.type, request: resolved.request, program: resolved.program },
      { type: 'aikit', request: 'launch', program: '${file}' });
  } finally {
    fakeVscode.window.activeTextEditor = undefined;
  }
  const given = { type: 'aikit', request: 'attach', name: 'a', port: 1 };
  assert.equal(provider.resolveDebugConfiguration(undefined, given), given);
  assert.equal(await provider.resolveDebugConfiguration(undefined, { type: 'aikit', request: 'launch', name: 'n' }), undefined);
  assert.match(registered.error, /program/);
});

test('the launch descriptor, run for real, debugs the initial launch configuration', TEST, async (t) => {
  const configuration = substitute({ ...debuggerEntry.initialConfigurations.find((c) => c.request === 'launch'), aikitPath: AIKIT }, PROGRAM);
  const descriptor = factory.createDebugAdapterDescriptor({ configuration });
  assert.equal(descriptor.command, AIKIT);
  const adapter = spawnAdapter(t, descriptor.args, 'pipe');
  await adapter.spawned;
  const dc = connectStdio(adapter);
  await dc.hitBreakpoint(configuration, { path: PROGRAM, line: 10 });
  const terminated = dc.waitForEvent('terminated');
  await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [] });
  await dc.continueRequest(THREAD);
  await terminated;
});

test('the attach descriptor connects to `aikit debug --port` and debugs its script', TEST, async (t) => {
  const adapter = await listenTcp(t, PROGRAM);
  const configuration = { ...debuggerEntry.initialConfigurations.find((c) => c.request === 'attach'), port: adapter.port };
  const descriptor = factory.createDebugAdapterDescriptor({ configuration });
  assert.deepEqual({ ...descriptor }, { port: adapter.port, host: '127.0.0.1' });
  const dc = await connectTcp(adapter, descriptor.port);
  const initialized = event(dc, 'initialized');
  await dc.initializeRequest();
  await initialized;
  await dc.attachRequest(configuration);
  await dc.setBreakpointsRequest({ source: { path: PROGRAM }, breakpoints: [{ line: 12 }] });
  const [reason, frames] = await stopAfter(dc, () => dc.configurationDoneRequest());
  assert.equal(reason, 'breakpoint');
  assert.deepEqual(frames, [['main chunk', 12]]);
  const terminated = event(dc, 'terminated');
  await dc.continueRequest(THREAD);
  await terminated;
});
