/*
 * Live job rows on the dashboard (recent jobs) and the history page.
 *
 * Every tab of a user is in the room user:<id> and receives `job:progress` for every job
 * that user starts: the job's events without its output, and at most about once a second
 * its latest line (never the log: a chatty job costs these pages nothing). So a job
 * started in another tab appears here at once (tables marked data-job-feed="insert"; a
 * filtered or later history page only updates its rows), and each row shows its status,
 * how many servers are done and the latest output line as they happen. Rows of running
 * jobs are refreshed from the API after a reconnect, since messages missed while
 * disconnected are not replayed to these pages.
 *
 * Under the status, a rollout's batches show as compact segments (rollout.js), with who
 * promoted or aborted it at a gate; a paused job shows Promote and Abort (operators:
 * data-may-gate on the table), each asking first, or a line saying an operator can.
 * From the accepted dialog on, the button pressed says "promoting…" / "aborting…" and
 * both are off until the row's job moves on (job_resumed, the job's end; for another
 * user's job, whose events this page does not get, its state from the API); a second
 * click sends nothing, and a refusal says why in the row.
 * A row starts from per-batch counts (data-batches); the first server event of a row
 * whose servers are not known by name loads them from GET /api/jobs/<id>.
 */
import { P } from "./core/live.js";
import * as R from "./core/rollout.js";
import { cutLine, gateActsText } from "./job/words.js";
import { utcTime } from "./core/times.js";

const el = P.el;
const table = document.querySelector("table[data-job-feed]");
const tbody = table ? table.tBodies[0] : null;
const inserting = Boolean(table) && table.dataset.jobFeed === "insert";
const mayGate = Boolean(table) && table.dataset.mayGate === "true";
const LIVE = new Set(["running", "paused"]);
const maxRows = Math.max(tbody ? tbody.querySelectorAll("tr[data-job-id]").length : 0, 10);
const me = (document.getElementById("current-user") || {}).textContent || "";
const rows = new Map();
const fetching = new Set();
const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "interrupted"]);
const SETTLE_MS = 1000; // a sent gate decision: how often the row asks the API ...
const SETTLE_TRIES = 60; // ... and for how long, when no event says the job moved on

function track(row) {
  const entry = {
    row,
    status: row.dataset.status,
    total: Number(row.dataset.total) || 0,
    done: Number(row.dataset.done) || 0,
    counts: readCounts(row),
    badge: row.querySelector(".job-status-cell"),
    progress: row.querySelector(".job-progress"),
    latest: row.querySelector(".job-latest"),
    duration: row.querySelector(".job-duration"),
    box: row.querySelector(".job-rollout"),
    rollout: new R.Rollout(),
    named: false, // the rollout knows its servers by name (job_started, or the API)
    buffer: null, // events held while the servers are loaded
    gateError: "",
    acting: false, // a gate action of this row is between its click and its end
    pending: null, // "promote" / "abort": sent, until the job moves on
  };
  if (entry.rollout) {
    entry.rollout.setCounts(readJSON(row.dataset.batches, []));
    entry.rollout.setLog(readJSON(row.dataset.gates, []));
    entry.rollout.setJobStatus(entry.status);
  }
  rows.set(Number(row.dataset.jobId), entry);
  return entry;
}

function readJSON(text, fallback) {
  try {
    return JSON.parse(text || "null") || fallback;
  } catch (err) {
    return fallback;
  }
}

function readCounts(row) {
  return readJSON(row.dataset.counts, {});
}

/** As _job_rows.html: "0 / 8 succeeded · 1 failed · 7 skipped" (a stopped rollout is
 * not a finished one). */
const APART = ["failed", "cancelled", "interrupted", "skipped"];
function progressText(counts, total) {
  let text = (counts.succeeded || 0) + " / " + total + " succeeded";
  for (const status of APART) {
    if (counts[status]) text += " · " + counts[status] + " " + status;
  }
  return text;
}

/** The row's status and progress; its rollout too unless `rollout` is false. */
function render(entry, rollout) {
  if (entry.status !== "paused") entry.pending = null; // the decision came through
  entry.row.dataset.status = entry.status;
  entry.badge.className = "badge status-" + entry.status + " job-status-cell";
  entry.badge.textContent = entry.status;
  entry.progress.textContent = progressText(entry.counts, entry.total);
  if (rollout !== false) renderRollout(entry);
}

