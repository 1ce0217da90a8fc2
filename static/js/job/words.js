/*
 * The job page's words (pure: no DOM, tested in Node): reasons, progress, versions,
 * wait steps' lines. Times are passed in (`now`, epoch seconds), never read here.
 */
import { formatDuration, plural } from "../core/format.js";
import { countdown } from "../core/rollout-model.js";

export const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "interrupted"]);

/** A server's or step's reason, with its exit code unless the reason says it, or the
 * step was stopped by a signal (the reason then says "stopped (TERM)"), or it has
 * none (-1: killed). */
export function reasonText(reason, exitCode, signal) {
  let text = reason || "";
  if (exitCode !== null && exitCode !== undefined && exitCode !== -1 && !signal &&
      !text.includes("code " + exitCode)) {
    text = text ? text + " (exit code " + exitCode + ")" : "exit code " + exitCode;
  }
  return text;
}

/** The statuses apart: "0 / 8 succeeded · 1 failed · 7 skipped" (a stopped rollout
 * is not a finished one). */
const PROGRESS_ORDER = ["failed", "cancelled", "interrupted", "skipped", "running", "pending"];
export function progressText(counts, total) {
  let text = (counts.succeeded || 0) + " / " + total + " succeeded";
  for (const status of PROGRESS_ORDER) {
    if (counts[status]) text += " · " + counts[status] + " " + (status === "pending" ? "waiting" : status);
  }
  return text;
}

/** What the Version cell says: the version the server reported in this job, marked
 * when its on_failure steps rolled it back, or when a step ran after the report. */
export function versionText(host) {
  if (!host.version) return "";
  if (host.onFailure === "succeeded" && host.versionState === "verified") {
    return "rolled back to " + host.version + " ✓";
  }
  return host.versionState === "unverified" ? host.version + " (unverified)" : host.version;
}

/** "steps:0:build": a step's key in a server's open step headers. */
export function stepKey(data) {
  return (data.phase || "steps") + ":" + data.index + ":" + data.step;
}

/** "2 s", "0.5 s", "1 min 00 s". */
export function seconds(value) {
  return Number.isInteger(value) && value < 60 ? value + " s" : formatDuration(value);
}

export function secondsLeft(wait, now) {
  return wait.deadline === null ? null : Math.max(0, wait.deadline - now);
}

/** The wait in a few words, for the Step cell: "drain: waiting for ^0$ · 42 s left". */
export function waitWords(wait, now) {
  if (wait.ended) return wait.step + ": " + wait.ended.words;
  const left = secondsLeft(wait, now);
  return wait.step + ": waiting for " + wait.until +
    (left === null ? "" : " · " + countdown(left) + " left");
}

/** The probe's one log line: what it printed last (the panel shows all of it), and
 * the countdown or how the wait ended. */
export function probeLine(wait, now) {
  const last = wait.output.length ? wait.output[wait.output.length - 1] : "";
  const said = wait.output.length ? ": \u201c" + last.slice(0, 200) + "\u201d" : ": no output";
  const code = wait.exitCode === null || wait.exitCode === undefined ? ""
    : " (exit " + wait.exitCode + ")";
  let text = "probe " + wait.attempt + said + code + " · ";
  if (wait.ended) return text + wait.ended.words;
  text += wait.matched ? "matched" : "no match yet";
  const left = secondsLeft(wait, now);
  return left === null ? text : text + " · " + countdown(left) + " left";
}

/** How a wait step ended, in words: "matched after 3 probes", "timed out after 30 s,
 * proceeding", "failed: …". */
export function waitEndWords(wait, status, reason) {
  const probes = wait.attempt + " probe" + (wait.attempt === 1 ? "" : "s");
  const timeout = wait.timeout ? " after " + seconds(wait.timeout) : "";
  if (status === "ok" && wait.matched) return "matched after " + probes;
  if (status === "ok") return "timed out" + timeout + ", proceeding";
  if (status === "failed" && /^timed out/.test(reason)) return "timed out" + timeout + ", failed";
  return status + (reason ? ": " + reason : "");
}

/** A step header's label: "step 2/5", "on failure 1", "soak check 1". */
export function stepLabel(phase, index, stepCount) {
  const total = phase === "steps" && stepCount ? "/" + stepCount : "";
  return phase === "on_failure" ? "on failure " + (index + 1)
    : phase === "health" ? "soak check " + (index + 1)
      : phase === "probe" ? "asking the server its build"
        : "step " + (index + 1) + total;
}

