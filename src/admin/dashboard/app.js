// weir's dashboard: polls /dashboard/data once a second and draws it. No framework, no CDN:
// everything is in this file, served by weir itself. Text from the configuration is always set
// with textContent, never as HTML.
"use strict";

const WINDOW_S = 300; // the charts show the last five minutes
const COLORS = ["#3465a4", "#e07b00", "#1a7f37", "#8e44ad", "#c9302c", "#16a2b8", "#6b6b6b"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toFixed(digits === undefined ? 1 : digits);
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], { hour12: false });
}

function empty(text) {
  return el("div", { class: "empty" }, text);
}

// ---- commands (POST, with the admin token when one is set) ----

async function post(path, what) {
  if (!window.confirm(what + "?")) return;
  let token = sessionStorage.getItem("weir-admin-token");
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    const r = await fetch(path, { method: "POST", headers, body: "{}" });
    if (r.status === 401) {
      token = window.prompt("This weir's admin API needs its token (--admin-token-file):");
      if (!token) { note("Not sent: the admin API needs its token."); return; }
      sessionStorage.setItem("weir-admin-token", token);
      continue;
    }
    const body = await r.text();
    note(r.ok ? what + ": done." : what + " refused (" + r.status + "): " + body);
    refresh();
    return;
  }
  sessionStorage.removeItem("weir-admin-token");
  note(what + " refused: the token was not accepted.");
}

function note(text) {
  const n = document.getElementById("note") || document.body.appendChild(el("div", { id: "note", class: "card", role: "status" }));
  n.textContent = text;
}

// ---- series ----

// The points of one version, as [t, rps, success, p50, p99] with t in seconds.
function seriesOf(data, service, version) {
  const s = data.versions.find((v) => v.service === service && v.version === version);
  return s ? s.points : [];
}

// Mean requests per second over the last `secs`.
function recentRps(points, secs, now) {
  const recent = points.filter((p) => p[0] > now - secs);
  if (!recent.length) return 0;
  return recent.reduce((a, p) => a + p[1], 0) / recent.length;
}

function chart(title, unit, lines, now, fixedMax) {
  const box = el("div", { class: "chart" });
  const current = lines.filter((l) => l.label).map((l) => {
    const last = [...l.points].reverse().find((p) => p[1] !== null);
    return l.label + " " + (last ? fmt(last[1], unit === "%" ? 2 : 1) + unit : "–");
  });
  box.append(el("div", { class: "title" }, el("span", {}, title), el("span", {}, current.join(" · "))));
  const w = 300, h = 120;
  const g = svg("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", role: "img", "aria-label": title });
  let max = fixedMax || 0;
  let min = 0;
  if (!fixedMax) for (const l of lines) for (const p of l.points) if (p[1] !== null) max = Math.max(max, p[1]);
  if (unit === "%") { min = Math.min(100, ...lines.flatMap((l) => l.points.filter((p) => p[1] !== null).map((p) => p[1]))); min = Math.max(0, Math.floor(min - 1)); max = 100; }
  if (max <= min) max = min + 1;
  // The x axis: the last five minutes, or since the first point when there is less (at least
  // 30 s), so that young series are not squeezed against the right edge.
  const first = Math.min(...lines.flatMap((l) => l.points.map((p) => p[0])), now);
  const start = Math.max(now - WINDOW_S, Math.min(first, now - 30));
  const span = now - start;
  for (const y of [0.25, 0.5, 0.75]) g.append(svg("line", { x1: 0, x2: w, y1: h * y, y2: h * y, stroke: "#eee" }));
  for (const l of lines) {
    const pts = l.points.filter((p) => p[1] !== null && p[0] >= start)
      .map((p) => `${((p[0] - start) / span * w).toFixed(1)},${(h - (p[1] - min) / (max - min) * (h - 4) - 2).toFixed(1)}`);
    if (pts.length) g.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: l.color, "stroke-width": 1.6, "vector-effect": "non-scaling-stroke" }));
  }
  box.append(g);
  box.append(el("div", { class: "legend muted" }, el("span", {}, "0 – " + fmt(max, unit === "%" ? 0 : 1) + unit + (unit === "%" ? " (from " + min + "%)" : "")), el("span", {}, "last " + (span >= 120 ? Math.round(span / 60) + " min" : Math.round(span) + " s"))));
  return box;
}