/** Segments, the gate (paused: Promote / Abort or who can), who acted at gates. */
function renderRollout(entry) {
  if (!entry.box || !entry.rollout) return;
  const rollout = entry.rollout;
  const parts = [];
  if (rollout.count) {
    const list = el("ol", "batch-segments");
    R.renderSegments(list, rollout.segments(), true);
    parts.push(list);
  }
  if (entry.status === "paused") {
    const gate = el("div", "job-gate");
    const after = rollout.gate ? R.batchPhrase(rollout.gate.batch, rollout.count) : "a batch";
    gate.append(el("span", "job-gate-text", "paused after " + after));
    if (mayGate) {
      const promote = el("button", "button button-small button-primary promote-button",
        rollout.gate ? "Promote: start " + R.batchName(rollout.gate.next, rollout.count)
          : "Promote");
      // What Abort does, in its words (no Cancel here; the job page says both).
      const abort = el("button", "button button-small button-danger abort-button",
        "Abort: skip the rest");
      for (const [button, action] of [[promote, "promote"], [abort, "abort"]]) {
        button.type = "button";
        button.dataset.action = action;
        button.disabled = Boolean(entry.pending);
        if (entry.pending === action) {
          button.textContent = R.UNDER_WAY[action];
          button.setAttribute("aria-busy", "true");
        }
      }
      gate.append(promote, abort);
    } else {
      gate.append(el("span", "muted job-gate-viewer",
        "an operator can promote it or abort it"));
    }
    if (entry.gateError) gate.append(el("span", "job-gate-error", entry.gateError));
    parts.push(gate);
  }
  // "promoted twice by admin", not the same words twice (words.js).
  const acts = gateActsText(rollout.log);
  if (acts) parts.push(el("span", "job-gates", acts));
  entry.box.replaceChildren(...parts);
}

/** Promote or abort from a row, once: a second click while the first is asking or
 * on its way (even before the buttons are off) sends nothing. */
async function gateAction(id, action) {
  const entry = rows.get(id);
  if (!entry || !entry.rollout || entry.acting || entry.pending) return;
  entry.acting = true;
  try {
    await decideGate(entry, id, action);
  } finally {
    entry.acting = false;
  }
}

/** Load the row's servers (for the question), ask, act; held until the job moves on. */
async function decideGate(entry, id, action) {
  entry.gateError = "";
  for (const item of entry.rollout.log) item.fresh = false;
  await refresh(id);
  if (entry.status !== "paused") return;
  const ask = action === "promote" ? R.askPromote : R.askAbort;
  if (!(await ask(id, entry.rollout))) return;
  entry.pending = action;
  render(entry);
  const ack = await R.act(action, id);
  if (!ack.ok) {
    entry.pending = null;
    entry.gateError = (ack.error && ack.error.message) ||
      (action === "promote" ? "Promote failed." : "Abort failed.");
    render(entry);
    return;
  }
  // This page may not get the job's events (another user's job): say it here; the
  // event, if it comes, takes its place.
  const kind = action === "promote" ? "promoted" : "aborted";
  if (!entry.rollout.log.some((item) => item.kind === kind && item.fresh)) {
    entry.rollout.log.push({ kind, by: me, local: true });
  }
  await refresh(id);
  settle(entry, id, SETTLE_TRIES);
}

/** A row whose decision is sent but whose job has not moved on yet, as far as this page
 * knows: ask the API again in a while (another user's job sends this page no events). */
function settle(entry, id, tries) {
  if (!entry.pending || rows.get(id) !== entry) return;
  if (tries <= 0) {
    entry.pending = null;
    entry.gateError = "The server took the decision, but the job has not moved on yet.";
    render(entry);
    return;
  }
  setTimeout(async () => {
    if (!entry.pending) return;
    await refresh(id);
    settle(entry, id, tries - 1);
  }, SETTLE_MS);
}

if (table) {
  table.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof Element)) return;
    const button = target.closest("button[data-action]");
    const row = button && button.closest("tr[data-job-id]");
    if (row) gateAction(Number(row.dataset.jobId), button.dataset.action);
  });
}

