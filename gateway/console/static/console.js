// dcc-gateway console: polls the read-only JSON under /console/api/ and draws it with the DOM.
// Every text from the gateway goes in through textContent, never as markup.
"use strict";

const POLL_MS = 2000;
const FLEET_POLL_MS = 5000;
const fleetState = { supplier: "", within: "", offset: 0, limit: 100, matching: 0 };

// --- small DOM helpers ----------------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pill(text, kind) {
  return el("span", { class: "pill " + (kind || text) }, text);
}

function when(iso) {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "").slice(0, 16) + " UTC";
}

function pence(value) {
  if (value === null || value === undefined) return "—";
  const sign = value < 0 ? "-" : "";
  const abs = Math.abs(value);
  return `${sign}£${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

function link(href, text) {
  return href ? el("a", { href, target: "_blank", rel: "noopener" }, text) : "—";
}

function fillBody(table, rows, emptyText, columns) {
  const body = document.querySelector(`#${table} tbody`);
  const fresh = rows.length
    ? rows.map((row) => row)
    : [el("tr", {}, el("td", { class: "empty", colspan: columns }, emptyText))];
  body.replaceChildren(...fresh);
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// --- SoLR events --------------------------------------------------------------------------------

function drawSolr(view) {
  const holder = document.getElementById("solr-events");
  if (!view.events.length) {
    holder.replaceChildren(el("p", { class: "empty" }, "No supplier has failed: the registry is as the manifest wrote it."));
    return;
  }
  holder.replaceChildren(...view.events.map((event) => drawEvent(event, view.stages)));
}

function drawEvent(event, stages) {
  const reachedUpTo = stages.indexOf(event.stage);
  const stageList = el("ol", { class: "stages" }, ...stages.map((stage, index) =>
    el("li", { class: index === reachedUpTo ? "current" : index < reachedUpTo ? "reached" : "" }, stage)));
  const held = Object.entries(event.mpids_held_by).map(([mpid, owner]) => `${mpid} → ${owner}`).join(", ");
  const items = el("ul", { class: "in-force" }, ...event.in_force.map(drawInForce));
  const next = el("table", { class: "next" },
    el("thead", {}, el("tr", {}, el("th", {}, "directive"), el("th", {}, "issued by"), el("th", {}, "the state machine would"), el("th", {}, "reason"))),
    el("tbody", {}, ...event.next.map((probe) => el("tr", { "data-directive": probe.directive },
      el("td", { class: "mono" }, probe.directive), el("td", {}, probe.issuer),
      el("td", {}, pill(probe.accepted ? "accept" : "refuse", probe.accepted ? "accepted" : "refused")),
      el("td", {}, probe.reason)))));
  return el("article", { class: "event", "data-failed": event.failed },
    el("h3", {}, `${event.failed} failed`, event.solr ? ` · SoLR ${event.solr}` : " · no SoLR yet"),
    stageList,
    el("p", { class: "note" }, `MPIDs: ${held}`),
    el("h4", {}, "In force"), items,
    el("h4", {}, "Next directives"), next,
    el("p", { class: "note" }, "Asked of the gateway's own state machine; nothing was sent."));
}

function drawInForce(item) {
  const details = [];
  if (item.until) details.push(el("p", {}, "until ", el("time", { class: "until", datetime: item.until }, when(item.until)),
    item.status ? " · " : null, item.status ? pill(item.status, item.status === "in force" ? "ok" : "off") : null,
    item.active === false ? " · over" : null));
  if (item.considered) details.push(el("p", {}, "the PMA considered: ", el("q", {}, item.considered)));
  if (item.confirmed) details.push(el("ul", {}, ...Object.entries(item.confirmed).map(([key, text]) => el("li", {}, `${key}: ${text}`))));
  if (item.thresholds) details.push(el("p", {}, `window ${item.window_seconds} s, thresholds `,
    Object.entries(item.thresholds).map(([srv, count]) => `SRV ${srv}: ${count}`).join(", "), ` (submitted by ${item.submitted_by})`));
  const lists = [];
  if (item.allows.length) lists.push(el("ul", { class: "allows" }, ...item.allows.map((text) => el("li", {}, text))));
  if (item.refuses.length) lists.push(el("ul", { class: "refuses" }, ...item.refuses.map((text) => el("li", {}, text))));
  return el("li", { "data-directive": item.directive },
    el("span", { class: "directive" }, item.directive), " ", el("small", {}, when(item.at)), el("br"),
    item.summary, ...details, ...lists);
}

// --- ADT and quarantine ---------------------------------------------------------------------------

function drawQuarantine(view) {
  fillBody("adt-windows", view.windows.map((w) => el("tr", { "data-user": w.user, "data-srv": w.srv },
    el("td", {}, w.user), el("td", {}, w.srv), el("td", {}, `${w.window_seconds} s`),
    el("td", {}, pill(`${w.admissions_in_window} of ${w.threshold}`, w.next_is_quarantined ? "warn" : "ok"),
      w.next_is_quarantined ? " next one is quarantined" : ""),
    el("td", { class: "note" }, w.source))), "no user has an anomaly threshold", 5);
  document.getElementById("quarantine-note").textContent = view.note;
  fillBody("quarantine", view.quarantined.map((q) => el("tr", { "data-event-ref": q.event_ref },
    el("td", {}, q.event_ref), el("td", {}, q.user), el("td", { class: "mono" }, q.request_id), el("td", {}, q.srv),
    el("td", {}, when(q.quarantined_at)), el("td", {}, pill(q.status, q.status === "held" ? "warn" : "ok")),
    el("td", {}, ...Object.values(q.commands).map((command) => el("code", { class: "command" }, command))),
    el("td", {}, link(q.xml, "request")))), "nothing quarantined", 8);
}

// --- fleet ------------------------------------------------------------------------------------------

function sparkline(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("viewBox", "0 0 130 26");
  if (!points.length) return svg;
  const top = Math.max(1, ...points.map((p) => p.pence));
  const x = (i) => 2 + (126 * i) / Math.max(1, points.length - 1);
  const y = (pence) => 24 - (22 * Math.max(0, pence)) / top;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map((p, i) => `${x(i).toFixed(1)},${y(p.pence).toFixed(1)}`).join(" "));
  svg.append(line);
  const lost = points.findIndex((p) => p.supply === "Disabled");
  if (lost >= 0) {
    const mark = document.createElementNS(ns, "circle");
    mark.setAttribute("class", "lost");
    mark.setAttribute("cx", x(lost).toFixed(1));
    mark.setAttribute("cy", "24");
    mark.setAttribute("r", "2.5");
    svg.append(mark);
  }
  const title = document.createElementNS(ns, "title");
  title.textContent = `credit and emergency credit left from ${when(points[0].at)} to ${when(points[points.length - 1].at)}, if nothing reaches the meter`;
  svg.append(title);
  return svg;
}

