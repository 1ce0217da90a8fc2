/*
 * Jobs waiting for a person, kept current on every page (base.html loads this last):
 * the header's "1 rollout waiting for you" (#waiting-link: to the job, or to the paused
 * jobs' history when several wait) and the dashboard's card (#waiting-panel) with each
 * job's Promote and Abort for those who may act (operators; data-for-you).
 *
 * The server renders both on first paint (templates/_waiting.html); this module listens
 * to the `jobs:waiting` broadcast (every socket, whenever a gate pauses or opens or a
 * job ends) and reads GET /api/jobs/waiting on every (re)connect, since a broadcast
 * missed while disconnected is not replayed. Pages without a socket of their own get
 * one: the Socket.IO client is loaded here when the page did not load it.
 */
import { ask } from "./confirm.js";
import { el } from "./dom.js";
import { connect, onConnect, request } from "./live.js";
import { fetchJSON, root } from "./http.js";

const link = document.getElementById("waiting-link");
const panel = document.getElementById("waiting-panel");
const forYou = Boolean(link) && link.dataset.forYou === "true";
const pending = new Map(); // job id: the action sent, until the list moves on
let latest = { count: Number(link ? link.dataset.count : 0) || 0, jobs: [] };

/** "1 rollout waiting for you" / "2 rollouts waiting for an operator" (waiting.py). */
export function headerWords(count, mine) {
  return count + (count === 1 ? " rollout" : " rollouts") + " waiting for " +
    (mine ? "you" : "an operator");
}

function jobHref(id) {
  return root + "/jobs/" + id;
}

function renderLink(waiting) {
  if (!link) return;
  link.dataset.count = String(waiting.count);
  link.hidden = waiting.count === 0;
  link.textContent = waiting.count ? headerWords(waiting.count, forYou) : "";
  const one = waiting.count === 1 && waiting.jobs.length === 1;
  link.href = one ? jobHref(waiting.jobs[0].job_id) : link.dataset.listHref;
  link.title = one ? "Job #" + waiting.jobs[0].job_id + " " + waiting.jobs[0].runbook + ": " +
    waiting.jobs[0].words : "The jobs waiting for a person";
}

function item(job, mine) {
  const row = el("li", "waiting-item");
  row.dataset.jobId = String(job.job_id);
  const what = el("span", "waiting-what");
  const open = el("a", null, "Job #" + job.job_id);
  open.href = jobHref(job.job_id);
  what.append(open, " ", el("span", "job-runbook", job.runbook));
  if (job.target_version) what.append(" ", el("code", null, job.target_version));
  what.append(": " + job.words + (job.created_by ? " · started by " + job.created_by : ""));
  row.append(what);
  if (mine && job.waiting === "gate") {
    const actions = el("span", "waiting-actions");
    const sent = pending.get(job.job_id);
    const promote = el("button", "button button-small button-primary",
      sent === "promote" ? "promoting…" : "Promote" +
        (job.gate && job.gate.next_name ? ": start " + job.gate.next_name : ""));
    const abort = el("button", "button button-small button-danger",
      sent === "abort" ? "aborting…" : "Abort at this gate");
    for (const [button, action] of [[promote, "promote"], [abort, "abort"]]) {
      button.type = "button";
      button.dataset.action = action;
      button.disabled = Boolean(sent);
    }
    actions.append(promote, abort);
    row.append(actions);
  }
  return row;
}

function renderPanel(waiting) {
  if (!panel) return;
  const mine = panel.dataset.forYou === "true";
  panel.hidden = waiting.count === 0;
  document.getElementById("waiting-list").replaceChildren(
    ...waiting.jobs.map((job) => item(job, mine)));
  const more = document.getElementById("waiting-more");
  more.hidden = waiting.count <= waiting.jobs.length;
  more.firstElementChild.textContent = "All " + waiting.count + " waiting jobs";
}

function render(waiting) {
  if (!waiting || !Array.isArray(waiting.jobs)) return;
  latest = waiting;
  const still = new Set(waiting.jobs.map((job) => job.job_id));
  for (const id of pending.keys()) if (!still.has(id)) pending.delete(id);
  renderLink(waiting);
  renderPanel(waiting);
}

/** Ask first (as the job rows do), then send; a refusal is said in the job's line. */
async function decide(jobId, action) {
  const job = latest.jobs.find((entry) => entry.job_id === jobId);
  if (!job || pending.has(jobId)) return;
  const gate = job.gate || {};
  const yes = await ask(action === "promote" ? {
    title: "Promote job #" + jobId + "?",
    lines: ["Promote: " + (gate.next_name || "the next batch") + " starts (" +
      (gate.next_count || 0) + " servers" + (gate.next_servers && gate.next_servers.length
      ? ": " + gate.next_servers.join(", ") + (gate.next_count > gate.next_servers.length
        ? ", …" : "") : "") + ").", job.words + "."],
    confirm: "Promote: start " + (gate.next_name || "the next batch"),
    dismiss: "Keep it paused",
  } : {
    title: "Abort job #" + jobId + " at the gate?",
    lines: ["Abort: " + (gate.not_started || 0) + " servers not started will be skipped " +
      "and the job ends cancelled.", "Servers that finished keep their result."],
    confirm: "Abort: skip " + (gate.not_started || 0) + " servers",
    dismiss: "Keep it paused",
    danger: true,
  });
  if (!yes) return;
  pending.set(jobId, action);
  render(latest);
  const ack = await request("job:" + action, { job_id: jobId });
  if (ack.ok) return; // the broadcast of job_resumed / job_aborted takes it off the list
  pending.delete(jobId);
  render(latest);
  const row = panel.querySelector('.waiting-item[data-job-id="' + jobId + '"]');
  if (row) {
    const error = el("p", "waiting-error", (ack.error && ack.error.message) ||
      (action === "promote" ? "Promote failed." : "Abort failed."));
    error.setAttribute("role", "alert");
    row.append(error);
  }
}

function refresh() {
  fetchJSON("/api/jobs/waiting").then(render).catch((err) => {
    console.error("could not read the waiting jobs", err);
  });
}

function loadClient() {
  if (typeof window.io === "function") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = link.dataset.socketio;
    script.onload = resolve;
    script.onerror = () => reject(new Error("the Socket.IO client did not load"));
    document.head.append(script);
  });
}

async function start() {
  if (!link) return;
  if (panel) {
    panel.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      const row = button && button.closest(".waiting-item");
      if (row) decide(Number(row.dataset.jobId), button.dataset.action);
    });
    // The server's first paint has the words; the API adds each gate's detail.
    refresh();
  }
  await loadClient();
  connect().on("jobs:waiting", render);
  let first = true;
  onConnect(() => {
    if (!first || !panel) refresh(); // the panel read it above already
    first = false;
  });
}

start().catch((err) => console.error("waiting jobs: " + err.message));
