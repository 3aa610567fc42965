'use strict';
// aikit Lua debugger for VS Code: no build step, no dependencies besides VS Code's API.
//
// launch: VS Code starts `aikit debug --stdio` as the debug adapter (DAP on its stdin/stdout);
//         the launch request carries program, args and stopOnEntry.
// attach: VS Code connects to a DAP port that aikit already serves: a kernel started with
//         `aikit serve --dap-port PORT` (or AIKIT_DAP_PORT), or `aikit debug --port PORT script.lua`.

const vscode = require('vscode');

const DEBUG_TYPE = 'aikit';
const DEFAULT_HOST = '127.0.0.1';

/**
 * What adapter a debug configuration needs, as plain data (the factory turns it into VS Code's
 * descriptor classes): { kind: 'executable', command, args, options } or { kind: 'server', port, host }.
 * Throws an Error whose message is meant for the user when the configuration cannot work.
 */
function adapterFor(configuration) {
  const request = configuration.request;
  if (request === 'launch') {
    const options = configuration.cwd ? { cwd: configuration.cwd } : undefined;
    return { kind: 'executable', command: configuration.aikitPath || 'aikit', args: ['debug', '--stdio'], options };
  }
  if (request === 'attach') {
    const port = Number(configuration.port);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new Error(`aikit attach: "port" must be the DAP port of a kernel or of \`aikit debug --port\` (got ${JSON.stringify(configuration.port)})`);
    }
    return { kind: 'server', port, host: configuration.host || DEFAULT_HOST };
  }
  throw new Error(`aikit: unknown request ${JSON.stringify(request)} (use "launch" or "attach")`);
}

class AikitAdapterFactory {
  createDebugAdapterDescriptor(session) {
    const adapter = adapterFor(session.configuration);
    if (adapter.kind === 'executable') {
      return new vscode.DebugAdapterExecutable(adapter.command, adapter.args, adapter.options);
    }
    return new vscode.DebugAdapterServer(adapter.port, adapter.host);
  }
}

class AikitConfigurationProvider {
  /** F5 without a launch.json: debug the Lua file in the active editor. */
  resolveDebugConfiguration(folder, configuration) {
    if (!configuration.type && !configuration.request && !configuration.name) {
      const editor = vscode.window.activeTextEditor;
      if (editor && editor.document.languageId === 'lua') {
        return { type: DEBUG_TYPE, request: 'launch', name: 'aikit: debug the current Lua file', program: '${file}' };
      }
    }
    if (configuration.request === 'launch' && !configuration.program) {
      return vscode.window.showErrorMessage('aikit: set "program" to the Lua script to debug.').then(() => undefined);
    }
    return configuration;
  }
}

function activate(context) {
  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory(DEBUG_TYPE, new AikitAdapterFactory()),
    vscode.debug.registerDebugConfigurationProvider(DEBUG_TYPE, new AikitConfigurationProvider()),
  );
}

function deactivate() {}

module.exports = { activate, deactivate, adapterFor, DEBUG_TYPE };
