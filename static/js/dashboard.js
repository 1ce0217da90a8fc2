/*
 * The dashboard: the "New rollout" form — a runbook with its parameters, or an ad-hoc
 * shell command; servers; strategy — with Preview (`job:plan`, or shown here for a
 * command, which runs as typed) and Run (`job:start` or `job:adhoc`). The recent jobs
 * table is kept live by jobfeed.js.
 */
import { ask } from "./core/confirm.js";
import { announceError, clearErrors as clearShown, clearFieldError, showFieldError }
  from "./core/errors.js";
import { P } from "./core/live.js";

const el = P.el;
const readJSON = P.readJSON;
const form = document.getElementById("rollout-form"); // none for a viewer

try {
  P.connect();
} catch (err) {
  console.error(err);
}

const runbooks = readJSON("runbooks-data", []);
const paramOrder = readJSON("runbook-param-order", []);
runbooks.forEach((book, index) => { book.paramOrder = paramOrder[index]; });
const servers = readJSON("servers-data", []);
const defaultParallel = (form && Number(form.dataset.defaultParallel)) || null;
// A run on more servers than this asks first (PATCHBAY_CONFIRM_SERVERS_OVER).
const confirmOver = form ? Number(form.dataset.confirmOver) : NaN;

const els = {
  runbook: document.getElementById("runbook"),
  command: document.getElementById("adhoc-command"),
  description: document.getElementById("runbook-description"),
  stepsHint: document.getElementById("runbook-steps"),
  params: document.getElementById("params"),
  picker: document.getElementById("server-picker"),
  summary: document.getElementById("target-summary"),
  tagPicker: document.getElementById("tag-picker"),
  serverPicker: document.getElementById("server-list-picker"),
  filter: document.getElementById("server-filter"),
  selectVisible: document.getElementById("select-visible"),
  selectNone: document.getElementById("select-none"),
  parallel: document.getElementById("strategy-parallel"),
  batches: document.getElementById("strategy-batches"),
  maxFailures: document.getElementById("strategy-max-failures"),
  timeout: document.getElementById("strategy-timeout"),
  gate: document.getElementById("strategy-gate"),
  soak: document.getElementById("strategy-soak"),
  preview: document.getElementById("preview-button"),
  run: document.getElementById("run-button"),
  busy: document.getElementById("form-busy"),
  error: document.getElementById("form-error"),
  planSection: document.getElementById("plan-section"),
  plan: document.getElementById("plan-preview"),
};
const inputs = (name) => (form ? Array.from(form.querySelectorAll('input[name="' + name + '"]')) : []);
const serverBoxes = inputs("servers");
const tagBoxes = inputs("tags");
const modeRadios = inputs("target-mode");
let previewed = false;
let busy = false;

// --- runbook and its parameters ---------------------------------------------------------

function currentRunbook() {
  return (els.runbook && runbooks.find((book) => book.name === els.runbook.value)) || null;
}

