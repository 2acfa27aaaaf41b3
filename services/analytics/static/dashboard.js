// leadwire analytics dashboard: plain DOM + inline SVG, live via server-sent events.
// Every value is set with textContent (never innerHTML), so nothing from the data runs.
"use strict";

(function () {
  const app = document.getElementById("app");
  const live = document.getElementById("live");
  const updated = document.getElementById("updated");
  const title = document.getElementById("title");
  const SVG = "http://www.w3.org/2000/svg";

  // The session ended (signed out, key revoked or expired): back to the sign-in form.
  function signIn() {
    location.assign("/login?next=" + encodeURIComponent(location.pathname));
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const fmt = {
    int: (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US")),
    pct: (v) => (v === null || v === undefined ? "–" : v.toFixed(2) + " %"),
    ms: (v) => (v === null || v === undefined ? "–" : (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " ms"),
    time: (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–"),
    s: (v) => (v === null || v === undefined ? "–" : (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " s"),
  };

  function stat(label, value, key, tone) {
    return el("div", { class: "stat" + (tone ? " " + tone : "") }, [
      el("div", { class: "label", text: label }),
      el("div", { class: "value", "data-metric": key, text: value }),
    ]);
  }

  function statsRow(m) {
    const tone = m.success_rate === null ? "" : m.success_rate >= 95 ? "good" : m.success_rate < 80 ? "bad" : "";
    return el("div", { class: "stats" }, [
      stat("Requests", fmt.int(m.total_requests), "total_requests"),
      stat("Processed", fmt.int(m.successful_requests), "successful_requests"),
      stat("Failed", fmt.int(m.failed_requests), "failed_requests"),
      stat("Rejected", fmt.int(m.rejected_requests), "rejected_requests"),
      stat("Success rate", fmt.pct(m.success_rate), "success_rate", tone),
      stat("Avg time", fmt.ms(m.average_processing_time), "average_processing_time"),
      stat("p50", fmt.ms(m.p50_processing_time), "p50_processing_time"),
      stat("p95", fmt.ms(m.p95_processing_time), "p95_processing_time"),
      stat("p99", fmt.ms(m.p99_processing_time), "p99_processing_time"),
      stat("Last 24 h", fmt.int(m.last_24h.requests), "last_24h_requests"),
    ]);
  }

  // Stacked per-minute bars: processed (green), failed (red), rejected (amber).
  function chart(series, startIso, minutes) {
    const W = 600, H = 140, top = 8, bottom = 18, left = 30;
    const node = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    const p = series ? series.processed : [], f = series ? series.failed : [], r = series ? series.rejected : [];
    let max = 1;
    for (let i = 0; i < minutes; i++) max = Math.max(max, (p[i] || 0) + (f[i] || 0) + (r[i] || 0));
    const plotH = H - top - bottom, bw = (W - left) / minutes;
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH * (1 - frac);
      node.appendChild(svg("line", { x1: left, x2: W, y1: y, y2: y, stroke: "#e3e6ec" }));
      const t = svg("text", { x: left - 4, y: y + 3, "text-anchor": "end" });
      t.textContent = String(Math.round(max * frac));
      node.appendChild(t);
    }
    for (let i = 0; i < minutes; i++) {
      let y = top + plotH;
      for (const [vals, color] of [[p, "#2e9d5b"], [f, "#d64545"], [r, "#e0a030"]]) {
        const v = vals[i] || 0;
        if (!v) continue;
        const h = (v / max) * plotH;
        y -= h;
        const bar = svg("rect", { x: left + i * bw + 0.5, y: y, width: Math.max(bw - 1, 1), height: h, fill: color });
        const tip = svg("title", {});
        tip.textContent = v + " at minute " + (i + 1);
        bar.appendChild(tip);
        node.appendChild(bar);
      }
    }
    const start = new Date(startIso);
    const end = new Date(start.getTime() + (minutes - 1) * 60000);
    for (const [x, d, anchor] of [[left, start, "start"], [W, end, "end"]]) {
      const t = svg("text", { x: x, y: H - 4, "text-anchor": anchor });
      t.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      node.appendChild(t);
    }
    return node;
  }

  function countsTable(title, counts) {
    const entries = Object.entries(counts || {});
    const body = entries.length
      ? entries.map(([k, v]) => el("tr", {}, [el("td", { text: k }), el("td", { class: "num", text: fmt.int(v) })]))
      : [el("tr", {}, [el("td", { class: "empty", text: "none" })])];
    return el("div", {}, [el("h3", { class: "sub", text: title }), el("table", {}, body)]);
  }

  function errorsTable(errors) {
    if (!errors || !errors.length) return el("p", { class: "empty", text: "No recent errors." });
    return el("table", { class: "errors" }, [
      el("tr", {}, ["Time", "Status", "Type", "Message"].map((h) => el("th", { text: h }))),
      ...errors.slice(0, 5).map((e) =>
        el("tr", {}, [
          el("td", { text: fmt.time(e.occurred_at) }),
          el("td", { text: e.status }),
          el("td", { text: e.error_type }),
          el("td", { text: e.message }),
        ])
      ),
    ]);
  }

  function webhookCard(w, snap) {
    const m = w.metrics;
    const alerts = (w.alerts || []).filter((a) => a.firing);
    return el("section", { class: "card webhook", "data-webhook-id": w.webhook_id }, [
      el("h2", { text: w.name || w.webhook_id }, alerts.map((a) => el("span", { class: "badge firing", text: " " + a.metric + " alert" }))),
      el("div", { class: "sub", text: w.webhook_id + " · last request " + fmt.time(w.last_seen_at) }),
      statsRow(m),
      el("div", { class: "row" }, [
        el("div", {}, [
          el("div", { class: "legend" }, [
            el("span", {}, [el("i", { style: "background:#2e9d5b" }), document.createTextNode("processed")]),
            el("span", {}, [el("i", { style: "background:#d64545" }), document.createTextNode("failed")]),
            el("span", {}, [el("i", { style: "background:#e0a030" }), document.createTextNode("rejected")]),
            el("span", { text: "requests per minute, last " + snap.series_minutes + " min" }),
          ]),
          chart(snap.series[w.webhook_id], snap.series_start, snap.series_minutes),
        ]),
        el("div", {}, [countsTable("Match types", m.by_match_type), countsTable("Error types", m.by_error_type)]),
      ]),
      el("h3", { class: "sub", text: "Recent errors" }),
      errorsTable(w.recent_errors),
    ]);
  }

  // Vendor scorecards: one table, one window at a time, sorted by any column (click a
  // header; again to reverse). Loaded from /vendors after each live snapshot.
  const WINDOWS = [["last_24h", "24 h"], ["last_7d", "7 d"], ["last_30d", "30 d"]];
  const REASONS = [["validation", "Validation"], ["not_accepted", "Not accepted"],
    ["duplicate_lead", "Duplicate"], ["suppressed", "Suppressed"], ["other", "Other"]];
  const VENDOR_COLUMNS = [
    ["name", "Vendor", (v) => v.name || v.webhook_id, "text"],
    ["received", "Received", (v, w) => w.received, "int"],
    ["accepted", "Accepted", (v, w) => w.accepted, "int"],
    ["acceptance_rate", "Acceptance", (v, w) => w.acceptance_rate, "pct"],
    ...REASONS.map(([k, label]) => [k, label, (v, w) => w.rejected_by_reason[k], "int"]),
    ["failed", "Failed", (v, w) => w.failed, "int"],
    ["new_contact_rate", "New contacts", (v, w) => w.new_contact_rate, "pct"],
    ["speed_p50", "Speed p50", (v, w) => w.speed_to_lead.p50_seconds, "s"],
    ["speed_p95", "Speed p95", (v, w) => w.speed_to_lead.p95_seconds, "s"],
  ];
  const vendors = { data: null, window: "last_24h", sort: "received", desc: true,
    section: el("section", { class: "card vendors", id: "vendors" }), busy: false, again: false };

  function sortedVendors() {
    const col = VENDOR_COLUMNS.find((c) => c[0] === vendors.sort);
    const value = (v) => col[2](v, v.windows[vendors.window]);
    const rows = vendors.data.vendors.slice();
    rows.sort((a, b) => {
      const x = value(a), y = value(b);
      if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;  // empty last
      if (y === null || y === undefined) return -1;
      const order = col[3] === "text" ? String(x).localeCompare(String(y)) : x - y;
      return vendors.desc ? -order : order;
    });
    return rows;
  }

  function drawVendors() {
    if (!vendors.data) return;
    const buttons = WINDOWS.map(([key, label]) => {
      const b = el("button", { type: "button", "data-window": key, text: label,
        class: key === vendors.window ? "on" : "" });
      b.addEventListener("click", () => { vendors.window = key; drawVendors(); });
      return b;
    });
    const head = el("tr", {}, VENDOR_COLUMNS.map(([key, label]) => {
      const th = el("th", { "data-sort": key, text: label, role: "button",
        "aria-sort": key === vendors.sort ? (vendors.desc ? "descending" : "ascending") : "none" });
      th.addEventListener("click", () => {
        vendors.desc = key === vendors.sort ? !vendors.desc : key !== "name";
        vendors.sort = key;
        drawVendors();
      });
      return th;
    }));
    const rows = sortedVendors().map((v) =>
      el("tr", { "data-webhook-id": v.webhook_id }, VENDOR_COLUMNS.map(([key, , get, kind]) => {
        const x = get(v, v.windows[vendors.window]);
        return el("td", { "data-col": key, class: kind === "text" ? "" : "num", text: kind === "text" ? x : fmt[kind](x) });
      }))
    );
    vendors.section.replaceChildren(
      el("h2", { text: "Vendors" }),
      el("div", { class: "windows" }, buttons),
      rows.length ? el("table", { class: "vendors" }, [head, ...rows]) : el("p", { class: "empty", text: "No webhooks yet." })
    );
  }

  // At most one load in flight, and one every VENDORS_EVERY_MS (the 30-day figures
  // move slowly; a busy workspace pushes a snapshot every half second).
  const VENDORS_EVERY_MS = 10000;
  function loadVendors(id) {
    if (vendors.busy) { vendors.again = true; return; }
    const wait = (vendors.loadedAt || 0) + VENDORS_EVERY_MS - Date.now();
    if (wait > 0) {
      if (!vendors.timer) vendors.timer = setTimeout(() => { vendors.timer = null; loadVendors(id); }, wait);
      return;
    }
    vendors.busy = true;
    vendors.loadedAt = Date.now();
    fetch("/analytics/workspaces/" + encodeURIComponent(id) + "/vendors").then((r) => {
      if (r.status === 401) return signIn();
      if (r.ok) return r.json().then((data) => { vendors.data = data; drawVendors(); });
    }).catch(() => {}).finally(() => {
      vendors.busy = false;
      if (vendors.again) { vendors.again = false; setTimeout(() => loadVendors(id), 1000); }
    });
  }

  function render(snap) {
    const ws = snap.workspace;
    title.textContent = "· " + (ws.name || ws.workspace_id);
    document.title = "leadwire analytics · " + (ws.name || ws.workspace_id);
    const frag = document.createDocumentFragment();
    frag.appendChild(
      el("section", { class: "card workspace", "data-workspace-id": ws.workspace_id }, [
        el("h2", { text: "Workspace total" }),
        el("div", { class: "sub", text: ws.webhooks.length + " webhook(s)" }),
        statsRow(ws.metrics),
      ])
    );
    frag.appendChild(vendors.section);
    if (!ws.webhooks.length) frag.appendChild(el("p", { class: "empty", text: "No webhooks yet." }));
    for (const w of ws.webhooks) frag.appendChild(webhookCard(w, snap));
    app.replaceChildren(frag);
    updated.textContent = "updated " + fmt.time(snap.generated_at);
    updated.dataset.generatedAt = snap.generated_at;
  }

  function workspaceView(id) {
    const source = new EventSource("/analytics/workspaces/" + encodeURIComponent(id) + "/stream");
    source.addEventListener("snapshot", (ev) => {
      live.className = "dot on";
      render(JSON.parse(ev.data));
      loadVendors(id);
    });
    source.onopen = () => { live.className = "dot on"; };
    source.onerror = () => {
      live.className = "dot off";
      updated.textContent = "reconnecting…";
      fetch("/analytics/workspaces/" + encodeURIComponent(id)).then((r) => {
        if (r.status === 401) {
          source.close();
          signIn();
        } else if (r.status === 404) {
          source.close();
          app.replaceChildren(el("p", { class: "error", text: "Unknown workspace " + id }));
        }
      }).catch(() => {});
    };
  }

  async function listView() {
    title.textContent = "· workspaces";
    const r = await fetch("/analytics/workspaces");
    if (r.status === 401) return signIn();
    const data = await r.json();
    live.className = "dot on";
    updated.textContent = "loaded " + new Date().toLocaleTimeString();
    if (!data.workspaces.length) {
      app.replaceChildren(el("p", { class: "empty", text: "No workspaces yet." }));
      return;
    }
    app.replaceChildren(
      el("section", { class: "card" }, [
        el("ul", { class: "workspaces" },
          data.workspaces.map((w) =>
            el("li", {}, [
              el("a", { href: "/dashboard/" + w.workspace_id, text: w.name || w.workspace_id }),
              el("span", { class: "sub", text: " · " + w.webhooks + " webhook(s) · " + fmt.int(w.total_requests) + " requests · last " + fmt.time(w.last_seen_at) }),
            ])
          )
        ),
      ])
    );
  }

  const match = location.pathname.match(/^\/dashboard\/([0-9a-fA-F-]{36})\/?$/);
  if (match) workspaceView(match[1]);
  else listView().catch((e) => app.replaceChildren(el("p", { class: "error", text: "Cannot load: " + e })));
})();
