/*
 * The job page's estimate of the time left, from step durations: those seen so far in
 * this job, and what a server of the same runbook took in earlier jobs
 * (`usual.host_seconds`, from the page). Running servers finish their remaining steps;
 * pending ones then run `parallel` at once.
 *
 * estimate({steps, stepTotals, usual, hosts, parallel, now}) -> {seconds, basis} | null
 * (pure: tested in Node).
 */

/**
 * Seconds one step is expected to take: its mean in this job so far; else an even
 * share of what a server took in earlier runs; else the mean of the steps seen so far;
 * null when nothing is known yet.
 */
function expectedStep(name, input) {
  const seen = input.stepTotals.get(name);
  if (seen && seen.count) return seen.seconds / seen.count;
  if (input.usual.host_seconds && input.steps.length) {
    return input.usual.host_seconds / input.steps.length;
  }
  let seconds = 0;
  let count = 0;
  for (const total of input.stepTotals.values()) {
    seconds += total.seconds / total.count;
    count += 1;
  }
  return count ? seconds / count : null;
}

function remainingFor(host, input) {
  let seconds = 0;
  for (let i = Math.max(0, host.doneSteps); i < input.steps.length; i++) {
    const expected = expectedStep(input.steps[i], input);
    if (expected === null) return null;
    if (i === host.stepIndex && host.phase === "steps" && host.stepStartTs !== null) {
      seconds += Math.max(0, expected - (input.now - host.stepStartTs));
    } else {
      seconds += expected;
    }
  }
  return seconds;
}

export function estimate(input) {
  if (!input.steps.length) return null;
  let longest = 0;
  let sum = 0;
  let pending = 0;
  for (const host of input.hosts) {
    if (host.status === "running") {
      const left = remainingFor(host, input);
      if (left === null) return null;
      longest = Math.max(longest, left);
      sum += left;
    } else if (host.status === "pending") {
      pending += 1;
    }
  }
  let perHost = 0;
  for (const step of input.steps) {
    const expected = expectedStep(step, input);
    if (expected === null) return null;
    perHost += expected;
  }
  const seconds = Math.max(longest, (sum + pending * perHost) / Math.max(1, input.parallel));
  const samples = input.usual.samples || 0;
  const basis = input.stepTotals.size === input.steps.length || !samples
    ? "from this job's steps so far"
    : "from " + samples + " server run" + (samples === 1 ? "" : "s") + " of earlier jobs";
  return { seconds, basis };
}
