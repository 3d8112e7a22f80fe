// rainier web: the fleet, serving and sweep tabs. Their forms are built from the scenario file's JSON Schema
// (GET /api/scenario.schema.json, the one the loader is checked against), so every key of a `kind: fleet`,
// `kind: serve` or `kind: sweep` file has a field, and an uploaded file fills them all. POST /api/fleet and
// /api/serve answer with the CLI's JSON (`rainier fleet scenario --json`, `rainier report --json`), /api/sweep with
// the rows `rainier sweep` stores (`rainier results export`); this file only shows them.
// Every number shown carries its exact JSON value in data-value (the browser tests compare them with the CLI's).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KINDS = ["fleet", "serve", "sweep"];
  const ROUTES = { fleet: "/api/fleet", serve: "/api/serve", sweep: "/api/sweep" };
  const GIB = 2 ** 30;
  const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
  const WORKING = {
    fleet:
      "running the fleet scenario: a plan search, a failure simulation of the whole job and the comparison " +
      "(about half a minute on a 500k-chip cluster)",
    serve: "sizing serving fleets and simulating the configuration",
    sweep: "running the sweep: one plan search per cell, one after another (up to a second or two each)",
  };
  const DONE = {
    fleet: "rainier fleet scenario",
    serve: "rainier serve size (and serve simulate)",
    sweep: "rainier sweep (in memory: the rows rainier results export would give)",
  };
  const state = { fleet: { seq: 0, runs: 0 }, serve: { seq: 0, runs: 0 }, sweep: { seq: 0, runs: 0 } };
  // Keys this page does not offer: a request trace is a file on the server (rainier serve simulate --trace FILE).
  const SKIP = new Set(["simulate.trace"]);
  let ready;

  const slug = (name) => name.replace(/[._]/g, "-");
  const inputId = (kind, name) => `${kind}-${slug(name)}-input`;
  const errorId = (kind, name) => `${kind}-${slug(name)}-error`;

  // ----------------------------------------------------------------------------------------- the form
  function unwrap(schema) {
    // {"anyOf": [X, {"type": "null"}]} -> X; an object form with properties is preferred (slo: object or text)
    if (!schema.anyOf) return schema;
    const options = schema.anyOf.filter((option) => option.type !== "null");
    const withProperties = options.find((option) => option.properties);
    if (withProperties) return withProperties;
    if (options.length === 1) return { ...options[0], "x-pair": schema["x-pair"] };
    return { type: options.map((option) => option.type).flat(), "x-pair": schema["x-pair"] };
  }

  function typesOf(schema) {
    if (schema.const !== undefined) return ["string"];
    if (schema.enum) return ["string"];
    const type = schema.type || ["string"];
    return Array.isArray(type) ? type : [type];
  }

  function build(kind, schema, container, prefix) {
    for (const [key, raw] of Object.entries(schema.properties)) {
      if (!prefix && (key === "kind" || key === "version")) continue;
      const node = unwrap(raw);
      const name = prefix ? `${prefix}.${key}` : key;
      if (SKIP.has(name)) continue;
      if (node.properties) {
        const group = document.createElement("details");
        group.id = `${kind}-${slug(name)}-group`;
        const summary = document.createElement("summary");
        summary.textContent = key;
        group.appendChild(summary);
        build(kind, node, group, name);
        container.appendChild(group);
        continue;
      }
      const field = document.createElement("div");
      field.className = "field";
      const label = document.createElement("label");
      label.htmlFor = inputId(kind, name);
      label.textContent = key.replace(/_/g, " ");
      let element;
      const types = typesOf(node);
      if (types.includes("boolean") || node.enum) {
        element = document.createElement("select");
        for (const option of ["", ...(node.enum || ["true", "false"])]) {
          const item = document.createElement("option");
          item.value = option;
          item.textContent = option === "" ? "(default)" : option;
          element.appendChild(item);
        }
      } else {
        element = document.createElement("input");
        element.spellcheck = false;
        if (types.includes("array")) element.placeholder = "comma-separated";
        if (kind === "sweep" && types.includes("array")) {
          // a sweep's lists: comma-separated values; its clusters `accelerator x count,count; cluster-name`
          const objects = node.items && node.items.type === "object";
          element.dataset.list = objects ? "clusters" : "values";
          if (objects) element.placeholder = "h100-sxm x 64,256; trn2 x 64; rainier-trn3-144";
        }
        else if (node["x-pair"]) element.placeholder = `name${node["x-pair"]}value, ...`;
      }
      element.id = inputId(kind, name);
      element.dataset.name = name;
      element.dataset.types = types.join(" ");
      if (node["x-pair"]) element.dataset.pair = node["x-pair"];
      const error = document.createElement("span");
      error.className = "error";
      error.id = errorId(kind, name);
      error.setAttribute("role", "alert");
      field.append(label, element, error);
      container.appendChild(field);
    }
  }

  function clusterOf(text) {
    // "h100-sxm x 64,256" -> {accelerator, count: [64, 256]}; any other text is a named cluster
    const built = /^(\S+)\s+x\s*(\S.*)$/i.exec(text);
    if (!built) return { cluster: text };
    const counts = built[2].split(",").map((item) => item.trim()).filter((item) => item !== "");
    return { accelerator: built[1], count: counts.map((item) => (/^\d+$/.test(item) ? Number(item) : item)) };
  }

  function clusterText(item) {
    if (item === null || typeof item !== "object") return String(item);
    if (item.cluster !== undefined) return String(item.cluster);
    return `${item.accelerator} x ${[].concat(item.count).join(",")}`;
  }

  function typed(element) {
    // The text of a field as the JSON value the scenario file would hold (the server checks it).
    const text = element.value.trim();
    if (element.dataset.list === "clusters") {
      return text.split(";").map((item) => item.trim()).filter((item) => item !== "").map(clusterOf);
    }
    if (element.dataset.list === "values") {
      const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
      return items.map((item) => (NUMBER.test(item) && !element.dataset.types.includes("string") ? Number(item) : item));
    }
    const types = element.dataset.types.split(" ");
    const pair = element.dataset.pair;
    if (types.includes("boolean")) return text === "true";
    if (types.includes("array") && !types.includes("string")) {
      const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
      return items.map((item) => (NUMBER.test(item) && !types.includes("string") && /^\d+$/.test(item) ? Number(item) : item));
    }
    if ((types.includes("number") || types.includes("integer")) && NUMBER.test(text)) return Number(text);
    if (pair === "=" && text.includes("=")) {
      const mapping = {};
      for (const part of text.split(",")) {
        const [key, value] = part.split("=").map((item) => item.trim());
        mapping[key] = NUMBER.test(value || "") ? Number(value) : value;
      }
      return mapping;
    }
    return text;
  }

  function fields(kind) {
    const out = {};
    for (const element of $(`${kind}-fields`).querySelectorAll("[data-name]")) {
      if (element.value.trim() === "") continue;
      const path = element.dataset.name.split(".");
      let target = out;
      for (const part of path.slice(0, -1)) target = target[part] = target[part] || {};
      target[path[path.length - 1]] = typed(element);
    }
    return out;
  }

  function asText(value, pair, list) {
    if (value === null || value === undefined) return "";
    if (list === "clusters") return [].concat(value).map(clusterText).join("; ");
    if (Array.isArray(value)) return value.join(",");
    if (typeof value === "object") {
      return Object.entries(value)
        .map(([key, item]) => `${key}${pair || "="}${item}`)
        .join(",");
    }
    return String(value);
  }

  function fill(kind, scenario) {
    for (const element of $(`${kind}-fields`).querySelectorAll("[data-name]")) {
      let value = scenario;
      for (const part of element.dataset.name.split(".")) {
        if (typeof value === "string" && value.includes("=")) {
          // a group written as one line in the file (slo: ttft_p99_ms=2000,...): its parts
          value = Object.fromEntries(value.split(",").map((item) => item.split("=").map((x) => x.trim())));
        }
        value = value === null || value === undefined || typeof value !== "object" ? undefined : value[part];
      }
      element.value = asText(value, element.dataset.pair, element.dataset.list);
    }
    for (const group of $(`${kind}-fields`).querySelectorAll("details")) {
      group.open = [...group.querySelectorAll("[data-name]")].some((element) => element.value !== "");
    }
  }

  // ----------------------------------------------------------------------------------------- running
  function clearErrors(kind) {
    for (const span of $(`panel-${kind}`).querySelectorAll(".error")) span.textContent = "";
    for (const element of $(`${kind}-fields`).querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
  }

  function showError(kind, field, message) {
    const span = field ? $(errorId(kind, field)) : null;
    (span || $(`${kind}-form-error`)).textContent = message;
    const element = field ? $(inputId(kind, field)) : null;
    if (element) {
      element.setAttribute("aria-invalid", "true");
      const group = element.closest("details");
      if (group) group.open = true;
    }
  }

  async function run(kind) {
    const seq = ++state[kind].seq;
    const results = $(`${kind}-results`);
    const status = $(`${kind}-status`);
    const started = Date.now();
    results.dataset.state = "running";
    status.textContent = `${WORKING[kind]} ...`;
    const ticker = setInterval(() => {
      if (seq === state[kind].seq) status.textContent = `${WORKING[kind]} ... ${Math.round((Date.now() - started) / 1000)} s`;
    }, 1000);
    let body = null;
    let problem = null;
    try {
      const response = await fetch(ROUTES[kind], {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(fields(kind)),
      });
      body = await response.json().catch(() => null);
      if (!response.ok || body === null) {
        problem = { error: (body && body.error) || `HTTP ${response.status}`, field: (body && body.field) || null };
      }
    } catch (err) {
      problem = { error: "no answer from the server (is rainier web still running?)", field: null };
    } finally {
      clearInterval(ticker);
    }
    if (seq !== state[kind].seq) return;
    clearErrors(kind);
    if (problem !== null) {
      showError(kind, problem.field === "scenario" ? null : problem.field, problem.error);
      results.dataset.state = "error"; // the previous answer is greyed out (style.css) and says so
      status.textContent = "not answered: see the message beside the field; the numbers below are of the previous run";
    } else {
      ({ fleet: showFleet, serve: showServe, sweep: showSweep })[kind](body.result);
      results.dataset.state = "ok";
      status.textContent = `${DONE[kind]} (${Math.round((Date.now() - started) / 1000)} s)`;
    }
    state[kind].runs += 1;
    results.dataset.runs = String(state[kind].runs);
  }

  async function download(kind) {
    // the tab's fields as a scenario file (kind and version: 1), checked by the server first
    clearErrors(kind);
    let response = null;
    try {
      response = await fetch("/api/scenario.yaml", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kind, ...fields(kind) }),
      });
    } catch (err) {
      response = null;
    }
    if (response === null || !response.ok) {
      const body = response === null ? null : await response.json().catch(() => null);
      const field = body && body.field !== "scenario" ? body.field : null;
      showError(kind, field, (body && body.error) || "no answer from the server (is rainier web still running?)");
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = `${kind}-scenario.yaml`;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ----------------------------------------------------------------------------------------- display
  function format(x, digits = 4) {
    if (x === null || x === undefined) return "—";
    if (Math.abs(x) >= 10000) return Math.round(x).toLocaleString("en-US");
    return Number(x.toPrecision(digits)).toLocaleString("en-US", { maximumSignificantDigits: digits });
  }

  function set(id, value, text, low, high) {
    const cell = $(id);
    const range = low !== undefined && low !== null && high !== undefined && high !== null;
    cell.textContent = (text === undefined ? format(value) : text) + (range ? ` (${format(low)}–${format(high)})` : "");
    cell.dataset.value = value === null || value === undefined ? "" : String(value);
  }

  function list(id, items) {
    $(id).replaceChildren(
      ...items.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }),
    );
  }

  function table(id, rows) {
    // rows: arrays of [text, value] cells; value (a number) goes to data-value
    $(id)
      .querySelector("tbody")
      .replaceChildren(
        ...rows.map((cells) => {
          const row = document.createElement("tr");
          for (const [text, value] of cells) {
            const cell = document.createElement("td");
            cell.textContent = text;
            if (value !== undefined) cell.dataset.value = value === null ? "" : String(value);
            row.appendChild(cell);
          }
          return row;
        }),
      );
  }

  function showFleet(doc) {
    const run = doc.run;
    set("fleet-devices", run.devices);
    set("fleet-days", run.wall_clock_days, undefined, run.wall_clock_days_low, run.wall_clock_days_high);
    set("fleet-mw", run.facility_power_mw);
    set("fleet-mwh", run.energy_mwh, undefined, run.energy_mwh_low, run.energy_mwh_high);
    set("fleet-cost", run.cost_usd, run.cost_usd === null ? "no price" : undefined, run.cost_usd_low, run.cost_usd_high);
    set("fleet-step-time", run.step_time_s, `${format(run.step_time_s)} s`);
    set("fleet-mfu", run.mfu, `${(run.mfu * 100).toFixed(1)} %`);
    set("fleet-tokens-per-joule", run.tokens_per_joule);
    $("fleet-plan").textContent = run.plan;
    $("fleet-where").textContent = `${run.model} on ${run.cluster}, ${format(run.tokens)} tokens`;
    list("fleet-notes", run.notes);
    const goodput = doc.goodput;
    $("fleet-goodput-section").hidden = goodput === null;
    if (goodput !== null) {
      set("fleet-ettr", goodput.effective_training_time_ratio, `${(goodput.effective_training_time_ratio * 100).toFixed(1)} %`);
      set("fleet-interruptions", goodput.interruptions_unexpected);
      set("fleet-mtbf", goodput.job_mtbf_hours);
      set("fleet-restart-hours", goodput.restart_hours);
    }
    const comparison = doc.comparison;
    $("fleet-comparison-section").hidden = comparison === null;
    if (comparison !== null) {
      $("fleet-footing").textContent = comparison.footing_line;
      table(
        "fleet-comparison",
        comparison.rows.map((row) => {
          const r = row.run || {};
          return [
            [row.accelerator],
            [format(r.devices), r.devices],
            [format(r.wall_clock_days), r.wall_clock_days],
            [format(r.energy_mwh), r.energy_mwh],
            [format(r.usd_per_million_tokens), r.usd_per_million_tokens],
            [format(row.break_even_usd_per_device_hour), row.break_even_usd_per_device_hour],
            [row.error || row.sizing_reason || ""],
          ];
        }),
      );
    }
  }

  function showServe(doc) {
    const sizing = doc.sizing;
    const best = sizing.options.find((option) => option.fleet === sizing.best) || null;
    $("serve-best").textContent = sizing.best || "none meets the SLOs";
    $("serve-best").dataset.value = sizing.best || "";
    set("serve-devices", best && best.devices, undefined, best && best.devices_low, best && best.devices_high);
    set("serve-mw", best && best.facility_power_mw);
    set("serve-usd-per-hour", best && best.usd_per_hour);
    table(
      "serve-options",
      sizing.options.map((option) => [
        [option.fleet],
        [format(option.devices), option.devices],
        [format(option.facility_power_mw), option.facility_power_mw],
        [format(option.usd_per_hour), option.usd_per_hour],
        [format(option.usd_per_million_output_tokens), option.usd_per_million_output_tokens],
      ]),
    );
    list("serve-notes", sizing.notes);
    const simulation = doc.simulation || null;
    $("serve-simulation-section").hidden = simulation === null;
    if (simulation !== null) {
      set("serve-ttft-p99", simulation.ttft_ms && simulation.ttft_ms.p99);
      set("serve-tpot-p99", simulation.tpot_ms && simulation.tpot_ms.p99);
      set("serve-output-tokens-per-s", simulation.output_tokens_per_s);
      set("serve-replicas", simulation.replicas);
    }
  }

  function showSweep(doc) {
    set("sweep-cells", doc.cells);
    set("sweep-ok", doc.ok);
    set("sweep-failed", doc.failed);
    $("sweep-objective").textContent = `${doc.objective} (top ${doc.top})`;
    $("sweep-objective").dataset.value = doc.objective;
    table(
      "sweep-rows",
      doc.rows.map((row) => {
        const ok = row.status === "ok";
        return [
          [row.model],
          [row.cluster !== null ? row.cluster : `${row.accelerator} x${row.count}`],
          [String(row.gbs), row.gbs],
          [row.seq_len === null ? "model's" : String(row.seq_len), row.seq_len],
          [row.status],
          [ok ? row.plan : row.error, ok ? row.best_plan : row.error],
          [format(row.step_time_s), row.step_time_s],
          [format(row.tokens_per_s), row.tokens_per_s],
          [row.mfu === null ? "—" : (row.mfu * 100).toFixed(1), row.mfu],
          [row.memory_bytes_per_device === null ? "—" : (row.memory_bytes_per_device / GIB).toFixed(1), row.memory_bytes_per_device],
        ];
      }),
    );
  }

  // ----------------------------------------------------------------------------------------- wiring
  async function init() {
    const response = await fetch("/api/scenario.schema.json");
    if (!response.ok) throw new Error(`the scenario schema: HTTP ${response.status}`);
    const schema = await response.json();
    for (const kind of KINDS) {
      build(kind, schema.$defs[kind], $(`${kind}-fields`), "");
      $(`${kind}-form`).addEventListener("submit", (event) => {
        event.preventDefault();
        run(kind);
      });
      $(`${kind}-download`).addEventListener("click", () => download(kind));
    }
  }

  window.rainierQuestions = {
    ready: () => ready,
    fields,
    async load(kind, scenario) {
      await ready;
      window.rainierSelectTab(kind);
      fill(kind, scenario);
      await run(kind);
    },
  };
  ready = init().catch((err) => {
    for (const kind of KINDS) $(`${kind}-form-error`).textContent = `could not build the form: ${err.message}`;
  });
})();
