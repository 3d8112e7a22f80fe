// rainier web: the form, its one-line errors beside the fields, and the live numbers and plots.
// Vanilla JS, no build step. The server does all the work (POST /api/estimate); this file only moves fields
// and shows answers. Element ids are stable: tests read #step-time, #mfu, #tokens-per-s, #memory, #plan ...
"use strict";

(() => {
  const FIELDS = ["model", "config", "cluster", "accelerator", "count", "plan", "gbs", "seq_len"];
  const GIB = 2 ** 30;
  const LIVE_DELAY_MS = 300;

  const $ = (id) => document.getElementById(id);
  const slug = (field) => field.replace(/_/g, "-");
  const input = (field) => $(`${slug(field)}-input`);
  const errorSpan = (field) => $(`${slug(field)}-error`);
  const results = $("results");

  let latest = 0; // sequence number of the newest request: older answers are dropped
  let runs = 0; // answers shown (tests wait for this to grow)
  let live = false; // after the first good answer, edits re-run the estimate
  let timer = null;

  const choice = (name) => document.querySelector(`input[name="${name}"]:checked`).value;
  const isSearch = () => input("plan").value.trim().toLowerCase() === "search";

  function activeFields() {
    const active = ["plan", "seq_len"];
    active.push(choice("model-source") === "config" ? "config" : "model");
    if (choice("cluster-source") === "named") active.push("cluster");
    else active.push("accelerator", "count");
    if (isSearch()) active.push("gbs");
    return active;
  }

  function fields() {
    const out = {};
    for (const field of activeFields()) {
      const value = field === "config" ? input(field).value : input(field).value.trim();
      if (value.trim() !== "") out[field] = value;
    }
    return out;
  }

  function updateVisibility() {
    const model = choice("model-source");
    const cluster = choice("cluster-source");
    for (const row of document.querySelectorAll("[data-model-source]")) row.hidden = row.dataset.modelSource !== model;
    for (const row of document.querySelectorAll("[data-cluster-source]")) {
      row.hidden = row.dataset.clusterSource !== cluster;
    }
    input("gbs").disabled = !isSearch();
  }

  function clearErrors() {
    for (const span of document.querySelectorAll(".error")) span.textContent = "";
    for (const field of FIELDS) input(field).removeAttribute("aria-invalid");
  }

  function showError(field, message) {
    const span = field ? errorSpan(field) : null;
    const target = span && !span.closest("[hidden]") ? span : $("form-error");
    target.textContent = message;
    if (field && input(field)) input(field).setAttribute("aria-invalid", "true");
  }

  async function post(url, body) {
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      return response;
    } catch (err) {
      return null;
    }
  }

  async function errorOf(response) {
    if (response === null) return { error: "no answer from the server (is rainier web still running?)", field: null };
    try {
      const body = await response.json();
      return { error: String(body.error || `HTTP ${response.status}`), field: body.field || null };
    } catch (err) {
      return { error: `HTTP ${response.status}`, field: null };
    }
  }

  // ------------------------------------------------------------------------------------------- estimate
  async function run() {
    const seq = ++latest;
    results.dataset.state = "running";
    $("status").textContent = isSearch() ? "searching plans ..." : "estimating ...";
    const sent = fields();
    const response = await post("/api/estimate", sent);
    let body = null;
    let problem = null;
    if (response !== null && response.ok) {
      try {
        body = await response.json();
      } catch (err) {
        problem = { error: "the server's answer is not JSON", field: null };
      }
    } else {
      problem = await errorOf(response);
    }
    if (seq !== latest) return; // a newer request is on its way
    clearErrors();
    if (problem !== null) {
      showError(problem.field, problem.error);
      results.dataset.state = "error";
      $("status").textContent = "not estimated: see the message beside the field";
    } else {
      show(body);
      results.dataset.state = "ok";
      live = true;
    }
    runs += 1;
    results.dataset.fields = JSON.stringify(sent); // the fields this answer is for
    results.dataset.runs = String(runs);
  }

  function scheduleLive() {
    updateVisibility();
    if (!live) return;
    clearTimeout(timer);
    timer = setTimeout(run, LIVE_DELAY_MS);
  }

  // ------------------------------------------------------------------------------------------- display
  function significant(x) {
    // Four significant digits, or a whole number with thousands separators from 10,000 up.
    if (x === null || x === undefined) return "—";
    if (Math.abs(x) >= 10000) return Math.round(x).toLocaleString("en-US");
    return x.toPrecision(4);
  }

  function setNumber(id, value, text) {
    const cell = $(id);
    cell.textContent = text;
    cell.dataset.value = value === null || value === undefined ? "" : String(value);
  }

  function show(body) {
    const est = body.estimate;
    const memory = est.memory_bytes;
    setNumber("step-time", est.step_time_s, `${significant(est.step_time_s)} s`);
    setNumber("mfu", est.mfu, `${(est.mfu * 100).toFixed(1)} %`);
    setNumber("tokens-per-s", est.tokens_per_s, Math.round(est.tokens_per_s).toLocaleString("en-US"));
    setNumber("tokens-per-s-per-device", est.tokens_per_s_per_device, significant(est.tokens_per_s_per_device));
    setNumber("memory", memory.total, `${(memory.total / GIB).toFixed(1)} GiB`);
    setNumber("memory-capacity", memory.capacity, `${(memory.capacity / GIB).toFixed(1)} GiB`);
    setNumber("fits", est.fits, est.fits ? "yes" : "no: over capacity");
    setNumber("devices", est.num_devices, est.num_devices.toLocaleString("en-US"));
    $("why").textContent = body.why ? `why: ${body.why}` : "";
    $("plan").textContent = body.plan_text;
    $("where").textContent = `${est.model} on ${est.cluster}, seq_len ${est.seq_len}`;
    const warnings = $("warnings");
    warnings.replaceChildren(
      ...est.warnings.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }),
    );
    showSearch(body.search);
    $("status").textContent =
      body.mode === "search" ? "best plan of the search (rainier train search)" : "rainier train estimate";
    if (window.Plotly) {
      const config = { displaylogo: false, responsive: true };
      window.Plotly.react("breakdown-plot", body.figures.breakdown.data, body.figures.breakdown.layout, config);
      window.Plotly.react("memory-plot", body.figures.memory.data, body.figures.memory.layout, config);
    }
  }

  function showSearch(search) {
    const section = $("search-section");
    section.hidden = search === null;
    if (search === null) return;
    $("search-summary").textContent =
      `${search.evaluated.toLocaleString("en-US")} plans evaluated of ${search.candidates.toLocaleString("en-US")}` +
      ` at gbs ${search.gbs}`;
    const rows = search.top.map((entry, i) => {
      const cells = [
        String(i + 1),
        entry.plan_text,
        significant(entry.step_time_s),
        (entry.mfu * 100).toFixed(1),
        significant(entry.tokens_per_s_per_device),
        (entry.memory_bytes.total / GIB).toFixed(1),
      ];
      const row = document.createElement("tr");
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      // Clicking a plan (or Enter / Space on it) loads it into the plan field and estimates it.
      row.tabIndex = 0;
      row.className = "pick";
      row.dataset.plan = entry.plan_text;
      row.title = "load this plan";
      row.setAttribute("aria-label", `load plan ${i + 1}: ${entry.plan_text}`);
      return row;
    });
    $("top-plans").querySelector("tbody").replaceChildren(...rows);
  }

  // ------------------------------------------------------------------------------------------- scenarios
  function fill(scenario) {
    for (const field of FIELDS) {
      const value = scenario[field];
      input(field).value = value === undefined || value === null ? "" : String(value);
    }
    $(scenario.config ? "model-source-config" : "model-source-catalog").checked = true;
    $(scenario.cluster ? "cluster-source-named" : "cluster-source-build").checked = true;
    updateVisibility();
  }

  function loadPlan(row) {
    input("plan").value = row.dataset.plan;
    updateVisibility();
    clearTimeout(timer);
    input("plan").focus();
    run();
  }

  async function upload(file) {
    clearErrors();
    const data = new FormData();
    data.append("file", file);
    let response = null;
    try {
      response = await fetch("/api/scenario", { method: "POST", body: data });
    } catch (err) {
      response = null;
    }
    if (response === null || !response.ok) {
      const problem = await errorOf(response);
      showError(problem.field || "scenario", problem.error);
      return;
    }
    const body = await response.json();
    const kind = body.kind || "training";
    if (kind !== "training") {
      // a fleet, serving or sweep scenario: its tab (static/questions.js) fills its form and runs it
      await window.rainierQuestions.load(kind, body.scenario);
      return;
    }
    selectTab("training");
    fill(body.scenario);
    await run();
  }

  // ------------------------------------------------------------------------------------------- tabs
  const TABS = ["training", "fleet", "serve", "sweep"];

  function selectTab(kind, focus = false) {
    for (const name of TABS) {
      const tab = $(`tab-${name}`);
      const selected = name === kind;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $(`panel-${name}`).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    document.body.dataset.tab = kind;
  }
  window.rainierSelectTab = selectTab;

  for (const name of TABS) $(`tab-${name}`).addEventListener("click", () => selectTab(name));
  $("tabs").addEventListener("keydown", (event) => {
    // the WAI-ARIA tabs pattern: arrows move between tabs, Home / End to the first / last
    const current = TABS.indexOf(document.body.dataset.tab || "training");
    const moves = { ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0, End: TABS.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    selectTab(TABS[(moves[event.key] + TABS.length) % TABS.length], true);
  });

  async function download() {
    clearErrors();
    const response = await post("/api/scenario.yaml", fields());
    if (response === null || !response.ok) {
      const problem = await errorOf(response);
      showError(problem.field, problem.error);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = "scenario.yaml";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function openReport() {
    $("report-scenario").value = JSON.stringify(fields());
    $("report-form").submit();
  }

  async function loadCatalog() {
    try {
      const response = await fetch("/api/catalog");
      if (!response.ok) throw new Error((await errorOf(response)).error);
      const catalog = await response.json();
      const options = (id, rows, label) =>
        $(id).replaceChildren(
          ...rows.map((row) => {
            const option = document.createElement("option");
            option.value = row.id;
            option.label = label(row);
            return option;
          }),
        );
      options("model-list", catalog.models, (m) => m.title);
      options("cluster-list", catalog.clusters, (c) => `${c.name} (${c.devices.toLocaleString("en-US")} devices)`);
      options("accelerator-list", catalog.accelerators, (a) => a.name);
      $("sweep-max-cells").textContent = String(catalog.max_sweep_cells);
    } catch (err) {
      $("form-error").textContent = `could not load the catalog: ${err.message}`;
    }
    await window.rainierQuestions.ready(); // the fleet and serving forms, built from the scenario schema
    document.body.dataset.ready = "true";
  }

  // ------------------------------------------------------------------------------------------- wiring
  $("scenario-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    run();
  });
  $("scenario-form").addEventListener("change", (event) => {
    if (event.target.id !== "upload-input") scheduleLive();
  });
  input("plan").addEventListener("input", updateVisibility);
  $("upload-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) upload(file);
  });
  $("download").addEventListener("click", download);
  const topPlans = $("top-plans").querySelector("tbody");
  topPlans.addEventListener("click", (event) => {
    const row = event.target.closest("tr.pick");
    if (row) loadPlan(row);
  });
  topPlans.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr.pick");
    if (row && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      loadPlan(row);
    }
  });
  $("open-report").addEventListener("click", openReport);
  updateVisibility();
  selectTab("training");
  loadCatalog();
})();
