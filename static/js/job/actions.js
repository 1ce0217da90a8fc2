/*
 * The job page's actions, each asking first (core/confirm.js): Promote and Abort at a
 * manual gate (job:promote, job:abort), Cancel (job:cancel) and Re-run (job:rerun), and
 * what the events say back about them (the reducer's effects: the gate decided, the job
 * finished, a message). The #job-message line's data-kind says whose words it holds.
 */
import { ask } from "../core/confirm.js";
import { plural } from "../core/format.js";
import { root } from "../core/http.js";
import { request } from "../core/live.js";
import * as R from "../core/rollout.js";
import { rerunChoice } from "./words.js";

/** "Asking the server to promote…" goes when the decision shows; an error stays. */
function clearGateNote(els) {
  if (els.message.dataset.kind === "gate") els.message.textContent = "";
}

/** The gate buttons are off while a decision is on its way. */
function gateBusy(els, busy) {
  for (const button of [els.promote, els.abort]) if (button) button.disabled = busy;
}

/** What an event meant for the actions (the reducer's `effects`). */
export function applyEffect(page, effect) {
  const els = page.els;
  if (effect.kind === "message") {
    els.message.textContent = effect.text;
  } else if (effect.kind === "gate-decided") {
    clearGateNote(els);
    gateBusy(els, false);
  } else if (effect.kind === "finished") {
    if (els.message.dataset.kind === "cancel") els.message.textContent = "";
    gateBusy(els, false);
  }
}

async function gateAction(page, action) {
  const { els, jobId } = page;
  const rollout = page.model.rollout;
  const askFirst = action === "promote" ? R.askPromote : R.askAbort;
  if (!rollout.gate || !(await askFirst(jobId, rollout))) return;
  gateBusy(els, true);
  els.message.dataset.kind = "gate";
  els.message.textContent = action === "promote" ? "Asking the server to promote…"
    : "Asking the server to abort…";
  const ack = await R.act(action, jobId);
  if (!ack.ok) {
    els.message.dataset.kind = "error";
    els.message.textContent = (ack.error && ack.error.message) ||
      (action === "promote" ? "Promote failed." : "Abort failed.");
    gateBusy(els, false);
  } else if (rollout.gate) {
    // The buttons go when job_resumed / job_aborted arrives.
    els.message.textContent = ack.message || (action === "promote" ? "Promoted." : "Aborted.");
  } else {
    els.message.textContent = "";
  }
}

function jobWhat(job) {
  return job.kind === "adhoc" ? "the ad-hoc command" : "the runbook " + job.runbook;
}

function shownParams(job) {
  if (job.kind === "adhoc") return "";
  const text = Object.entries(job.params || {}).map(([k, v]) => k + "=" + v).join(" ");
  return text ? " (" + text + ")" : "";
}

function askToCancel({ job, jobId, model }) {
  const statuses = Array.from(model.hosts.values(), (host) => host.status);
  const running = statuses.filter((status) => status === "running").length;
  const waiting = statuses.filter((status) => status === "pending").length;
  const lines = ["Job #" + jobId + " runs " + jobWhat(job) + shownParams(job) + " on " +
    plural(model.hosts.size, "server") + ". Cancelling stops it now:"];
  if (running) {
    lines.push("The steps running on " + plural(running, "server") + " are stopped on " +
      "the servers, mid-step.");
  }
  if (waiting) {
    lines.push(plural(waiting, "server") + " not started yet will not start: they end " +
      "cancelled.");
  }
  lines.push("Servers that finished keep their result. Afterwards you can run the job " +
    "again on the servers that did not succeed.");
  return ask({
    title: "Cancel job #" + jobId + "?",
    lines,
    confirm: "Cancel job #" + jobId,
    dismiss: "Keep it running",
    danger: true,
  });
}

function askToRerun({ job, jobId }, choice) {
  const names = choice.names;
  return ask({
    title: choice.label + ": job #" + jobId + "?",
    lines: [
      "Starts a new job running " + jobWhat(job) + shownParams(job) + " with the same " +
        "strategy on the " + plural(names.length, "server") + " of job #" + jobId +
        " that did not succeed (" + choice.why + "): " + names.slice(0, 12).join(", ") +
        (names.length > 12 ? ", …" : "") + ".",
      "Servers that succeeded are left alone.",
    ],
    confirm: choice.confirm,
  });
}

/** "cancelling job #N" while the cancel is under way; it goes when the job ends. */
function cancelNote(page, text) {
  page.els.message.dataset.kind = "cancel";
  page.els.message.textContent = page.model.finished ? "" : text;
}

async function cancel(page) {
  const els = page.els;
  if (!(await askToCancel(page))) return;
  els.cancel.disabled = true;
  cancelNote(page, "Asking the server to cancel…");
  const ack = await request("job:cancel", { job_id: page.jobId });
  if (ack.ok) {
    cancelNote(page, ack.message || "Cancel requested.");
    if (!ack.cancelled) els.cancel.disabled = false;
  } else {
    els.message.textContent = (ack.error && ack.error.message) || "Cancel failed.";
    els.cancel.disabled = false;
  }
}

async function rerun(page) {
  const els = page.els;
  if (!(await askToRerun(page, rerunChoice(page.model.hosts)))) return;
  els.rerun.disabled = true;
  els.message.textContent = "Starting a re-run of the servers that did not succeed…";
  const ack = await request("job:rerun", { job_id: page.jobId });
  if (ack.ok) {
    window.location.href = root + "/jobs/" + ack.job_id;
  } else {
    els.message.textContent = (ack.error && ack.error.message) || "Re-run failed.";
    els.rerun.disabled = false;
  }
}

/** The buttons' clicks. */
export function wireActions(page) {
  const els = page.els;
  if (els.promote) els.promote.addEventListener("click", () => gateAction(page, "promote"));
  if (els.abort) els.abort.addEventListener("click", () => gateAction(page, "abort"));
  if (els.cancel) els.cancel.addEventListener("click", () => cancel(page));
  if (els.rerun) els.rerun.addEventListener("click", () => rerun(page));
}