function versionCharts(data, sides) {
  // sides: [{service, version, label, color}]
  const now = data.now;
  const lines = (i) => sides.map((s) => ({ label: s.label, color: s.color, points: seriesOf(data, s.service, s.version).map((p) => [p[0], p[i]]) }));
  const any = sides.some((s) => seriesOf(data, s.service, s.version).some((p) => p[1] > 0));
  const box = el("div", {});
  box.append(el("div", { class: "legend" }, sides.map((s) => el("span", {}, el("i", { style: "background:" + s.color }), s.label))));
  if (!any) box.append(empty("No traffic yet: the charts fill as requests arrive (one point a second)."));
  box.append(el("div", { class: "charts" },
    chart("requests per second", "/s", lines(1), now),
    chart("success rate", "%", lines(2), now),
    chart("p50 latency", " ms", lines(3), now),
    chart("p99 latency", " ms", lines(4), now)));
  return box;
}

// ---- sections ----

const FINISHED = ["Succeeded", "Failed"];
const ALLOWED = {
  promote: (c) => ["Progressing", "Waiting", "WaitingPromotion"].includes(c.phase),
  rollback: (c) => ["Progressing", "Waiting", "WaitingPromotion", "Promoting", "Finalising"].includes(c.phase),
  pause: (c) => !c.status.paused && !FINISHED.includes(c.phase),
  resume: (c) => c.status.paused,
};

function rollouts(data) {
  const out = [];
  if (!data.canaries.length) {
    return [empty("No rollout yet. A Flagger Canary in the configuration starts one: its steps, the checks at each step and the decisions show here.")];
  }
  for (const c of data.canaries) {
    const s = c.status;
    const primary = { service: c.sides.primary.service, version: c.sides.primary.version, label: "primary " + c.primary, color: COLORS[0] };
    const canary = { service: c.sides.canary.service, version: c.sides.canary.version, label: "canary " + c.canary, color: COLORS[1] };
    const pr = recentRps(seriesOf(data, primary.service, primary.version), 10, data.now);
    const cr = recentRps(seriesOf(data, canary.service, canary.version), 10, data.now);
    const served = pr + cr > 0 ? (100 * cr / (pr + cr)) : null;
    const last = s.timeline.length ? s.timeline[s.timeline.length - 1].time : (s.events.length ? s.events[s.events.length - 1].time : null);
    const next = last !== null && !FINISHED.includes(c.phase) && !s.paused ? Math.max(0, last + c.intervalMs / 1000 - data.now) : null;
    const steps = c.steps && c.steps.length ? c.steps.length : null;
    const card = el("div", { class: "card rollout", "data-canary": c.name });
    card.append(el("div", { class: "row" },
      el("h3", {}, c.name),
      el("span", { class: "badge " + c.phase, "data-phase": c.phase }, c.phase),
      s.paused ? el("span", { class: "badge paused" }, "paused") : null,
      el("span", { class: "muted" }, c.strategy + " of " + c.service + ": " + c.primary + " → " + c.canary + (c.driver ? " · driven by " + c.driver : ""))));
    card.append(el("div", { class: "row", style: "margin:.6em 0" },
      el("div", { class: "kv" }, el("b", { "data-field": "step" }, String(s.iterations) + (steps ? " / " + steps : "")), el("span", {}, "steps passed")),
      el("div", { class: "kv" }, el("b", { "data-field": "weight" }, c.canaryWeight + "%"), el("span", {}, "canary weight set")),
      el("div", { class: "kv" }, el("b", { "data-field": "served" }, served === null ? "–" : fmt(served, 1) + "%"), el("span", {}, "canary share served (10 s)")),
      el("div", { class: "kv" }, el("b", { "data-field": "failed" }, c.failedChecks + " / " + c.threshold), el("span", {}, "failed checks / threshold")),
      el("div", { class: "kv" }, el("b", { "data-field": "next" }, next === null ? "–" : fmt(next, 0) + " s"), el("span", {}, "to the next check")),
      el("div", { class: "bar", title: "canary weight" }, el("div", { style: "width:" + c.canaryWeight + "%" }))));
    const actions = el("div", { class: "row" });
    for (const a of ["promote", "rollback", "pause", "resume"]) {
      actions.append(el("button", {
        "data-action": a, class: a === "rollback" ? "danger" : "", disabled: !ALLOWED[a](c),
        onclick: () => post("/canaries/" + encodeURIComponent(c.name) + "/" + a, a[0].toUpperCase() + a.slice(1) + " " + c.name),
      }, a));
    }
    card.append(actions);
    card.append(versionCharts(data, [primary, canary]));
    // The decision timeline: every analysis, newest first, with what each check measured.
    if (!s.timeline.length) {
      card.append(empty("No analysis yet: the first check comes one interval after the rollout starts, with traffic on the canary."));
    } else {
      const SHOWN = 15;
      const rows = [...s.timeline].reverse().slice(0, SHOWN).map((r) => el("tr", { class: "round" },
        el("td", {}, clock(r.time)),
        el("td", {}, r.weight + "%"),
        el("td", {}, r.checks.map((k) => el("div", { class: k.result }, k.metric + ": " + (k.value === null || k.value === undefined ? "no value" : fmt(k.value, 2)) + " (" + range(k) + ", " + k.sample + " requests) " + k.result))),
        el("td", { class: r.outcome }, r.outcome === "pass" ? "step" : r.outcome === "fail" ? "failed check" : "hold")));
      card.append(el("h4", {}, "Decisions"), el("table", { class: "timeline" },
        el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "weight"), el("th", {}, "checks (value, range, sample)"), el("th", {}, "decision"))),
        el("tbody", {}, rows)));
      if (s.timeline.length > SHOWN) card.append(el("div", { class: "muted" }, (s.timeline.length - SHOWN) + " older rounds: GET /canaries/" + c.name));
    }
    const events = [...s.events].reverse().slice(0, 8).map((e) => el("li", { class: e.type === "Warning" ? "err" : "" }, clock(e.time) + "  " + e.message));
    card.append(el("details", {}, el("summary", {}, "Events"), el("ul", {}, events)));
    out.push(card);
  }
  return out;
}

