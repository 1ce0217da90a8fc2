/*
 * The job page's estimate of the time left, step by step, and the basis it stands on.
 *
 * A step's expected duration, for one server: the median of that step on that server
 * in earlier jobs of the runbook, else the step's median across servers
 * (`usual.steps`, from services/step_durations.py through the page's usual-data);
 * else the step's mean in this job so far (`stepTotals`); else it is not known, and
 * neither is the time left. The step a server is in counts what is left of it: from
 * its own progress where its output reports a percentage (`host.stepProgress`: the
 * fraction and when it was said, kept by the reducer with lastFraction), extrapolating
 * the time it took to get that far; else its
 * expected duration less the time it has run. Running servers finish their steps;
 * each pending one starts when one of the `parallel` slots frees.
 *
 * estimate({steps, stepTotals, usual, hosts, parallel, now, batchOf, gate, soakLeft})
 *   -> {seconds, basis, toGate?} | null (toGate: true when it counts only to a manual gate)
 * etaText(estimate) -> the words the page shows. Pure: tested in Node (tests/js/).
 */
import { formatDuration } from "../core/format.js";

// "40%", "40 %", "12.5%": the last one on a stdout line of the step is how far it got.
const PERCENT = /(\d{1,3}(?:\.\d+)?)\s?%/g;

/** The fraction (0..1) the last percentage of `lines` says, or null if none does. */
export function lastFraction(lines) {
  let found = null;
  for (const line of lines) {
    for (const match of String(line).matchAll(PERCENT)) {
      const percent = Number(match[1]);
      if (percent <= 100) found = percent / 100;
    }
  }
  return found;
}

/** What one step is expected to take on `hostName`, and where that comes from. */
function expected(step, hostName, input) {
  const history = (input.usual.steps || {})[step];
  if (history && typeof history.seconds === "number") {
    const own = (history.hosts || {})[hostName];
    return { seconds: typeof own === "number" ? own : history.seconds, runs: history.runs || 0 };
  }
  const seen = input.stepTotals.get(step);
  if (seen && seen.count) return { seconds: seen.seconds / seen.count, runs: null };
  return null;
}

/** Note in `used` that an expectation came from history (its runs) or this job. */
function noteUsed(used, guess) {
  if (guess.runs === null) used.job = true;
  else used.runs = Math.min(used.runs, guess.runs);
}

/** What is left of the step `host` is in (null: nothing backs a number). */
function currentLeft(host, step, input, used) {
  const elapsed = Math.max(0, input.now - host.stepStartTs);
  const progress = host.stepProgress;
  const fraction = progress ? progress.fraction : null;
  const took = progress ? progress.ts - host.stepStartTs : 0; // to get that far
  if (fraction > 0 && fraction < 1 && took > 0) {
    const left = Math.max(0, took * (1 - fraction) / fraction - (input.now - progress.ts));
    used.progress.push({ step, percent: Math.round(fraction * 100), left });
    return left;
  }
  const guess = expected(step, host.name, input);
  if (!guess) return null;
  noteUsed(used, guess);
  if (elapsed > guess.seconds) used.over.add(step);
  return Math.max(0, guess.seconds - elapsed);
}

/** Seconds `host` has left: the rest of its step, then its remaining steps. */
function remainingFor(host, input, used) {
  if (host.phase === "on_failure") return 0; // its steps are over: it is rolling back
  let seconds = 0;
  for (let i = Math.max(0, host.doneSteps || 0); i < input.steps.length; i++) {
    const step = input.steps[i];
    let left;
    if (i === host.stepIndex && host.phase === "steps" && host.stepStartTs !== null) {
      left = currentLeft(host, step, input, used);
    } else {
      const guess = expected(step, host.name, input);
      if (guess) noteUsed(used, guess);
      left = guess ? guess.seconds : null;
    }
    if (left === null) return null;
    seconds += left;
  }
  return seconds;
}

