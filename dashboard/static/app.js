// The wnv dashboard: reads the policy API as an observer and follows
// GET /v1/watch as server-sent events. Every value from the server is
// put into the page as text, never as markup.
"use strict";

const state = {
  tenants: new Map(), rds: new Map(), subnets: new Map(),
  hosts: new Map(), vms: new Map(), gateways: new Map(),
  migrations: [], events: [],
};
const maxEvents = 200;
let source = null;

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
  const [tenants, rds, subnets, hosts, vms, gateways] = await Promise.all(
    ["/v1/tenants", "/v1/routing-domains", "/v1/subnets", "/v1/hosts", "/v1/vms", "/v1/gateways"].map((p) => api(p)));
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
    tbody.append(el("tr", { "data-host": h.Name },
      el("td", {}, h.Name),
      el("td", { class: h.Alive ? "alive" : "dead" }, h.Alive ? "alive" : "down"),
      el("td", {}, (h.ProviderAddresses || []).join(", ")),
      el("td", {}, vms.join(", ")), el("td", {}, gws.join(", ")),
      el("td", {}, time(h.RegisteredAt))));
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

function render() {
  renderTopology(); renderHosts(); renderMigrations(); renderEvents();
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
}

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
  await api("/ui/session", { method: "DELETE" }).catch(() => {});
  $("logout").hidden = true;
  $("whoami").textContent = "";
  start();
});

start();
