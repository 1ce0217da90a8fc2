// The job page's reducer (static/js/job/reducer.js): events in, view model out, no DOM.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  applyEvent, clearLog, createChanges, createModel, ensureHost, tick,
} from "../../static/js/job/reducer.js";

const NOW = 1_800_000_000;

/** A job of `names` (stored as pending), its model, and a fold of `events`. */
function fold(events, { names = ["h01", "h02"], status = "running", steps = ["build", "test"],
  stored = null, now = NOW } = {}) {
  const job = { id: 7, status, hosts: names.map((name, i) => ({
    name, batch: 0, status: stored ? stored[i] : "pending" })) };
  const model = createModel(job, steps);
  const changes = createChanges();
  const log = [];
  const effects = [];
  const added = [];
  for (const name of names) ensureHost(model, name, 0, changes);
  added.push(...changes.added.map((host) => host.name));
  clearLog(changes);
  for (const event of events) {
    applyEvent(model, event, changes, now);
    added.push(...changes.added.map((host) => host.name));
    log.push(...changes.log);
    effects.push(...changes.effects);
    clearLog(changes);
  }
  return { model, changes, log, effects, added };
}

let seq = 0;
function ev(type, data = {}, host = undefined, ts = NOW - 100 + seq) {
  seq += 1;
  return { seq, type, host, ts, data };
}

function started(servers = ["h01", "h02"], batches = undefined) {
  seq = 0;
  return ev("job_started", { servers, steps: ["build", "test"], batches });
}

const notesOf = (log, host) => log.filter((item) => item.op === "note" && item.host === host)
  .map((item) => item.note);

test("job_started sets the job running and adds its servers in order, with batches", () => {
  const { model, added } = fold([
    started(["h01", "h02", "h03"], [["h01"], ["h02", "h03"]]),
  ], { names: [] });
  assert.equal(model.status, "running");
  assert.deepEqual(added, ["h01", "h02", "h03"]);
  assert.deepEqual([...model.hosts.keys()], ["h01", "h02", "h03"]);
  assert.deepEqual([...model.hosts.values()].map((host) => host.batch), [0, 1, 1]);
  assert.deepEqual([...model.hosts.values()].map((host) => host.position), [0, 1, 2]);
  assert.deepEqual(model.steps, ["build", "test"]);
});

test("a server's lines and steps: notes, output, header results, timeline, totals", () => {
  const { model, log, changes } = fold([
    started(),
    ev("host_started", { address: "10.0.0.1" }, "h01"),
    ev("step_started", { step: "build", index: 0, phase: "steps", command: "make" }, "h01"),
    ev("output", { stream: "stdout", lines: ["compiling", "done"] }, "h01"),
    ev("output", { stream: "stderr", count: 40 }, "h01"),
    ev("step_finished", { step: "build", index: 0, phase: "steps", status: "ok",
      exit_code: 0, duration: 1.5 }, "h01"),
    ev("step_started", { step: "test", index: 1, phase: "steps" }, "h01"),
    ev("step_finished", { step: "test", index: 1, phase: "steps", status: "failed",
      exit_code: 2, duration: 12, reason: "tests failed" }, "h01"),
    ev("host_finished", { status: "failed", failed_step: "test", exit_code: 2,
      reason: "step test failed", duration: 14, facts: { version: "1.2.3" } }, "h01"),
  ]);
  const host = model.hosts.get("h01");
  assert.equal(host.status, "failed");
  assert.equal(host.failedStep, "test");
  assert.equal(host.version, "1.2.3");
  assert.equal(host.doneSteps, 2);
  assert.deepEqual(host.timeline.map((item) => [item.step, item.status, item.duration]),
    [["build", "ok", 1.5], ["test", "failed", 12]]);
  assert.deepEqual(model.stepTotals.get("build"), { seconds: 1.5, count: 1 });
  assert.equal(model.stepTotals.has("test"), false, "only ok steps count towards the ETA");

  const notes = notesOf(log, "h01");
  assert.equal(notes[0].text, "connecting to 10.0.0.1");
  assert.deepEqual(notes.filter((n) => n.kind === "step").map((n) => [n.label, n.result]),
    [["step 1/2", "ok · exit code 0 · 1.5 s"], ["step 2/2", "failed · exit code 2 · 12 s — tests failed"]]);
  assert.equal(notes.at(-1).kind, "end");
  assert.equal(notes.at(-1).text, "finished: failed — step test failed (exit code 2) (14 s)");

  const outputs = log.filter((item) => item.op === "output");
  assert.deepEqual(outputs.map((o) => [o.stream, o.lines, o.count]),
    [["stdout", ["compiling", "done"], 2], ["stderr", null, 40]]);
  // Each finished step's header is updated in place, then re-rendered (touch).
  const touched = log.filter((item) => item.op === "touch").map((item) => item.note);
  assert.ok(touched.includes(notes[1]) && touched.includes(notes[2]));
  assert.ok(changes.hosts.has(host) && changes.header && changes.order);
  assert.equal(model.hosts.get("h02").status, "pending");
});

