// EventStore (static/js/core/event-store.js): a job's events applied once, in seq order,
// whatever order and however often they come (live, replay after_seq, HTTP hole fill).
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventStore } from "../../static/js/core/event-store.js";
import { applyEvent, clearLog, createChanges, createModel } from "../../static/js/job/reducer.js";

const ev = (seq, type = "output", data = {}) => ({ seq, type, host: "h01", ts: seq, data });

function recording(options = {}) {
  const applied = [];
  const store = new EventStore({
    jobId: 7,
    apply: (events) => applied.push(...events.map((event) => event.seq)),
    holeTimeoutMs: 10_000,
    onError: (err) => { throw err; },
    ...options,
  });
  return { store, applied };
}

test("events out of order wait for the hole before them, then go in seq order", () => {
  const { store, applied } = recording();
  store.add([ev(3), ev(2)]);
  assert.deepEqual(applied, []);
  assert.equal(store.applied, 0);
  store.add([ev(1)]);
  assert.deepEqual(applied, [1, 2, 3]);
  assert.equal(store.applied, 3);
  store.clearHoleTimer();
});

test("duplicates (a replay after_seq over live events) are applied once", () => {
  const { store, applied } = recording();
  store.add([ev(1), ev(2)]);
  store.add([ev(4), ev(5)]); // live, before the replay of 3
  store.add([ev(1), ev(2), ev(3), ev(4), ev(5)]); // the replay
  store.add([ev(5), ev(2)]);
  assert.deepEqual(applied, [1, 2, 3, 4, 5]);
  store.clearHoleTimer();
});

test("bad seqs are skipped", () => {
  const { store, applied } = recording();
  store.add([{ seq: 0 }, { seq: -1 }, { seq: 1.5 }, { type: "x" }, null, ev(1)]);
  assert.deepEqual(applied, [1]);
});

test("a hole left open is filled over HTTP, from the last applied seq", async () => {
  const asked = [];
  const { store, applied } = recording({
    holeTimeoutMs: 1,
    fetchQuery: "&max_lines=50",
    fetchJSON: async (path) => {
      asked.push(path);
      return { events: [ev(2), ev(3)], last_seq: 4 };
    },
  });
  store.add([ev(1), ev(4)]);
  assert.deepEqual(applied, [1]);
  const deadline = Date.now() + 2000;
  while (applied.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  store.stopped = true; // no refetch, whatever failed
  store.clearHoleTimer();
  assert.deepEqual(applied, [1, 2, 3, 4]);
  assert.equal(asked[0], "/api/jobs/7/events?after_seq=1&limit=1000&max_lines=50");
});

test("noteKnown (a subscribe ack's last_seq) makes a hole of what has not come", () => {
  const { store } = recording();
  store.add([ev(1)]);
  assert.equal(store.hasHole(), false);
  store.noteKnown(3);
  assert.equal(store.hasHole(), true);
  store.add([ev(2), ev(3)]);
  assert.equal(store.hasHole(), false);
  store.clearHoleTimer();
});

test("through the store, a shuffled, doubled stream folds as the ordered one", () => {
  const events = [
    { seq: 1, type: "job_started", ts: 1, data: { servers: ["h01", "h02"], steps: ["a"] } },
    { seq: 2, type: "host_started", host: "h01", ts: 2, data: {} },
    { seq: 3, type: "step_started", host: "h01", ts: 3, data: { step: "a", index: 0 } },
    { seq: 4, type: "output", host: "h01", ts: 4, data: { stream: "stdout", lines: ["x"] } },
    { seq: 5, type: "step_finished", host: "h01", ts: 5,
      data: { step: "a", index: 0, status: "ok", duration: 2 } },
    { seq: 6, type: "host_finished", host: "h01", ts: 6, data: { status: "succeeded" } },
    { seq: 7, type: "host_started", host: "h02", ts: 7, data: {} },
  ];
  const summary = (order) => {
    const model = createModel({ status: "running", hosts: [] }, []);
    const changes = createChanges();
    const ops = [];
    const store = new EventStore({ jobId: 1, holeTimeoutMs: 10_000, apply: (batch) => {
      for (const event of batch) {
        applyEvent(model, event, changes, 10);
        ops.push(...changes.log.map((item) => item.op + ":" + item.host + ":" +
          (item.seq ?? "") + ":" + (item.note ? item.note.text || item.note.result : "")));
        clearLog(changes);
      }
    } });
    for (const chunk of order) store.add(chunk);
    store.clearHoleTimer();
    return { ops, statuses: [...model.hosts.values()].map((host) => host.status),
      done: model.hosts.get("h01").doneSteps, totals: [...model.stepTotals] };
  };
  const ordered = summary([events]);
  const shuffled = summary([[events[3], events[6]], [events[0], events[1]], events,
    [events[4], events[2], events[5]], events.slice(0, 3)]);
  assert.deepEqual(shuffled, ordered);
  assert.deepEqual(ordered.statuses, ["succeeded", "running"]);
  assert.equal(ordered.ops.filter((op) => op.startsWith("output")).length, 1);
});
