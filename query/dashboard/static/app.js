// Vitals dashboard: asks the query API (same origin, one level up from
// /dashboard/) with an analyst token and draws four charts with uPlot. Every
// chart's numbers are also written to a table below it; each number cell
// keeps the API's raw value in data-value.
//
// For tests and debugging, window.vitalsDashboard holds the uPlot instances
// (charts), the last JSON answers (responses), the last overview (where the
// data is), each chart's main colour (colors) and a generation counter
// bumped after every completed "Show";
// <body data-state> is idle, loading or done.
(function () {
  "use strict";

  const TOKEN_KEY = "vitals.analystToken";
  const TIMEOUT_MS = 30000;
  const HEIGHT = 260;
  // Colour-blind-safe (Okabe-Ito) colours. plot() records, per chart, the
  // colour of a series drawn on top, which a test looks for on the canvas.
  const C = {
    mean: "rgb(0, 114, 178)",
    edge: "rgb(86, 180, 233)",
    band: "rgba(86, 180, 233, 0.25)",
    bars: "rgb(0, 158, 115)",
    user: "rgb(213, 94, 0)",
    cohort: "rgb(0, 114, 178)",
    ps: ["rgb(0, 114, 178)", "rgb(213, 94, 0)", "rgb(0, 158, 115)", "rgb(204, 121, 167)", "rgb(230, 159, 0)", "rgb(86, 180, 233)"],
  };

  const $ = (id) => document.getElementById(id);
  const form = $("controls");
  const dash = (window.vitalsDashboard = { generation: 0, charts: {}, responses: {}, colors: {} });
  let currentRun = 0;

  // ---- inputs --------------------------------------------------------------

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  // Fills the form from #token=...&user=...&from=... (any field name), keeps
  // the token in sessionStorage and removes the fragment from the address bar.
  function readFragment() {
    const h = location.hash.replace(/^#/, "");
    if (!h) return;
    for (const [k, v] of new URLSearchParams(h)) {
      if (k === "token") sessionStorage.setItem(TOKEN_KEY, v);
      const el = form.elements.namedItem(k);
      if (el) el.value = v;
    }
    history.replaceState(null, "", location.pathname + location.search);
  }

  function field(name) {
    const el = form.elements.namedItem(name);
    return el ? String(el.value).trim() : "";
  }

  function scopeParams() {
    const scope = field("scope");
    if (scope === "user") return { user: field("user") };
    if (scope === "cohort") {
      const out = {};
      for (const k of ["age_band", "sex", "region", "device_model"]) if (field(k)) out[k] = field(k);
      return out;
    }
    return {};
  }

  // ---- API -----------------------------------------------------------------

  // api GETs ../path with params and the bearer token, with a timeout, and
  // returns the decoded JSON or throws an Error naming the API's reason.
  async function api(path, params) {
    const url = new URL("../" + path, location.href);
    for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) url.searchParams.set(k, v);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const res = await fetch(url, {
        headers: { Authorization: "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || ""), Accept: "application/json" },
        signal: ctl.signal,
        cache: "no-store",
      });
      let body = null;
      try { body = await res.json(); } catch (_) { /* not JSON */ }
      if (res.status === 401) throw new Error("The analyst token was not accepted (401).");
      if (!res.ok) {
        const why = body && body.message ? body.message : res.statusText;
        const param = body && body.parameter ? ` (parameter ${body.parameter})` : "";
        throw new Error(`${res.status}${param}: ${why}`);
      }
      return body;
    } catch (e) {
      if (e.name === "AbortError") throw new Error(`No answer within ${TIMEOUT_MS / 1000} s.`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- tables --------------------------------------------------------------

  // fmt shows integers as they are and other numbers with at most 2 decimals.
  function fmt(v) {
    if (v == null || v === "") return "–";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : String(Math.round(v * 100) / 100);
  }

  function cell(tag, v, suffix) {
    const td = document.createElement(tag);
    td.dataset.value = v == null ? "" : String(v);
    td.textContent = fmt(v) + (v != null && suffix ? suffix : "");
    return td;
  }

  // fill replaces the rows of the table's section (tbody or tfoot); each row
  // is an array of values, the first one a row header.
  function fill(table, rows, part) {
    const sec = part === "tfoot" ? table.tFoot || table.createTFoot() : table.tBodies[0];
    sec.replaceChildren(
      ...rows.map((r) => {
        const tr = document.createElement("tr");
        r.forEach((v, i) => tr.append(cell(i === 0 && r.header !== false ? "th" : "td", v, r.suffix && r.suffix[i])));
        if (tr.firstChild.tagName === "TH") tr.firstChild.scope = "row";
        return tr;
      })
    );
  }

  function clearTables(sec) {
    for (const t of sec.querySelectorAll("table[id]")) {
      t.tBodies[0].replaceChildren();
      if (t.tFoot) t.tFoot.replaceChildren();
    }
  }

  function noHeader(row) {
    row.header = false;
    return row;
  }

  // ---- charts --------------------------------------------------------------

  function setStatus(sec, status, message) {
    sec.dataset.status = status;
    sec.setAttribute("aria-busy", String(status === "loading"));
    sec.querySelector(".message").textContent = message || "";
  }

  function destroy(name) {
    if (dash.charts[name]) dash.charts[name].destroy();
    delete dash.charts[name];
    $(name).dataset.points = "0";
  }

  function plot(name, opts, data, color) {
    destroy(name);
    const sec = $(name);
    const el = sec.querySelector(".plot");
    opts.width = el.clientWidth || 800;
    opts.height = HEIGHT;
    dash.charts[name] = new uPlot(opts, data, el);
    dash.colors[name] = color;
    sec.dataset.points = String(data[0].length);
  }

  function daySeconds(day) {
    const s = /^\d{4}-\d{2}-\d{2}$/.test(day) ? day + "T00:00:00Z" : day;
    return Date.parse(s) / 1000;
  }

  const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  const dayLabel = (u, v) => (v == null ? "–" : isoDay(new Date(v * 1000)));
  // A day axis: ticks on whole UTC days (or multiples), labelled YYYY-MM-DD.
  const dayAxis = {
    space: 90,
    incrs: [1, 2, 7, 14, 30, 91, 182, 365].map((d) => d * 86400),
    values: (u, splits) => splits.map((v) => isoDay(new Date(v * 1000))),
  };
  // The day axis spans the days drawn and half a day either side: with
  // uPlot's automatic range, a single day spread over two years.
  // The range is fixed from the data, not left to uPlot, which widens a
  // single point's range however its range callback answers.
  const dayScale = (xs) => ({ x: { time: true, auto: false, range: () => [xs[0] - 43200, xs[xs.length - 1] + 43200] } });
  // Bars start at zero, so their heights compare.
  const fromZero = { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] };
  const legend = { live: false };

  function drawTrends(sec, body) {
    const days = body.days || [];
    fill($("trends-table"), days.map((d) => [d.day, d.count, d.avg, d.min, d.max, d.stddev]));
    if (!days.length) return empty("trends");
    const xs = days.map((d) => daySeconds(d.day));
    plot("trends", {
      tzDate: utc,
      scales: dayScale(xs),
      // The mean comes last so that it is drawn over the band.
      series: [
        { label: "day", value: dayLabel },
        { label: "min", stroke: C.edge, width: 1 },
        { label: "max", stroke: C.edge, width: 1 },
        { label: "mean", stroke: C.mean, width: 2 },
      ],
      bands: [{ series: [2, 1], fill: C.band }],
      axes: [dayAxis, { label: body.unit }],
      padding: [null, 40, null, null],
      legend,
    }, [xs, days.map((d) => d.min), days.map((d) => d.max), days.map((d) => d.avg)], C.mean);
    return ok("trends", `${days.length} days.`);
  }

  function drawDistribution(sec, body) {
    const bins = body.histogram || [];
    fill($("distribution-summary"), [noHeader([body.count, body.min, body.q1, body.median, body.q3, body.max, body.mean, body.stddev])]);
    fill($("distribution-table"), bins.map((b) => noHeader([b.lower, b.upper, b.count])));
    if (!body.count || !bins.length) return empty("distribution");
    plot("distribution", {
      scales: { x: { time: false, range: () => [bins[0].lower, bins[bins.length - 1].upper] }, y: fromZero },
      series: [
        { label: body.unit || "value" },
        { label: "readings", stroke: C.bars, fill: C.bars, width: 0, paths: uPlot.paths.bars({ size: [0.9, Infinity] }) },
      ],
      axes: [{ label: body.unit }, { label: "readings" }],
      legend,
    }, [bins.map((b) => (b.lower + b.upper) / 2), bins.map((b) => b.count)], C.bars);
    return ok("distribution", `${bins.length} bins.`);
  }

  function drawPercentiles(sec, body) {
    const days = body.days || [];
    const ps = (body.percentiles || []).map((x) => x.p);
    if (!ps.length && days.length) (days.find((d) => (d.percentiles || []).length) || { percentiles: [] }).percentiles.forEach((x) => ps.push(x.p));
    const valueAt = (list, p) => { const f = (list || []).find((x) => x.p === p); return f ? f.value : null; };
    const table = $("percentiles-table");
    const head = table.tHead.rows[0];
    head.replaceChildren(...["day", "count", ...ps.map((p) => "p" + p)].map((t) => { const th = document.createElement("th"); th.scope = "col"; th.textContent = t; return th; }));
    fill(table, days.map((d) => [d.day, d.count, ...ps.map((p) => valueAt(d.percentiles, p))]));
    fill(table, [["whole range", body.count, ...ps.map((p) => valueAt(body.percentiles, p))]], "tfoot");
    if (!days.length || !ps.length) return empty("percentiles");
    const series = [{ label: "day", value: dayLabel }];
    ps.forEach((p, i) => series.push({ label: "p" + p, stroke: C.ps[i % C.ps.length], width: 2 }));
    // The band is drawn with the highest percentile's line, over the lines
    // before it: the highest is the line shown in its own colour.
    const top = C.ps[(ps.length - 1) % C.ps.length];
    const xs = days.map((d) => daySeconds(d.day));
    plot("percentiles", {
      tzDate: utc,
      scales: dayScale(xs),
      series,
      bands: ps.length > 1 ? [{ series: [ps.length, 1], fill: C.band }] : [],
      axes: [dayAxis, { label: body.unit }],
      padding: [null, 40, null, null],
      legend,
    }, [xs, ...ps.map((p) => days.map((d) => valueAt(d.percentiles, p)))], top);
    return ok("percentiles", `${days.length} days, ${ps.length} percentiles.`);
  }

  function drawCompare(sec, body) {
    const u = body.user || {}, c = body.cohort || {};
    fill($("compare-table"), [
      ["user " + (u.id || ""), null, u.count, u.mean, u.median],
      [`cohort ${body.by || ""} = ${c.value == null ? "–" : c.value}`, c.users, c.count, c.mean, c.median],
    ]);
    const summary = noHeader([body.percent_difference, body.percentile_rank]);
    summary.suffix = ["%", ""];
    fill($("compare-summary"), [summary]);
    if (body.suppressed) {
      destroy("compare");
      return setStatus(sec, "suppressed", "The cohort is not shown: " + (body.reason || "too few users."));
    }
    if (!u.count) return empty("compare");
    plot("compare", {
      scales: { x: { time: false, range: [-0.5, 1.5] }, y: fromZero },
      legend,
      series: [
        { label: "statistic", value: (self, v) => ["mean", "median"][v] || "" },
        { label: "user", stroke: C.user, fill: C.user, width: 0, paths: uPlot.paths.bars({ size: [0.35, 80], align: -1 }) },
        { label: "cohort", stroke: C.cohort, fill: C.cohort, width: 0, paths: uPlot.paths.bars({ size: [0.35, 80], align: 1 }) },
      ],
      axes: [{ splits: () => [0, 1], values: (self, splits) => splits.map((v) => ["mean", "median"][v]) }, { label: body.unit }],
    }, [[0, 1], [u.mean, u.median], [c.mean, c.median]], C.user);
    return ok("compare", "");
  }

  function ok(name, message) {
    setStatus($(name), "ok", message);
  }

  function empty(name) {
    destroy(name);
    setStatus($(name), "empty", "No readings in this range.");
  }

  // ---- one "Show" ------------------------------------------------------------

  async function load(run, name, path, params, draw) {
    const sec = $(name);
    setStatus(sec, "loading", "Loading…");
    try {
      const body = await api(path, params);
      if (run !== currentRun) return;
      dash.responses[name] = body;
      if (body && body.suppressed && name !== "compare") {
        // A cohort too small to show without singling a person out.
        destroy(name);
        clearTables(sec);
        return setStatus(sec, "suppressed", "Not shown: " + (body.reason || "the cohort has too few users."));
      }
      draw(sec, body);
      if (body && body.stale) sec.querySelector(".message").textContent += " The newest readings may not be included yet (stale).";
    } catch (e) {
      if (run !== currentRun) return;
      destroy(name);
      clearTables(sec);
      setStatus(sec, "error", e.message);
    }
  }

  async function show(ev) {
    if (ev) ev.preventDefault();
    const status = $("status");
    const token = field("token");
    if (!token) { status.textContent = "Enter an analyst token."; return; }
    sessionStorage.setItem(TOKEN_KEY, token);
    const scope = scopeParams();
    if (field("scope") === "user" && !scope.user) { status.textContent = "Enter a user id, or choose a cohort or everyone."; return; }
    const run = ++currentRun;
    document.body.dataset.state = "loading";
    status.textContent = "Loading…";
    dash.responses = {};
    const common = { metric: field("metric"), from: field("from"), to: field("to"), ...scope };
    const jobs = [
      load(run, "trends", "v1/trends", common, drawTrends),
      load(run, "distribution", "v1/distribution", { ...common, bins: field("bins") || "auto" }, drawDistribution),
      load(run, "percentiles", "v1/percentiles", { ...common, p: field("p"), per: "day" }, drawPercentiles),
    ];
    if (scope.user) {
      jobs.push(load(run, "compare", "v1/compare", { metric: common.metric, from: common.from, to: common.to, user: scope.user, by: field("by") }, drawCompare));
    } else {
      destroy("compare");
      clearTables($("compare"));
      setStatus($("compare"), "skipped", "Choose one user to compare with a cohort.");
    }
    await Promise.allSettled(jobs);
    if (run !== currentRun) return;
    const failed = [...document.querySelectorAll("section.chart")].filter((s) => s.dataset.status === "error").length;
    status.textContent = failed ? `Done; ${failed} chart(s) could not be loaded (see each chart).` : "Done.";
    dash.generation++;
    document.body.dataset.generation = String(dash.generation);
    document.body.dataset.state = "done";
  }

  function resize() {
    for (const [name, u] of Object.entries(dash.charts)) {
      const w = $(name).querySelector(".plot").clientWidth;
      if (w) u.setSize({ width: w, height: HEIGHT });
    }
  }

  // ---- where the data is ------------------------------------------------------

  function options(list, values) {
    $(list).replaceChildren(...values.map((v) => { const o = document.createElement("option"); o.value = v; return o; }));
  }

  // overview asks where the tenant's data of the chosen metric is and
  // offers its users and cohort values in the pickers. Until the first Show,
  // it also opens the page on the newest 30 days of data with the user whose
  // data is newest, so a newcomer sees charts, not an empty range; after
  // that it never overwrites what a person chose.
  async function overview() {
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    let body;
    try {
      body = await api("v1/overview", { metric: field("metric") });
    } catch (e) {
      $("status").textContent = e.message;
      return;
    }
    dash.overview = body;
    const users = body.users || [];
    options("users", users.map((u) => u.id));
    for (const k of ["age_band", "sex", "region", "device_model"]) options(k + "-values", ((body.cohorts || {})[k] || []).map((c) => c.value));
    if (currentRun !== 0) return;
    if (!body.last_day) {
      $("status").textContent = `No ${body.metric} readings yet.`;
      return;
    }
    const last = daySeconds(body.last_day), first = daySeconds(body.first_day);
    $("to").value = isoDay(new Date((last + 86400) * 1000));
    $("from").value = isoDay(new Date(Math.max(first, last - 29 * 86400) * 1000));
    if (!field("user") && users.length) {
      const newest = users.reduce((a, u) => (u.last_day > a.last_day ? u : a), users[0]);
      $("user").value = newest.id;
    }
    show();
  }

  // ---- start -----------------------------------------------------------------

  const today = new Date();
  $("to").value = isoDay(new Date(today.getTime() + 86400e3));
  $("from").value = isoDay(new Date(today.getTime() - 29 * 86400e3));
  const fromFragment = () => {
    readFragment();
    $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
    overview();
  };
  $("metric").addEventListener("change", overview);
  $("token").addEventListener("change", () => {
    if (field("token")) sessionStorage.setItem(TOKEN_KEY, field("token"));
    overview();
  });
  fromFragment();
  window.addEventListener("hashchange", fromFragment);
  form.addEventListener("submit", show);
  window.addEventListener("resize", resize);
})();
