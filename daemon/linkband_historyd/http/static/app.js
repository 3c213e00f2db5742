// Link Band history dashboard: plain DOM and <canvas>, no libraries, no build step.
// Text that comes from the daemon (log lines, alert texts, names) only ever enters the
// page as text nodes (textContent / createTextNode), never as HTML.
"use strict";
(() => {
  const BASE = document.body.dataset.base || "/history";
  const $ = (id) => document.getElementById(id);
  const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
  const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
  const store = {
    get(k, d) { try { const v = JSON.parse(localStorage.getItem("lbh." + k)); return v ?? d; } catch { return d; } },
    set(k, v) { try { localStorage.setItem("lbh." + k, JSON.stringify(v)); } catch { /* private mode */ } },
  };
  const state = {
    range: RANGES[store.get("range")] ? store.get("range") : "1h",
    shown: store.get("metrics", null),       // metric names with a chart; null: not chosen yet
    units: {}, tagKeys: {}, search: null, refreshing: false, dirty: false, timer: null,
  };

  // -- helpers -------------------------------------------------------------------
  function el(tag, props, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v);
    }
    for (const c of children) if (c != null) n.append(c);   // strings become text nodes
    return n;
  }

  async function api(path, params) {
    const url = new URL(BASE + path, location.href);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === undefined || v === null || v === "") continue;
      for (const x of Array.isArray(v) ? v : [v]) url.searchParams.append(k, x);
    }
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try { body = await r.json(); } catch { /* not JSON */ }
    if (!r.ok) {
      const e = body && body.error;
      throw new Error(e ? `${e.code}: ${e.message}` : `HTTP ${r.status}`);
    }
    return body;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(t, withDate) {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return withDate ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}` : hm;
  }
  function fmtStamp(t) {
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(t)}:${pad(d.getSeconds())}`;
  }
  const { fmtValue, fmtNumber, fmtBytes } = lbhFormat;   // format.js: the tool's humanize.py
  window.lbhFormat = lbhFormat;                            // the browser test compares the two
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  function tagsOf(m) {
    let t = m.tags;
    if (typeof t === "string") { try { t = JSON.parse(t); } catch { t = null; } }
    return t && typeof t === "object" && !Array.isArray(t) ? t : {};
  }

  // -- the overview (dashboard command) ----------------------------------------------
  async function loadDashboard() {
    const d = (await api("/dashboard")).rows[0];
    const latest = d.latest_metrics || [];
    for (const m of latest) {
      state.units[m.metric_name] = m.unit || "";
      state.tagKeys[m.metric_name] = Object.keys(tagsOf(m)).sort();
    }
    if (state.shown === null && latest.length) {
      state.shown = latest.slice(0, 2).map((m) => m.metric_name);
      store.set("metrics", state.shown);
    }
    renderPicker(latest);
    renderLatest(latest);
    renderAlerts(d.open_alerts || []);
    renderLevels(d.log_levels || {}, d.top_patterns || []);
    const st = d.storage || {};
    $("storage").textContent = `DB ${fmtBytes(st.size_bytes)}`;
    $("storage").title = st.path || "database size";
  }

  function renderPicker(latest) {
    const pick = $("metric-picker");
    const names = latest.map((m) => m.metric_name);
    const have = Array.from(pick.options).slice(1).map((o) => o.value);
    if (have.join("\n") === names.join("\n")) return;
    pick.replaceChildren(el("option", { value: "", text: "add a metric…" }),
      ...names.map((n) => el("option", { value: n, text: n })));
  }

  function renderLatest(latest) {
    $("latest").replaceChildren(...latest.slice(0, 24).map((m) => el("button", {
      type: "button", class: "tile" + (shown().includes(m.metric_name) ? " shown" : ""),
      title: `${m.metric_type} · ${fmtStamp(m.timestamp)}`,
      onclick: () => toggleMetric(m.metric_name),
    }, el("span", { class: "name", text: m.metric_name }), el("span", { class: "val", text: fmtValue(m.value, m.unit) }))));
  }

  function renderAlerts(alerts) {
    $("alert-count").textContent = alerts.length;
    $("alert-count").classList.toggle("hot", alerts.length > 0);
    $("alerts").replaceChildren(...(alerts.length ? alerts.map((a) => el("li", { class: a.level },
      el("div", { class: "title" }, el("span", { class: "lv " + a.level, text: a.level }), " ", a.title || a.alert_id),
      el("div", { class: "desc", text: [a.description, a.source_component, fmtStamp(a.timestamp)].filter(Boolean).join(" · ") }),
    )) : [el("li", { class: "muted", text: "No open alerts" })]));
  }

  function renderLevels(levels, patterns) {
    $("levels").replaceChildren(...LEVELS.map((lv) => el("div", {},
      el("b", { text: fmtNumber(levels[lv] || 0), class: levels[lv] && (lv === "ERROR" || lv === "CRITICAL") ? "error-text" : "" }),
      el("span", { text: lv }))));
    $("patterns").replaceChildren(...(patterns.length ? patterns.slice(0, 6).map((p) => el("li", {},
      el("span", { class: "n", text: `${fmtNumber(p.count)}×` }), p.pattern || p.example || "")) :
      [el("li", { class: "muted", text: "none" })]));
  }

  // -- metric charts (metrics.aggregate) ------------------------------------------------
  const shown = () => state.shown || [];
  function toggleMetric(name) {
    const s = shown();
    state.shown = s.includes(name) ? s.filter((n) => n !== name) : [...s, name].slice(-6);
    store.set("metrics", state.shown);
    loadCharts().catch(showError);
    document.querySelectorAll(".tile").forEach((t) =>
      t.classList.toggle("shown", state.shown.includes(t.querySelector(".name").textContent)));
  }

  // one request per metric, grouped by every tag key its latest record has: one line
  // per tag set (per-core CPU: one per core)
  async function loadCharts() {
    const names = shown();
    $("charts-empty").hidden = names.length > 0;
    const until = Date.now() / 1000, since = until - RANGES[state.range];
    if (!names.length) { $("charts").replaceChildren(); return; }
    const replies = await Promise.all(names.map((name) => api("/metrics/aggregate", {
      metric_name: name, since: since.toFixed(3), until: until.toFixed(3), bucket: "auto",
      functions: ["min", "max", "avg", "count"],
      group_by: ["metric_name", ...(state.tagKeys[name] || []).map((k) => "tag:" + k)],
    })));
    const cards = names.map((name, i) => {
      const reply = replies[i], keys = state.tagKeys[name] || [];
      const series = seriesOf(reply.rows, keys);
      const unit = state.units[name] || "";
      const canvas = el("canvas", { class: "chart", "data-metric": name, "data-series": series.length });
      const n = reply.rows.reduce((a, r) => a + (r.count || 0), 0);
      const last = series.length === 1 ? series[0].rows[series[0].rows.length - 1] : null;
      const stat = !series.length ? "no data" : (last ? `avg ${fmtValue(last.avg, unit)} · ` :
        `${series.length} series · `) + `${fmtNumber(n)} point${n === 1 ? "" : "s"}`;
      const swatch = (color) => { const i = el("i"); i.style.background = color; return i; };  // CSP: no style attributes
      const legend = series.length > 1 ? el("div", { class: "legend" }, ...series.map((s) =>
        el("span", { class: "key" }, swatch(s.color), s.label))) : null;
      const card = el("div", { class: "chart-card" },
        el("header", {},
          el("span", { class: "title", text: name }),
          el("span", { class: "stat", text: stat }),
          el("button", { type: "button", class: "close", title: "remove", text: "×", onclick: () => toggleMetric(name) })),
        canvas, legend);
      canvas._chart = { series, since, until, step: reply.bucket_seconds || 60, unit };
      return card;
    });
    $("charts").replaceChildren(...cards);
    for (const c of document.querySelectorAll("canvas.chart")) {
      drawChart(c);
      c.addEventListener("mousemove", (e) => drawChart(c, e.offsetX));
      c.addEventListener("mouseleave", () => drawChart(c));
    }
  }

  // rows of one metric -> [{label, color, rows}], one per tag set; the label names the
  // tags whose values differ between the sets
  function seriesOf(rows, keys) {
    const by = new Map();
    for (const r of rows) {
      const id = JSON.stringify(keys.map((k) => r["tag:" + k] ?? null));
      if (!by.has(id)) by.set(id, { tags: keys.map((k) => r["tag:" + k] ?? null), rows: [] });
      by.get(id).rows.push(r);
    }
    const list = [...by.values()];
    const varying = keys.filter((k, i) => new Set(list.map((s) => String(s.tags[i]))).size > 1);
    const num = (v) => (v !== null && v !== "" && isFinite(v) ? Number(v) : NaN);
    list.sort((a, b) => {
      for (const k of varying) {
        const i = keys.indexOf(k), x = a.tags[i], y = b.tags[i];
        const c = !isNaN(num(x)) && !isNaN(num(y)) ? num(x) - num(y) : String(x).localeCompare(String(y));
        if (c) return c;
      }
      return 0;
    });
    return list.map((s, i) => ({
      rows: s.rows, color: PALETTE[i % PALETTE.length],
      label: varying.map((k) => `${k}=${s.tags[keys.indexOf(k)]}`).join(" ") || "all",
    }));
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { const d = Math.abs(lo) || 1; lo -= d / 2; hi += d / 2; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const ticks = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
    if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  // runs of consecutive buckets: a gap of more than one bucket breaks the line
  function runsOf(rows, step) {
    const runs = [];
    for (const r of rows) {
      const run = runs[runs.length - 1];
      if (run && r.bucket - run[run.length - 1].bucket <= step * 1.01) run.push(r); else runs.push([r]);
    }
    return runs;
  }

  function drawChart(canvas, hoverX) {
    const { series, since, until, step, unit } = canvas._chart;
    const rows = series.flatMap((s) => s.rows);
    const dpr = window.devicePixelRatio || 1;
    const W = canvas.clientWidth || 400, H = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(W * dpr)) { canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr); }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    const css = getComputedStyle(document.documentElement);
    const L = 66, R = 10, T = 10, B = 22, w = W - L - R, h = H - T - B;
    g.font = "11px " + css.fontFamily;
    g.fillStyle = css.getPropertyValue("--muted");
    if (!rows.length) {
      g.textAlign = "center"; g.fillText("no data in this range", L + w / 2, T + h / 2); return;
    }
    const lo = Math.min(...rows.map((r) => r.min)), hi = Math.max(...rows.map((r) => r.max));
    const ticks = niceTicks(lo, hi, 4), y0 = ticks[0], y1 = ticks[ticks.length - 1];
    const X = (t) => L + ((t - since) / (until - since)) * w;
    const Y = (v) => T + h - ((v - y0) / (y1 - y0 || 1)) * h;
    g.strokeStyle = css.getPropertyValue("--line"); g.lineWidth = 1; g.textAlign = "right"; g.textBaseline = "middle";
    for (const v of ticks) {
      const y = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(L, y); g.lineTo(L + w, y); g.stroke();
      g.fillText(fmtValue(v, unit), L - 6, y);
    }
    g.textAlign = "center"; g.textBaseline = "top";
    const span = until - since, withDate = span > 86400;
    for (let i = 0; i <= 4; i++) {
      const t = since + (span * i) / 4;
      g.textAlign = i === 0 ? "left" : i === 4 ? "right" : "center";
      g.fillText(fmtTime(t, withDate), X(t), T + h + 6);
    }
    const mid = (r) => X(r.bucket + step / 2);
    if (series.length === 1) {               // one tag set: its min-max band too
      g.fillStyle = css.getPropertyValue("--band");
      for (const run of runsOf(series[0].rows, step)) {
        g.beginPath();
        run.forEach((r, i) => (i ? g.lineTo(mid(r), Y(r.max)) : g.moveTo(mid(r), Y(r.max))));
        for (let i = run.length - 1; i >= 0; i--) g.lineTo(mid(run[i]), Y(run[i].min));
        g.closePath(); g.fill();
      }
    }
    g.lineWidth = series.length > 1 ? 1.5 : 2; g.lineJoin = "round";
    for (const s of series) {
      g.strokeStyle = g.fillStyle = s.color;
      for (const run of runsOf(s.rows, step)) {
        if (run.length === 1) { g.beginPath(); g.arc(mid(run[0]), Y(run[0].avg), 2.5, 0, 7); g.fill(); continue; }
        g.beginPath();
        run.forEach((r, i) => (i ? g.lineTo(mid(r), Y(r.avg)) : g.moveTo(mid(r), Y(r.avg))));
        g.stroke();
      }
    }
    if (hoverX !== undefined && hoverX >= L && hoverX <= L + w) {
      let best = rows[0];
      for (const r of rows) if (Math.abs(mid(r) - hoverX) < Math.abs(mid(best) - hoverX)) best = r;
      const x = mid(best);
      g.strokeStyle = css.getPropertyValue("--muted"); g.lineWidth = 1;
      g.beginPath(); g.moveTo(x, T); g.lineTo(x, T + h); g.stroke();
      const at = series.map((s) => [s, s.rows.find((r) => r.bucket === best.bucket)]).filter(([, r]) => r);
      const text = `${fmtTime(best.bucket, withDate)}  ` + (series.length === 1 ?
        `avg ${fmtValue(best.avg, unit)}  min ${fmtValue(best.min, unit)}  max ${fmtValue(best.max, unit)}` :
        at.slice(0, 4).map(([s, r]) => `${s.label} ${fmtValue(r.avg, unit)}`).join("  "));
      g.font = "12px " + css.fontFamily;
      const tw = g.measureText(text).width + 12, tx = Math.min(Math.max(x - tw / 2, L), L + w - tw);
      g.fillStyle = "rgba(28,36,48,.88)"; g.fillRect(tx, T, tw, 20);
      g.fillStyle = "#fff"; g.textAlign = "left"; g.textBaseline = "middle"; g.fillText(text, tx + 6, T + 10);
    }
  }

  // -- log search (logs.search) -----------------------------------------------------------
  // The daemon gives [start, end) ranges in code points of the message; a long message
  // is cut to a window around its first match. <mark> elements hold text nodes only.
  const WINDOW = 300;
  function highlighted(message, spans) {
    const cps = Array.from(message || "");
    let start = 0, end = cps.length;
    if (cps.length > WINDOW) {
      const first = spans.length ? spans[0][0] : 0;
      start = Math.max(0, Math.min(first - 80, cps.length - WINDOW));
      end = start + WINDOW;
    }
    const frag = document.createDocumentFragment();
    if (start > 0) frag.append("…");
    let pos = start;
    for (const [a0, b0] of spans) {
      const a = Math.max(a0, pos), b = Math.min(b0, end);
      if (b <= a) continue;
      frag.append(document.createTextNode(cps.slice(pos, a).join("")));
      frag.append(el("mark", { text: cps.slice(a, b).join("") }));
      pos = b;
    }
    frag.append(document.createTextNode(cps.slice(pos, end).join("")));
    if (end < cps.length) frag.append("…");
    return frag;
  }

  async function search(more) {
    const q = $("q").value.trim();
    if (!q) return;
    if (!more) state.search = { q, cursor: null, shown: 0 };
    const s = state.search;
    $("search-status").textContent = "searching…";
    let reply;
    try {
      reply = await api("/logs/search", {
        q: s.q, limit: 50, cursor: s.cursor, min_level: $("min-level").value, since: $("search-range").value,
      });
    } catch (e) {
      $("search-status").replaceChildren(el("span", { class: "error-text", text: e.message }));
      if (!more) $("results").replaceChildren();
      $("more").hidden = true;
      return;
    }
    if (!more) { $("results").replaceChildren(); s.total = reply.total; s.exact = reply.total_exact; }
    for (const r of reply.rows) {
      const li = el("li", { "data-id": r.id, title: "click for the lines around it" },
        el("span", { class: "time", text: fmtStamp(r.timestamp) }),
        el("span", { class: "lv " + r.level, text: r.level }),
        el("span", { class: "logger", text: r.logger_name || "", title: r.logger_name || "" }),
        el("span", { class: "msg" }, highlighted(r.message, r.highlights || [])));
      li.addEventListener("click", () => toggleContext(li, r.id));
      $("results").append(li);
    }
    s.shown += reply.rows.length;
    s.cursor = reply.next;
    $("more").hidden = !reply.next;
    const total = s.total === undefined ? "" : ` of ${s.total}${s.exact === false ? "+" : ""}`;
    $("search-status").textContent = s.shown ? `${s.shown}${total} matching lines` : "no matching lines";
  }

  async function toggleContext(li, id) {
    const old = li.querySelector(".ctx");
    if (old) { old.remove(); return; }
    const box = el("div", { class: "ctx", text: "…" });
    li.append(box);
    try {
      const reply = await api("/logs/context", { id, before: 3, after: 3 });
      box.replaceChildren(...reply.rows.map((r) => el("div", { class: r.match ? "hit" : "" },
        `${fmtStamp(r.timestamp)}  ${r.level.padEnd(8)} ${r.logger_name}  ${r.message}`)));
    } catch (e) { box.textContent = e.message; }
  }

  // -- refreshing and live updates ------------------------------------------------------
  function showError(e) {
    $("updated").replaceChildren(el("span", { class: "error-text", text: String(e.message || e) }));
  }

  async function refresh() {
    if (state.refreshing) { state.dirty = true; return; }
    state.refreshing = true;
    try {
      await loadDashboard();
      await loadCharts();
      $("updated").textContent = "updated " + fmtStamp(Date.now() / 1000).slice(11);
    } catch (e) { showError(e); }
    state.refreshing = false;
    if (state.dirty) { state.dirty = false; scheduleRefresh(); }
  }

  // at most one refresh per second however many events arrive (the daemon already
  // coalesces history_data_updated)
  function scheduleRefresh() {
    if (state.timer) return;
    state.timer = setTimeout(() => { state.timer = null; refresh(); }, 1000);
  }

  let wsRetry = 1000;
  function connect() {
    const url = new URL(BASE + "/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("topics", "history_data_updated,alert_stored,trend_alert,storage_warning");
    let ws;
    try { ws = new WebSocket(url); } catch { return setTimeout(connect, wsRetry); }
    const live = $("live");
    ws.onopen = () => { wsRetry = 1000; live.className = "live on"; live.textContent = "live"; };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.topic) scheduleRefresh();
    };
    ws.onclose = () => {
      live.className = "live off"; live.textContent = "offline";
      setTimeout(connect, wsRetry);
      wsRetry = Math.min(wsRetry * 2, 30000);
    };
  }

  // -- wiring -------------------------------------------------------------------------------
  function setRange(r) {
    state.range = r;
    store.set("range", r);
    document.querySelectorAll("#ranges button").forEach((b) => b.classList.toggle("active", b.dataset.range === r));
  }
  document.querySelectorAll("#ranges button").forEach((b) => b.addEventListener("click", () => {
    setRange(b.dataset.range);
    loadCharts().catch(showError);
  }));
  $("metric-picker").addEventListener("change", (e) => {
    const name = e.target.value;
    e.target.value = "";
    if (name && !shown().includes(name)) toggleMetric(name);
  });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
  $("more").addEventListener("click", () => search(true));
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => document.querySelectorAll("canvas.chart").forEach((c) => drawChart(c)), 150);
  });
  setInterval(() => { if (!$("live").classList.contains("on")) refresh(); }, 30000);   // no events: poll

  setRange(state.range);
  refresh();
  connect();
})();
