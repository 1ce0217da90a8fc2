/*
 * The job page's view: renders the view model (reducer.js) into the DOM — the header
 * (status, progress, ETA, batches, summary, console restarts), the order and filter of
 * the server table, the rollout (segments, gate, soak, history) and the log selection.
 * Each server's row and log section are host-view.js's. Writes only what changed.
 */
import { el, setAttr, setHidden, setText } from "../core/dom.js";
import { formatDuration } from "../core/format.js";
import { root } from "../core/http.js";
import * as R from "../core/rollout.js";
import { utcTime } from "../core/times.js";
import { labelButton } from "./actions.js";
import { estimate, etaText } from "./eta.js";
import { renderFailed } from "./failed.js";
import { buildSection } from "./host-view.js";
import { progressText, rerunChoice, sinceGroups } from "./words.js";

const FAILED_FIRST = { failed: 0, interrupted: 1, running: 2 };

const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/** Failed servers first (when asked), and the status filter. Only the rows out of
 * place move, at most `moves` of them (the first ones): a server that starts or fails
 * moves alone, not the whole table. Returns whether every row is in place. */
export function renderOrder(page, moves = Infinity) {
  const els = page.els;
  const filter = els.hostFilter ? els.hostFilter.value : "";
  const failedFirst = !els.failedFirst || els.failedFirst.checked;
  const ordered = Array.from(page.parts.values());
  if (failedFirst) {
    ordered.sort((a, b) => (FAILED_FIRST[a.host.status] ?? 9) -
      (FAILED_FIRST[b.host.status] ?? 9) || a.host.position - b.host.position);
  }
  const placed = placeRows(els.hostsBody, ordered.map((parts) => parts.row), moves);
  const counts = {};
  const sections = [];
  for (const parts of page.parts.values()) {
    const status = parts.host.status;
    counts[status] = (counts[status] || 0) + 1;
    const shown = !filter || status === filter;
    setHidden(parts.row, !shown);
    const section = page.selected === null ? shown : parts.host.name === page.selected;
    setHidden(parts.section, !section);
    if (section) sections.push(parts);
  }
  if (sections.length !== page.shownHosts.length ||
      sections.some((parts, i) => parts !== page.shownHosts[i])) {
    page.shownHosts = sections;
    page.scheduleNear();
  }
  if (els.hostFilter) {
    for (const option of els.hostFilter.options) {
      const n = option.value ? counts[option.value] || 0 : page.parts.size;
      setText(option, (option.value || "all servers") + " (" + n + ")");
    }
  }
  return placed;
}

/** Put the table's rows in the order of `rows` (every row of it), moving the fewest:
 * those outside a longest run already in order (a longest increasing subsequence), at
 * most `moves` of them, top first. Returns whether all are in place. */
function placeRows(body, rows, moves) {
  const current = Array.from(body.children);
  if (current.length === rows.length && rows.every((row, i) => current[i] === row)) return true;
  const stay = inOrder(current, new Map(rows.map((row, i) => [row, i])));
  let previous = null;
  let left = moves;
  for (const row of rows) {
    if (!stay.has(row)) {
      if (left === 0) return false;
      body.insertBefore(row, previous ? previous.nextSibling : body.firstChild);
      left -= 1;
    }
    previous = row;
  }
  return true;
}

/** The rows of `current` in a longest run already in the order `wanted` gives them:
 * patience sorting over their wanted places, in their current order. */
function inOrder(current, wanted) {
  const tails = []; // tails[k]: index in `current` ending the best run of length k+1
  const before = new Array(current.length).fill(-1);
  current.forEach((row, i) => {
    const place = wanted.has(row) ? wanted.get(row) : -1;
    if (place < 0) return;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (wanted.get(current[tails[mid]]) < place) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) before[i] = tails[lo - 1];
    tails[lo] = i;
  });
  const stay = new Set();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = before[i]) {
    stay.add(current[i]);
  }
  return stay;
}

/** One line per console restart that resumed this job, above the summary. */
function renderRecoveries(page) {
  const notices = page.notices;
  const recoveries = page.model.recoveries;
  if (notices.childElementCount === recoveries.length) return;
  const items = recoveries.map((recovery) => {
    const item = el("li", "job-notice");
    item.append("Console restarted: resumed on " + recovery.node);
    const time = utcTime(recovery.ts);
    if (time) item.append(" at ", time);
    let text = "";
    const names = recovery.servers;
    if (names.length) {
      text += " (" + names.length + " server" + (names.length === 1 ? " was" : "s were") +
        " under way: " + names.slice(0, 8).join(", ") + (names.length > 8 ? ", …" : "") + ")";
    }
    item.append(text);
    if (recovery.reason) item.title = recovery.reason;
    return item;
  });
  notices.replaceChildren(...items);
  notices.hidden = items.length === 0;
}

