/*
 * The job page's actions, each asking first (core/confirm.js): Promote and Abort at a
 * manual gate (job:promote, job:abort), Cancel (job:cancel) and Re-run (job:rerun), and
 * what the events say back about them (the reducer's effects: the gate decided, the job
 * finished, a message). The #job-message line's data-kind says whose words it holds.
 *
 * An action shows it was heard: from the accepted dialog on, its button says what is
 * under way ("promoting…") and stays off until the event that settles it (job_resumed,
 * job_aborted, the job's end; a re-run: the new job's page). One decision at a time at
 * the gate, one cancel, one re-run (page.acting's slots): a second click, even one that
 * lands before the button is off, sends nothing. Cancel stays free during a gate
 * decision (the server settles which comes first). A refused
 * action says why under its button (#<button id>-error), and the button is itself again.
 */
import { ask } from "../core/confirm.js";
import { el } from "../core/dom.js";
import { plural } from "../core/format.js";
import { root } from "../core/http.js";
import { request } from "../core/live.js";
import * as R from "../core/rollout.js";
import { rerunChoice, sinceWords } from "./words.js";

const UNDER_WAY = { ...R.UNDER_WAY, cancel: "cancelling…", rerun: "starting re-run…" };
const SLOT = { promote: "gate", abort: "gate", cancel: "cancel", rerun: "rerun" };
const FAILED = { promote: "Promote failed.", abort: "Abort failed.", cancel: "Cancel failed.",
  rerun: "Re-run failed." };

/** Set a button's own label (the view's words); shown unless an action is under way. */
export function labelButton(button, text) {
  button.dataset.label = text;
  if (!button.dataset.pending && button.textContent !== text) button.textContent = text;
}

/** The button says what is under way and is off until `release`. */
function hold(button, action) {
  if (!button) return;
  if (!button.dataset.pending) button.dataset.label = button.textContent;
  button.dataset.pending = action;
  button.textContent = UNDER_WAY[action];
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
}

/** The button is itself again (its label, on). */
function release(button) {
  if (!button) return;
  if (button.dataset.pending) {
    delete button.dataset.pending;
    button.textContent = button.dataset.label || button.textContent;
    button.removeAttribute("aria-busy");
  }
  button.disabled = false;
}

/** The line under a button that says why its action was refused. */
function refusalOf(button, make) {
  const id = button.id + "-error";
  let note = document.getElementById(id);
  if (!note && make) {
    note = el("p", "action-error");
    note.id = id;
    note.setAttribute("role", "alert");
    note.hidden = true;
    // Said after what the button does (job.html's line beside it), not instead of it.
    const described = (button.getAttribute("aria-describedby") || "").split(" ");
    button.setAttribute("aria-describedby", described.concat(id).filter(Boolean).join(" "));
    (button.closest(".gate-actions") || button).after(note);
  }
  return note;
}

function clearRefusal(button) {
  const note = button && refusalOf(button, false);
  if (note) {
    note.textContent = "";
    note.hidden = true;
  }
}

/** Refused: why, under the button (or, its button gone from view, in #job-message). */
function refuse(page, button, action, ack, gone) {
  const text = (ack.error && ack.error.message) || FAILED[action];
  release(button);
  page.acting.delete(SLOT[action]);
  if (gone || button.closest("[hidden]")) {
    showError(page.els, text);
    return;
  }
  const note = refusalOf(button, true);
  note.textContent = text;
  note.hidden = false;
}

function showError(els, text) {
  els.message.dataset.kind = "error";
  els.message.textContent = text;
}

/** A refusal under a button that goes from view (the gate decided, the job ended)
 * moves to #job-message, so its words stay on the page. */
function moveRefusal(page, button) {
  const note = button && refusalOf(button, false);
  if (note && !note.hidden && note.textContent) showError(page.els, note.textContent);
  clearRefusal(button);
}

/** The decision at the gate arrived (or the job ended): the gate's buttons are free. */
function gateSettled(page) {
  for (const button of [page.els.promote, page.els.abort]) {
    release(button);
    moveRefusal(page, button);
  }
  page.acting.delete("gate");
}

