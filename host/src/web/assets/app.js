// The runs page: the run API (/v1/runs) rendered, live from a run's event
// stream. No framework, no network but this server. State for tests and
// people is in data- attributes: body[data-state] is "loading", "loaded" or
// "error"; body[data-live] is "streaming" while a run's events arrive and
// "ended" after its `end`; each timeline bar has data-kind and data-status.
"use strict";

const state = { token: null, stream: null, refresh: null };

// The token comes in the URL's fragment (never sent to a server), is kept
// for this tab only, and is taken out of the address bar.
function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem("toolhost-token", token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", rest ? "#" + rest : location.pathname);
  }
  state.token = sessionStorage.getItem("toolhost-token");
  return params;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error.kind + ": " + body.error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    // Through the CSSOM: the policy forbids style attributes, not this.
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("data-")) node.setAttribute(k, String(v));
    else if (k === "href" || k === "title" || k === "id") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function ms(n) {
  if (n === null || n === undefined) return "";
  if (n < 1000) return Math.round(n) + " ms";
  if (n < 60000) return (n / 1000).toFixed(1) + " s";
  return Math.floor(n / 60000) + " min " + Math.round((n % 60000) / 1000) + " s";
}

function when(t) {
  return t ? new Date(t).toLocaleString() : "";
}

function badge(status) {
  return el("span", { class: "badge", "data-status": status }, status);
}

function setLive(text) {
  document.getElementById("live").textContent = text || "";
}

function show(...nodes) {
  const app = document.getElementById("app");
  app.replaceChildren(...nodes.flat().filter(n => n !== null && n !== undefined));
}

function fail(e) {
  document.body.dataset.state = "error";
  show(el("p", { class: "error", "data-error": "true" }, String(e.message || e)));
}

// ---- the list of runs ----

async function list(after) {
  const query = after ? "?limit=20&after=" + encodeURIComponent(after) : "?limit=20";
  const page = await (await api("/v1/runs" + query)).json();
  const views = await Promise.all(page.runs.map(r =>
    api("/v1/runs/" + encodeURIComponent(r.id)).then(x => x.json()).catch(() => null)));
  const rows = page.runs.map((r, i) => {
    const steps = views[i] ? views[i].steps.filter(s => s.kind === "model" && s.final).length : "";
    const link = el("a", { href: "#run=" + encodeURIComponent(r.id) }, r.id);
    return el("tr", { "data-run": r.id, "data-status": r.status },
      el("td", { "data-label": "run" }, link),
      el("td", { "data-label": "status" }, badge(r.status)),
      el("td", { class: "task", "data-label": "task" }, r.task),
      el("td", { "data-label": "models" }, r.chain.join(" → ")),
      el("td", { class: "num", "data-label": "steps" }, steps),
      el("td", { class: "num", "data-label": "duration" }, ms(r.spent_ms)),
      el("td", { "data-label": "started" }, when(r.created_at)));
  });
  const table = el("table", { class: "runs" },
    el("thead", {}, el("tr", {}, ["run", "status", "task", "models", "steps", "duration", "started"]
      .map(h => el("th", {}, h)))),
    el("tbody", {}, rows));
  const more = page.next
    ? el("p", {}, el("button", { onclick: () => list(page.next).catch(fail) }, "older runs"))
    : null;
  const empty = page.runs.length ? null
    : el("p", { class: "note" }, "No runs yet. Start one: POST /v1/runs {\"task\": \"…\"}, or toolhost agent run \"TASK\".");
  show(el("h1", {}, "Runs"), empty, page.runs.length ? table : null, more);
  document.body.dataset.view = "list";
  document.body.dataset.state = "loaded";
}

// ---- one run's timeline ----

// What the event stream says beyond the journal: rows served from the
// journal in this session, and the call in flight.
const live = { journal: new Set(), calling: null };

