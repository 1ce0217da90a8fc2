// The live job page's and job rows' words (static/js/job/words.js), issue #32: a re-run
// offers only the servers still failing (item 13), failed servers first (item 18), job
// rows count gate decisions per person and cut the latest line at a word (item 15).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { failedWhy } from "../../static/js/job/failed.js";
import {
  cutLine, gateActsText, rerunChoice, sinceGroups, sinceWords,
} from "../../static/js/job/words.js";

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

test("a job row's gate decisions, counted per person (item 15)", () => {
  const promoted = (by) => ({ kind: "promoted", by });
  const paused = { kind: "paused" };
  assert.equal(gateActsText([paused, promoted("admin"), paused, promoted("admin")]),
    "promoted twice by admin");
  assert.equal(gateActsText([promoted("admin"), promoted("bob")]), "promoted by admin and bob");
  assert.equal(gateActsText([promoted("admin"), promoted("bob"), promoted("carol")]),
    "promoted by admin, bob and carol");
  assert.equal(gateActsText([promoted("admin"), promoted("bob"), promoted("admin")]),
    "promoted twice by admin and once by bob");
  assert.equal(gateActsText([1, 2, 3].map(() => promoted("admin"))), "promoted 3 times by admin");
  assert.equal(gateActsText([promoted("alice"), { kind: "aborted", by: "bob" }]),
    "promoted by alice; aborted at the gate by bob");
  assert.equal(gateActsText([promoted(undefined)]), "promoted by an operator");
  assert.equal(gateActsText([paused]), "");
  assert.equal(gateActsText([]), "");
});

test("the latest line is cut at a word, with an ellipsis (item 15)", () => {
  assert.deepEqual(cutLine("short line"), { text: "short line", cut: false });
  const words = "downloading build 1.4.9 from the mirror ".repeat(5).trim();
  const cut = cutLine(words, 60);
  assert.equal(cut.cut, true);
  assert.ok(cut.text.length <= 60, cut.text);
  assert.equal(cut.text, "downloading build 1.4.9 from the mirror downloading build…");
  assert.ok(words.startsWith(cut.text.slice(0, -1)));
  // The word ending right at the limit stays whole.
  assert.equal(cutLine("aaaa bbbb cccc", 10).text, "aaaa bbbb…");
  assert.equal(cutLine("aaaaaa bbbbb cccc", 10).text, "aaaaaa…");
  // One long word (a path, a hash): cut in it, still with the ellipsis.
  assert.equal(cutLine("x".repeat(200), 10).text, "xxxxxxxxx…");
  assert.equal(cutLine("ab " + "y".repeat(50), 20).text, "ab yyyyyyyyyyyyyyyy…");
  assert.equal(cutLine(42).text, "42");
  assert.equal(cutLine("x".repeat(120)).cut, false);
  assert.equal(cutLine("x".repeat(121)).text.length, 120);
});
