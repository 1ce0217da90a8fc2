// The live timeline's shares (static/js/job/host-view.js timelineShares): a running
// step's segment is its time so far, redrawn as time passes (issue #32, item 2).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { timelineShares } from "../../static/js/job/host-view.js";

const done = (duration) => ({ status: "ok", duration, startTs: 100 });
const running = (startTs) => ({ status: "running", duration: null, startTs });

test("a running step's share grows with the time it has run", () => {
  const timeline = [done(0.3), running(100.3)];
  // Just started: the finished step is the bar, the running one its least (3 %).
  assert.deepEqual(timelineShares(timeline, 100.3), ["1", "0.03"]);
  // 11 s into the download the 0.3 s preflight is a sliver, not 80 %.
  assert.deepEqual(timelineShares(timeline, 111.3), ["0.03", "0.973"]);
  // A reload at the same moment, from finished durations, draws the same.
  assert.deepEqual(timelineShares([done(0.3), done(11)], 0), ["0.03", "0.973"]);
});

test("shares are thousandths, so an unchanged share is not written again", () => {
  const timeline = [done(1), running(101)];
  assert.deepEqual(timelineShares(timeline, 102), ["0.5", "0.5"]);
  assert.deepEqual(timelineShares(timeline, 102.0004), ["0.5", "0.5"]);
  assert.deepEqual(timelineShares(timeline, 104), ["0.25", "0.75"]);
});

test("nothing timed yet, a clock behind the server, a step ended without a duration", () => {
  assert.deepEqual(timelineShares([], 5), []);
  assert.deepEqual(timelineShares([running(100)], 100), ["1"]);
  assert.deepEqual(timelineShares([done(2), running(200)], 150), ["1", "0.03"]);
  // No duration on its step_finished: it stops growing (it takes no time of its own).
  const ended = { status: "failed", duration: null, startTs: 100 };
  assert.deepEqual(timelineShares([done(2), ended], 500), ["1", "0.03"]);
});
