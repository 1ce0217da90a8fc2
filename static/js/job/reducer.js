/*
 * The job page's reducer: a job's events, in seq order, folded into the view model
 * (the job, its servers, their steps, waits and reconnects, the rollout). Pure: no
 * DOM, no window, no socket, no clock (callers pass `now`, epoch seconds); tested in
 * Node (tests/js/).
 *
 * The model is changed in place (a thousand servers' replay is not copied per event);
 * what an event changed is written to a `changes` record (createChanges) that the view
 * takes after each event: the servers added and those to render again, whether the
 * header, the order of the rows or the rollout need rendering, the log rows to add or
 * update (`log`: {op: "note" | "output" | "touch", host, ...}; a note is a plain object
 * the reducer keeps and later updates, then asks for a "touch"), and `effects` for the
 * page's actions ({kind: "message", text}, {kind: "gate-decided"}, {kind: "finished"}).
 * Unknown event types are skipped.
 */
import { formatDuration } from "../core/format.js";
import { Rollout, batchPhrase, countdown } from "../core/rollout-model.js";
import { lastFraction } from "./eta.js";
import {
  FINISHED, probeLine, reasonText, stepKey, stepLabel, stepResult, waitEndWords, waitWords,
} from "./words.js";

/** The model of `job` (the page's job-data: id, status, hosts) and its `steps` before
 * any event. */
export function createModel(job, steps) {
  const rollout = new Rollout();
  rollout.setHosts(job.hosts || []);
  rollout.setJobStatus(job.status);
  return {
    status: null, // from job_started / job_finished only
    running: job.status === "running" || job.status === "paused",
    steps: Array.isArray(steps) ? steps : [],
    batches: [],
    batch: null,
    batchServers: [],
    finished: null, // job_finished data
    stepTotals: new Map(), // step name -> {seconds, count} of finished ok steps (this job)
    recoveries: [], // job_recovered: {node, servers, ts, reason}, oldest first
    hosts: new Map(), // name -> host model, in the order they came
    waiting: new Set(), // hosts with a wait under way (their countdowns tick)
    // Each server's status as stored when the page was made (final for a finished job).
    storedStatus: new Map((job.hosts || []).map((host) => [host.name, host.status])),
    rollout, // batches, gates and soaks (rollout-model.js)
  };
}

/** An empty record of what events changed (see the module's comment). */
export function createChanges() {
  return { added: [], hosts: new Set(), header: false, order: false, rollout: false,
    timelines: false, log: [], effects: [] };
}

/** Empty `changes` again, once the view took them (the dirty hosts and flags stay:
 * the view clears those as it renders them). */
export function clearLog(changes) {
  changes.added.length = 0;
  changes.log.length = 0;
  changes.effects.length = 0;
}

function newHost(name, position, batch) {
  return {
    name,
    position,
    batch: Number.isInteger(batch) ? batch : null,
    status: "pending",
    step: "",
    phase: "steps",
    stepIndex: -1,
    stepStartTs: null,
    stepProgress: null, // {fraction, ts}: how far its step got, where its output says a % (eta.js)
    doneSteps: 0,
    failedStep: null,
    exitCode: null,
    reason: "",
    duration: null,
    version: "",
    versionState: null, // host_finished version_state: "verified" | "unverified"
    onFailure: null, // host_finished on_failure: "succeeded" | "failed"
    signal: null, // the signal that stopped its failed step ("TERM", "KILL")
    startTs: null,
    timeline: [], // {step, phase, status, duration, startTs}
    headers: new Map(), // "phase:index:step" -> step-header note
    reconnecting: null, // {reason, timeout} while the console reconnects to it
    wait: null, // the wait step under way or last ended (see waitStarted)
  };
}

/** The host model of `name`, added (at the end) if new; `batch` is set when given. */
export function ensureHost(model, name, batch, changes) {
  let host = model.hosts.get(name);
  if (host) {
    if (Number.isInteger(batch) && host.batch !== batch) {
      host.batch = batch;
      changes.hosts.add(host);
    }
    return host;
  }
  host = newHost(name, model.hosts.size, batch);
  model.hosts.set(name, host);
  changes.added.push(host);
  changes.hosts.add(host);
  changes.header = true;
  changes.order = true;
  return host;
}

function note(changes, host, seq, row) {
  changes.log.push({ op: "note", host: host.name, seq, note: row });
  return row;
}

function touch(changes, host, row) {
  changes.log.push({ op: "touch", host: host.name, note: row });
}

/** The console is connected to `host` again, or `host` moved on (output, a step, its
 * end: a later event of it means the drop is over). */
function clearReconnecting(host, changes) {
  if (!host.reconnecting) return;
  host.reconnecting = null;
  changes.hosts.add(host);
}

