// The live job page's and job rows' words (static/js/job/words.js), issue #32: a re-run
// offers only the servers still failing (item 13), failed servers first (item 18).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { failedWhy } from "../../static/js/job/failed.js";
import { rerunChoice, sinceGroups, sinceWords } from "../../static/js/job/words.js";

const hosts = (statuses) => new Map(Object.entries(statuses)
  .map(([name, status]) => [name, { name, status }]));

test("a server a later job fixed since is not offered again", () => {
  const job4 = hosts({ "gs-01": "succeeded", "gs-02": "failed", "gs-03": "failed" });
  assert.deepEqual(rerunChoice(job4, { "gs-03": 5 }), {
    names: ["gs-02"], why: "1 failed", label: "Re-run failed servers",
    confirm: "Re-run 1 failed server" });
  assert.deepEqual(rerunChoice(job4, {}).names, ["gs-02", "gs-03"]);
  assert.deepEqual(rerunChoice(job4).names, ["gs-02", "gs-03"]);
  assert.deepEqual(rerunChoice(job4, null).names, ["gs-02", "gs-03"]);
  // All fixed since: nothing left to offer (the page hides the button).
  assert.deepEqual(rerunChoice(job4, { "gs-02": 6, "gs-03": 5 }).names, []);
  // Fixed since, the rest never finished: no "failed" in the words.
  const cancelled = hosts({ "gs-01": "failed", "gs-02": "cancelled" });
  assert.equal(rerunChoice(cancelled, { "gs-01": 9 }).label, "Run again on unfinished servers");
});

test("who was fixed since, by job, oldest job first", () => {
  const since = { "gs-04": 7, "gs-03": 5, "gs-01": 7 };
  assert.deepEqual(sinceGroups(since), [
    { jobId: 5, names: ["gs-03"] }, { jobId: 7, names: ["gs-01", "gs-04"] }]);
  assert.equal(sinceWords(since),
    "gs-03 succeeded since in job #5; gs-01, gs-04 succeeded since in job #7");
  assert.equal(sinceWords({ "gs-03": 5 }), "gs-03 succeeded since in job #5");
  assert.deepEqual(sinceGroups({}), []);
  assert.deepEqual(sinceGroups(undefined), []);
  assert.equal(sinceWords(null), "");
});

test("a failed server's line under the status: the step and why, once each", () => {
  assert.equal(failedWhy({ reason: "step 'check' exited with code 3", exitCode: 3,
    failedStep: "check" }), "step 'check' exited with code 3");
  assert.equal(failedWhy({ reason: "timed out after 30 s", exitCode: -1, failedStep: "drain" }),
    "at drain: timed out after 30 s");
  assert.equal(failedWhy({ reason: "", exitCode: 2, failedStep: "build" }),
    "at build: exit code 2");
  assert.equal(failedWhy({ reason: "", exitCode: null, failedStep: "" }), "");
});