test("a server that ends with a step open settles it with its status", () => {
  const { model, log } = fold([
    started(),
    ev("host_started", {}, "h01"),
    ev("step_started", { step: "build", index: 0 }, "h01", NOW - 50),
    ev("host_finished", { status: "cancelled" }, "h01", NOW - 20),
  ]);
  const host = model.hosts.get("h01");
  assert.deepEqual(host.timeline.map((item) => [item.status, item.duration]), [["cancelled", 30]]);
  const header = notesOf(log, "h01").find((note) => note.kind === "step");
  assert.equal(header.status, "cancelled");
  assert.equal(header.result, "cancelled");
  assert.equal(host.headers.size, 0);
});

test("a wait step: probes update one log line, the end says how it went", () => {
  const deadline = NOW + 42;
  const { model, log } = fold([
    started(),
    ev("host_started", {}, "h01"),
    ev("step_started", { step: "drain", index: 0, wait: { until: "^0$", every: 2, timeout: 60,
      deadline } }, "h01"),
    ev("wait_probe", { step: "drain", index: 0, attempt: 1, output: ["3"], exit_code: 0,
      matched: false }, "h01"),
    ev("wait_probe", { step: "drain", index: 0, attempt: 2, output: ["0"], exit_code: 0,
      matched: true }, "h01"),
  ]);
  const host = model.hosts.get("h01");
  const waits = notesOf(log, "h01").filter((note) => note.kind === "wait");
  assert.equal(waits.length, 1, "one log line for all the probes");
  assert.equal(waits[0].text, "probe 2: \u201c0\u201d (exit 0) · matched · 42 s left");
  assert.ok(model.waiting.has(host));

  const changes = createChanges();
  tick(model, changes, NOW + 40);
  assert.equal(waits[0].text, "probe 2: \u201c0\u201d (exit 0) · matched · 2 s left");

  applyEvent(model, ev("step_finished", { step: "drain", index: 0, status: "ok",
    duration: 4 }, "h01"), changes, NOW + 41);
  assert.equal(host.wait.ended.words, "matched after 2 probes");
  assert.equal(waits[0].status, "ok");
  assert.equal(model.waiting.has(host), false);
  const header = notesOf(changes.log, "h01");
  assert.equal(header.length, 0);
});

test("a probe of another step than the wait under way is ignored", () => {
  const { model, log } = fold([
    started(),
    ev("step_started", { step: "drain", index: 0, wait: { until: "ok" } }, "h01"),
    ev("wait_probe", { step: "other", index: 3, attempt: 1, output: ["x"] }, "h01"),
  ]);
  assert.equal(model.hosts.get("h01").wait.attempt, 0);
  assert.equal(notesOf(log, "h01").filter((note) => note.kind === "wait").length, 0);
});

test("a manual gate: paused, promoted by alice, notes in the batches' logs", () => {
  const names = ["h01", "h02", "h03"];
  const { model, log, effects } = fold([
    started(names, [["h01"], ["h02", "h03"]]),
    ev("batch_started", { batch: 0, servers: ["h01"] }),
    ev("host_started", {}, "h01"),
    ev("host_finished", { status: "succeeded" }, "h01"),
    ev("job_paused", { batch: 0, next_batch: 1 }),
  ], { names });
  assert.equal(model.status, "paused");
  assert.deepEqual(model.rollout.gate, { batch: 0, next: 1 });
  const paused = "waiting at the gate after the canary: an operator promotes batch 2 or " +
    "aborts the rollout";
  assert.deepEqual(notesOf(log, "h02").map((note) => note.text), [paused]);
  assert.deepEqual(notesOf(log, "h03").map((note) => note.text), [paused]);
  assert.notEqual(notesOf(log, "h02")[0], notesOf(log, "h03")[0], "a note object per log");
  assert.deepEqual(effects, []);

  const changes = createChanges();
  applyEvent(model, ev("job_resumed", { batch: 1, by: "alice" }), changes, NOW);
  assert.equal(model.status, "running");
  assert.equal(model.rollout.gate, null);
  assert.deepEqual(changes.effects, [{ kind: "gate-decided" }]);
  assert.deepEqual(notesOf(changes.log, "h02").map((note) => [note.text, note.status]),
    [["promoted by alice: batch 2 starts", "promoted"]]);
  assert.ok(changes.rollout);
});