function setStatus(host, status, changes) {
  if (host.status !== status) changes.order = true;
  host.status = status;
  changes.hosts.add(host);
  changes.header = true;
}

/** A server ended with steps still open (the console stopped under them, or the
 * job ended first): their headers, chips and timeline take its final status. */
function settleSteps(host, status, ts, changes) {
  for (const header of host.headers.values()) {
    header.status = status;
    header.result = status;
    touch(changes, host, header);
  }
  host.headers.clear();
  for (const item of host.timeline) {
    if (item.status !== "running") continue;
    item.status = status;
    if (item.duration === null) {
      item.duration = typeof ts === "number" && item.startTs ? Math.max(0, ts - item.startTs) : 0;
    }
  }
  host.stepStartTs = null;
  changes.hosts.add(host);
}

/** A wait step started: its probe runs every `every` s until `until` matches or the
 * deadline (epoch seconds) passes. */
function waitStarted(model, host, data) {
  const wait = data.wait;
  host.wait = {
    key: stepKey(data),
    step: String(data.step || ""),
    until: String(wait.until || ""),
    every: Number(wait.every) || null,
    timeout: Number(wait.timeout) || null,
    onTimeout: wait.on_timeout === "proceed" ? "proceed" : "fail",
    deadline: typeof wait.deadline === "number" ? wait.deadline : null,
    attempt: 0,
    exitCode: null,
    output: [],
    matched: false,
    ended: null, // {status, words, reason}
    note: null, // the one log line the probes update
  };
  model.waiting.add(host);
}

function waitEnded(ctx, host, wait, status, reason) {
  wait.ended = { status, words: waitEndWords(wait, status, reason), reason };
  ctx.model.waiting.delete(host);
  if (wait.note) {
    wait.note.text = wait.attempt ? probeLine(wait, ctx.now) : waitWords(wait, ctx.now);
    wait.note.status = status === "ok" ? "ok" : "failed";
    touch(ctx.changes, host, wait.note);
  }
  ctx.changes.hosts.add(host);
}

/** A note in the logs of the servers of `batch` (gates, soaks). */
function batchNote(ctx, event, batch, row) {
  for (const name of ctx.model.rollout.serversOf(batch)) {
    const host = ensureHost(ctx.model, name, undefined, ctx.changes);
    note(ctx.changes, host, event.seq, { ...row });
    ctx.changes.hosts.add(host);
  }
  ctx.changes.header = true;
}

/** The server an event is about, no longer reconnecting (it moved on). */
function movedOn(ctx, event) {
  const host = ensureHost(ctx.model, event.host, undefined, ctx.changes);
  clearReconnecting(host, ctx.changes);
  return host;
}

