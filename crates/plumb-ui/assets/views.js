// The text views: the fleet table (the graph's text alternative, sortable) and the
// failures list (failed and stalled objects, newest transition first).

import { h, badge, objectHref } from "./util.js";

const COLUMNS = [
  ["state", "State"], ["kind", "Kind"], ["namespace", "Namespace"], ["name", "Name"],
  ["revision", "Revision"], ["message", "Message"], ["lastTransition", "Last transition"],
];

/** The fleet table; `sort` is `{key, desc}`, `onSort(key)` is called by the headers. */
export function fleetTable(objs, sort, onSort) {
  const key = sort.key || "id";
  const rows = [...objs].sort((a, b) => {
    const c = String(a[key] ?? "").localeCompare(String(b[key] ?? "")) || a.id.localeCompare(b.id);
    return sort.desc ? -c : c;
  });
  const head = h("tr", {}, COLUMNS.map(([k, title]) => h("th", {
    scope: "col",
    "aria-sort": k === sort.key ? (sort.desc ? "descending" : "ascending") : "none",
  }, h("button", { type: "button", class: "sort", onclick: () => onSort(k) }, title,
    k === sort.key ? (sort.desc ? " \u25be" : " \u25b4") : ""))));
  const body = h("tbody");
  for (const o of rows) body.append(row(o));
  return h("table", { id: "fleet-table" },
    h("caption", { text: `${objs.length} objects` }), h("thead", {}, head), body);
}

function row(o) {
  return h("tr", { dataset: { id: o.id, state: o.state } },
    h("td", {}, badge(o.state)),
    h("td", { text: o.kind }),
    h("td", { text: o.namespace }),
    h("td", {}, h("a", { href: objectHref(o.id), text: o.name })),
    h("td", { class: "rev", text: o.revision }),
    h("td", { class: "msg", text: o.message }),
    h("td", {}, time(o.lastTransition)));
}

/** Failed and stalled objects, newest `lastTransition` first. */
export function failuresList(objs) {
  const bad = objs.filter((o) => o.state === "failed" || o.state === "stalled");
  bad.sort((a, b) => String(b.lastTransition ?? "").localeCompare(String(a.lastTransition ?? ""))
    || a.id.localeCompare(b.id));
  const list = h("ol", { class: "failures" });
  for (const o of bad) {
    list.append(h("li", { dataset: { id: o.id, state: o.state } },
      h("div", { class: "head" }, badge(o.state), " ",
        h("a", { href: objectHref(o.id), text: `${o.kind} ${o.namespace}/${o.name}` }), " ",
        time(o.lastTransition)),
      h("div", { class: "reason", text: o.reason || "(no reason)" }),
      h("div", { class: "msg", text: o.message })));
  }
  return h("section", { id: "failures", "aria-labelledby": "failures-h" },
    h("h2", { id: "failures-h", text: `Failures (${bad.length})` }),
    bad.length ? list : h("p", { text: "Nothing failed or stalled." }));
}

/** A `<time>` element for an RFC 3339 string (empty when absent). */
export function time(t) {
  if (!t) return "";
  return h("time", { datetime: t, text: t.replace("T", " ").replace("Z", " UTC") });
}