/** The bar is the work done: a server that ran to its end counts whole, one stopped
 * part-way by its steps, a skipped one not at all. */
function renderProgress(page) {
  const { model, els } = page;
  let work = 0;
  const counts = {};
  const steps = Math.max(1, model.steps.length);
  for (const host of model.hosts.values()) {
    counts[host.status] = (counts[host.status] || 0) + 1;
    if (host.status === "succeeded" || host.status === "failed") {
      work += 1;
    } else if (host.status !== "skipped" && host.status !== "pending") {
      work += Math.min(host.status === "running" ? 0.99 : 1, host.doneSteps / steps);
    }
  }
  const total = model.hosts.size;
  els.progress.max = Math.max(total, 1);
  els.progress.value = work;
  els.progress.setAttribute("aria-valuemax", String(total));
  els.progress.setAttribute("aria-valuenow", String(Math.round(work)));
  let text = progressText(counts, total);
  if (!model.finished) text += " · " + (total ? Math.round((100 * work) / total) : 0) + "%";
  els.progressText.textContent = text;
}

/** "Batch 2 of 3 running (4 servers: …)", "Ran 2 of 3 batches", … */
function batchText(model) {
  const count = model.batches.length;
  const gate = model.rollout.gate;
  if (model.finished) {
    const ran = model.batch === null ? 0 : model.batch + 1;
    return "Ran " + ran + " of " + count + " batches";
  }
  if (gate) {
    return "Batch " + (gate.batch + 1) + " of " + count + " done; paused at the " +
      "gate before batch " + (gate.next + 1);
  }
  if (model.batch === null) return count + " batches; waiting for the first";
  const names = model.batchServers || [];
  const shown = names.slice(0, 8).join(", ") + (names.length > 8 ? ", …" : "");
  return "Batch " + (model.batch + 1) + " of " + count + " running (" + names.length +
    " server" + (names.length === 1 ? "" : "s") + ": " + shown + ")";
}

function summaryText(data) {
  const counts = Object.entries(data.counts || {})
    .map(([name, n]) => n + " " + name).join(", ");
  let text = "Finished: " + (data.status || "?");
  const duration = formatDuration(data.duration);
  if (duration) text += " in " + duration;
  if (counts) text += " — " + counts;
  if (data.reason) text += ". Reason: " + data.reason;
  return text;
}

export function renderHeader(page) {
  const { model, els } = page;
  renderRecoveries(page);
  els.status.textContent = model.status || "loading…";
  els.status.className = "badge badge-large status-" + (model.status || "loading");
  const running = model.finished ? false : model.running;
  if (els.cancel) els.cancel.hidden = !running;
  if (els.cancelHelp) els.cancelHelp.hidden = !running;
  if (model.status) {
    document.title = (model.status === "paused" ? "Paused · " : "") + page.baseTitle;
  }
  if (els.rerun) renderRerunButton(page);
  renderSince(page);
  renderFailed(page);
  renderProgress(page);
  renderEta(page);
  if (model.batches.length > 1) {
    els.batchInfo.textContent = batchText(model);
    els.batchInfo.hidden = false;
  } else {
    els.batchInfo.hidden = true;
  }
  if (model.finished) {
    els.summary.textContent = summaryText(model.finished);
    els.summary.hidden = false;
  }
}

/** The re-run offer: only the servers still failing (not those a later job fixed). */
function renderRerunButton(page) {
  const { model, els } = page;
  const choice = model.finished && model.status !== "succeeded"
    ? rerunChoice(model.hosts, page.job.succeeded_since) : null;
  els.rerun.hidden = !choice || choice.names.length === 0;
  if (choice) labelButton(els.rerun, choice.label);
}

/** "gs-03 succeeded since in job #5" (job # linked), once the job has ended. */
function renderSince(page) {
  const since = page.els.since;
  if (!since) return;
  const groups = page.model.finished ? sinceGroups(page.job.succeeded_since) : [];
  const key = JSON.stringify(groups);
  if (since.dataset.key === key) return;
  since.dataset.key = key;
  since.replaceChildren();
  groups.forEach((group, index) => {
    const link = el("a", null, "job #" + group.jobId);
    link.href = root + "/jobs/" + group.jobId;
    if (index) since.append("; ");
    since.append(group.names.join(", ") + " succeeded since in ", link);
  });
  if (groups.length) since.append(".");
  since.hidden = groups.length === 0;
}