function renderParams() {
  if (!els.params) return; // no runbooks: ad-hoc commands only
  const book = currentRunbook();
  els.params.replaceChildren();
  els.description.textContent = book && book.description ? book.description : "";
  els.stepsHint.textContent = book && book.steps && book.steps.length
    ? "Steps: " + book.steps.join(" → ") +
      (book.on_failure && book.on_failure.length
        ? "; on failure: " + book.on_failure.join(" → ") : "")
    : "";
  if (!book) return;
  const params = book.params || {};
  const names = Array.isArray(book.paramOrder) ? book.paramOrder : Object.keys(params);
  for (const name of names) {
    const spec = params[name];
    if (!spec) continue;
    const field = el("div", "field");
    const id = "param-" + name;
    const label = el("label", null, name);
    label.htmlFor = id;
    const input = el("input", "param-input");
    input.type = "text";
    input.id = id;
    input.name = name;
    input.autocomplete = "off";
    input.spellcheck = false;
    input.dataset.param = name;
    if (spec.pattern) input.setAttribute("pattern", spec.pattern);
    if (spec.type === "integer") input.inputMode = "numeric";
    if (spec.example) input.placeholder = spec.example;
    else if (spec.description) input.placeholder = spec.description;
    if (spec.secret) {
      // Typed unseen; a secret default stays on the server (left empty, it applies).
      input.type = "password";
      input.autocomplete = "new-password";
    } else if (spec.default !== null && spec.default !== undefined) {
      input.value = String(spec.default);
    }
    const required = spec.required !== false && (spec.default === null || spec.default === undefined);
    if (required) {
      input.required = true;
      label.append(" ", el("span", "required-mark", "(required)"));
    }
    field.append(label, input);
    const hints = [];
    if (spec.description) hints.push(spec.description);
    const format = formatHint(spec);
    if (format) hints.push(format);
    if (hints.length) {
      const hint = el("p", "hint", hints.join(" — "));
      hint.id = id + "-hint";
      input.setAttribute("aria-describedby", hint.id);
      field.append(hint);
    }
    els.params.append(field);
  }
  const strategy = book.strategy || {};
  els.parallel.placeholder = String(strategy.parallel ?? defaultParallel ?? "");
  els.batches.placeholder = strategy.batches && strategy.batches.length
    ? strategy.batches.join(", ") : "e.g. 1, 50%";
  els.maxFailures.placeholder = strategy.max_failures !== undefined && strategy.max_failures !== null
    ? String(strategy.max_failures) : "e.g. 1 or 10%";
  els.timeout.placeholder = strategy.timeout ? String(strategy.timeout) : "runbook default";
}

/** The pattern in words ("three numbers, like 1.4.2"): the runbook's pattern_hint and
 * example; the bare pattern only for a runbook that gives neither. */
function formatHint(spec) {
  if (spec.pattern_hint) {
    const like = spec.example && !spec.pattern_hint.includes(spec.example)
      ? ", like " + spec.example : "";
    return spec.pattern_hint + like;
  }
  if (spec.example) return "like " + spec.example;
  return spec.pattern ? "format: " + spec.pattern : "";
}

// --- server picker ----------------------------------------------------------------------

function mode() {
  const checked = modeRadios.find((radio) => radio.checked);
  return checked ? checked.value : "all";
}

function chosenTags() {
  return tagBoxes.filter((box) => box.checked).map((box) => box.value);
}

function chosenServers() {
  return serverBoxes.filter((box) => box.checked).map((box) => box.value);
}

function targets() {
  const current = mode();
  if (current === "tags") {
    const tags = new Set(chosenTags());
    return servers.filter((s) => (s.tags || []).some((tag) => tags.has(tag)))
      .map((s) => s.name);
  }
  if (current === "servers") return chosenServers();
  return servers.map((s) => s.name);
}

/** Each mode shows only what it uses: nothing to tick for all servers, the tags for
 * "By tag", the server list for "One by one". */
function renderPicker() {
  const current = mode();
  form.dataset.targetMode = current;
  els.tagPicker.hidden = current !== "tags";
  els.serverPicker.hidden = current !== "servers";
  const names = new Set(targets());
  for (const item of form.querySelectorAll("#server-list li[data-server]")) {
    item.classList.toggle("targeted", names.has(item.dataset.server));
  }
  let text;
  if (current === "tags") {
    const tags = chosenTags();
    text = tags.length
      ? names.size + " server(s) with tag " + tags.join(" or ") +
        (names.size ? ": " + listed(Array.from(names)) : "")
      : "Choose one or more tags.";
  } else if (current === "servers") {
    text = names.size ? names.size + " server(s) chosen" : "Tick the servers to update.";
  } else {
    text = "Every server: " + names.size + ".";
  }
  els.summary.textContent = text;
}

function listed(names) {
  return names.slice(0, 12).join(", ") + (names.length > 12 ? ", …" : "");
}

function applyFilter() {
  const needle = els.filter.value.trim().toLowerCase();
  for (const item of form.querySelectorAll("#server-list li[data-server]")) {
    item.hidden = needle !== "" && !item.dataset.search.toLowerCase().includes(needle);
  }
}

// --- payload ------------------------------------------------------------------------------

const WHOLE = /^\d+$/;

/** "3" -> 3; "25%" and anything else stay strings (the server explains what is wrong). */
function amount(text) {
  const value = text.trim();
  return WHOLE.test(value) ? Number(value) : value;
}

