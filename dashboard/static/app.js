// The wnv dashboard: reads the policy API as an observer and follows
// GET /v1/watch (policy and liveness) and GET /v1/status/stream (the hosts'
// health reports and sampled drops) as server-sent events, and runs traces
// with POST /v1/trace. Every value from the server is put into the page as
// text, never as markup.
"use strict";

const state = {
  tenants: new Map(), rds: new Map(), subnets: new Map(),
  hosts: new Map(), vms: new Map(), gateways: new Map(),
  migrations: [], events: [],
  // health: host name -> { status, history, seenAt (this browser's clock) }.
  health: new Map(), drops: [],
};
const maxEvents = 200;
const maxDrops = 100;
// As the server's: a host silent for longer is not reporting, and the
// history goes back as far.
const staleAfterMs = 15000;
const historyMs = 10 * 60 * 1000;
let source = null;
let statusSource = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

async function api(path, init) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, init));
  if (r.status === 204) return null;
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const err = new Error(body.error || r.status + " " + r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

// Keys of each kind of object, as the watch stream names them.
const kinds = {
  tenant: { map: "tenants", key: (o) => o.CustomerID, field: "Tenant" },
  routingDomain: { map: "rds", key: (o) => o.RoutingDomainID, field: "RoutingDomain" },
  subnet: { map: "subnets", key: (o) => o.VirtualSubnetID, field: "Subnet" },
  host: { map: "hosts", key: (o) => o.Name, field: "Host" },
  vm: { map: "vms", key: (o) => o.Name, field: "VM" },
  gateway: { map: "gateways", key: (o) => o.Name, field: "Gateway" },
};

async function load() {
  const [tenants, rds, subnets, hosts, vms, gateways, health] = await Promise.all(
    ["/v1/tenants", "/v1/routing-domains", "/v1/subnets", "/v1/hosts", "/v1/vms", "/v1/gateways", "/v1/status"].map((p) => api(p)));
  const now = Date.now();
  state.health = new Map(health.map((h) => [h.Status.Host, { status: h.Status, history: h.History || [], seenAt: h.Status.Reporting ? now : 0 }]));
  const fill = (kind, list) => {
    const k = kinds[kind];
    state[k.map] = new Map(list.map((o) => [k.key(o), o]));
  };
  fill("tenant", tenants); fill("routingDomain", rds); fill("subnet", subnets);
  fill("host", hosts); fill("vm", vms); fill("gateway", gateways);
  for (const vm of vms) {
    if (vm.PreviousHost && !state.migrations.some((m) => m.vm === vm.Name && m.at === vm.MigratedAt)) {
      state.migrations.push({ vm: vm.Name, from: vm.PreviousHost, to: vm.Host, at: vm.MigratedAt });
    }
  }
}

function summary(ev) {
  const k = kinds[ev.Kind];
  const obj = k ? (ev[k.field] || ev["Prev" + k.field]) : null;
  const name = ev.Name || (k && obj ? String(k.key(obj)) : "");
  return `${ev.Type} ${ev.Kind || ""} ${name}`.trim();
}

function apply(ev) {
  if (ev.Type === "progress") return;
  if (ev.Type === "resync") { reconnect(); return; }
  const when = new Date();
  let cls = ev.Type;
  if (ev.Kind === "liveness") {
    const h = state.hosts.get(ev.Name);
    if (h) h.Alive = ev.Type === "put";
  } else if (kinds[ev.Kind]) {
    const k = kinds[ev.Kind];
    const cur = ev[k.field], prev = ev["Prev" + k.field];
    if (ev.Type === "delete" && prev) state[k.map].delete(k.key(prev));
    if (ev.Type === "put" && cur) state[k.map].set(k.key(cur), cur);
    if (ev.Kind === "vm" && cur && prev && prev.Host && cur.Host !== prev.Host) {
      cls = "migration";
      state.migrations.push({ vm: cur.Name, from: prev.Host, to: cur.Host, at: cur.MigratedAt || when.toISOString() });
    }
  }
  let text = summary(ev);
  if (cls === "migration") text = `migrate vm ${ev.VM.Name} from ${ev.PrevVM.Host} to ${ev.VM.Host}`;
  state.events.unshift({ at: when, text, cls });
  state.events.length = Math.min(state.events.length, maxEvents);
}

// mac shows a MAC the API gives in its WMI form (00155D010203) as
// 00:15:5d:01:02:03.
function mac(m) {
  return /^[0-9A-Fa-f]{12}$/.test(m || "") ? m.toLowerCase().match(/../g).join(":") : (m || "");
}

function time(t) {
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleTimeString();
}

function renderTopology() {
  const root = $("topology");
  root.replaceChildren();
  const vmsOf = (vsid) => [...state.vms.values()].filter((v) => v.VirtualSubnetID === vsid)
    .sort((a, b) => a.Name.localeCompare(b.Name));
  const tenants = [...state.tenants.values()].sort((a, b) => a.Name.localeCompare(b.Name));
  for (const t of tenants) {
    const box = el("div", { class: "tenant", "data-tenant": t.Name },
      el("h3", {}, t.Name + " ", el("span", { class: "id" }, t.CustomerID)));
    for (const rd of [...state.rds.values()].filter((r) => r.CustomerID === t.CustomerID)) {
      const rdBox = el("div", { class: "rd" }, el("h4", {}, "routing domain " + (rd.Name || "") + " ", el("span", { class: "id" }, rd.RoutingDomainID)));
      const subnets = [...state.subnets.values()].filter((s) => s.RoutingDomainID === rd.RoutingDomainID)
        .sort((a, b) => a.VirtualSubnetID - b.VirtualSubnetID);
      for (const s of subnets) {
        const tbody = el("tbody");
        for (const v of vmsOf(s.VirtualSubnetID)) {
          const moved = v.PreviousHost ? el("span", { class: "badge" }, "from " + v.PreviousHost) : null;
          tbody.append(el("tr", { "data-vm": v.Name, "data-host": v.Host },
            el("td", {}, v.Name), el("td", {}, (v.CustomerAddresses || []).join(", ")),
            el("td", {}, mac(v.MACAddress)), el("td", {}, v.Host, " ", moved), el("td", {}, v.ProviderAddress || "")));
        }
        for (const g of [...state.gateways.values()].filter((g) => g.VirtualSubnetID === s.VirtualSubnetID)) {
          tbody.append(el("tr", { "data-gateway": g.Name },
            el("td", {}, g.Name, " ", el("span", { class: "badge" }, "gateway")), el("td", {}, g.CustomerAddress || ""),
            el("td", {}, mac(g.MACAddress)), el("td", {}, g.Host), el("td", {}, g.ProviderAddress || "")));
        }
        rdBox.append(el("div", { class: "subnet" },
          el("strong", {}, "VSID " + s.VirtualSubnetID), " " + (s.Prefixes || []).join(", ") + " · " + (s.Encapsulation || ""),
          el("table", {}, el("thead", {}, el("tr", {}, ...["VM", "Customer addresses", "MAC", "Host", "Provider address"].map((h) => el("th", {}, h)))), tbody)));
      }
      box.append(rdBox);
    }
    root.append(box);
  }
  if (!tenants.length) root.append(el("p", { class: "hint" }, "No tenants yet."));
}

function renderHosts() {
  const tbody = $("hosts").tBodies[0];
  tbody.replaceChildren();
  for (const h of [...state.hosts.values()].sort((a, b) => a.Name.localeCompare(b.Name))) {
    const vms = [...state.vms.values()].filter((v) => v.Host === h.Name).map((v) => v.Name).sort();
    const gws = [...state.gateways.values()].filter((g) => g.Host === h.Name).map((g) => g.Name).sort();
    const hh = state.health.get(h.Name);
    const rep = reporting(hh);
    const s = rep ? hh.status : null;
    const pas = s ? (s.ProviderAddresses || []).map((p) => el("span", { class: "pa", "data-pa": p.Address, "data-state": p.State }, `${p.Address} ${p.State}`, " "))
      : [(h.ProviderAddresses || []).join(", ")];
    const drops = s ? (s.Drops || []).map((d) => `${d.Reason} ${d.Count}`).join(", ") : "";
    tbody.append(el("tr", { "data-host": h.Name, "data-reporting": rep ? "yes" : "no",
      "data-fastpath": s ? (s.FastPath ? "on" : "off") : "", "data-insync": s ? (s.InSync ? "yes" : "no") : "" },
      el("td", {}, h.Name),
      el("td", { class: h.Alive ? "alive" : "dead" }, h.Alive ? "alive" : "down"),
      el("td", { class: rep ? "alive" : "dead" }, rep ? "reporting" : "not reporting"),
      el("td", {}, ...pas),
      el("td", { class: "fastpath" }, s ? (s.FastPath ? "on" : "off") : "–"),
      el("td", { class: s ? (s.InSync ? "alive" : "dead") : "" }, s ? `${s.InSync ? "in sync" : "syncing"} at ${s.Revision}` : "–"),
      el("td", {}, s ? `${s.Version || "?"}, up ${uptime(s.Started)}` : "–"),
      el("td", {}, hh ? spark(rates(hh.history, (x) => x.Totals)) : "–"),
      el("td", { class: "drops" }, drops),
      el("td", {}, vms.join(", ")), el("td", {}, gws.join(", "))));
  }
}

function renderMigrations() {
  const tbody = $("migrations").tBodies[0];
  tbody.replaceChildren();
  for (const m of [...state.migrations].reverse()) {
    tbody.append(el("tr", { "data-vm": m.vm }, el("td", {}, time(m.at)), el("td", {}, m.vm), el("td", {}, m.from), el("td", {}, m.to)));
  }
}

function renderEvents() {
  $("events").replaceChildren(...state.events.map((e) => el("li", { class: e.cls }, time(e.at) + "  " + e.text)));
}

// applyStatus takes one message of the status stream.
function applyStatus(ev) {
  if (ev.Type === "status" && ev.Status) {
    const s = ev.Status;
    const h = state.health.get(s.Host) || { history: [] };
    const sample = { Time: s.Received, Totals: s.Totals, Ports: Object.fromEntries((s.Ports || []).map((p) => [p.Port, p])) };
    const last = h.history[h.history.length - 1];
    if (!last || last.Time !== sample.Time) h.history.push(sample);
    const cut = Date.parse(s.Received) - historyMs;
    while (h.history.length && Date.parse(h.history[0].Time) < cut) h.history.shift();
    h.status = s;
    h.seenAt = Date.now();
    state.health.set(s.Host, h);
  } else if (ev.Type === "drop" && ev.Drop) {
    state.drops.unshift(ev.Drop);
    state.drops.length = Math.min(state.drops.length, maxDrops);
  }
}

function reporting(h) {
  return h && h.status && Date.now() - h.seenAt <= staleAfterMs;
}

// rates are the frames a second between consecutive samples, of what pick
// takes from a sample.
function rates(history, pick) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const a = pick(history[i - 1]), b = pick(history[i]);
    const dt = (Date.parse(history[i].Time) - Date.parse(history[i - 1].Time)) / 1000;
    if (!a || !b || dt <= 0) continue;
    const d = (b.RxFrames + b.TxFrames) - (a.RxFrames + a.TxFrames);
    out.push(d < 0 ? 0 : d / dt);
  }
  return out;
}

