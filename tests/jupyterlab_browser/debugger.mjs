// Drives JupyterLab's own debugger panel on an aikit notebook in headless Chromium, for
// tests/debug/test_jupyterlab_debugger_browser.py.
//
//   node debugger.mjs NOTEBOOK_URL BREAK_LINE SCREENSHOT USER_DATA_DIR
//
// Opens the notebook (its first cell holds the code), waits for the kernel, enables the debugger
// (the bug button of the notebook toolbar), sets a breakpoint by clicking the editor's breakpoint
// gutter at BREAK_LINE, runs the cell and waits until the Callstack panel shows the stop and the
// Variables panel lists the locals. Prints one JSON line: {"step": "paused", frames, variables,
// breakpoints} (frames: [{name, location}], variables: [{name, detail}] as the tree shows them),
// with a screenshot at SCREENSHOT; or {"step": "error", message, ...} and exit status 1 (with a
// screenshot at SCREENSHOT's name + "-failed"). AIKIT_DRIVER_CONSOLE=1 copies the page's console and
// the debug requests on the kernel's websocket to stderr; AIKIT_DRIVER_WAIT_MS bounds each wait.
import { chromium } from "playwright-core";

const [url, breakLine, screenshot, userDataDir] = process.argv.slice(2);
const WAIT = { timeout: Number(process.env.AIKIT_DRIVER_WAIT_MS || 90_000) };
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function say(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const problems = [];
let context;
let page;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium", headless: true, chromiumSandbox: false, args: FLAGS,
    viewport: { width: 1400, height: 900 },
  });
  page = context.pages()[0] ?? await context.newPage();
  page.on("pageerror", (err) => problems.push("page error: " + err.message));
  // Debug requests on the kernel's websocket: how many await their reply, and when the last moved.
  const debugTraffic = { pending: 0, last: Date.now() };
  page.on("websocket", (ws) => {
    const watch = (sent) => (frame) => {
      const text = typeof frame.payload === "string" ? frame.payload : frame.payload.toString("latin1");
      const m = text.match(/"msg_type":\s*"(debug_request|debug_reply)"/);
      if (!m) return;
      debugTraffic.pending += sent && m[1] === "debug_request" ? 1 : !sent && m[1] === "debug_reply" ? -1 : 0;
      debugTraffic.last = Date.now();
      if (process.env.AIKIT_DRIVER_CONSOLE) {
        process.stderr.write(`ws ${sent ? ">" : "<"} ${m[1]} ${(text.match(/"command":\s*"\w+"/) || [""])[0]}\n`);
      }
    };
    ws.on("framesent", watch(true));
    ws.on("framereceived", watch(false));
  });
  page.on("console", (msg) => { if (process.env.AIKIT_DRIVER_CONSOLE) process.stderr.write(`console ${msg.type()}: ${msg.text()}\n`); });
  await page.goto(url);

  // The notebook is open and its kernel (aikit) is idle.
  const cell = page.locator(".jp-Notebook .jp-CodeCell").first();
  await cell.locator(".cm-content").waitFor(WAIT);
  await page.waitForSelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', WAIT);

  // Enable the debugger: the breakpoint gutter appears in the cell's editor.
  const bug = page.locator(".jp-DebuggerBugButton").first();
  await bug.waitFor(WAIT);
  await page.waitForFunction(() => {
    const b = document.querySelector(".jp-DebuggerBugButton");
    return b && !b.hasAttribute("disabled") && !b.querySelector("[disabled]");
  }, null, WAIT);
  // JupyterLab's notebook handler sends a burst of debugInfo requests as the page settles; a click
  // on the bug button while they are in flight can leave its toggle half done (the session never
  // starts, the sidebar stays titled "-"). Click once the debug traffic is quiet.
  const quietSince = Date.now() + WAIT.timeout;
  while (debugTraffic.pending > 0 || Date.now() - debugTraffic.last < 2000) {
    if (Date.now() > quietSince) throw new Error(`the debug requests never settled (${debugTraffic.pending} pending)`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await cell.locator(".jp-InputPrompt").click(); // the notebook is the current widget (the toggle checks it)
  await bug.click();
  const gutter = cell.locator(".cm-gutter.cm-breakpoint-gutter");
  await gutter.waitFor(WAIT);
  // The debugger session is started once the sidebar is titled with the notebook (until then it
  // shows "-" and a gutter click sets nothing).
  const notebookName = decodeURIComponent(new URL(url).pathname.split("/").pop());
  await page.locator(".jp-DebuggerSidebar").getByText(notebookName, { exact: true }).first().waitFor(WAIT);

  // Click the breakpoint gutter beside line BREAK_LINE (located by its line number).
  const number = cell.locator(".cm-lineNumbers .cm-gutterElement", { hasText: new RegExp(`^${breakLine}$`) });
  await number.waitFor(WAIT);
  const row = await number.boundingBox();
  const column = await gutter.boundingBox();
  await page.mouse.click(column.x + column.width / 2, row.y + row.height / 2);
  await page.locator(".jp-DebuggerBreakpoint").first().waitFor(WAIT);
  const breakpoints = await page.locator(".jp-DebuggerBreakpoint").allTextContents();

  // Run the cell; it stops at the breakpoint.
  await cell.locator(".cm-content").click();
  await page.keyboard.press("Shift+Enter");
  await page.locator(".jp-DebuggerCallstackFrame").first().waitFor(WAIT);
  await page.locator(".jp-DebuggerVariables-name", { hasText: /^n$/ }).first().waitFor(WAIT);

  const frames = await page.locator(".jp-DebuggerCallstackFrame").evaluateAll((nodes) => nodes.map((node) => ({
    name: node.querySelector(".jp-DebuggerCallstackFrame-name")?.textContent ?? "",
    location: node.querySelector(".jp-DebuggerCallstackFrame-location")?.textContent ?? "",
  })));
  const variables = await page.locator(".jp-DebuggerVariables-name").evaluateAll((nodes) => nodes.map((node) => ({
    name: node.textContent,
    detail: node.parentElement.querySelector(":scope > .jp-DebuggerVariables-detail")?.textContent ?? null,
  })));
  await page.screenshot({ path: screenshot });
  say({ step: "paused", frames, variables, breakpoints, problems });
  await context.close();
  process.exit(0);
} catch (err) {
  if (page) await page.screenshot({ path: screenshot.replace(/\.png$/, "-failed.png") }).catch(() => {});
  say({ step: "error", message: String(err && err.stack || err), problems });
  if (context) await context.close().catch(() => {});
  process.exit(1);
}
