/*
 * Rollouts in the browser: a job's batches as a row of segments (canary, batch 2, …)
 * with their status, the manual gate's Promote and Abort (each asks first, in
 * confirm.js's dialog), and the words for gate and soak events. Shared by the job page
 * (job.js) and the job rows of the dashboard and the history (jobfeed.js).
 *
 * A Rollout folds a job's events (job_started.batches, batch_started, host statuses,
 * job_paused / job_resumed / job_aborted, soak_started / soak_finished, job_finished)
 * into what each batch is doing, so a reload or a finished job's page shows the same
 * segments as the live page did. Where no events are at hand (a history row) it starts
 * from per-batch status counts and the job's stored status.
 *
 * Exports Rollout, renderSegments, batchName, batchPhrase, gateWords, countdown,
 * askPromote, askAbort, act, UNDER_WAY, listed (the model's parts from rollout-model.js).
 */
import { ask } from "./confirm.js";
import { el } from "./dom.js";
import { plural } from "./format.js";
import { request } from "./live.js";
import { batchName, batchPhrase, listed } from "./rollout-model.js";

export { Rollout, batchName, batchPhrase, countdown, gateWords, listed } from "./rollout-model.js";

/** The segments as an <ol> (replacing `list`'s children); compact for table rows. */
export function renderSegments(list, segments, compact) {
  list.setAttribute("aria-label", "Batches");
  const items = segments.map((segment) => {
    const item = el("li", "batch-segment segment-" + segment.status);
    item.dataset.batch = String(segment.index);
    item.dataset.status = segment.status;
    const servers = segment.servers || [];
    if (!compact) item.style.flexGrow = String(Math.max(1, Math.min(servers.length, 12)));
    item.append(el("span", "segment-label", segment.label), " ",
      el("span", "badge status-" + segment.status + " segment-status", segment.word));
    if (!compact) item.append(" ", el("span", "segment-detail", segment.detail));
    item.title = segment.label + ": " + segment.word + " (" + segment.detail + ")" +
      (servers.length ? " — " + listed(servers, 20) : "");
    return item;
  });
  list.replaceChildren(...items);
}

// --- Promote and Abort ---------------------------------------------------------------

/** What a gate button says from the accepted dialog until the decision's event. */
export const UNDER_WAY = Object.freeze({ promote: "promoting…", abort: "aborting…" });

/** Ask before promoting: names the batch that starts and its servers. */
export function askPromote(jobId, rollout) {
  const gate = rollout.gate;
  const count = rollout.count;
  const next = gate ? gate.next : null;
  const names = next === null ? [] : rollout.serversOf(next);
  const batch = next === null ? "the next batch" : batchName(next, count);
  const lines = ["Promote: " + batch + (names.length ? " (" + listed(names, 12) + ")" : "") +
    " starts."];
  if (gate) {
    const done = rollout.serversOf(gate.batch);
    const phrase = batchPhrase(gate.batch, count);
    lines.push(phrase.charAt(0).toUpperCase() + phrase.slice(1) + " succeeded" +
      (done.length ? " (" + listed(done, 12) + ")" : "") + ".");
  }
  const later = next === null ? 0 : count - next - 1;
  if (later > 0) {
    lines.push(later + (later === 1 ? " more batch follows" : " more batches follow") +
      ", each after a gate like this one.");
  }
  return ask({
    title: "Promote job #" + jobId + "?",
    lines,
    confirm: "Promote: start " + batch,
    dismiss: "Keep it paused",
  });
}

/** Ask before aborting: how many servers end skipped, and that the job ends cancelled. */
export function askAbort(jobId, rollout) {
  const skipped = rollout.notStarted();
  const lines = ["Abort: " + plural(skipped.length, "server") + " will be skipped and the " +
    "job ends cancelled." + (skipped.length ? " (" + listed(skipped, 12) + ")" : "")];
  lines.push("Servers that finished keep their result.");
  return ask({
    title: "Abort job #" + jobId + " at the gate?",
    lines,
    confirm: "Abort: skip " + plural(skipped.length, "server"),
    dismiss: "Keep it paused",
    danger: true,
  });
}

/** Emit job:promote or job:abort; resolves to the ack ({ok, message} or {ok:false, error}). */
export function act(action, jobId) {
  return request("job:" + action, { job_id: jobId });
}