export function renderEta(page) {
  const { model, els } = page;
  if (!els.eta) return;
  const running = model.running && !model.finished && model.status !== "paused";
  els.eta.hidden = !running;
  if (!running) return;
  const strategy = page.job.strategy || {};
  const now = Date.now() / 1000;
  const soak = model.rollout.activeSoak();
  els.eta.textContent = etaText(estimate({
    steps: model.steps,
    stepTotals: model.stepTotals,
    usual: page.usual,
    hosts: model.hosts.values(),
    parallel: Number(strategy.parallel) || model.hosts.size || 1,
    now,
    batchOf: model.rollout.batchOf,
    gate: strategy.gate,
    soakLeft: soak && soak.until ? soak.until - now : 0,
  }));
}

// --- the rollout: segments, the gate, a soak, its history -------------------------------

export function renderRollout(page) {
  if (page.els.segments) R.renderSegments(page.els.segments, page.model.rollout.segments(), false);
  renderGate(page);
  renderSoak(page);
  renderRolloutHistory(page);
}

/** Paused at a manual gate: what succeeded, what is next, and who may act. */
function renderGate({ model, els }) {
  if (!els.gatePanel) return;
  const rollout = model.rollout;
  const gate = model.finished ? null : rollout.gate;
  els.gatePanel.hidden = !gate;
  if (!gate) return;
  const count = rollout.count;
  const done = rollout.serversOf(gate.batch);
  const next = rollout.serversOf(gate.next);
  const nextName = R.batchName(gate.next, count);
  els.gateTitle.textContent = "Paused after " + R.batchPhrase(gate.batch, count);
  els.gateText.textContent = capital(R.batchPhrase(gate.batch, count)) + " succeeded" +
    (done.length ? " (" + R.listed(done) + ")" : "") + ". Next: " + nextName +
    (next.length ? " (" + R.listed(next) + ")" : "") + ".";
  if (els.promote) labelButton(els.promote, "Promote: start " + nextName);
  if (els.gateViewer) {
    els.gateViewer.textContent = "An operator can promote it (start " + nextName +
      ") or abort it (the servers not started are skipped).";
  }
}

/** "Soaking the canary: health checks again in 45 s", then its health checks. */
function renderSoak({ model, els }) {
  if (!els.rolloutNow) return;
  const soak = model.finished ? null : model.rollout.activeSoak();
  els.rolloutNow.hidden = !soak;
  if (!soak) return;
  const phrase = capital("soaking " + R.batchPhrase(soak.batch, model.rollout.count));
  const left = typeof soak.until === "number" ? soak.until - Date.now() / 1000 : null;
  els.rolloutNow.replaceChildren(phrase + ": ");
  if (left !== null && left > 0) {
    els.rolloutNow.append("health checks again in ",
      el("span", "soak-countdown", R.countdown(left)));
  } else {
    els.rolloutNow.append("running its health checks again");
  }
}

/** Pauses, promotions, aborts and soaks, oldest first, with who and when. */
function renderRolloutHistory({ model, els }) {
  if (!els.rolloutHistory) return;
  const entries = model.rollout.log;
  if (els.rolloutHistory.childElementCount === entries.length) return;
  els.rolloutHistory.replaceChildren(...entries.map((entry) => {
    const item = el("li", "rollout-entry");
    item.dataset.kind = entry.kind;
    const time = utcTime(entry.ts, "muted");
    if (time) item.append(time, " ");
    item.append(R.gateWords(entry, model.rollout.count));
    return item;
  }));
  els.rolloutHistory.hidden = entries.length === 0;
}

// --- log selection ----------------------------------------------------------------------

/** Show the log of `name` only (null: all servers' logs). */
export function select(page, name) {
  const els = page.els;
  page.selected = page.parts.has(name) ? name : null;
  for (const parts of page.parts.values()) {
    const chosen = parts.host.name === page.selected;
    parts.row.classList.toggle("selected", chosen);
    setAttr(parts.button, "aria-pressed", String(chosen));
  }
  renderOrder(page);
  els.showAll.setAttribute("aria-pressed", String(page.selected === null));
  els.selection.textContent = "Showing " + (page.selected === null ? "all servers" : page.selected);
  els.showAll.hidden = page.selected === null;
  if (page.selected !== null) {
    const parts = page.parts.get(page.selected);
    buildSection(page, parts);
    parts.section.scrollIntoView({ block: "nearest" });
    page.logs.mark(parts.log);
  }
}