function drawFleet(view) {
  const select = document.getElementById("filter-supplier");
  const wanted = fleetState.supplier;
  const options = [el("option", { value: "" }, "every supplier")];
  for (const supplier of view.suppliers) {
    options.push(el("option", { value: supplier.party }, `${supplier.party} (${supplier.mpids.join(", ")})`));
    for (const mpid of supplier.mpids) options.push(el("option", { value: mpid }, `  MPID ${mpid}`));
  }
  select.replaceChildren(...options);
  select.value = wanted;
  const c = view.counts;
  const days = view.query.within_days === null ? "28 days" : `${view.query.within_days} days`;
  document.getElementById("fleet-counts").textContent =
    `${c.devices} devices, ${c.meters} simulated meters, ${c.prepayment} in prepayment; ${c.off_supply} off supply now, ` +
    `${c.losing_supply} will lose supply within ${days} if nothing is done. Showing ${view.rows.length} of ${view.matching}.`;
  fleetState.matching = view.matching;
  document.getElementById("fleet-page").textContent =
    view.matching ? `${view.query.offset + 1}–${view.query.offset + view.rows.length} of ${view.matching}` : "";
  fillBody("fleet-table", view.rows.map((row) => {
    const meter = row.simulated;
    const emergency = meter ? [pence(row.emergency_credit_pence), row.emergency_credit_active ? " in use" : ""] : ["—"];
    return el("tr", { "data-device-id": row.device_id },
      el("td", { class: "mono" }, row.device_id),
      el("td", {}, row.device_type),
      el("td", {}, row.smets),
      el("td", {}, row.mpid, row.supplier ? ` (${row.supplier})` : ""),
      el("td", { class: "payment-mode" }, row.payment_mode ? pill(row.payment_mode) : "—",
        row.pending_change ? ` → ${row.pending_change.to} at ${when(row.pending_change.at)}` : ""),
      el("td", { class: "credit" }, meter ? pence(row.credit_pence) : "—"),
      el("td", { class: "emergency-credit" }, ...emergency),
      el("td", { class: "supply" }, row.supply ? pill(row.supply) : meter ? "—" : "no meter"),
      el("td", { class: "loses-supply" }, row.loses_supply_at ? when(row.loses_supply_at) : "—"),
      el("td", {}, meter ? sparkline(row.sparkline) : ""));
  }), "no device matches", 10);
}