test("an abort at the gate and a soak", () => {
  const names = ["h01", "h02"];
  const { model, log, effects } = fold([
    started(names, [["h01"], ["h02"]]),
    ev("soak_started", { batch: 0, seconds: 45 }),
    ev("soak_finished", { batch: 0, passed: false, reason: "health check failed on h01" }),
    ev("job_paused", { batch: 0 }),
    ev("job_aborted", { batch: 0, by: "bob" }),
  ], { names });
  assert.deepEqual(notesOf(log, "h01").map((note) => note.text), [
    "soaking the canary: health checks again in 45 s",
    "soak failed: health check failed on h01",
  ]);
  assert.deepEqual(effects, [{ kind: "gate-decided" }]);
  assert.equal(model.rollout.log.at(-1).kind, "aborted");
  assert.equal(model.rollout.log.at(-1).by, "bob");
});

test("a dropped connection: reconnecting until the server moves on", () => {
  const { model, log } = fold([
    started(),
    ev("host_started", {}, "h01"),
    ev("host_reconnecting", { reason: "connection reset", timeout: 120 }, "h01"),
  ]);
  const host = model.hosts.get("h01");
  assert.deepEqual(host.reconnecting, { reason: "connection reset", timeout: 120 });
  assert.equal(notesOf(log, "h01").at(-1).text,
    "reconnecting to h01… (connection reset; trying for up to 2 min 00 s)");

  const changes = createChanges();
  applyEvent(model, ev("output", { stream: "stdout", lines: ["more"] }, "h01"), changes, NOW);
  assert.equal(host.reconnecting, null, "output means the drop is over");
  applyEvent(model, ev("host_reconnected", { attempts: 3 }, "h01"), changes, NOW);
  assert.equal(notesOf(changes.log, "h01").at(-1).text,
    "reconnected to h01 after 3 attempts; output goes on where it stopped");
});

test("a console restart resumes the job: recoveries, reconnects cleared", () => {
  const { model, log } = fold([
    started(),
    ev("host_reconnecting", {}, "h02"),
    ev("job_recovered", { node: "node-b", servers: ["h02"], reason: "node-a died" }),
  ]);
  assert.deepEqual(model.recoveries.map((r) => [r.node, r.servers, r.reason]),
    [["node-b", ["h02"], "node-a died"]]);
  assert.equal(model.hosts.get("h02").reconnecting, null);
  assert.equal(notesOf(log, "h02").at(-1).text, "console restarted: resumed on node-b");
});

test("job_finished: servers left unfinished end as stored, or as the job did", () => {
  const { model, effects } = fold([
    started(["h01", "h02", "h03"]),
    ev("host_started", {}, "h01"),
    ev("host_started", {}, "h02"),
    ev("job_finished", { status: "cancelled", counts: { cancelled: 3 }, duration: 9 }),
  ], { names: ["h01", "h02", "h03"], stored: ["succeeded", "running", "pending"] });
  assert.equal(model.status, "cancelled");
  assert.equal(model.running, false);
  assert.deepEqual(model.finished.counts, { cancelled: 3 });
  assert.deepEqual([...model.hosts.values()].map((host) => host.status),
    ["succeeded", "cancelled", "cancelled"]);
  assert.deepEqual(effects, [{ kind: "finished" }]);
});

test("job_finished keeps what the events said of a finished server", () => {
  const { model } = fold([
    started(["h01", "h02"]),
    ev("host_started", {}, "h01"),
    ev("host_finished", { status: "failed", reason: "boom" }, "h01"),
    ev("job_finished", { status: "cancelled" }),
  ], { stored: ["pending", "pending"] });
  assert.deepEqual([...model.hosts.values()].map((host) => host.status), ["failed", "cancelled"]);
});

test("a pruned log says so (a message for the page)", () => {
  const { effects } = fold([ev("events_pruned", { days: 1, events: 120 })]);
  assert.deepEqual(effects, [{ kind: "message", text: "This job's log was pruned after 1 day " +
    "(120 events removed): the servers and their final statuses below are what remains." }]);
});

test("unknown events and bad data are skipped; a server's batch moves when told", () => {
  const { model, log } = fold([
    started(),
    ev("future_event", { anything: true }, "h01"),
    ev("batch_started", { batch: 1, servers: ["h02"] }),
  ]);
  assert.equal(log.length, 0);
  assert.equal(model.hosts.get("h02").batch, 1);
  assert.equal(model.batch, 1);
});