// A/B experiments: variants side by side, the primary goal's rate over time, the
// sample-ratio check (loud when it fails), the decision.
function experiments(data) {
  if (!data.experiments || !data.experiments.length) {
    return [empty("No experiment. An Experiment (weir.io/v1alpha1) in the configuration starts one: its variants, goals and decision show here.")];
  }
  const pct = (v) => fmt(v * 100, 1) + "%";
  return data.experiments.map((x) => {
    const card = el("div", { class: "card experiment", "data-experiment": x.name });
    card.append(el("div", { class: "row" },
      el("h3", {}, x.name),
      el("span", { class: "badge " + (x.phase === "Concluded" ? "Succeeded" : x.phase === "Stopped" ? "Failed" : "Progressing"), "data-phase": x.phase }, x.phase),
      el("span", { class: "muted" }, "on " + x.target + " · primary goal " + x.primaryGoal + " · " + x.confidence + "% confidence · on conclusion: " + x.onConclusion)));
    if (x.srm && x.srm.mismatch) {
      card.append(el("div", { class: "alarm", "data-field": "srm", role: "alert" },
        "SAMPLE RATIO MISMATCH (p = " + Number(x.srm.pValue).toExponential(1) + "): participants do not fit the weights; the assignment is broken and no decision is made."));
    }
    card.append(el("div", { class: "decision" + (x.decision.winner ? " won" : ""), "data-field": "decision" }, x.decision.reason || "no look yet"));
    const goals = Object.keys((x.variants[0] || {}).goals || {});
    const head = el("tr", {}, el("th", {}, "variant"), el("th", {}, "weight"), el("th", {}, "users"),
      goals.map((g) => el("th", {}, g + (g === x.primaryGoal ? " (primary)" : ""))));
    const rows = x.variants.map((v, i) => el("tr", { "data-variant": v.name },
      el("td", {}, el("i", { class: "swatch", style: "background:" + COLORS[i % COLORS.length] }), v.name + " (" + v.subset + ")"),
      el("td", {}, String(v.weight)),
      el("td", { "data-field": "users" }, String(v.users)),
      goals.map((g) => {
        const r = v.goals[g];
        if (!r) return el("td", {}, "–");
        const parts = [el("div", {}, r.conversions + " · " + pct(r.rate) + " [" + pct(r.interval[0]) + ".." + pct(r.interval[1]) + "]")];
        if (r.value) parts.push(el("div", { class: "muted" }, fmt(r.value.mean, 2) + " per user (sum " + fmt(r.value.sum, 2) + ")"));
        if (r.lift) parts.push(el("div", { class: r.lift.interval[0] > 0 ? "pass" : r.lift.interval[1] < 0 ? "fail" : "muted" },
          "lift " + fmt(r.lift.percent, 1) + "% [" + fmt(r.lift.interval[0], 0) + "%.." + fmt(r.lift.interval[1], 0) + "%]"));
        return el("td", {}, parts);
      })));
    card.append(el("table", { class: "variants" }, el("thead", {}, head), el("tbody", {}, rows)));
    const lines = [];
    x.variants.forEach((v, i) => {
      const color = COLORS[i % COLORS.length];
      lines.push({ label: v.name, color, points: x.history.map((h) => [h.time, h.variants[i] ? h.variants[i][1] * 100 : null]) });
      lines.push({ label: "", band: true, color: color + "66", points: x.history.map((h) => [h.time, h.variants[i] ? h.variants[i][2][0] * 100 : null]) });
      lines.push({ label: "", band: true, color: color + "66", points: x.history.map((h) => [h.time, h.variants[i] ? h.variants[i][2][1] * 100 : null]) });
    });
    card.append(el("div", { class: "charts" }, chart(x.primaryGoal + " rate with its interval", "% ", lines, data.now)));
    const actions = el("div", { class: "row" });
    for (const a of ["stop", "conclude"]) {
      actions.append(el("button", {
        "data-action": a, class: a === "stop" ? "danger" : "", disabled: x.phase !== "Running",
        onclick: () => post("/experiments/" + encodeURIComponent(x.name) + "/" + a, a[0].toUpperCase() + a.slice(1) + " experiment " + x.name),
      }, a));
    }
    card.append(actions);
    const events = [...x.events].reverse().slice(0, 8).map((e) => el("li", { class: e.type === "Warning" ? "err" : "" }, clock(e.time) + "  " + e.message));
    card.append(el("details", {}, el("summary", {}, "Events"), el("ul", {}, events)));
    return card;
  });
}