function fleetPath() {
  const params = new URLSearchParams({ limit: String(fleetState.limit), offset: String(fleetState.offset) });
  if (fleetState.supplier) params.set("supplier", fleetState.supplier);
  if (fleetState.within) params.set("within_days", fleetState.within);
  return `/console/api/fleet?${params}`;
}

// --- traffic and audit ------------------------------------------------------------------------------

function drawTraffic(view) {
  fillBody("exchanges", view.exchanges.map((x) => el("tr", { "data-sequence": x.sequence, "data-subject": x.subject || "" },
    el("td", {}, x.sequence), el("td", {}, when(x.at)), el("td", { class: "mono" }, x.path),
    el("td", {}, x.sender || "—"),
    el("td", {}, x.kind === "directive" ? (x.directive || "directive") : x.srv ? `SRV ${x.srv} CV${x.cv} → ${x.target}` : "unauthenticated"),
    el("td", {}, pill(x.outcome, /^I|accepted/.test(x.outcome) ? "ok" : "off")),
    el("td", {}, x.reason),
    el("td", {}, link(x.request_xml, "request"), " ", link(x.response_xml, "answer")))), "nothing answered since this worker started", 8);
  fillBody("deliveries", view.deliveries.map((d) => el("tr", { "data-delivery-id": d.delivery_id },
    el("td", {}, d.delivery_id), el("td", {}, when(d.created_at)), el("td", {}, d.recipient),
    el("td", {}, d.message), el("td", {}, d.code), el("td", { class: "mono" }, d.request_id || d.subject),
    el("td", {}, pill(d.status, d.status === "delivered" ? "ok" : d.status === "failed" ? "off" : "warn"),
      d.attempts ? ` after ${d.attempts} attempt(s)` : "", d.last_error ? ` · ${d.last_error}` : ""),
    el("td", {}, link(d.xml, "document")))), "the outbox is empty", 8);
}

function drawAudit(view) {
  document.getElementById("audit-head").textContent = view.unreadable || (view.head ? view.head.anchor : "(empty log)");
  fillBody("audit-records", view.records.map((r) => el("tr", {},
    el("td", {}, r.sequence), el("td", {}, when(r.at)), el("td", {}, r.kind), el("td", { class: "mono" }, r.actor),
    el("td", { class: "mono" }, r.subject), el("td", {}, r.outcome), el("td", {}, r.reason))), "no record yet", 7);
}

// --- polling ----------------------------------------------------------------------------------------

async function refresh(panels) {
  const results = await Promise.allSettled(panels.map(async ([path, draw]) => draw(await getJson(path()))));
  const failed = results.filter((result) => result.status === "rejected");
  const freshness = document.getElementById("freshness");
  if (failed.length) {
    freshness.textContent = `could not reach the gateway: ${failed[0].reason.message}`;
    freshness.className = "stale";
  } else {
    freshness.textContent = "live";
    freshness.className = "";
  }
}

const panels = [
  [() => "/console/api/solr", (view) => { document.getElementById("clock").textContent = when(view.as_of); drawSolr(view); }],
  [() => "/console/api/quarantine", drawQuarantine],
  [() => "/console/api/traffic", drawTraffic],
  [() => "/console/api/audit", drawAudit],
];
const fleetPanel = [[fleetPath, drawFleet]];

function poll(list, period) {
  const tick = async () => {
    if (!document.hidden) await refresh(list);
    setTimeout(tick, period);
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("fleet-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    fleetState.supplier = document.getElementById("filter-supplier").value;
    fleetState.within = document.getElementById("filter-within").value;
    fleetState.offset = 0;
    refresh(fleetPanel);
  });
  document.getElementById("fleet-previous").addEventListener("click", () => {
    fleetState.offset = Math.max(0, fleetState.offset - fleetState.limit);
    refresh(fleetPanel);
  });
  document.getElementById("fleet-next").addEventListener("click", () => {
    if (fleetState.offset + fleetState.limit < fleetState.matching) fleetState.offset += fleetState.limit;
    refresh(fleetPanel);
  });
  poll(panels, POLL_MS);
  poll(fleetPanel, FLEET_POLL_MS);
});
