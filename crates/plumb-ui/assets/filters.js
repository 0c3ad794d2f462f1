// The filters (namespace, kind, state, label selector, free text), kept in the URL hash as
// a query (`#/list?ns=a&kind=Kustomization&state=failed&label=team%3Dx&q=app`) so that a
// filtered view can be bookmarked and shared.

const KEYS = ["ns", "kind", "state", "label", "q"];

/** Reads the filters from the hash's query part. */
export function parseFilters(query) {
  const p = new URLSearchParams(query || "");
  const f = {};
  for (const k of KEYS) f[k] = (p.get(k) || "").trim();
  return f;
}

/** The query string for `f` (empty fields left out). */
export function filtersQuery(f) {
  const p = new URLSearchParams();
  for (const k of KEYS) if (f[k]) p.set(k, f[k]);
  const q = p.toString();
  return q ? "?" + q : "";
}

/** Parses `key=value,key2=value2` (or `key` alone: the label is present). */
function parseSelector(text) {
  return text.split(",").map((t) => t.trim()).filter(Boolean).map((t) => {
    const i = t.indexOf("=");
    return i < 0 ? { key: t, value: null } : { key: t.slice(0, i).trim(), value: t.slice(i + 1).trim() };
  });
}

/** A predicate over objects for `f`. */
export function matcher(f) {
  const sel = parseSelector(f.label);
  const q = f.q.toLowerCase();
  return (o) => {
    if (f.ns && o.namespace !== f.ns) return false;
    if (f.kind && o.kind !== f.kind) return false;
    if (f.state && o.state !== f.state) return false;
    for (const { key, value } of sel) {
      const v = o.labels ? o.labels[key] : undefined;
      if (v === undefined || (value !== null && v !== value)) return false;
    }
    if (q && !`${o.id} ${o.message} ${o.reason} ${o.revision}`.toLowerCase().includes(q)) return false;
    return true;
  };
}

/** True when any filter is set. */
export function anyFilter(f) {
  return KEYS.some((k) => f[k]);
}