function range(k) {
  if (k.min !== undefined && k.max !== undefined) return "range " + k.min + "–" + k.max;
  if (k.min !== undefined) return "min " + k.min;
  if (k.max !== undefined) return "max " + k.max;
  return "no range";
}

function services(data) {
  if (!data.services.length) return [empty("No VirtualService yet: routes and their weights show here once the configuration has one.")];
  return data.services.map((svc) => {
    const card = el("div", { class: "card service" });
    card.append(el("h3", {}, svc.host), el("div", { class: "muted" }, "VirtualService " + svc.virtualService));
    const rows = svc.routes.map((r) => el("tr", {},
      el("td", {}, r.name),
      el("td", {}, r.match || "any request"),
      el("td", {}, r.destinations.map((d) => el("div", {}, (d.subset ? d.host + " " + d.subset : d.host) + ": " + (d.weight === null ? "100" : d.weight) + "%")))));
    card.append(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "route"), el("th", {}, "match"), el("th", {}, "destinations (weight in force)"))), el("tbody", {}, rows)));
    const versions = data.versions.filter((v) => v.service === svc.host);
    if (versions.length) {
      card.append(versionCharts(data, versions.map((v, i) => ({ service: v.service, version: v.version, label: v.version || "(no subset)", color: COLORS[i % COLORS.length] }))));
    } else {
      card.append(empty("No traffic yet: the charts fill as requests arrive (one point a second)."));
    }
    return card;
  });
}

function endpoints(data) {
  const clusters = data.clusters.clusters || [];
  if (!clusters.length) return [empty("No cluster yet: ServiceEntry endpoints show here, with their health.")];
  const rows = [];
  for (const c of clusters) {
    for (const e of c.endpoints) {
      rows.push(el("tr", {},
        el("td", {}, c.service + (c.subset ? " " + c.subset : "")),
        el("td", {}, e.address),
        el("td", { class: e.state === "closed" ? "pass" : "fail" }, e.state + (e.ejection_reason ? " (" + e.ejection_reason + ")" : "")),
        el("td", {}, e.healthy === null || e.healthy === undefined ? "–" : e.healthy ? "healthy" : "unhealthy"),
        el("td", {}, String(e.ejections)),
        el("td", {}, String(e.active_requests)),
        el("td", {}, String(e.total_requests)),
        el("td", {}, c.circuit_breaker ? c.circuit_breaker.state : "–")));
    }
  }
  if (!rows.length) return [empty("The clusters have no endpoints.")];
  return [el("table", {}, el("thead", {}, el("tr", {}, ["cluster", "endpoint", "outlier state", "health check", "ejections", "in flight", "requests", "breaker"].map((h) => el("th", {}, h)))), el("tbody", {}, rows))];
}