/** A row like templates/jobs/_job_rows.html renders, from what is known so far. */
function buildRow(job) {
  const row = el("tr", "job-new");
  row.dataset.jobId = String(job.id);
  row.dataset.status = job.status;
  row.dataset.total = String(job.total);
  row.dataset.done = String(job.done);
  const head = el("th");
  head.scope = "row";
  const link = el("a", null, "#" + job.id);
  link.href = P.root + "/jobs/" + job.id;
  head.append(link);
  const what = el("td", "job-what");
  if (job.kind === "adhoc") {
    what.append(el("span", "badge", "ad-hoc"), " ",
      el("code", "kind-adhoc", String((job.params || {}).command || "").slice(0, 80)));
  } else {
    // A rollback says so and, once known (GET /api/jobs/<id>), each server's builds
    // before and after; it takes no parameters: the empty ones are not listed.
    const rollback = job.kind === "rollback";
    what.append(el("span", "job-runbook", job.title ||
      (rollback ? "Roll back (" + job.runbook + ")" : job.runbook)), " ");
    if (rollback) what.append(el("span", "job-builds", job.buildsWords || ""), " ");
    const params = el("span", "params");
    for (const [name, value] of Object.entries(job.params || {})) {
      if (rollback && (value === "" || value === null)) continue;
      params.append(el("code", null, name + "=" + value), " ");
    }
    what.append(params);
  }
  const status = el("td");
  status.append(el("span", "badge job-status-cell"), " ", el("span", "job-progress"), " ",
    el("span", "job-latest muted"), el("div", "job-rollout"));
  const started = el("td");
  const time = utcTime(job.createdAt);
  if (time) started.append(time);
  row.append(head, what, status, el("td", "job-user", job.createdBy || "—"), started,
    el("td", "job-duration"), el("td"));
  return row;
}

function insert(job) {
  const empty = tbody.querySelector("tr.empty-row");
  if (empty) empty.remove();
  const entry = track(buildRow(job));
  tbody.prepend(entry.row);
  const all = tbody.querySelectorAll("tr[data-job-id]");
  for (let i = maxRows; i < all.length; i++) {
    rows.delete(Number(all[i].dataset.jobId));
    all[i].remove();
  }
  render(entry);
  return entry;
}

/** Insert or refresh a row from GET /api/jobs/<id> (its state as of now). */
async function refresh(id) {
  if (fetching.has(id)) return;
  fetching.add(id);
  const known = rows.get(id);
  if (known) known.buffer = known.buffer || [];
  try {
    const { job } = await P.fetchJSON("/api/jobs/" + id);
    let entry = rows.get(id);
    const done = job.hosts.filter((h) => FINISHED.has(h.status)).length;
    const counts = {};
    for (const h of job.hosts) counts[h.status] = (counts[h.status] || 0) + 1;
    if (!entry) {
      if (!inserting) return;
      entry = insert({ id, kind: job.kind, runbook: job.runbook, params: job.params,
        status: job.status, total: job.hosts.length, done, createdBy: job.created_by,
        createdAt: job.created_at, title: job.title, buildsWords: job.builds_words });
    }
    const builds = entry.row.querySelector(".job-builds");
    if (builds && job.builds_words) builds.textContent = job.builds_words;
    entry.status = job.status;
    entry.total = job.hosts.length;
    entry.done = done;
    entry.counts = counts;
    // The servers by name and batch, then what happened after this answer was made.
    if (entry.rollout) {
      entry.rollout.setHosts(job.hosts);
      entry.rollout.setJobStatus(job.status);
      entry.named = true;
    }
    // What came while the answer was on its way and is newer than it: a job_finished
    // there must not be undone by the answer's older "running".
    for (const event of entry.buffer || []) {
      if (event.seq > (job.last_seq || 0)) fold(entry, event);
    }
    render(entry);
  } catch (err) {
    console.error("job " + id, err);
  } finally {
    fetching.delete(id);
    const entry = rows.get(id);
    if (entry) entry.buffer = null;
  }
}

/** A progress message's latest output line, as "[server] line", cut at a word with
 * "…" (words.js), the whole line in its title. */