const svgNS = "http://www.w3.org/2000/svg";

// spark draws values as a small line, with the latest value beside it.
function spark(values) {
  const w = 120, h = 24;
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const top = Math.max(1, ...values);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("points", values.map((v, i) => `${(i * step).toFixed(1)},${(h - 1 - (v / top) * (h - 2)).toFixed(1)}`).join(" "));
  svg.append(line);
  const latest = values.length ? values[values.length - 1] : 0;
  return el("span", { class: "rate", "data-rate": latest.toFixed(1) }, svg, " " + latest.toFixed(1) + "/s");
}

function uptime(started) {
  const s = Math.max(0, (Date.now() - Date.parse(started)) / 1000);
  if (s < 120) return Math.round(s) + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  return Math.round(s / 3600) + "h";
}

function renderTraffic() {
  const tbody = $("traffic").tBodies[0];
  tbody.replaceChildren();
  for (const v of [...state.vms.values()].sort((a, b) => a.Name.localeCompare(b.Name))) {
    const h = state.health.get(v.Host);
    const hist = h ? h.history : [];
    const last = hist.length ? (hist[hist.length - 1].Ports || {})[v.Name] : null;
    tbody.append(el("tr", { "data-vm": v.Name, "data-host": v.Host },
      el("td", {}, v.Name), el("td", {}, v.Host),
      el("td", {}, last ? `${last.RxFrames} frames, ${last.RxBytes} bytes` : "–"),
      el("td", {}, last ? `${last.TxFrames} frames, ${last.TxBytes} bytes` : "–"),
      el("td", {}, spark(rates(hist, (s) => (s.Ports || {})[v.Name]))),
      el("td", {}, last ? String(last.Drops) : "–")));
  }
}