/** What an event meant for the actions (the reducer's `effects`). */
export function applyEffect(page, effect) {
  const els = page.els;
  if (effect.kind === "message") {
    els.message.textContent = effect.text;
  } else if (effect.kind === "gate-decided") {
    gateSettled(page);
  } else if (effect.kind === "finished") {
    gateSettled(page);
    release(els.cancel);
    moveRefusal(page, els.cancel);
    page.acting.delete("cancel");
  }
}

/** Run `action` once: no other action of its slot starts until this one is dismissed,
 * refused or settled, whatever the clicks. */
async function once(page, action, run) {
  const slot = SLOT[action];
  if (page.acting.has(slot)) return;
  page.acting.add(slot);
  let sent = false;
  try {
    sent = await run();
  } finally {
    if (!sent) page.acting.delete(slot);
  }
}

async function gateAction(page, action) {
  const { els, jobId } = page;
  const rollout = page.model.rollout;
  const button = action === "promote" ? els.promote : els.abort;
  const askFirst = action === "promote" ? R.askPromote : R.askAbort;
  if (!rollout.gate || !(await askFirst(jobId, rollout))) return false;
  clearRefusal(els.promote);
  clearRefusal(els.abort);
  hold(button, action);
  for (const other of [els.promote, els.abort]) {
    if (other && other !== button) other.disabled = true;
  }
  const ack = await R.act(action, jobId);
  if (!ack.ok) {
    refuse(page, button, action, ack, !page.model.rollout.gate);
    for (const other of [els.promote, els.abort]) release(other);
  }
  // Held until job_resumed / job_aborted (or the job's end) says the decision was taken.
  return true;
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
  const since = sinceWords(job.succeeded_since);
  return ask({
    title: choice.label + ": job #" + jobId + "?",
    lines: [
      "Starts a new job running " + jobWhat(job) + shownParams(job) + " with the same " +
        "strategy on the " + plural(names.length, "server") + " of job #" + jobId +
        " that did not succeed (" + choice.why + "): " + names.slice(0, 12).join(", ") +
        (names.length > 12 ? ", …" : "") + ".",
      "Servers that succeeded are left alone" + (since ? "; so are those fixed since: " +
        since + "." : "."),
    ],
    confirm: choice.confirm,
  });
}

async function cancel(page) {
  const els = page.els;
  if (!(await askToCancel(page))) return false;
  clearRefusal(els.cancel);
  hold(els.cancel, "cancel");
  const ack = await request("job:cancel", { job_id: page.jobId });
  if (!ack.ok) {
    refuse(page, els.cancel, "cancel", ack, Boolean(page.model.finished));
  } else if (page.model.finished || ack.status && !["running", "paused"].includes(ack.status)) {
    // Already over: no event will come to settle it.
    release(els.cancel);
    page.acting.delete("cancel");
  }
  // Otherwise held until the job's end (job_finished).
  return true;
}

async function rerun(page) {
  const els = page.els;
  const choice = rerunChoice(page.model.hosts, page.job.succeeded_since);
  if (!(await askToRerun(page, choice))) return false;
  clearRefusal(els.rerun);
  hold(els.rerun, "rerun");
  const ack = await request("job:rerun", { job_id: page.jobId });
  if (ack.ok) {
    window.location.href = root + "/jobs/" + ack.job_id; // held until the new page
  } else {
    refuse(page, els.rerun, "rerun", ack, false);
  }
  return true;
}

/** The buttons' clicks, one action at a time (see `once`). */
export function wireActions(page) {
  const els = page.els;
  page.acting = new Set(); // the slots with an action under way (see `once`)
  const wire = (button, action, run) => {
    if (button) button.addEventListener("click", () => once(page, action, () => run(page)));
  };
  wire(els.promote, "promote", (p) => gateAction(p, "promote"));
  wire(els.abort, "abort", (p) => gateAction(p, "abort"));
  wire(els.cancel, "cancel", cancel);
  wire(els.rerun, "rerun", rerun);
}