function showLatest(entry, latest) {
  if (!latest || !LIVE.has(entry.status)) return;
  const line = cutLine(latest.line, 120);
  entry.latest.textContent = "[" + latest.host + "] " + line.text;
  if (line.cut) entry.latest.title = "[" + latest.host + "] " + String(latest.line).slice(0, 2000);
  else entry.latest.removeAttribute("title");
}

/** Fold one event into a row's state; whether its segments changed and whether the
 * row needs its servers' names first (a host event before job_started). */
function fold(entry, event) {
  const data = event.data || {};
  let changed = false;
  let needNames = false;
  if (event.type === "job_started") entry.named = true;
  if (!entry.rollout) {
    // no rollout.js on this page: status and progress only
  } else if (entry.named || !event.host) {
    changed = entry.rollout.apply(event);
  } else {
    needNames = true;
  }
  if (event.type === "job_paused") {
    entry.status = "paused";
  } else if ((event.type === "job_resumed" || event.type === "job_aborted") && entry.rollout) {
    if (event.type === "job_resumed") entry.status = "running";
    entry.gateError = "";
    // The event names who did it: it replaces what this page said after its own ack.
    const kind = event.type === "job_resumed" ? "promoted" : "aborted";
    const log = entry.rollout.log;
    const local = log.findIndex((item) => item.local && item.kind === kind);
    if (local >= 0) log.splice(local, 1);
    const last = log[log.length - 1];
    if (last && last.kind === kind) last.fresh = true;
  } else if (event.type === "job_resumed" || event.type === "job_aborted") {
    if (event.type === "job_resumed") entry.status = "running";
    entry.gateError = "";
  } else if (event.type === "host_finished") {
    entry.done = Math.min(entry.total, entry.done + 1);
    const status = data.status || "failed";
    entry.counts[status] = (entry.counts[status] || 0) + 1;
  } else if (event.type === "job_finished") {
    entry.status = data.status || "failed";
    entry.latest.textContent = "";
    entry.latest.removeAttribute("title");
    if (typeof data.duration === "number") {
      entry.duration.textContent = data.duration.toFixed(1) + " s";
    }
  }
  return { changed, needNames };
}

function apply(entry, events) {
  let needNames = false;
  let changed = false;
  for (const event of events) {
    // A GET of this row is in flight: its answer may predate this event, which is
    // then folded in again on top of it (refresh).
    if (entry.buffer) entry.buffer.push(event);
    const folded = fold(entry, event);
    changed = folded.changed || changed;
    needNames = folded.needNames || needNames;
  }
  render(entry, changed || events.some((event) => event.type === "job_finished"));
  if (needNames && !entry.buffer) refresh(Number(entry.row.dataset.jobId));
}

let connected = 0;

/** A job's progress message: its row follows; a job started elsewhere gets a row. */
function progressed(payload) {
  const id = Number(payload.job_id);
  let entry = rows.get(id);
  if (entry) {
    apply(entry, payload.events);
    showLatest(entry, payload.latest);
    return;
  }
  if (!inserting) return;
  const started = payload.events.find((event) => event.type === "job_started");
  if (!started || started.seq !== 1) {
    refresh(id); // joined mid-job: take its current state from the API
    return;
  }
  const data = started.data || {};
  const servers = data.servers || [];
  entry = insert({ id, kind: data.kind, runbook: data.runbook, params: data.params,
    status: "running", total: servers.length, done: 0, createdBy: me,
    createdAt: new Date(started.ts * 1000).toISOString() });
  apply(entry, payload.events);
  showLatest(entry, payload.latest);
  if (data.kind === "rollback") refresh(id); // its servers' builds before and after
}

/** Follow the user's jobs (job:progress); refresh live rows after a reconnect. */
function follow() {
  try {
    P.connect();
  } catch (err) {
    console.error(err);
    return;
  }
  P.onConnect(() => {
    connected += 1;
    if (connected === 1) return;
    for (const [id, entry] of rows) {
      if (LIVE.has(entry.status)) refresh(id);
    }
  });
  P.onJobProgress(progressed);
}

if (table) {
  for (const row of tbody.querySelectorAll("tr[data-job-id]")) renderRollout(track(row));
  follow();
}

// For tests (tests/browser/test_ux_rollouts.py folds events in the page), as rollout.js
// exposed it before it was a module.
window.PatchbayRollout = R;
