// plumb's fleet page: routes, the fleet in memory, live changes, filters.
//
// Why plain ES modules and SVG, no framework, no npm build: the page is a few views over one
// JSON list, and hand-written DOM code draws 2,000 objects well under a second; a framework
// would add a toolchain (npm, a bundler, hundreds of transitive packages) to build and audit
// for every release of a Rust binary. The browser loads these modules straight from the
// binary (`include_str!` in assets.rs), so nothing leaves the machine and the
// Content-Security-Policy can stay `'self'` only.
//
// Routes (the hash): `#/` graph, `#/list`, `#/failures`, `#/object/{Kind}/{ns}/{name}`;
// filters ride along as a query: `#/list?ns=team-1&state=failed`.

import { h, badge, STATES, objectHref } from "./util.js";
import { parseFilters, filtersQuery, matcher, anyFilter } from "./filters.js";
import { Graph } from "./graph.js";
import { fleetTable, failuresList } from "./views.js";
import { objectPage, refreshSummary } from "./object.js";

const RELAYOUT_DEBOUNCE_MS = 400;
const VIEW_DEBOUNCE_MS = 300;

const app = {
  objects: new Map(),
  readOnly: true,
  loaded: false,
  route: { path: "/", filters: parseFilters("") },
  sort: { key: "state", desc: false },
  graphDirty: true,
  relayoutTimer: 0,
  viewTimer: 0,
  queue: null,
};

const $ = (id) => document.getElementById(id);
const graph = new Graph($("graph"), (id) => { location.hash = objectHref(id); });

function currentRoute() {
  let raw = location.hash.slice(1) || "/";
  // A malformed escape in a hand-typed URL must not break the page.
  try { raw = decodeURI(raw); } catch (_) { /* keep it as typed */ }
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  return { path: path || "/", filters: parseFilters(q < 0 ? "" : raw.slice(q + 1)) };
}

/** The object id of a `/object/Kind/ns/name` route. */
function objectIdOf(path) {
  return path.slice("/object/".length).split("/").map((p) => {
    try { return decodeURIComponent(p); } catch (_) { return p; }
  }).join("/");
}

function visible() {
  const m = matcher(app.route.filters);
  return [...app.objects.values()].filter(m);
}

