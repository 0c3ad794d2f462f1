// The fleet graph in SVG: drawing a layout, updating a node's state in place (live events
// never re-lay out the graph unless objects or references change), zoom and pan through the
// viewBox, and keyboard use (every node is a focusable link; arrows move between nodes).

import { s, STATES, labelOf, splitId } from "./util.js";
import { layout, NODE_W, NODE_H } from "./layout.js";

const SHORT = {
  GitRepository: "git", OCIRepository: "oci", HelmRepository: "helmrepo", Bucket: "bucket",
  HelmChart: "chart", Kustomization: "ks", HelmRelease: "hr", ExternalArtifact: "artifact",
  ArtifactGenerator: "generator", Alert: "alert", Provider: "provider", Receiver: "receiver",
  ImageRepository: "imagerepo", ImagePolicy: "policy", ImageUpdateAutomation: "imageupdate",
};
const MAX_LABEL = 30;

/** Draws the graph into `svg`; `open(id)` is called when a node is activated. */
export class Graph {
  constructor(svg, open) {
    this.svg = svg;
    this.open = open;
    this.els = new Map();
    this.lay = null;
    this.view = { x: 0, y: 0, w: 1000, h: 600 };
    this.refsKey = new Map();
    this.bindPointer();
    svg.addEventListener("keydown", (e) => this.onKey(e));
    svg.addEventListener("focusin", (e) => {
      const g = e.target.closest && e.target.closest("g.node");
      if (g) this.reveal(g.dataset.id);
    });
  }

  /** Lays out and draws `objs` from scratch. */
  draw(objs, exists) {
    const focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest("g.node") : null;
    const keepFocus = focused ? focused.dataset.id : null;
    this.lay = layout(objs, exists);
    performance.mark("plumb-layout");
    this.els.clear();
    this.refsKey.clear();
    const solid = [];
    const dashed = [];
    for (const e of this.lay.edges) {
      const a = this.lay.nodes.get(e.from);
      const b = this.lay.nodes.get(e.to);
      (e.dashed ? dashed : solid).push(edgePath(a, b));
    }
    // One markup string parsed at once: far faster than 12,000 createElementNS calls.
    const parts = [];
    for (const col of this.lay.columns) for (const id of col) parts.push(nodeMarkup(this.lay.nodes.get(id)));
    const nodesG = s("g", { class: "nodes" });
    nodesG.innerHTML = parts.join("");
    for (const g of nodesG.children) {
      const n = this.lay.nodes.get(g.dataset.id);
      this.els.set(n.id, g);
      if (n.obj) this.refsKey.set(n.id, refsKey(n.obj));
    }
    const root = s("g", { class: "viewport" },
      s("path", { class: "edges", d: solid.join("") }),
      s("path", { class: "edges depends", d: dashed.join("") }),
      nodesG);
    this.svg.replaceChildren(
      s("title", { text: `Fleet graph: ${objs.length} objects. The table view lists them as text.` }),
      root);
    if (!this.fitted) this.fit();
    else this.apply();
    this.fitted = true;
    if (keepFocus && this.els.has(keepFocus)) this.els.get(keepFocus).focus({ preventScroll: true });
  }

  /** Applies a changed object in place; false when the graph must be laid out again
   * (a new object, or its references changed). */
  update(o) {
    const g = this.els.get(o.id);
    if (!g || g.classList.contains("missing")) return false;
    if (this.refsKey.get(o.id) !== refsKey(o)) return false;
    this.lay.nodes.get(o.id).obj = o;
    paint(g, o.state, labelOf(o));
    return true;
  }

  /** Zooms to show the whole graph (never magnified beyond 1:1). */
  fit() {
    const r = this.svg.getBoundingClientRect();
    const W = r.width || 1000;
    const H = r.height || 600;
    const lw = (this.lay ? this.lay.width : 1000) + 40;
    const lh = (this.lay ? this.lay.height : 600) + 40;
    const scale = Math.max(lw / W, lh / H, 1);
    this.view = { x: -20, y: -20, w: W * scale, h: H * scale };
    this.apply();
  }

  /** Zooms by `f` (> 1 zooms out) around the SVG point (cx, cy), or the centre. */
  zoom(f, cx, cy) {
    const v = this.view;
    if (cx === undefined) { cx = v.x + v.w / 2; cy = v.y + v.h / 2; }
    const w = Math.min(Math.max(v.w * f, 100), 200000);
    const k = w / v.w;
    this.view = { x: cx - (cx - v.x) * k, y: cy - (cy - v.y) * k, w, h: v.h * k };
    this.apply();
  }

  apply() {
    const v = this.view;
    this.svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
  }