function strategy() {
  const result = {};
  const parallel = els.parallel.value.trim();
  if (parallel !== "") result.parallel = WHOLE.test(parallel) ? Number(parallel) : parallel;
  const batches = els.batches.value.trim();
  if (batches !== "") {
    result.batches = batches.split(/[,\s]+/).filter((part) => part !== "").map(amount);
  }
  const maxFailures = els.maxFailures.value.trim();
  if (maxFailures !== "") result.max_failures = amount(maxFailures);
  const timeout = els.timeout.value.trim();
  if (timeout !== "") {
    const seconds = Number(timeout);
    result.timeout = Number.isFinite(seconds) ? seconds : timeout;
  }
  if (els.gate && els.gate.value === "soak") {
    const soak = els.soak.value.trim();
    result.gate = { soak: soak !== "" && Number.isFinite(Number(soak)) ? Number(soak) : soak };
  } else if (els.gate && els.gate.value !== "") {
    result.gate = els.gate.value;
  }
  return result;
}

if (els.gate) {
  // The soak's seconds only mean something for a soak gate.
  const showSoak = () => { els.soak.hidden = els.gate.value !== "soak"; };
  els.gate.addEventListener("change", showSoak);
  showSoak();
}

function runKind() {
  const checked = form.querySelector('input[name="run-kind"]:checked');
  return checked ? checked.value : form.dataset.runKind;
}

function payload() {
  const data = runKind() === "adhoc" ? { command: els.command.value }
    : { runbook: els.runbook ? els.runbook.value : "", params: {} };
  for (const input of data.params ? els.params.querySelectorAll("input[data-param]") : []) {
    const value = input.value.trim();
    if (value !== "") data.params[input.dataset.param] = value;
  }
  if (mode() === "tags") data.tags = chosenTags();
  else data.servers = targets();
  const chosen = strategy();
  if (Object.keys(chosen).length) data.strategy = chosen;
  return data;
}

// --- errors -------------------------------------------------------------------------------

function clearErrors() {
  clearShown(form); // the message back at the form's top
  els.error.hidden = true;
  els.error.textContent = "";
}

const STRATEGY_FIELDS = {
  parallel: "parallel",
  batches: "batches",
  max_failures: "maxFailures",
  timeout: "timeout",
  gate: "gate",
};

function fieldElement(field) {
  if (!field) return null;
  const [head, name] = field.split(".");
  if (head === "params" && name) return document.getElementById("param-" + name);
  if (head === "params") return els.params.querySelector("input");
  if (head === "servers" || head === "tags") return els.picker;
  if (head === "strategy") return els[STRATEGY_FIELDS[name]] || els.parallel;
  if (head === "runbook") return els.runbook;
  if (head === "command") return els.command;
  return null;
}

/** The message with every "job #N" a link to that job's page. */
function withJobLinks(message) {
  return message.split(/(job #\d+)/).map((part) => {
    const id = /^job #(\d+)$/.exec(part);
    if (!id) return part;
    const link = el("a", null, part);
    link.href = P.root + "/jobs/" + id[1];
    return link;
  });
}

/** Busy servers are no fault of the choice (server_busy names the servers chosen):
 * no field is marked for it. */
const NOT_A_FIELD_FAULT = new Set(["server_busy"]);

/** In the server picker, the control to fix the choice with: the first shown box of
 * the open list (a server or a tag), else the chosen mode. */
function pickerFocus() {
  const part = mode() === "tags" ? els.tagPicker : els.serverPicker;
  const box = mode() === "all" ? null : Array.from(part.querySelectorAll("input[type=checkbox]"))
    .find((input) => !input.closest("li").hidden);
  return box || modeRadios.find((radio) => radio.checked) || null;
}

/** The error where the eye is (core/errors.js): beside the field at fault, marked and
 * focused, or at the form's top, scrolled to; announced either way. */
