// Small helpers shared by the views: element builders and the state palette.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element with attributes (`text` sets textContent, `on*` adds listeners). */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element with attributes. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** How each state is shown: never by colour alone, so each has a glyph and a word. */
export const STATES = {
  ready: { glyph: "\u2713", word: "ready" },
  reconciling: { glyph: "\u21bb", word: "reconciling" },
  failed: { glyph: "\u2717", word: "failed" },
  stalled: { glyph: "!", word: "stalled" },
  suspended: { glyph: "\u2016", word: "suspended" },
  unknown: { glyph: "?", word: "unknown" },
  missing: { glyph: "\u2205", word: "missing" },
};

/** A coloured badge with glyph and word (the CSS gives AA contrast for each state). */
export function badge(state) {
  const m = STATES[state] || STATES.unknown;
  return h("span", { class: `badge st-${state}` }, h("span", { "aria-hidden": "true", text: m.glyph }), " ", m.word);
}

/** The page path of an object id `Kind/ns/name`. */
export function objectHref(id) {
  return "#/object/" + id.split("/").map(encodeURIComponent).join("/");
}

/** Splits an id into its kind, namespace and name (names never hold a slash). */
export function splitId(id) {
  const [kind, namespace, ...rest] = id.split("/");
  return { kind, namespace, name: rest.join("/") };
}

/** The accessible label of an object: "Kind ns/name: state: message". */
export function labelOf(o) {
  const msg = o.message ? `: ${o.message}` : "";
  return `${o.kind} ${o.namespace}/${o.name}: ${o.state}${msg}`;
}