function renderDrops() {
  $("drops").replaceChildren(...state.drops.map((d) => el("li", { class: "drop", "data-reason": d.Reason, "data-host": d.Host || "" },
    `${time(d.Time)}  ${d.Host} ${d.Reason}` + (d.Port ? ` port ${d.Port}` : "") + (d.FromUnderlay ? " from the underlay" : "") +
    (d.Src || d.Dst ? `  ${d.Src || "?"} -> ${d.Dst || "?"}` : "") + (d.Header ? `  ${d.Header}` : ""))));
}

// renderTraceFrom offers the VMs as trace sources, keeping the choice.
function renderTraceFrom() {
  const sel = $("trace-from");
  const cur = sel.value;
  sel.replaceChildren(...[...state.vms.keys()].sort().map((n) => el("option", { value: n }, n)));
  if (state.vms.has(cur)) sel.value = cur;
}

function stepRows(steps) {
  return (steps || []).map((st) => el("tr", { "data-step": st.Step },
    el("td", {}, st.Step), el("td", {}, st.Detail || ""), el("td", {}, st.Object || ""),
    el("td", {}, [st.Reason, st.Fix].filter(Boolean).join(": "))));
}

function renderTrace(rep) {
  const root = $("trace-result");
  root.replaceChildren();
  (rep.Hops || []).forEach((hop, i) => {
    const t = hop.Trace || {};
    const steps = [...((t.Resolve || {}).Steps || []), ...((t.Packet || {}).Steps || [])];
    const dropped = (t.Packet && t.Packet.Verdict === "drop") || (!t.Packet && t.Resolve);
    root.append(el("div", { class: "hop", "data-hop": String(i), "data-host": hop.Host || "" },
      el("h3", {}, `${hop.Host || "?"} (${i === 0 ? "source" : "arrival"})`, " ", el("span", { class: "muted" }, hop.Endpoint || "")),
      el("table", {}, el("thead", {}, el("tr", {}, ...["Step", "Detail", "Object", "Why / fix"].map((x) => el("th", {}, x)))),
        el("tbody", {}, ...stepRows(steps))),
      el("p", { class: "verdict" + (dropped ? " drop" : "") }, hop.Verdict || "")));
  });
  if (rep.Note) root.append(el("p", { class: "hint", id: "trace-note" }, "note: " + rep.Note));
  if (rep.Live) {
    const l = rep.Live;
    const said = l.DiedAt ? `the probe died on ${l.DiedAt}: ${l.Reason}` : l.Delivered ? "the probe was delivered" : "no drop and no delivery counted";
    root.append(el("p", { class: "verdict", id: "trace-live" }, `live probe ${l.Mark}: ${said}`));
  }
}

