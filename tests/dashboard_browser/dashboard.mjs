// Drives `aikit dashboard` in headless Chromium for tests/test_dashboard_browser.py.
//
//   node dashboard.mjs URL SCREENSHOT USER_DATA_DIR
//
// A line protocol with the Python test, one JSON object per line: this script prints
// {"step": "connected"} once the page is open and its event stream is live, then waits for the
// test to start a run ({"trace_id": ...} on stdin); it waits for that run to appear in the list
// without a reload (server-sent events), opens it and waits for its running waterfall, prints
// {"step": "running", ...} (screenshot SCREENSHOT-running.png); after {"step": "finish"} on stdin it waits for the run to end in the
// list and the waterfall, takes a screenshot and prints {"step": "done", ...}. Any failure
// prints {"step": "error", "message": ...} and exits 1.
import readline from "node:readline";
import { chromium } from "playwright-core";

const [url, screenshot, userDataDir] = process.argv.slice(2);
const WAIT = { timeout: 60_000 };
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function receive() {
  const { value, done } = await input.next();
  if (done) throw new Error("the test closed stdin");
  return JSON.parse(value);
}
function say(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const problems = [];
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium", headless: true, chromiumSandbox: false, args: FLAGS,
    viewport: { width: 1280, height: 860 },
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") problems.push("console: " + msg.text()); });
  page.on("pageerror", (err) => problems.push("page error: " + err.message));
  await page.goto(url);
  await page.waitForSelector('#live[data-state="connected"]', WAIT);
  await page.evaluate(() => { window.aikitTestMarker = "same page"; });
  say({ step: "connected", noRuns: await page.isVisible("#no-runs") });

  const { trace_id: traceId } = await receive();
  const row = `#runs tbody tr[data-trace-id="${traceId}"]`;
  await page.waitForSelector(`${row}[data-status="running"]`, WAIT);
  const sameDocument = await page.evaluate(() => window.aikitTestMarker === "same page");
  await page.click(row);
  const waterfall = `#waterfall .aikit-waterfall[data-trace-id="${traceId}"]`;
  await page.waitForSelector(`${waterfall} tr.aikit-span[data-status="running"]`, WAIT);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-running.png"), fullPage: true });
  say({
    step: "running", sameDocument,
    rowText: await page.textContent(row),
    runningBars: await page.locator(`${waterfall} tr.aikit-span[data-status="running"]`).count(),
    bars: await page.locator(`${waterfall} div.aikit-bar`).count(),
  });

  await receive(); // {"step": "finish"}: the test ended the run
  await page.waitForSelector(`${row}[data-status="error"]`, WAIT);
  await page.waitForFunction((sel) => {
    const wf = document.querySelector(sel);
    return wf && !wf.querySelector('tr.aikit-span[data-status="running"]')
      && wf.querySelector('tr.aikit-span[data-status="error"]');
  }, waterfall, WAIT);
  const bars = await page.$$eval(`${waterfall} tr.aikit-span`, (rows) => rows.map((tr) => {
    const bar = tr.querySelector("div.aikit-bar");
    const box = bar.getBoundingClientRect();
    return {
      name: tr.querySelector("td").textContent, depth: Number(tr.dataset.depth), kind: tr.dataset.kind,
      status: tr.dataset.status, colour: getComputedStyle(bar).backgroundColor,
      width: box.width, height: box.height, left: box.left, tooltip: bar.title,
    };
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  say({
    step: "done", bars, problems,
    sameDocument: await page.evaluate(() => window.aikitTestMarker === "same page"),
    rowText: await page.textContent(row),
    selected: await page.getAttribute(row, "class"),
    summary: await page.textContent(`${waterfall} .aikit-waterfall-summary`),
  });
} catch (err) {
  say({ step: "error", message: String(err && err.stack || err), problems });
  process.exitCode = 1;
} finally {
  if (context) await context.close();
}
process.exit();
