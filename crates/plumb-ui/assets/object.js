// The object page: the summary from the fleet at once, then the details route (conditions,
// history, events, inventory tree, spec and status) when the server has it; the diff on a
// button press (it costs the server a render); actions behind explicit buttons.

import { h, badge, objectHref, splitId } from "./util.js";
import { time } from "./views.js";

/** The API path of an object. */
function apiPath(id) {
  const { kind, namespace, name } = splitId(id);
  return `/api/object/${[kind, namespace, name].map(encodeURIComponent).join("/")}`;
}

/** Renders object `id` into `main`; `objects` is the fleet map, `readOnly` hides actions. */
export function objectPage(main, id, objects, readOnly) {
  const o = objects.get(id);
  const { kind, namespace, name } = splitId(id);
  const section = h("section", { id: "object", "aria-labelledby": "object-h", dataset: { id } },
    h("p", {}, h("a", { href: "#/", text: "\u2190 Fleet graph" })),
    h("h2", { id: "object-h" }, `${kind} ${namespace}/${name} `, o ? badge(o.state) : badge("missing")));
  if (!o) {
    section.append(h("p", { text: "This object is not in the fleet (deleted, or not visible to you)." }));
    main.replaceChildren(section);
    return;
  }
  section.append(h("div", { id: "summary" }, summary(o, objects)));
  if (!readOnly) section.append(actions(id, o));
  const details = h("div", { id: "details", "aria-busy": "true" }, h("p", { text: "Loading details\u2026" }));
  section.append(details);
  // Only these two kinds have a next apply to diff.
  if (kind === "Kustomization" || kind === "HelmRelease") section.append(diffBlock(id));
  main.replaceChildren(section);
  loadDetails(id, details);
}

/** Redraws the summary of the object page shown (a live change of that object). */
export function refreshSummary(o, objects) {
  const box = document.getElementById("summary");
  if (!box) return;
  box.replaceChildren(summary(o, objects));
  const heading = document.querySelector("#object-h .badge");
  if (heading) heading.replaceWith(badge(o.state));
}

function summary(o, objects) {
  const usedBy = [...objects.values()].filter((x) => (x.refs || []).some((r) => r.id === o.id));
  const labels = Object.entries(o.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  const refList = (items) => items.length
    ? h("ul", {}, items.map(([id, rel]) => h("li", {}, h("a", { href: objectHref(id), text: id }),
      rel ? ` (${rel})` : "")))
    : "none";
  const dl = h("dl", { class: "summary" });
  const add = (k, v) => dl.append(h("dt", { text: k }), h("dd", {}, v || "\u2014"));
  add("API version", o.apiVersion);
  add("State", badge(o.state));
  add("Reason", o.reason);
  add("Message", h("span", { class: "msg", text: o.message }));
  add("Revision", h("code", { text: o.revision }));
  add("Last transition", time(o.lastTransition));
  add("Labels", labels);
  add("Reads", refList((o.refs || []).map((r) => [r.id, r.rel])));
  add("Read by", refList(usedBy.map((x) => [x.id, (x.refs.find((r) => r.id === o.id) || {}).rel])));
  return h("div", {}, h("h3", { text: "Summary" }), dl);
}

function actions(id, o) {
  const result = h("p", { id: "action-result", role: "status", "aria-live": "polite" });
  const confirmBox = h("div", { class: "confirm", hidden: true });
  const run = async (action) => {
    confirmBox.hidden = true;
    result.textContent = `${action}\u2026`;
    delete result.dataset.outcome;
    try {
      const r = await fetch(`${apiPath(id)}/${action}`, { method: "POST", headers: { "X-Plumb-Action": "1" } });
      let body = {};
      try { body = await r.json(); } catch (_) { /* an empty or non-JSON answer */ }
      result.dataset.outcome = r.ok ? "ok" : "error";
      result.textContent = r.ok
        ? (body.message || `${action}: done`)
        : `${action} refused (HTTP ${r.status}): ${body.error || r.statusText}`;
    } catch (e) {
      result.dataset.outcome = "error";
      result.textContent = `${action} failed: ${e.message}`;
    }
  };
  const suspended = o.state === "suspended";
  const btn = (action, label, onclick) => h("button", { type: "button", dataset: { action }, onclick }, label);
  return h("div", { class: "actions" },
    h("h3", { text: "Actions" }),
    btn("reconcile", "Reconcile now", () => run("reconcile")),
    " ",
    btn("suspend", "Suspend", () => {
      confirmBox.replaceChildren(
        h("span", { text: `Suspend ${id}? plumb stops reconciling it until resumed. ` }),
        h("button", { type: "button", class: "danger", dataset: { confirm: "suspend" }, onclick: () => run("suspend") }, "Confirm suspend"),
        " ",
        h("button", { type: "button", onclick: () => { confirmBox.hidden = true; } }, "Cancel"));
      confirmBox.hidden = false;
      confirmBox.querySelector("button").focus();
    }),
    " ",
    btn("resume", "Resume", () => run("resume")),
    suspended ? h("span", { class: "hint", text: " (suspended)" }) : "",
    confirmBox, result);
}

async function loadDetails(id, box) {
  let r;
  try {
    r = await fetch(apiPath(id));
  } catch (e) {
    box.replaceChildren(h("p", { class: "note", text: `Details unavailable: ${e.message}` }));
    box.removeAttribute("aria-busy");
    return;
  }
  box.removeAttribute("aria-busy");
  if (!r.ok) {
    box.replaceChildren(h("p", { class: "note",
      text: `This server has no details for the object (HTTP ${r.status}); the summary above is what it knows.` }));
    return;
  }
  let d;
  try { d = await r.json(); } catch (e) {
    box.replaceChildren(h("p", { class: "note", text: "Details unreadable (not JSON)." }));
    return;
  }
  box.replaceChildren(
    h("h3", { text: "Conditions" }), table(d.conditions, ["type", "status", "reason", "message", "lastTransitionTime"]),
    h("h3", { text: "Revision history" }), table(d.history),
    h("h3", { text: "Events" }), table(d.events),
    h("h3", { text: "Inventory" }), tree(d.inventory),
    h("details", {}, h("summary", { text: "Spec" }), h("pre", { text: JSON.stringify(d.spec ?? null, null, 2) })),
    h("details", {}, h("summary", { text: "Status" }), h("pre", { text: JSON.stringify(d.status ?? null, null, 2) })));
}

/** A table of an array of objects: the given columns, or every scalar key seen. */
function table(rows, cols) {
  if (!Array.isArray(rows) || rows.length === 0) return h("p", { text: "None." });
  if (!cols) {
    const seen = new Set();
    for (const r of rows) for (const [k, v] of Object.entries(r || {})) if (typeof v !== "object") seen.add(k);
    cols = [...seen];
  }
  return h("table", { class: "detail" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map((c) => h("td", { text: cell(r && r[c]) }))))));
}

