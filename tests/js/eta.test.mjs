// The job page's time left (static/js/job/eta.js): a recorded job replayed through the
// page's reducer, and each basis the estimate can stand on.
// Run: node --test tests/js/
// The recording (tests/js/fixtures/eta-job.json) is a real job over three OpenSSH
// servers, two at once, with the medians of three earlier jobs of the same runbook as
// the job page gets them; `.venv/bin/python -m tests.support.record_eta` records it anew.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { estimate, etaText, lastFraction } from "../../static/js/job/eta.js";
import { applyEvent, clearLog, createChanges, createModel } from "../../static/js/job/reducer.js";

const recording = JSON.parse(readFileSync(new URL("./fixtures/eta-job.json", import.meta.url)));

/** The page's model after the recording's events up to `at` (epoch seconds). */
function replayUntil(at, usual = recording.usual) {
  const job = { id: 1, status: "running", strategy: { parallel: recording.parallel },
    hosts: recording.hosts.map((name) => ({ name, batch: 0, status: "pending" })) };
  const model = createModel(job, recording.steps);
  const changes = createChanges();
  for (const event of recording.events) {
    if (event.ts > at) break;
    applyEvent(model, event, changes, at);
    clearLog(changes);
  }
  return estimate({ steps: model.steps, stepTotals: model.stepTotals, usual,
    hosts: model.hosts.values(), parallel: recording.parallel, now: at });
}

const start = recording.events[0].ts;
const end = recording.events.at(-1).ts;

test("the recording is a whole job of uneven steps", () => {
  assert.equal(recording.events[0].type, "job_started");
  assert.equal(recording.events.at(-1).type, "job_finished");
  assert.equal(recording.events.at(-1).data.status, "succeeded");
  const download = recording.usual.steps.download.seconds;
  assert.ok(download > 5 * recording.usual.steps.start.seconds, "download dwarfs start");
  assert.ok(recording.events.some((event) => event.type === "output" &&
    event.data.lines.some((line) => /\d+% done/.test(line))), "the download says its %");
});

for (const share of [0.2, 0.4, 0.6, 0.8]) {
  test(`at ${share * 100} % of the job the time left is within 30 % of the truth`, () => {
    const at = start + share * (end - start);
    const guess = replayUntil(at);
    const truth = end - at;
    assert.ok(guess, "an estimate");
    assert.ok(Math.abs(guess.seconds - truth) <= 0.3 * truth,
      `estimated ${guess.seconds.toFixed(1)} s, ${truth.toFixed(1)} s were left (${guess.basis})`);
    assert.match(guess.basis, /from 9 earlier runs of each step/);
  });
}

test("the old even spread of a server's time is off by more than 30 % at some point", () => {
  // What the page did before: a server's mean over earlier runs, spread evenly across
  // steps. The test above would catch a return to it.
  const total = Object.values(recording.usual.steps).reduce((sum, step) => sum + step.seconds, 0);
  const even = Object.fromEntries(recording.steps.map((name) =>
    [name, { seconds: total / recording.steps.length, runs: 9 }]));
  const misses = [0.2, 0.4, 0.6, 0.8].filter((share) => {
    const at = start + share * (end - start);
    const guess = replayUntil(at, { jobs: 3, steps: even });
    return Math.abs(guess.seconds - (end - at)) > 0.3 * (end - at);
  });
  assert.ok(misses.length > 0);
});

test("the replayed download says how far it got", () => {
  const download = recording.events.find((event) => event.type === "output" &&
    event.data.lines.some((line) => line.includes("40% done")));
  const guess = replayUntil(download.ts);
  assert.match(guess.basis, /^download at \d+ %; from 9 earlier runs of each step$/);
});

// --- each basis, one at a time --------------------------------------------------------

const running = (over) => ({ name: "h01", status: "running", doneSteps: 0, stepIndex: -1,
  phase: "steps", stepStartTs: null, stepProgress: null, ...over });

function input(over) {
  return { steps: ["download", "start"], stepTotals: new Map(), usual: { jobs: 0, steps: {} },
    hosts: [running({})], parallel: 1, now: 1000, ...over };
}

test("no history and nothing seen yet: estimating, not a number", () => {
  assert.equal(estimate(input({})), null);
  assert.equal(etaText(null), "Time left: estimating…");
  // One step known is not enough: the other one's length is anyone's guess.
  const half = input({ stepTotals: new Map([["download", { seconds: 30, count: 1 }]]) });
  assert.equal(estimate(half), null);
  assert.equal(estimate(input({ steps: [] })), null);
});

test("from earlier runs: the server's own median of each step, else across servers", () => {
  const usual = { jobs: 12, steps: {
    download: { seconds: 30, runs: 12, hosts: { h01: 50 } },
    start: { seconds: 4, runs: 14, hosts: { h02: 9 } },
  } };
  const guess = estimate(input({ usual }));
  assert.deepEqual(guess, { seconds: 54, basis: "from 12 earlier runs of each step" });
  assert.equal(etaText(guess), "About 54 s left (from 12 earlier runs of each step)");
  const once = { jobs: 1, steps: { download: { seconds: 30, runs: 1, hosts: {} },
    start: { seconds: 4, runs: 1, hosts: {} } } };
  assert.equal(estimate(input({ usual: once })).basis, "from 1 earlier run of each step");
});