/** A finished step's header result: "failed · exit code 2 · 1.2 s — reason". */
export function stepResult(data, status, isWait) {
  const parts = [status];
  if (data.exit_code !== null && data.exit_code !== undefined && data.exit_code !== -1 &&
      !data.signal) {
    parts.push("exit code " + data.exit_code);
  }
  const duration = formatDuration(data.duration);
  if (duration) parts.push(duration);
  let text = parts.join(" · ");
  if (data.reason && (status !== "ok" || isWait)) text += " — " + data.reason;
  return text;
}

/** The servers a later job has fixed since (`since`: the job's succeeded_since,
 * {server: job id}), by job, oldest job first: [{jobId, names}]. */
export function sinceGroups(since) {
  const byJob = new Map();
  for (const name of Object.keys(since || {}).sort()) {
    const jobId = Number(since[name]);
    if (!byJob.has(jobId)) byJob.set(jobId, []);
    byJob.get(jobId).push(name);
  }
  return Array.from(byJob, ([jobId, names]) => ({ jobId, names }))
    .sort((a, b) => a.jobId - b.jobId);
}

/** "gs-03 succeeded since in job #5" (as services/history.py since_words). */
export function sinceWords(since) {
  return sinceGroups(since).map((group) => group.names.join(", ") +
    " succeeded since in job #" + group.jobId).join("; ");
}

/** The servers a re-run would run (those that did not succeed, by status, less those
 * a later job has fixed since: `since`, as sinceGroups) and the words for it: "Re-run
 * failed" only when something failed; a cancelled job's servers that never finished
 * "Run again". `hosts`: the model's Map of host models. */
export function rerunChoice(hosts, since = {}) {
  const names = [];
  const counts = {};
  for (const host of hosts.values()) {
    if (host.status === "succeeded" || Object.hasOwn(since || {}, host.name)) continue;
    names.push(host.name);
    counts[host.status] = (counts[host.status] || 0) + 1;
  }
  const failed = counts.failed || 0;
  const n = names.length;
  let label = n === hosts.size ? "Run again" : "Run again on unfinished servers";
  let confirm = "Run again on " + plural(n, "server");
  if (failed && failed === n) {
    label = "Re-run failed servers";
    confirm = "Re-run " + plural(n, "failed server");
  } else if (failed) {
    label = "Re-run failed and unfinished servers";
    confirm = "Re-run " + plural(n, "server");
  }
  const why = Object.entries(counts).map(([status, count]) => count + " " + status).join(", ");
  return { names, why, label, confirm };
}

// --- the job rows (jobfeed.js): who acted at the gates, the latest line ------------------

const TIMES = ["", "once", "twice"];

/** "admin", "admin and bob", "admin, bob and carol". */
function andList(names) {
  return names.length < 2 ? names.join("")
    : names.slice(0, -1).join(", ") + " and " + names[names.length - 1];
}

/** One kind of decision by person, in the order they first took it: "promoted by admin
 * and bob", "promoted twice by admin", "promoted twice by admin and once by bob". */
function actedWords(verb, acts) {
  const counts = new Map();
  for (const act of acts) {
    const by = act.by || "an operator";
    counts.set(by, (counts.get(by) || 0) + 1);
  }
  if (Array.from(counts.values()).every((count) => count === 1)) {
    return verb + " by " + andList(Array.from(counts.keys()));
  }
  return verb + " " + andList(Array.from(counts, ([by, count]) =>
    (TIMES[count] || count + " times") + " by " + by));
}

/** A job row's gate decisions (rollout log entries of kind promoted / aborted), counted
 * per person: "promoted twice by admin; aborted at the gate by bob"; "" for none. */
export function gateActsText(log) {
  const parts = [];
  const promoted = log.filter((item) => item.kind === "promoted");
  const aborted = log.filter((item) => item.kind === "aborted");
  if (promoted.length) parts.push(actedWords("promoted", promoted));
  if (aborted.length) parts.push(actedWords("aborted at the gate", aborted));
  return parts.join("; ");
}

/** `text` in at most `max` characters, cut at a word boundary with "…" (mid-word only
 * when its last word is over half of it): {text, cut}. */
export function cutLine(text, max = 120) {
  const line = String(text);
  if (line.length <= max) return { text: line, cut: false };
  const room = line.slice(0, max - 1);
  const space = /\s/.test(line[max - 1]) ? room.length : room.search(/\s\S*$/);
  const kept = (space > max / 2 ? room.slice(0, space) : room).trimEnd();
  return { text: kept + "…", cut: true };
}