// Each handler: (ctx = {model, changes, now}, event, data).
const handlers = {
  job_started({ model, changes }, event, data) {
    model.status = "running";
    if (Array.isArray(data.steps)) model.steps = data.steps;
    model.batches = Array.isArray(data.batches) ? data.batches : [];
    const batchOf = new Map();
    model.batches.forEach((names, index) => names.forEach((name) => batchOf.set(name, index)));
    for (const name of data.servers || []) ensureHost(model, name, batchOf.get(name), changes);
  },

  batch_started({ model, changes }, event, data) {
    model.batch = data.batch;
    model.batchServers = data.servers || [];
    for (const name of model.batchServers) ensureHost(model, name, data.batch, changes);
  },

  host_started({ model, changes }, event, data) {
    const host = ensureHost(model, event.host, undefined, changes);
    host.startTs = event.ts;
    setStatus(host, "running", changes);
    note(changes, host, event.seq,
      { kind: "note", text: "connecting to " + (data.address || event.host) });
  },

  step_started(ctx, event, data) {
    const { model, changes } = ctx;
    const host = movedOn(ctx, event);
    host.step = data.step || "";
    host.phase = data.phase || "steps";
    host.stepIndex = Number.isInteger(data.index) ? data.index : -1;
    host.stepStartTs = event.ts;
    host.stepProgress = null;
    changes.hosts.add(host);
    changes.header = true;
    const label = stepLabel(host.phase, data.index, model.steps.length);
    // An ended wait's panel stays (how it ended) until another wait step starts.
    if (data.wait && typeof data.wait === "object") waitStarted(model, host, data);
    host.headers.set(stepKey(data), note(changes, host, event.seq, {
      kind: "step", label, step: host.step, phase: host.phase, status: "running",
      result: data.wait ? "waiting…" : "running…", command: data.command || "",
    }));
    host.timeline.push({ step: host.step, phase: host.phase, status: "running", duration: null,
      startTs: event.ts });
  },

  output(ctx, event, data) {
    const host = movedOn(ctx, event);
    const stream = data.stream === "stderr" ? "stderr" : "stdout";
    const lines = Array.isArray(data.lines) ? data.lines : null;
    if (lines && stream === "stdout" && host.stepStartTs !== null) {
      const fraction = lastFraction(lines);
      if (fraction !== null) host.stepProgress = { fraction, ts: event.ts };
    }
    ctx.changes.log.push({ op: "output", host: host.name, seq: event.seq, stream, lines,
      count: lines ? lines.length : Number(data.count) || 0 });
  },

  step_finished(ctx, event, data) {
    const { model, changes } = ctx;
    const host = movedOn(ctx, event);
    const status = data.status || "failed";
    const wait = host.wait && !host.wait.ended && host.wait.key === stepKey(data)
      ? host.wait : null;
    const text = stepResult(data, status, Boolean(wait));
    if (wait) waitEnded(ctx, host, wait, status, data.reason || "");
    const header = host.headers.get(stepKey(data));
    host.headers.delete(stepKey(data));
    if (header) {
      header.status = status;
      header.result = text;
      touch(changes, host, header);
    }
    const entry = host.timeline.findLast((item) => item.step === data.step &&
      item.phase === (data.phase || "steps") && item.status === "running");
    if (entry) {
      entry.status = status;
      entry.duration = typeof data.duration === "number" ? data.duration : null;
    }
    if ((data.phase || "steps") === "steps") {
      host.doneSteps = Math.max(host.doneSteps, (data.index || 0) + 1);
      if (status === "ok" && typeof data.duration === "number") {
        const total = model.stepTotals.get(data.step) || { seconds: 0, count: 0 };
        total.seconds += data.duration;
        total.count += 1;
        model.stepTotals.set(data.step, total);
      }
    }
    host.stepStartTs = null;
    changes.hosts.add(host);
    changes.header = true;
  },

  host_finished(ctx, event, data) {
    const host = movedOn(ctx, event);
    host.failedStep = data.failed_step || null;
    host.exitCode = data.exit_code ?? null;
    host.reason = data.reason || "";
    host.signal = data.signal || null;
    if (typeof data.duration === "number") host.duration = data.duration;
    else if (host.startTs) host.duration = Math.max(0, event.ts - host.startTs);
    if (data.facts && data.facts.version) host.version = String(data.facts.version);
    host.versionState = data.version_state || null;
    host.onFailure = data.on_failure || null;
    const status = data.status || "failed";
    settleSteps(host, status, event.ts, ctx.changes);
    setStatus(host, status, ctx.changes);
    let text = "finished: " + status;
    const reason = reasonText(host.reason, host.exitCode, host.signal);
    if (reason) text += " — " + reason;
    const duration = formatDuration(host.duration);
    if (duration) text += " (" + duration + ")";
    note(ctx.changes, host, event.seq, { kind: "end", text, status });
  },

  /** One probe of a wait step: one updating log line, the panel, the countdown. */
  wait_probe(ctx, event, data) {
    const host = movedOn(ctx, event);
    const wait = host.wait;
    if (!wait || wait.ended || wait.key !== stepKey(data)) return;
    wait.attempt = Number(data.attempt) || wait.attempt + 1;
    wait.exitCode = data.exit_code ?? null;
    wait.output = Array.isArray(data.output) ? data.output.map(String) : [];
    wait.matched = Boolean(data.matched);
    if (!wait.note) {
      wait.note = note(ctx.changes, host, event.seq, { kind: "wait", text: "", status: "waiting" });
    }
    wait.note.text = probeLine(wait, ctx.now);
    touch(ctx.changes, host, wait.note);
    ctx.changes.hosts.add(host);
  },

  /** Paused at a manual gate: the next batch waits for Promote or Abort. */
  job_paused(ctx, event, data) {
    const count = ctx.model.rollout.count;
    ctx.model.status = "paused";
    const next = data.next_batch ?? data.batch + 1;
    const text = "waiting at the gate after " + batchPhrase(data.batch, count) +
      ": an operator promotes " + batchPhrase(next, count) + " or aborts the rollout";
    batchNote(ctx, event, next, { kind: "note", text, status: "paused" });
  },

  job_resumed(ctx, event, data) {
    ctx.model.status = "running";
    ctx.changes.effects.push({ kind: "gate-decided" });
    const text = "promoted by " + (data.by || "an operator") + ": " +
      batchPhrase(data.batch, ctx.model.rollout.count) + " starts";
    batchNote(ctx, event, data.batch, { kind: "note", text, status: "promoted" });
  },

  /** Aborted: the servers not started end skipped (their host_finished says why). */
  job_aborted(ctx) {
    ctx.changes.effects.push({ kind: "gate-decided" });
    ctx.changes.header = true;
  },

  soak_started(ctx, event, data) {
    const text = "soaking " + batchPhrase(data.batch, ctx.model.rollout.count) +
      ": health checks again in " + countdown(Number(data.seconds) || 0);
    for (const name of ctx.model.rollout.serversOf(data.batch)) {
      const host = ensureHost(ctx.model, name, undefined, ctx.changes);
      note(ctx.changes, host, event.seq, { kind: "note", text, status: "soaking" });
    }
    ctx.changes.header = true;
  },

  soak_finished(ctx, event, data) {
    const text = data.passed ? "soak passed: the health checks succeeded again"
      : "soak failed: " + (data.reason || "the health checks failed");
    for (const name of ctx.model.rollout.serversOf(data.batch)) {
      const host = ensureHost(ctx.model, name, undefined, ctx.changes);
      note(ctx.changes, host, event.seq,
        { kind: "note", text, status: data.passed ? "ok" : "failed" });
    }
    ctx.changes.header = true;
  },

  /** The SSH connection dropped mid-step; the step runs on, the console reconnects
   * for up to `timeout` seconds. */
  host_reconnecting({ model, changes }, event, data) {
    const host = ensureHost(model, event.host, undefined, changes);
    const timeout = typeof data.timeout === "number" ? data.timeout : null;
    host.reconnecting = { reason: data.reason ? String(data.reason) : "", timeout };
    changes.hosts.add(host);
    const detail = [];
    if (host.reconnecting.reason) detail.push(host.reconnecting.reason);
    if (timeout !== null) detail.push("trying for up to " + formatDuration(timeout));
    const text = "reconnecting to " + host.name + "…" +
      (detail.length ? " (" + detail.join("; ") + ")" : "");
    note(changes, host, event.seq, { kind: "note", text, status: "reconnecting" });
  },

  /** Connected again: reading goes on from the stored byte offsets. */
  host_reconnected(ctx, event, data) {
    const host = movedOn(ctx, event);
    const attempts = Number(data.attempts);
    let text = "reconnected to " + host.name;
    if (attempts > 0) text += " after " + attempts + " attempt" + (attempts === 1 ? "" : "s");
    note(ctx.changes, host, event.seq, { kind: "note",
      text: text + "; output goes on where it stopped", status: "reconnected" });
  },

  /** A console restarted and resumed this job, carrying on the same seq. */
  job_recovered({ model, changes }, event, data) {
    const node = data.node ? String(data.node) : "another console";
    const servers = Array.isArray(data.servers) ? data.servers.map(String) : [];
    model.recoveries.push({ node, servers, ts: event.ts,
      reason: data.reason ? String(data.reason) : "" });
    changes.header = true;
    // The console that was reconnecting is gone; the new one says so if it must.
    for (const host of model.hosts.values()) clearReconnecting(host, changes);
    for (const name of servers) {
      note(changes, ensureHost(model, name, undefined, changes), event.seq, {
        kind: "note", text: "console restarted: resumed on " + node, status: "recovered",
      });
    }
  },

  /** Event retention removed this job's log (flask prune-events): say so. */
  events_pruned({ changes }, event, data) {
    const days = Number(data.days);
    changes.effects.push({ kind: "message", text: "This job's log was pruned after " + days +
      " day" + (days === 1 ? "" : "s") + " (" + Number(data.events) + " events removed): " +
      "the servers and their final statuses below are what remains." });
  },

  job_finished(ctx, event, data) {
    const { model, changes } = ctx;
    model.status = data.status || "failed";
    model.running = false;
    model.finished = data;
    // A server the log leaves unfinished (a pruned log) ends as the summary stored
    // it, or else as the job did: nothing of a finished job still looks running.
    for (const host of model.hosts.values()) {
      if (FINISHED.has(host.status)) continue;
      const stored = model.storedStatus.get(host.name);
      const status = FINISHED.has(stored) ? stored : model.status;
      settleSteps(host, status, event.ts, changes);
      setStatus(host, status, changes);
    }
    for (const host of Array.from(model.waiting)) {
      if (host.wait) waitEnded(ctx, host, host.wait, model.status, data.reason || "");
    }
    changes.effects.push({ kind: "finished" });
  },
};

/** Fold one event into `model`, noting in `changes` what it changed. */
export function applyEvent(model, event, changes, now) {
  try {
    if (model.rollout.apply(event)) changes.rollout = true;
  } catch (err) {
    console.error("cannot apply event to the rollout", event, err);
  }
  const handler = handlers[event.type];
  if (!handler) return;
  try {
    handler({ model, changes, now }, event, event.data || {});
  } catch (err) {
    console.error("cannot apply event", event, err);
  }
}

/** A second went by: the probe lines of the waits under way count down. */
export function tick(model, changes, now) {
  for (const host of model.waiting) {
    if (host.wait.note) {
      host.wait.note.text = probeLine(host.wait, now);
      touch(changes, host, host.wait.note);
    }
    changes.hosts.add(host);
  }
}