test("from this job's steps so far, and the pending servers in parallel", () => {
  const guess = estimate(input({
    steps: ["a", "b"],
    stepTotals: new Map([["a", { seconds: 20, count: 2 }], ["b", { seconds: 30, count: 1 }]]),
    hosts: [running({ doneSteps: 1, stepIndex: 1, stepStartTs: 100 }),
      { name: "h02", status: "pending" }, { name: "h03", status: "pending" }],
    parallel: 2,
    now: 110,
  }));
  // Running: 30 - 10 = 20 s left. Two pending of 40 s each, two at once: the first
  // takes the free slot (ends at 40), the second h01's when it ends (20 + 40).
  assert.deepEqual(guess, { seconds: 60, basis: "from this job's steps so far" });
});

test("a step that says its percentage: the time it took to get there extrapolated", () => {
  const host = running({ stepIndex: 0, stepStartTs: 980,
    stepProgress: { fraction: 0.4, ts: 996 } });
  const usual = { jobs: 3, steps: { start: { seconds: 5, runs: 3, hosts: {} } } };
  // 16 s for 40 %: 24 s more from then, 20 s from now; then the start step's 5 s.
  const guess = estimate(input({ hosts: [host], usual }));
  assert.ok(Math.abs(guess.seconds - 25) < 1e-9, String(guess.seconds));
  assert.equal(guess.basis, "download at 40 %; from 3 earlier runs of each step");
  const last = estimate(input({ steps: ["download"], hosts: [host] }));
  assert.equal(etaText(last), "About 20 s left (download at 40 %)");
});

test("history and this job together, and a step running longer than usual", () => {
  const usual = { jobs: 2, steps: { download: { seconds: 10, runs: 2, hosts: {} } } };
  const stepTotals = new Map([["start", { seconds: 6, count: 2 }]]);
  const host = running({ stepIndex: 0, stepStartTs: 985 });
  const guess = estimate(input({ usual, stepTotals, hosts: [host] }));
  assert.deepEqual(guess, { seconds: 3, basis:
    "from earlier runs and this job's steps so far; download is taking longer than usual" });
});

test("a server rolling back has no main steps left", () => {
  const usual = { jobs: 2, steps: { download: { seconds: 10, runs: 2, hosts: {} },
    start: { seconds: 2, runs: 2, hosts: {} } } };
  const hosts = [running({ phase: "on_failure", doneSteps: 1, stepIndex: 0, stepStartTs: 990 }),
    running({ name: "h02", doneSteps: 1, stepIndex: 1, stepStartTs: 999 })];
  assert.deepEqual(estimate(input({ usual, hosts })),
    { seconds: 1, basis: "from 2 earlier runs of each step" });
});

test("batches run one after another, a soak waits between them", () => {
  const usual = { jobs: 4, steps: { download: { seconds: 10, runs: 4, hosts: {} },
    start: { seconds: 2, runs: 4, hosts: {} } } };
  const pending = (name) => ({ name, status: "pending" });
  const hosts = [running({ doneSteps: 1, stepIndex: 1, stepStartTs: 999 }),
    pending("h02"), pending("h03"), pending("h04")];
  const batchOf = new Map([["h01", 0], ["h02", 1], ["h03", 1], ["h04", 2]]);
  const at = (gate, extra = {}) => estimate(input({ usual, hosts, batchOf, gate,
    parallel: 4, ...extra }));
  // The canary has 1 s left; batch 2 (two servers, 4 at once) then takes 12 s, and the
  // last batch 12 s more: never all at once, though 4 slots would hold them all.
  assert.deepEqual(at("auto"), { seconds: 25, basis: "from 4 earlier runs of each step" });
  // Without batches, the three pending servers take the three free slots at once.
  assert.equal(estimate(input({ usual, hosts, parallel: 4 })).seconds, 12, "one batch");
  assert.equal(at({ soak: 60 }).seconds, 25 + 2 * 60);
  // A soak under way after the canary: what is left of it, then the two batches.
  const soaking = at({ soak: 60 }, { hosts: hosts.slice(1), soakLeft: 40 });
  assert.equal(soaking.seconds, 40 + 12 + 60 + 12);
});

test("a manual gate stops the count: the time left is to the gate, and says so", () => {
  const usual = { jobs: 4, steps: { download: { seconds: 10, runs: 4, hosts: {} },
    start: { seconds: 2, runs: 4, hosts: {} } } };
  const guess = estimate(input({ usual, gate: "manual", batchOf: new Map([["h02", 1]]),
    hosts: [running({ doneSteps: 1, stepIndex: 1, stepStartTs: 999 }),
      { name: "h02", status: "pending" }] }));
  assert.deepEqual(guess, { seconds: 1, basis: "from 4 earlier runs of each step",
    toGate: true });
  assert.equal(etaText(guess), "About 1 s left to the gate (from 4 earlier runs of each step)");
});

test("the last percentage of a step's stdout lines", () => {
  assert.equal(lastFraction(["downloading build 1.4.2: 40% (8.0 MiB of 20.0 MiB)"]), 0.4);
  assert.equal(lastFraction(["10 %", "at 12.5%, then 55%"]), 0.55);
  assert.equal(lastFraction(["free disk: 512 MiB", "no share here"]), null);
  assert.equal(lastFraction(["250% of quota"]), null);
});