function cell(v) {
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** The inventory as nested lists: an entry with `children` is expandable (open when it is a
 * Kustomization or HelmRelease: nested ones are shown expanded). */
function tree(inv) {
  const entries = Array.isArray(inv) ? inv : (inv && (inv.entries || inv.children || inv.objects)) || [];
  const note = inv && !Array.isArray(inv) && inv.note ? h("p", { class: "note", text: inv.note }) : "";
  if (!entries.length) return h("div", {}, note, h("p", { text: "No inventory." }));
  return h("div", { class: "tree" }, note, list(entries, 0));
}

function list(entries, depth) {
  return h("ul", { role: depth === 0 ? "tree" : "group" }, entries.map((e) => item(e, depth)));
}

function item(e, depth) {
  const label = typeof e === "string" ? e : (e.id || [e.kind, e.namespace, e.name].filter(Boolean).join("/"));
  const kids = (e && (e.children || e.entries)) || [];
  if (!kids.length || depth > 20) return h("li", { role: "treeitem", text: label });
  const nested = e.kind === "Kustomization" || e.kind === "HelmRelease";
  return h("li", { role: "treeitem" },
    h("details", { open: nested || depth === 0 }, h("summary", { text: `${label} (${kids.length})` }), list(kids, depth + 1)));
}

function diffBlock(id) {
  const out = h("div", { id: "diff-result", "aria-live": "polite" });
  const button = h("button", { type: "button", dataset: { action: "diff" } }, "Show diff of the next apply");
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.replaceChildren(h("p", { text: "Computing the diff\u2026" }));
    try {
      const r = await fetch(`${apiPath(id)}/diff`);
      let d = {};
      try { d = await r.json(); } catch (_) { d = { error: `HTTP ${r.status}` }; }
      if (!r.ok || d.error) out.replaceChildren(h("p", { class: "note", text: `No diff: ${d.error || `HTTP ${r.status}`}` }));
      else out.replaceChildren(d.changed ? h("pre", { class: "diff", text: d.text }) : h("p", { text: "No changes: the next apply changes nothing." }));
    } catch (e) {
      out.replaceChildren(h("p", { class: "note", text: `No diff: ${e.message}` }));
    }
    button.disabled = false;
  });
  return h("div", {}, h("h3", { text: "Diff" }), button, out);
}
