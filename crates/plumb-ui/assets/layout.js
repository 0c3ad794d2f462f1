// The fleet graph's layout, computed in the page: columns by rank along the references
// (a source left of what reads it), rows ordered by the mean position of each node's
// references (one barycentre sweep: cheap, and it removes most crossings of a fleet whose
// edges mostly fan out from sources), tall columns wrapped so the graph stays screen-shaped.
// Linear in objects plus references apart from one sort per column: 2,000 objects take a
// few milliseconds.

/** Node box size and gaps, in SVG units. */
export const NODE_W = 210;
export const NODE_H = 26;
const COL_GAP = 60;
const ROW_GAP = 10;

/**
 * Lays out `objs` (the objects to draw). A reference to an id for which `exists` is false
 * becomes a "missing" node; one to an existing object left out by the filters is not drawn.
 * Returns `{nodes: Map(id -> node), edges: [{from, to, dashed}], columns: [[id]], width, height}`.
 */
export function layout(objs, exists) {
  const nodes = new Map();
  for (const o of objs) nodes.set(o.id, { id: o.id, obj: o, preds: [], rank: -1 });
  const edges = [];
  for (const o of objs) {
    for (const r of o.refs || []) {
      if (r.id === o.id) continue;
      if (!nodes.has(r.id)) {
        if (exists(r.id)) continue;
        nodes.set(r.id, { id: r.id, obj: null, preds: [], rank: -1 });
      }
      nodes.get(o.id).preds.push(r.id);
      edges.push({ from: r.id, to: o.id, dashed: r.rel === "dependsOn" });
    }
  }
  assignRanks(nodes);
  const ranks = [];
  for (const n of nodes.values()) (ranks[n.rank] ||= []).push(n);
  const maxRows = Math.max(12, Math.ceil(Math.sqrt(nodes.size * 4.6)));
  const columns = [];
  let x = 0;
  let height = 0;
  for (const list of ranks) {
    if (!list) continue;
    orderRank(list, nodes);
    for (let start = 0; start < list.length; start += maxRows) {
      const col = list.slice(start, start + maxRows);
      col.forEach((n, row) => {
        n.x = x;
        n.y = row * (NODE_H + ROW_GAP);
        n.col = columns.length;
        n.row = row;
      });
      height = Math.max(height, col.length * (NODE_H + ROW_GAP));
      columns.push(col.map((n) => n.id));
      x += NODE_W + COL_GAP;
    }
  }
  return { nodes, edges, columns, width: Math.max(x - COL_GAP, NODE_W), height };
}

/** rank = 1 + the highest rank of the references; iterative (a long dependsOn chain must not
 * overflow the stack) and cycle-safe (a reference back into the current path counts as 0). */
function assignRanks(nodes) {
  const ON_PATH = -2;
  for (const start of nodes.values()) {
    if (start.rank >= 0) continue;
    const stack = [[start, 0]];
    start.rank = ON_PATH;
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [n, i] = top;
      if (i < n.preds.length) {
        top[1] = i + 1;
        const p = nodes.get(n.preds[i]);
        if (p.rank === -1) {
          p.rank = ON_PATH;
          stack.push([p, 0]);
        }
        continue;
      }
      let r = 0;
      for (const id of n.preds) {
        const pr = nodes.get(id).rank;
        if (pr >= 0) r = Math.max(r, pr + 1);
      }
      n.rank = r;
      stack.pop();
    }
  }
}

/** Orders one rank: sources by kind then id; others by the mean relative position of their
 * references in earlier ranks (already ordered), ties by id. */
function orderRank(list, nodes) {
  if (list[0].rank === 0) {
    list.sort((a, b) => kindOf(a).localeCompare(kindOf(b)) || a.id.localeCompare(b.id));
  } else {
    for (const n of list) {
      let sum = 0;
      let count = 0;
      for (const id of n.preds) {
        const p = nodes.get(id);
        if (p.rank < n.rank && p.pos !== undefined) {
          sum += p.pos;
          count++;
        }
      }
      n.bary = count ? sum / count : 2;
    }
    list.sort((a, b) => a.bary - b.bary || a.id.localeCompare(b.id));
  }
  list.forEach((n, i) => { n.pos = list.length > 1 ? i / (list.length - 1) : 0.5; });
}

function kindOf(n) {
  return n.obj ? n.obj.kind : n.id.split("/")[0];
}