$("trace-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("trace-error").textContent = "";
  $("trace-result").replaceChildren(el("p", { class: "hint" }, "tracing…"));
  const body = { From: $("trace-from").value, Destination: $("trace-to").value.trim(), Protocol: $("trace-proto").value, Live: $("trace-live").checked };
  const port = parseInt($("trace-dport").value, 10);
  if (port > 0) body.DestinationPort = port;
  try {
    renderTrace(await api("/v1/trace", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }));
  } catch (e) {
    $("trace-result").replaceChildren();
    $("trace-error").textContent = e.message;
  }
});

function render() {
  renderTopology(); renderHosts(); renderTraffic(); renderDrops(); renderTraceFrom(); renderMigrations(); renderEvents();
}

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

function reconnect() {
  if (source) source.close();
  // EventSource sends the session cookie and asks for text/event-stream,
  // which /v1/watch answers as server-sent events.
  source = new EventSource("/v1/watch");
  source.onopen = async () => {
    try {
      await load();
      render();
      setStatus("live", "live");
    } catch (e) {
      setStatus("error: " + e.message, "down");
    }
  };
  source.onmessage = (m) => {
    apply(JSON.parse(m.data));
    render();
  };
  source.onerror = () => setStatus("reconnecting…", "down");
  if (statusSource) statusSource.close();
  statusSource = new EventSource("/v1/status/stream");
  statusSource.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.Type === "progress") return;
    applyStatus(ev);
    renderHosts(); renderTraffic(); renderDrops();
  };
}

// A host that stops reporting shows so without any message arriving.
setInterval(() => { if (source) renderHosts(); }, 5000);

async function start() {
  let me;
  try {
    me = await api("/v1/pki/whoami");
  } catch (e) {
    if (e.status === 401) {
      $("login").hidden = false;
      $("main").hidden = true;
      setStatus("logged out");
      return;
    }
    setStatus("error: " + e.message, "down");
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  $("whoami").textContent = `${me.Name} (${me.Role})`;
  $("logout").hidden = false;
  reconnect();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("/ui/session", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ Token: $("token").value }) });
    $("token").value = "";
    start();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
});

$("logout").addEventListener("click", async () => {
  if (source) source.close();
  if (statusSource) statusSource.close();
  source = statusSource = null;
  await api("/ui/session", { method: "DELETE" }).catch(() => {});
  $("logout").hidden = true;
  $("whoami").textContent = "";
  start();
});

start();