/** Draws the current route from scratch. */
function render() {
  app.route = currentRoute();
  const { path, filters } = app.route;
  syncForm(filters);
  const isGraph = path === "/" || path === "";
  $("graph-view").hidden = !isGraph;
  $("main").hidden = isGraph;
  $("filters").hidden = path.startsWith("/object/");
  for (const a of document.querySelectorAll("nav a[data-route]")) {
    a.href = `#${a.dataset.route}${filtersQuery(filters)}`;
    if (a.dataset.route === path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!app.loaded) return;
  if (isGraph) {
    if (app.graphDirty) drawGraph();
  } else if (path === "/list") {
    $("main").replaceChildren(fleetTable(visible(), app.sort, (k) => {
      app.sort = { key: k, desc: app.sort.key === k ? !app.sort.desc : false };
      render();
      const b = [...document.querySelectorAll("#fleet-table th button")].find((x) => x.parentElement.getAttribute("aria-sort") !== "none");
      if (b) b.focus();
    }));
  } else if (path === "/failures") {
    $("main").replaceChildren(failuresList(visible()));
  } else if (path.startsWith("/object/")) {
    const id = objectIdOf(path);
    objectPage($("main"), id, app.objects, app.readOnly);
  } else {
    $("main").replaceChildren(h("p", { text: "No such page. " }, h("a", { href: "#/", text: "The fleet graph" })));
  }
  firstRendered();
}

function drawGraph() {
  const vis = visible();
  graph.draw(vis, (id) => app.objects.has(id));
  performance.mark("plumb-drawn");
  app.graphDirty = false;
  $("graph-count").textContent = `${vis.length} of ${app.objects.size} objects`;
}

function firstRendered() {
  if (document.body.dataset.rendered) return;
  // The next frame shows what was just drawn; a task queued from its animation callback
  // runs once that frame is painted.
  requestAnimationFrame(() => setTimeout(() => {
    window.plumbFirstRenderMs = performance.now();
    document.body.dataset.rendered = "1";
  }, 0));
}

function syncForm(f) {
  for (const [k, v] of Object.entries(f)) {
    const el = $(`f-${k}`);
    if (el && el !== document.activeElement) el.value = v;
  }
}

function fillOptions() {
  const add = (sel, values) => {
    const keep = sel.value;
    sel.replaceChildren(h("option", { value: "", text: "all" }), ...values.map((v) => h("option", { value: v, text: v })));
    sel.value = keep;
  };
  const uniq = (f) => [...new Set([...app.objects.values()].map(f))].sort();
  add($("f-ns"), uniq((o) => o.namespace));
  add($("f-kind"), uniq((o) => o.kind));
  add($("f-state"), Object.keys(STATES).filter((s) => s !== "missing"));
}

function onFilterInput() {
  const f = {};
  for (const k of ["ns", "kind", "state", "label", "q"]) f[k] = $(`f-${k}`).value.trim();
  const next = `#${app.route.path}${filtersQuery(f)}`;
  if (next !== location.hash) {
    app.graphDirty = true;
    graph.fitted = false;
    history.replaceState(null, "", next);
    render();
  }
}

function updateHeader() {
  const counts = {};
  for (const o of app.objects.values()) counts[o.state] = (counts[o.state] || 0) + 1;
  $("counts").replaceChildren(...Object.keys(STATES).filter((s) => counts[s])
    .map((s) => h("span", { class: "count" }, badge(s), ` ${counts[s]}`)));
  const bad = (counts.failed || 0) + (counts.stalled || 0);
  $("nav-failures").textContent = `Failures (${bad})`;
}

async function load() {
  app.queue = [];
  let fleet;
  try {
    const r = await fetch("/api/fleet");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    fleet = await r.json();
    performance.mark("plumb-fleet");
  } catch (e) {
    $("notice").textContent = `Cannot read the fleet: ${e.message}`;
    app.queue = null;
    return;
  }
  $("context").textContent = fleet.context ? `context: ${fleet.context}` : "";
  app.readOnly = !!fleet.readOnly;
  const notes = [];
  if (fleet.readOnly) notes.push("Read-only view: actions are off.");
  if ((fleet.forbiddenKinds || []).length) notes.push(`You may not list: ${fleet.forbiddenKinds.join(", ")}.`);
  $("notice").textContent = notes.join(" ");
  app.objects = new Map(fleet.objects.map((o) => [o.id, o]));
  const queued = app.queue;
  app.queue = null;
  app.loaded = true;
  for (const [kind, data] of queued) apply(kind, data);
  fillOptions();
  updateHeader();
  app.graphDirty = true;
  render();
}

/** One change from the stream. */
function apply(kind, data) {
  if (app.queue) { app.queue.push([kind, data]); return; }
  const m = matcher(app.route.filters);
  let structural = false;
  if (kind === "upsert") {
    const old = app.objects.get(data.id);
    app.objects.set(data.id, data);
    if (!old) structural = true;
    else if (m(old) !== m(data)) structural = true;
    else if (m(data) && !graph.update(data)) structural = true;
  } else if (kind === "delete") {
    structural = app.objects.delete(data.id);
  }
  if (structural) {
    app.graphDirty = true;
    clearTimeout(app.relayoutTimer);
    app.relayoutTimer = setTimeout(() => { if (!$("graph-view").hidden && app.graphDirty) drawGraph(); fillOptions(); }, RELAYOUT_DEBOUNCE_MS);
  }
  clearTimeout(app.viewTimer);
  app.viewTimer = setTimeout(refreshView, VIEW_DEBOUNCE_MS);
}

/** The text views follow live changes too (debounced: a burst redraws once). */
function refreshView() {
  updateHeader();
  const path = app.route.path;
  if (path === "/list" || path === "/failures") {
    const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("[data-id]") : null;
    if (!focused) render();
  } else if (path.startsWith("/object/")) {
    const o = app.objects.get(objectIdOf(path));
    if (o) refreshSummary(o, app.objects);
  }
}

function connect() {
  const es = new EventSource("/api/stream");
  const live = $("live");
  es.addEventListener("open", () => { live.textContent = "live"; live.dataset.live = "1"; });
  es.addEventListener("error", () => { live.textContent = "reconnecting\u2026"; delete live.dataset.live; });
  const parse = (e) => { try { return JSON.parse(e.data); } catch (_) { return null; } };
  es.addEventListener("upsert", (e) => { const d = parse(e); if (d && d.id) apply("upsert", d); });
  es.addEventListener("delete", (e) => { const d = parse(e); if (d && d.id) apply("delete", d); });
  es.addEventListener("resync", () => load());
}

function init() {
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  for (const k of ["ns", "kind", "state"]) $(`f-${k}`).addEventListener("change", onFilterInput);
  let t = 0;
  for (const k of ["label", "q"]) $(`f-${k}`).addEventListener("input", () => { clearTimeout(t); t = setTimeout(onFilterInput, 250); });
  $("f-clear").addEventListener("click", () => { location.hash = `#${app.route.path}`; });
  $("zoom-in").addEventListener("click", () => graph.zoom(1 / 1.25));
  $("zoom-out").addEventListener("click", () => graph.zoom(1.25));
  $("zoom-fit").addEventListener("click", () => graph.fit());
  $("skip").addEventListener("click", (e) => {
    e.preventDefault();
    const target = $("graph-view").hidden ? $("main") : $("graph");
    target.focus();
  });
  window.addEventListener("hashchange", () => {
    const prev = app.route;
    const next = currentRoute();
    if (filtersQuery(prev.filters) !== filtersQuery(next.filters)) {
      app.graphDirty = true;
      graph.fitted = false;
    }
    render();
    if (next.path !== prev.path) window.scrollTo(0, 0);
  });
  render();
  connect();
  load();
}

init();
// For tests and the debugging console.
window.plumb = { app, graph, anyFilter };
