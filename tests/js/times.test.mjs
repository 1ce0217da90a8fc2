// Issue 32, item 14: times in one convention (static/js/core/times.js) — UTC, 24-hour,
// to the second, the zone said, whatever the reader's zone; the local time in the
// tooltip. The server's utc_time filter says the same (tests/web/test_console_pages.py).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatUtc, localTitle } from "../../static/js/core/times.js";

test("formatUtc says UTC, 24-hour, from an ISO string, a Date or epoch seconds", () => {
  assert.equal(formatUtc("2026-12-07T21:04:05.123456Z"), "2026-12-07 21:04:05 UTC");
  assert.equal(formatUtc("2026-12-07T05:29:14+00:00"), "2026-12-07 05:29:14 UTC");
  assert.equal(formatUtc("2026-12-07T16:04:05-05:00"), "2026-12-07 21:04:05 UTC");
  assert.equal(formatUtc(new Date(Date.UTC(2026, 0, 2, 3, 4, 5))), "2026-01-02 03:04:05 UTC");
  assert.equal(formatUtc(Date.UTC(2026, 11, 7, 23, 59, 59, 900) / 1000),
    "2026-12-07 23:59:59 UTC");
});

test("formatUtc gives nothing for no time or a broken one", () => {
  for (const none of [null, undefined, "", "yesterday"]) assert.equal(formatUtc(none), "");
});

test("the tooltip says the local time in 24-hour form with its zone", () => {
  assert.equal(localTitle("2026-12-07T21:04:05Z", "America/New_York"),
    "Local time: 2026-12-07 16:04:05 EST");
  assert.equal(localTitle("2026-07-07T00:30:00Z", "America/New_York"),
    "Local time: 2026-07-06 20:30:00 EDT");
  assert.equal(localTitle(Date.UTC(2026, 11, 7, 5, 29, 14) / 1000, "UTC"),
    "Local time: 2026-12-07 05:29:14 UTC");
  assert.equal(localTitle("not a time", "UTC"), "");
});

test("midnight is 00, never 24", () => {
  assert.equal(localTitle("2026-12-08T05:00:00Z", "America/New_York"),
    "Local time: 2026-12-08 00:00:00 EST");
  assert.equal(formatUtc("2026-12-08T00:00:00Z"), "2026-12-08 00:00:00 UTC");
});