// Access control: the policies in force, by where they apply, with what each decided.
function access(data) {
  if (!data.access || !data.access.length) {
    return [empty("No access policy. RequestAuthentication, AuthorizationPolicy (security.istio.io) and Kong's key-auth, basic-auth, jwt, acl and ip-restriction show here.")];
  }
  return data.access.map((s) => {
    const rows = s.policies.map((p) =>
      el("tr", { "data-policy": p.name },
        el("td", {}, p.name), el("td", {}, p.kind),
        el("td", { "data-field": "allowed" }, p.counts.allowed),
        el("td", { "data-field": "denied" }, p.counts.denied + p.counts.invalidToken),
        el("td", {}, p.counts.unauthenticated)));
    return el("div", { class: "card", "data-scope": s.scope },
      el("h3", {}, s.scope),
      el("table", {},
        el("tr", {}, el("th", {}, "policy"), el("th", {}, "kind"), el("th", {}, "allowed"), el("th", {}, "refused"), el("th", {}, "without credentials")),
        rows));
  });
}

function faults(data) {
  const f = data.faults;
  const out = [el("div", { class: "row" },
    el("span", {}, "Fault injection is "), el("b", { id: "faults-state" }, f.enabled ? "on" : "off (kill switch)"),
    el("button", { class: f.enabled ? "danger" : "", "data-action": f.enabled ? "faults-disable" : "faults-enable",
      onclick: () => post(f.enabled ? "/faults/disable" : "/faults/enable", f.enabled ? "Stop every fault (kill switch)" : "Inject configured faults again") },
    f.enabled ? "stop every fault" : "enable faults"))];
  if (!f.rules.length) out.push(empty("No fault is configured (VirtualService http[].fault)."));
  else out.push(el("table", {}, el("tbody", {}, f.rules.map((r) => el("tr", {}, el("td", {}, r.virtualService), el("td", {}, r.rule), el("td", {}, JSON.stringify(r.fault)))))));
  return out;
}

function fleet(data) {
  const f = data.fleet;
  if (!f) return [empty("This weir runs on its own (--config). With --store, the fleet's instances, the revision each serves and its lag show here.")];
  if (f.error) return [el("div", { class: "empty err" }, "The store cannot be read: " + f.error)];
  const rows = f.instances.map((i) => el("tr", {},
    el("td", {}, i.id + (i.self ? " (this one)" : "")), el("td", {}, i.admin), el("td", {}, String(i.revision)),
    el("td", {}, String(Math.max(0, f.storeRevision - i.revision))), el("td", {}, fmt(i.lastSeenAgoMs / 1000, 1) + " s ago"), el("td", {}, i.ready ? "ready" : "not ready")));
  return [el("div", { class: "muted" }, f.store + " · store revision " + f.storeRevision + (f.connected ? "" : " · not connected")),
    el("table", {}, el("thead", {}, el("tr", {}, ["instance", "admin", "revision served", "revisions behind", "last seen", ""].map((h) => el("th", {}, h)))), el("tbody", {}, rows))];
}

// ---- loop ----

let timer = null;

function render(data) {
  document.getElementById("summary").textContent =
    "generation " + data.generation + (data.ready ? " · ready" : " · not ready") + (data.fleet && data.fleet.instance ? " · instance " + data.fleet.instance : "") + " · " + clock(data.now);
  document.getElementById("killswitch").textContent = data.faults.enabled ? "" : "faults stopped by the kill switch";
  const put = (id, nodes) => document.getElementById(id).replaceChildren(...nodes);
  // Keep open <details> open across refreshes.
  const open = new Set([...document.querySelectorAll("details[open]")].map((d) => d.closest("[data-canary]")?.dataset.canary));
  put("rollouts", rollouts(data));
  for (const c of document.querySelectorAll("[data-canary]")) if (open.has(c.dataset.canary)) c.querySelector("details").open = true;
  put("experiments", experiments(data));
  put("access", access(data));
  put("services", services(data));
  put("endpoints", endpoints(data));
  put("faults", faults(data));
  put("fleet", fleet(data));
  document.body.dataset.loaded = "true";
}

async function refresh() {
  clearTimeout(timer);
  try {
    const r = await fetch("/dashboard/data", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    document.getElementById("summary").textContent = "cannot reach weir's admin API (" + e.message + "); retrying";
  }
  timer = setTimeout(refresh, 1000);
}

refresh();
