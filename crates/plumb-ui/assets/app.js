// plumb's fleet page: reads /api/fleet, then applies /api/stream's changes.
const objects = new Map();

function render() {
  const main = document.getElementById("main");
  const rows = [...objects.values()].sort((a, b) => a.id.localeCompare(b.id));
  const table = document.createElement("table");
  table.innerHTML = "<thead><tr><th>Kind</th><th>Namespace</th><th>Name</th><th>State</th><th>Message</th></tr></thead>";
  const body = document.createElement("tbody");
  for (const o of rows) {
    const tr = document.createElement("tr");
    tr.dataset.id = o.id;
    tr.dataset.state = o.state;
    for (const v of [o.kind, o.namespace, o.name, o.state, o.message]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(body);
  main.replaceChildren(table);
}

async function load() {
  const fleet = await (await fetch("/api/fleet")).json();
  document.getElementById("context").textContent = fleet.context;
  objects.clear();
  for (const o of fleet.objects) objects.set(o.id, o);
  render();
}

const stream = new EventSource("/api/stream");
stream.addEventListener("upsert", (e) => { const o = JSON.parse(e.data); objects.set(o.id, o); render(); });
stream.addEventListener("delete", (e) => { objects.delete(JSON.parse(e.data).id); render(); });
stream.addEventListener("resync", load);
load();