function modelTags(s) {
  const tags = [];
  const report = s.report || {};
  tags.push(el("span", { class: "tag" }, "served by " + (report.served_by || s.name)));
  if (s.attempts > 1) tags.push(el("span", { class: "tag" }, s.attempts + " attempts"));
  for (const a of report.attempts || []) {
    if (a.error) tags.push(el("span", { class: "tag warn", "data-retry": a.error }, a.model + " #" + a.n + ": " + a.error));
  }
  for (const f of report.fallbacks || []) {
    tags.push(el("span", { class: "tag warn", "data-fallback": f.reason }, "fell back " + f.from + " → " + f.to + " (" + f.reason + ")"));
  }
  if (s.breaker_opens > 0) tags.push(el("span", { class: "tag bad", "data-breaker": "open" }, "breaker seen open"));
  if (!s.final || !s.ok) tags.push(el("span", { class: "tag bad" }, "failed: " + (s.error_kind || "?")));
  return tags;
}

function toolStatus(s) {
  if (s.error_kind === "in_doubt") return "in_doubt";
  if (s.error_kind) return "error";
  if (s.cached) return "cached";
  return "ok";
}

function toolTags(s) {
  const status = toolStatus(s);
  const what = { ok: "ran", cached: "cache hit", in_doubt: "in doubt", error: "error: " + s.error_kind }[status];
  const tags = [el("span", { class: status === "ok" || status === "cached" ? "tag" : "tag bad" }, what)];
  if (!s.final) tags.push(el("span", { class: "tag bad" }, "stopped the run"));
  return tags;
}

function bar(kind, status, start, width, key) {
  const journal = live.journal.has(key);
  return el("div", { class: "axis" },
    el("div", {
      class: "bar", "data-kind": kind, "data-status": status, "data-journal": journal ? "true" : null,
      style: "left:" + start.toFixed(2) + "%;width:" + Math.max(width, 0.4).toFixed(2) + "%",
      title: journal ? "served from the journal" : null,
    }));
}

function timeline(view) {
  const run = view.run;
  const steps = view.steps;
  // The time axis: from the run's creation to its last row (or now).
  const spans = steps.map(s => ({ s, end: s.created_at, start: s.created_at - s.duration_us / 1000 }));
  const t0 = Math.min(run.created_at, ...spans.map(x => x.start));
  const t1 = Math.max(run.finished_at || 0, ...spans.map(x => x.end), t0 + 1);
  const pct = t => (100 * (t - t0)) / (t1 - t0);
  const byStep = new Map();
  for (const x of spans) {
    if (!byStep.has(x.s.step)) byStep.set(x.s.step, []);
    byStep.get(x.s.step).push(x);
  }
  const blocks = [];
  for (const [n, rows] of byStep) {
    const items = rows.map(({ s, start, end }) => {
      const key = n + "." + s.part;
      const kind = s.kind;
      const status = kind === "model" ? (s.final && s.ok ? "ok" : "failed") : toolStatus(s);
      const label = kind === "model" ? "model · " + s.name : "tool · " + s.name;
      return el("div", { class: "row", "data-kind": kind, "data-status": status, "data-step": n, "data-part": s.part },
        el("div", { class: "label" }, label, el("small", {}, ms(s.duration_us / 1000)),
          el("div", { class: "tags" }, kind === "model" ? modelTags(s) : toolTags(s))),
        bar(kind, status, pct(start), pct(end) - pct(start), key));
    });
    blocks.push(el("section", { class: "step", "data-step": n }, el("h3", {}, "step " + n), items));
  }
  if (live.calling && run.status === "running") {
    blocks.push(el("section", { class: "step", "data-step": "live" },
      el("div", { class: "row", "data-kind": live.calling.kind, "data-status": "calling" },
        el("div", { class: "label" }, live.calling.text),
        el("div", { class: "axis" }, el("div", { class: "bar", "data-kind": live.calling.kind, "data-status": "calling", style: "left:98%;width:2%" })))));
  }
  return el("div", { class: "timeline" }, blocks.length ? blocks : el("p", { class: "note" }, "No step journaled yet."));
}