  /** Pans so that node `id` is in view (keyboard focus must never land off screen). */
  reveal(id) {
    const n = this.lay && this.lay.nodes.get(id);
    if (!n) return;
    const v = this.view;
    if (n.x >= v.x && n.x + NODE_W <= v.x + v.w && n.y >= v.y && n.y + NODE_H <= v.y + v.h) return;
    if (v.w > 4 * NODE_W * 4) this.view = { ...v, w: v.w / 2.5, h: v.h / 2.5 };
    this.view.x = n.x + NODE_W / 2 - this.view.w / 2;
    this.view.y = n.y + NODE_H / 2 - this.view.h / 2;
    this.apply();
  }

  onKey(e) {
    const g = e.target.closest && e.target.closest("g.node");
    if (!g || !this.lay) return;
    const n = this.lay.nodes.get(g.dataset.id);
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      if (n.obj) this.open(n.id);
      return;
    }
    const cols = this.lay.columns;
    let target = null;
    if (e.key === "ArrowUp" || e.key === "ArrowDown") {
      target = cols[n.col][n.row + (e.key === "ArrowUp" ? -1 : 1)];
    } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      const col = cols[n.col + (e.key === "ArrowLeft" ? -1 : 1)];
      if (col) target = col[Math.min(n.row, col.length - 1)];
    } else if (e.key === "+" || e.key === "=") { this.zoom(1 / 1.25); return; }
    else if (e.key === "-") { this.zoom(1.25); return; }
    else return;
    e.preventDefault();
    if (target) this.els.get(target).focus({ preventScroll: true });
  }

  bindPointer() {
    const svg = this.svg;
    let drag = null;
    svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const p = this.toSvg(e.clientX, e.clientY);
      this.zoom(Math.pow(1.0015, e.deltaY), p.x, p.y);
    }, { passive: false });
    svg.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, v: { ...this.view }, moved: false };
    });
    svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) svg.setPointerCapture(e.pointerId);
      drag.moved = true;
      const k = this.view.w / (svg.getBoundingClientRect().width || 1);
      this.view = { ...drag.v, x: drag.v.x - dx * k, y: drag.v.y - dy * k };
      this.apply();
    });
    svg.addEventListener("pointerup", (e) => {
      const wasDrag = drag && drag.moved;
      drag = null;
      if (wasDrag) return;
      const g = e.target.closest && e.target.closest("g.node");
      if (g && !g.classList.contains("missing")) this.open(g.dataset.id);
    });
  }

  toSvg(cx, cy) {
    const r = this.svg.getBoundingClientRect();
    const v = this.view;
    return { x: v.x + ((cx - r.left) / (r.width || 1)) * v.w, y: v.y + ((cy - r.top) / (r.height || 1)) * v.h };
  }
}

function refsKey(o) {
  return (o.refs || []).map((r) => `${r.rel}:${r.id}`).join(",");
}

function edgePath(a, b) {
  const x1 = a.x + NODE_W;
  const y1 = a.y + NODE_H / 2;
  const x2 = b.x;
  const y2 = b.y + NODE_H / 2;
  const mx = (x1 + x2) / 2;
  return `M${x1} ${y1}C${mx} ${y1} ${mx} ${y2} ${x2} ${y2}`;
}

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function esc(v) {
  return String(v).replace(/[&<>"']/g, (c) => ESC[c]);
}

/** The markup of one node: everything from the server is escaped, the state checked. */
function nodeMarkup(n) {
  const { kind, namespace, name } = splitId(n.id);
  let text = `${SHORT[kind] || kind} ${namespace}/${name}`;
  if (text.length > MAX_LABEL) text = text.slice(0, MAX_LABEL - 1) + "\u2026";
  const state = n.obj ? (STATES[n.obj.state] ? n.obj.state : "unknown") : "missing";
  const label = esc(n.obj ? labelOf(n.obj) : `${kind} ${namespace}/${name}: missing: referenced but not found`);
  const cy = NODE_H / 2;
  return `<g class="node st-${state}${n.obj ? "" : " missing"}" tabindex="0" role="${n.obj ? "link" : "img"}" `
    + `transform="translate(${n.x},${n.y})" data-id="${esc(n.id)}" data-state="${state}" aria-label="${label}">`
    + `<title>${label}</title><rect width="${NODE_W}" height="${NODE_H}" rx="4"></rect>`
    + `<circle cx="13" cy="${cy}" r="9" class="dot"></circle>`
    + `<text x="13" y="${cy}" class="glyph" aria-hidden="true">${STATES[state].glyph}</text>`
    + `<text x="28" y="${cy}" class="label">${esc(text)}</text></g>`;
}

function paint(g, state, label) {
  if (!STATES[state]) state = "unknown";
  g.dataset.state = state;
  g.setAttribute("class", `node st-${state}${state === "missing" ? " missing" : ""}`);
  g.setAttribute("aria-label", label);
  g.firstChild.textContent = label;
  g.querySelector(".glyph").textContent = (STATES[state] || STATES.unknown).glyph;
}
