// The job page's pure parts besides the reducer: words (static/js/job/words.js),
// durations (core/format.js) and the rollout fold (core/rollout-model.js); the time
// left (job/eta.js) is tests/js/eta.test.mjs.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatDuration } from "../../static/js/core/format.js";
import { Rollout, countdown, gateWords } from "../../static/js/core/rollout-model.js";
import {
  progressText, reasonText, rerunChoice, stepLabel, versionText, waitEndWords,
} from "../../static/js/job/words.js";

test("durations and countdowns", () => {
  assert.equal(formatDuration(0.42), "0.4 s");
  assert.equal(formatDuration(42), "42 s");
  assert.equal(formatDuration(185), "3 min 05 s");
  assert.equal(formatDuration(3720), "1 h 02 min");
  assert.equal(formatDuration(null), "");
  assert.equal(formatDuration(-1), "");
  assert.equal(countdown(4.2), "5 s");
  assert.equal(countdown(75), "1 min 15 s");
});

test("reasons, progress, versions, step labels", () => {
  assert.equal(reasonText("step x failed", 2, null), "step x failed (exit code 2)");
  assert.equal(reasonText("failed with code 2", 2, null), "failed with code 2");
  assert.equal(reasonText("stopped (TERM)", 143, "TERM"), "stopped (TERM)");
  assert.equal(reasonText("", -1, null), "");
  assert.equal(reasonText("", 1, null), "exit code 1");
  assert.equal(progressText({ succeeded: 1, failed: 1, pending: 6 }, 8),
    "1 / 8 succeeded · 1 failed · 6 waiting");
  assert.equal(versionText({ version: "2.0", onFailure: "succeeded", versionState: "verified" }),
    "rolled back to 2.0 ✓");
  assert.equal(versionText({ version: "2.0", versionState: "unverified" }), "2.0 (unverified)");
  assert.equal(versionText({ version: "" }), "");
  assert.equal(stepLabel("steps", 1, 3), "step 2/3");
  assert.equal(stepLabel("on_failure", 0, 3), "on failure 1");
  assert.equal(stepLabel("health", 0, 3), "soak check 1");
  assert.equal(stepLabel("probe", 0, 3), "asking the server its build");
});

test("how a wait ended", () => {
  const wait = { attempt: 1, timeout: 30, matched: false };
  assert.equal(waitEndWords({ ...wait, matched: true }, "ok", ""), "matched after 1 probe");
  assert.equal(waitEndWords(wait, "ok", ""), "timed out after 30 s, proceeding");
  assert.equal(waitEndWords(wait, "failed", "timed out after 30 s"), "timed out after 30 s, failed");
  assert.equal(waitEndWords(wait, "cancelled", "job cancelled"), "cancelled: job cancelled");
});

test("what a re-run would run", () => {
  const hosts = (statuses) => new Map(statuses.map((status, i) => ["h" + i, { name: "h" + i, status }]));
  assert.deepEqual(rerunChoice(hosts(["succeeded", "failed", "failed"])), {
    names: ["h1", "h2"], why: "2 failed", label: "Re-run failed servers",
    confirm: "Re-run 2 failed servers" });
  const mixed = rerunChoice(hosts(["failed", "cancelled", "succeeded"]));
  assert.equal(mixed.label, "Re-run failed and unfinished servers");
  assert.equal(mixed.confirm, "Re-run 2 servers");
  assert.equal(rerunChoice(hosts(["cancelled", "skipped"])).label, "Run again");
  assert.equal(rerunChoice(hosts(["cancelled", "succeeded"])).label,
    "Run again on unfinished servers");
});

test("the rollout fold: a gate event folded in twice is logged once", () => {
  const rollout = new Rollout();
  rollout.setBatches([["h01"], ["h02", "h03"]]);
  const events = [
    { seq: 7, type: "job_paused", data: { batch: 0, next_batch: 1 } },
    { seq: 9, type: "job_aborted", data: { batch: 0, by: "alice" } },
  ];
  for (const event of [...events, ...events]) rollout.apply(event);
  assert.deepEqual(rollout.log.map((item) => item.kind + " by " + (item.by || "-")),
    ["paused by -", "aborted by alice"]);
  assert.equal(gateWords(rollout.log[1], rollout.count),
    "aborted at the gate by alice after the canary");
});