function showError(error) {
  const message = (error && error.message) || "The server refused the request.";
  const content = [el("span", "flash-kind", "error:"), " ", ...withJobLinks(message)];
  if (error && error.detail) {
    // The exact rule the value missed (a regular expression), folded away.
    const detail = el("details", "error-detail");
    detail.append(el("summary", null, "Details"), el("code", null, error.detail));
    content.push(detail);
  }
  const target = error && !NOT_A_FIELD_FAULT.has(error.code) && fieldElement(error.field);
  if (!target) {
    announceError(els.error, content);
    return;
  }
  showFieldError(target, content, { box: els.error,
    focus: target === els.picker ? pickerFocus() : null });
}

// --- preview and run ----------------------------------------------------------------------

function setBusy(value, text) {
  busy = value;
  els.preview.disabled = value;
  els.run.disabled = value;
  els.busy.textContent = text || "";
  form.setAttribute("aria-busy", String(value));
}

function markPreviewStale() {
  if (!previewed) return;
  previewed = false;
  els.run.textContent = "Run";
  els.plan.classList.add("stale");
  const note = document.getElementById("plan-stale");
  if (!note) {
    const stale = el("p", "plan-stale", "The form changed since this preview; preview again to see the new commands.");
    stale.id = "plan-stale";
    els.plan.prepend(stale);
  }
}

function renderPlan(plan) {
  const parts = [];
  const summary = el("dl", "plan-summary");
  const add = (term, value) => {
    const row = el("div");
    row.append(el("dt", null, term), el("dd", null, value));
    summary.append(row);
  };
  add("Runbook", plan.runbook);
  add("Parameters", Object.entries(plan.params || {}).map(([k, v]) => k + "=" + v).join(" ") || "none");
  const s = plan.strategy || {};
  add("Servers at once", String(s.parallel ?? ""));
  if (s.max_failures !== null && s.max_failures !== undefined) add("Stop after failures", String(s.max_failures));
  if (s.timeout) add("Step timeout", s.timeout + " s");
  const batches = plan.batches || [];
  add("Batches", batches.length + " (" + batches.map((b) => b.length).join(" + ") + " servers)");
  parts.push(summary);

  if (batches.length > 1) {
    const list = el("ol", "plan-batches");
    for (const batch of batches) list.append(el("li", null, batch.join(", ")));
    parts.push(list);
  }

  for (const host of plan.hosts || []) {
    // One collapsible block per server (the first open): a fleet's worth of
    // full scripts would otherwise bury the Run button.
    const section = el("details", "plan-host");
    section.dataset.host = host.name;
    section.open = parts.length === 1 || (parts.length === 2 && batches.length > 1);
    const summary = el("summary", null);
    summary.append(el("strong", null, host.name), " — " + host.steps.length + " steps");
    section.append(summary);
    const addSteps = (steps, title) => {
      if (!steps || !steps.length) return;
      if (title) section.append(el("h4", "plan-phase", title));
      const list = el("ol", "plan-steps");
      for (const step of steps) {
        const item = el("li", "plan-step");
        item.append(el("span", "plan-step-name", step.name), el("pre", "command", step.command));
        list.append(item);
      }
      section.append(list);
    };
    addSteps(host.steps, null);
    addSteps(host.on_failure, "On failure");
    parts.push(section);
  }
  els.plan.classList.remove("stale");
  els.plan.replaceChildren(...parts);
  els.planSection.hidden = false;
}

/** An ad-hoc command runs as typed, the same on every server: its preview needs no
 * server round trip. */
function renderCommandPlan(data) {
  const names = targets();
  const summary = el("dl", "plan-summary");
  const add = (term, value) => {
    const row = el("div");
    row.append(el("dt", null, term), el("dd", null, value));
    summary.append(row);
  };
  add("Runs on", names.length + " server" + (names.length === 1 ? "" : "s") + ": " +
    names.slice(0, 12).join(", ") + (names.length > 12 ? ", …" : ""));
  add("Servers at once", String((data.strategy || {}).parallel ?? defaultParallel ?? ""));
  const heading = el("h3", "plan-phase-plain", "Every server runs, as typed:");
  els.plan.classList.remove("stale");
  els.plan.replaceChildren(summary, heading, el("pre", "command", data.command));
  els.planSection.hidden = false;
}