/** The basis of an estimate in words: its progress, history and this job's steps. */
function basisWords(used) {
  const parts = [];
  if (used.progress.length) {
    const slowest = used.progress.reduce((a, b) => (b.left > a.left ? b : a));
    parts.push(slowest.step + " at " + slowest.percent + " %");
  }
  const history = used.runs !== Infinity;
  if (history && used.job) {
    parts.push("from earlier runs and this job's steps so far");
  } else if (history) {
    parts.push("from " + used.runs + " earlier run" + (used.runs === 1 ? "" : "s") +
      " of each step");
  } else if (used.job) {
    parts.push("from this job's steps so far");
  }
  for (const step of used.over) parts.push(step + " is taking longer than usual");
  return parts.join("; ");
}

/** When the last server ends: running ones end after their time left (`ends`); each
 * pending one (`lengths`, in order) takes the first of the `parallel` slots to free. */
function lastEnd(ends, lengths, parallel) {
  const slots = ends.slice().sort((a, b) => a - b);
  while (slots.length < parallel) slots.unshift(0);
  let last = slots.length ? slots[slots.length - 1] : 0;
  for (const length of lengths) {
    const end = slots.shift() + length;
    last = Math.max(last, end);
    let at = slots.findIndex((other) => other > end);
    if (at < 0) at = slots.length;
    slots.splice(at, 0, end);
  }
  return last;
}

/** Each batch's running servers' time left (`ends`) and pending ones' (`lengths`), by
 * batch index in order; null when one of them has nothing to back a number. */
function byBatch(input, used) {
  const batches = new Map();
  for (const host of input.hosts) {
    if (host.status !== "running" && host.status !== "pending") continue;
    const found = input.batchOf ? input.batchOf.get(host.name) : undefined;
    const index = Number.isInteger(found) ? found : 0;
    if (!batches.has(index)) batches.set(index, { ends: [], lengths: [] });
    const running = host.status === "running";
    const left = remainingFor(running ? host
      : { ...host, doneSteps: 0, stepIndex: -1, stepStartTs: null }, input, used);
    if (left === null) return null;
    batches.get(index)[running ? "ends" : "lengths"].push(left);
  }
  return [...batches.keys()].sort((a, b) => a - b).map((index) => batches.get(index));
}

/**
 * The time left, or null when nothing backs a number (no history, nothing seen).
 *
 * Batches run one after another (the engine starts a batch when the one before has
 * ended), each `parallel` servers at once; a soak gate (`gate: {soak}`) waits its
 * seconds between them (`soakLeft`: what is left of one under way). A manual gate
 * stops the count: nobody knows when it is promoted, so the estimate is to the gate
 * (`toGate`) and says so.
 */
export function estimate(input) {
  if (!input.steps.length) return null;
  const used = { runs: Infinity, job: false, progress: [], over: new Set() };
  const batches = byBatch(input, used);
  if (!batches || !batches.length) return null;
  const gate = input.gate || "auto";
  const soak = gate && typeof gate.soak === "number" ? gate.soak : 0;
  let seconds = Math.max(0, input.soakLeft || 0);
  let toGate = false;
  for (const [n, batch] of batches.entries()) {
    if (n > 0 && gate === "manual") {
      toGate = true;
      break;
    }
    if (n > 0) seconds += soak;
    const parallel = Math.max(1, Math.floor(input.parallel) || 1, batch.ends.length);
    seconds += lastEnd(batch.ends, batch.lengths, parallel);
  }
  const guess = { seconds, basis: basisWords(used) };
  return toGate ? Object.assign(guess, { toGate }) : guess;
}

/** "About 40 s left": whole seconds (an estimate has no tenths), minutes past a minute. */
function words(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  return whole < 10 ? whole + " s" : formatDuration(whole);
}

/** The page's words for `guess` (an estimate, or null: not known yet). */
export function etaText(guess) {
  if (!guess) return "Time left: estimating…";
  return "About " + words(guess.seconds) + (guess.toGate ? " left to the gate" : " left") +
    (guess.basis ? " (" + guess.basis + ")" : "");
}
