// Issue 32 (item 11): a wait step's rule and probes in words (static/js/job/wait-words.js),
// and the Step cell that uses them (waitWords in static/js/job/words.js).
// Run: node --test tests/js/wait-words.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";

import { outputCaption, probeWords, untilWords } from "../../static/js/job/wait-words.js";
import { waitWords } from "../../static/js/job/words.js";

test("what a wait waits for, in words; a real pattern is named as one", () => {
  assert.equal(untilWords("^0$"), "the probe to print 0");
  assert.equal(untilWords("^found it$"), "the probe to print found it");
  assert.equal(untilWords("ready"), "the probe to print a line containing ready");
  assert.equal(untilWords("^$"), "the probe to print an empty line");
  assert.equal(untilWords("^[0-9]+ players$"),
    "a line of the probe's output to match ^[0-9]+ players$");
  assert.equal(untilWords("^1.4$"), "a line of the probe's output to match ^1.4$");
});

test("the last probe: what it printed, whether that was a match", () => {
  const wait = { attempt: 3, output: ["players online", "3"], exitCode: 0, matched: false };
  assert.equal(probeWords(wait), "probe 3 printed \u201c3\u201d, not yet");
  assert.equal(probeWords({ ...wait, attempt: 4, output: ["0"], matched: true }),
    "probe 4 printed \u201c0\u201d: a match");
  assert.equal(probeWords({ ...wait, output: [], exitCode: 1 }),
    "probe 3 printed nothing and exited with code 1, not yet");
  assert.equal(probeWords({ attempt: 0, output: [] }), "first probe running");
  assert.equal(probeWords({ ...wait, output: ["x".repeat(200)] }).length,
    "probe 3 printed \u201c\u201d, not yet".length + 80);
  assert.equal(outputCaption(wait), "What probe 3 printed:");
});

test("the Step cell says the rule in words too", () => {
  const wait = { step: "drain", until: "^0$", deadline: 142, ended: null };
  assert.equal(waitWords(wait, 100), "drain: waiting for the probe to print 0 · 42 s left");
});
