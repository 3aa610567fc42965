// aikit dashboard page: lists runs from /api/runs, shows a run's waterfall from
// /api/runs/<source>/<id>/waterfall, and refreshes both when the server-sent event stream
// /api/events says something changed (no polling from the page).
"use strict";

const state = { selected: null, loadingRuns: false, runsAgain: false };

function query() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams();
  for (const name of ["kind", "status", "agent"]) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  params.set("errors_first", form.elements.errors_first.checked ? "1" : "0");
  return params.toString();
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 0.01) return (seconds * 1000).toFixed(2) + " ms";
  if (seconds < 1) return Math.round(seconds * 1000) + " ms";
  if (seconds < 60) return seconds.toFixed(2) + " s";
  return Math.floor(seconds / 60) + " min " + Math.floor(seconds % 60) + " s";
}

function fmtCost(usd) {
  if (usd === null || usd === undefined) return "";
  return usd < 1 ? "$" + Number(usd.toPrecision(4)) : "$" + usd.toFixed(2);
}

function fmtTime(epoch) {
  if (!epoch) return "";
  const d = new Date(epoch * 1000);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function renderRuns(runs) {
  const body = document.querySelector("#runs tbody");
  const rows = [];
  for (const run of runs) {
    const tr = document.createElement("tr");
    tr.dataset.runId = run.id;
    tr.dataset.source = run.source;
    tr.dataset.status = run.status;
    tr.dataset.kind = run.kind;
    if (run.trace_id) tr.dataset.traceId = run.trace_id;
    const badge = document.createElement("span");
    badge.className = "badge " + run.status;
    badge.textContent = run.status;
    cell(tr, "").appendChild(badge);
    cell(tr, run.kind);
    const name = cell(tr, run.name, "run-name");
    if (run.error) name.title = run.error;
    cell(tr, fmtTime(run.started_at));
    const duration = cell(tr, fmtDuration(run.duration_s) + (run.running ? "…" : ""), "num duration");
    if (run.running) duration.dataset.runningSince = run.started_at;
    cell(tr, run.errors ? run.spans + " (" + run.errors + " failed)" : String(run.spans), "num");
    cell(tr, run.input_tokens || run.output_tokens ? run.input_tokens + " / " + run.output_tokens : "", "num");
    cell(tr, fmtCost(run.cost_usd), "num");
    if (state.selected && state.selected.id === run.id && state.selected.source === run.source) tr.classList.add("selected");
    tr.addEventListener("click", () => select(run));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  document.getElementById("no-runs").hidden = runs.length > 0;
}

async function loadRuns() {
  if (state.loadingRuns) { state.runsAgain = true; return; }
  state.loadingRuns = true;
  try {
    do {
      state.runsAgain = false;
      const response = await fetch("/api/runs?" + query(), { cache: "no-store" });
      if (response.ok) renderRuns((await response.json()).runs);
    } while (state.runsAgain);
  } finally {
    state.loadingRuns = false;
  }
}

async function loadDetail() {
  const run = state.selected;
  if (!run) return;
  const response = await fetch("/api/runs/" + run.source + "/" + encodeURIComponent(run.id) + "/waterfall",
                               { cache: "no-store" });
  if (state.selected !== run) return;
  const pane = document.getElementById("waterfall");
  if (response.ok) {
    pane.innerHTML = await response.text(); // server-rendered, escaped; no script (and the CSP forbids inline script)
  } else {
    pane.textContent = "cannot load this run: " + response.status + " " + (await response.text());
  }
}

function select(run) {
  state.selected = { id: run.id, source: run.source, traceId: run.trace_id };
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = run.name;
  for (const tr of document.querySelectorAll("#runs tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.runId === run.id && tr.dataset.source === run.source);
  }
  history.replaceState(null, "", "#" + run.source + "/" + run.id);
  loadDetail();
}

function tickRunning() {
  const now = Date.now() / 1000;
  for (const td of document.querySelectorAll("td.duration[data-running-since]")) {
    td.textContent = fmtDuration(Math.max(0, now - Number(td.dataset.runningSince))) + "…";
  }
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.addEventListener("hello", () => {
    live.dataset.state = "connected";
    live.textContent = "live";
    loadRuns(); // anything that changed while we were not connected
  });
  events.addEventListener("change", (event) => {
    const change = JSON.parse(event.data);
    loadRuns();
    const selected = state.selected;
    if (selected && (change.full || change.records || (selected.traceId && change.traces.includes(selected.traceId)))) {
      loadDetail();
    }
  });
  events.onerror = () => {
    live.dataset.state = "reconnecting";
    live.textContent = "reconnecting…";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filters").addEventListener("input", loadRuns);
  document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  const hash = location.hash.slice(1);
  if (hash.includes("/")) {
    const [source, id] = [hash.slice(0, hash.indexOf("/")), hash.slice(hash.indexOf("/") + 1)];
    select({ id, source, name: id, trace_id: source === "trace" ? id : null });
  }
  loadRuns();
  connect();
  setInterval(tickRunning, 1000);
});