async function preview() {
  const data = payload();
  if (runKind() === "adhoc") {
    if (!data.command.trim()) {
      showError({ message: "Type the command to run.", field: "command" });
      return;
    }
    renderCommandPlan(data);
    previewed = true;
    els.run.textContent = "Confirm and run";
    return;
  }
  setBusy(true, "Preparing the preview…");
  const ack = await P.request("job:plan", data);
  setBusy(false);
  if (!ack.ok) {
    showError(ack.error);
    return;
  }
  renderPlan(ack.plan || {});
  previewed = true;
  els.run.textContent = "Confirm and run";
  els.planSection.scrollIntoView({ block: "start", behavior: "smooth" });
}

/** A run on more than `confirmOver` servers asks first, naming how many, which tags
 * and what runs; a smaller one starts at once. */
function confirmLargeRun() {
  const names = targets();
  if (!Number.isFinite(confirmOver) || names.length <= confirmOver) {
    return Promise.resolve(true);
  }
  const data = payload();
  const count = names.length + " server" + (names.length === 1 ? "" : "s");
  let where = "all " + count;
  if (mode() === "tags") where = count + " with tag " + chosenTags().join(" or ");
  else if (mode() === "servers") where = count + " chosen one by one";
  const lines = [];
  if (data.command !== undefined) {
    lines.push("Runs this shell command, as typed, on " + where + ":",
      el("pre", "command", data.command));
  } else {
    const book = currentRunbook();
    const secret = (name) => Boolean(book && book.params && book.params[name] &&
      book.params[name].secret);
    const params = Object.entries(data.params)
      .map(([name, value]) => name + "=" + (secret(name) ? "••••" : value)).join(" ");
    lines.push("Runs the runbook " + data.runbook + (params ? " (" + params + ")" : "") +
      " on " + where + ".");
  }
  lines.push("Servers: " + listed(names) + ".");
  const parallel = (data.strategy || {}).parallel;
  if (parallel) lines.push(parallel + " at once.");
  return ask({
    title: (data.command !== undefined ? "Run this command" : "Run " + data.runbook) +
      " on " + count + "?",
    lines,
    confirm: "Run on " + count,
  });
}

async function run() {
  if (!(await confirmLargeRun())) return;
  setBusy(true, "Starting…");
  const adhoc = runKind() === "adhoc";
  const ack = await P.request(adhoc ? "job:adhoc" : "job:start", payload());
  if (ack.ok && Number.isInteger(ack.job_id)) {
    els.busy.textContent = "Started job #" + ack.job_id + "; opening it…";
    window.location.href = P.root + "/jobs/" + ack.job_id;
    return;
  }
  setBusy(false);
  showError(ack.ok ? { message: "The server did not return a job id." } : ack.error);
}

if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (busy) return;
    clearErrors();
    // Implicit submission (Enter in a field) uses the first button: Preview, the safe one.
    const submitter = event.submitter;
    if (submitter === els.run) run();
    else preview();
  });

  form.addEventListener("input", (event) => {
    if (event.target === els.filter) return;
    if (event.target instanceof Element && event.target.getAttribute("aria-invalid") === "true") {
      clearFieldError(event.target);
    }
    markPreviewStale();
  });

  form.addEventListener("change", (event) => {
    const target = event.target;
    if (target.name === "run-kind") {
      form.dataset.runKind = runKind();
      clearErrors();
    }
    if (target === els.runbook) renderParams();
    if (target.name === "tags" || target.name === "servers" || target.name === "target-mode") {
      clearFieldError(els.picker);
    }
    renderPicker();
    markPreviewStale();
  });

  els.filter.addEventListener("input", applyFilter);
  els.filter.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.preventDefault(); // filtering, not submitting
  });
  els.selectVisible.addEventListener("click", () => {
    for (const box of serverBoxes) {
      if (!box.closest("li").hidden) box.checked = true;
    }
    renderPicker();
    markPreviewStale();
  });
  els.selectNone.addEventListener("click", () => {
    for (const box of serverBoxes) box.checked = false;
    renderPicker();
    markPreviewStale();
  });

  // A choice made before this script ran (a quick click, or the browser restoring the
  // form on Back) must show its fields: take the mode from the radios, not the markup.
  form.dataset.runKind = runKind();
  renderParams();
  renderPicker();
}