function renderRun(view) {
  const run = view.run;
  const facts = el("dl", { class: "facts" },
    el("dt", {}, "status"), el("dd", {}, badge(run.status), run.reason ? " " + run.reason : ""),
    el("dt", {}, "task"), el("dd", {}, run.task),
    el("dt", {}, "models"), el("dd", {}, run.chain.join(" → ")),
    el("dt", {}, "steps"), el("dd", { "data-steps": view.steps.filter(s => s.kind === "model").length },
      view.steps.filter(s => s.kind === "model").length + " of at most " + run.max_steps),
    el("dt", {}, "spent"), el("dd", {}, ms(run.spent_ms) + " over " + run.sessions + " session(s)" +
      (run.steps_resumed ? ", " + run.steps_resumed + " step(s) served from the journal" : "")),
    el("dt", {}, "started"), el("dd", {}, when(run.created_at)));
  const answer = run.answer ? [el("h2", {}, "Answer"), el("div", { class: "answer", "data-answer": "true" }, run.answer)] : [];
  const cancel = run.status === "running"
    ? el("p", {}, el("button", { "data-action": "cancel", onclick: () => cancelRun(run.id) }, "cancel (ends it partial, resumable)"))
    : null;
  show(el("p", {}, el("a", { href: "#" }, "← all runs")), el("h1", {}, run.id), facts, cancel,
    el("h2", {}, "Timeline"), timeline(view), answer);
  document.body.dataset.view = "run";
  document.body.dataset.run = run.id;
  document.body.dataset.status = run.status;
  document.body.dataset.rows = String(view.steps.length);
  document.body.dataset.state = "loaded";
}

async function loadRun(id) {
  const view = await (await api("/v1/runs/" + encodeURIComponent(id))).json();
  renderRun(view);
  return view;
}

async function cancelRun(id) {
  try {
    await api("/v1/runs/" + encodeURIComponent(id) + "/cancel", { method: "POST" });
    await loadRun(id);
  } catch (e) {
    setLive(String(e.message || e));
  }
}

// Many events in a burst cost one refetch.
function refreshSoon(id) {
  if (state.refresh) return;
  state.refresh = setTimeout(() => {
    state.refresh = null;
    loadRun(id).catch(fail);
  }, 100);
}

function onEvent(id, name, data) {
  if (name === "snapshot") { renderRun(data); return; }
  if (name === "end") {
    live.calling = null;
    setLive("");
    document.body.dataset.live = "ended";
    loadRun(id).catch(fail);
    return;
  }
  switch (data.event) {
    case "model_calling":
      live.calling = { kind: "model", text: "step " + data.step + ": asking the model…" };
      setLive(live.calling.text);
      break;
    case "retry":
      setLive("step " + data.step + ": " + data.model + " failed (" + data.reason + "), retrying");
      break;
    case "fallback":
      setLive("step " + data.step + ": falling back " + data.from + " → " + data.to + " (" + data.reason + ")");
      break;
    case "tools_calling":
      live.calling = { kind: "tool", text: "step " + data.step + ": calling " + data.tools.join(", ") + "…" };
      setLive(live.calling.text);
      break;
    case "model_done":
      if (data.from_journal) live.journal.add(data.step + ".0");
      live.calling = null;
      break;
    case "tool_done":
      if (data.from_journal) live.journal.add(data.step + "." + (data.index + 1));
      break;
    case "finished":
      live.calling = null;
      break;
    default:
      return;
  }
  refreshSoon(id);
}

// EventSource cannot send the bearer token, so the stream is read with
// fetch and parsed here (SSE: blocks separated by a blank line).
async function follow(id) {
  const controller = new AbortController();
  state.stream = controller;
  const response = await api("/v1/runs/" + encodeURIComponent(id) + "/events", { signal: controller.signal });
  document.body.dataset.live = "streaming";
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (!data) continue;
      onEvent(id, name, JSON.parse(data));
    }
  }
  if (document.body.dataset.live !== "ended") document.body.dataset.live = "ended";
}

function route() {
  if (state.stream) { state.stream.abort(); state.stream = null; }
  live.journal.clear();
  live.calling = null;
  setLive("");
  delete document.body.dataset.live;
  document.body.dataset.state = "loading";
  const params = readHash();
  const id = params.get("run");
  if (id) {
    follow(id).catch(e => { if (e.name !== "AbortError") fail(e); });
  } else {
    list().catch(fail);
  }
}

window.addEventListener("hashchange", route);
route();
