/*
 * The job page: builds the whole view (server table with step timelines, progress and
 * ETA, logs) from the job's event log only, so a reload, a reconnect, a second tab or a
 * finished job's page show exactly the same thing.
 *
 * Parts: reducer.js folds events into the view model (pure); view.js and host-view.js
 * render it; near.js builds the log sections near the screen; actions.js holds the
 * buttons; logview/ the windowed logs; eta.js, health.js, search.js. This module wires
 * them: the event store, the slices of work and the frames.
 *
 * Events go through EventStore (seq order, exactly once). Long output is not replayed
 * in full: the subscription asks for at most REPLAY_LINES lines per server and gets
 * later output events as stubs (seq, count), which the windowed logs (LogSet) index and
 * fetch by seq only when their rows are on screen. The servers' rows and logs are
 * built, and events applied to the view model, in slices of a few milliseconds that
 * yield to the browser (a job of a thousand servers or a replay page of a thousand
 * events is never one long task); the DOM is updated once per animation frame, writing
 * only what changed.
 *
 * For tests: window.patchbay = {store, appliedSeq() (received), renderedSeq() (applied),
 * slices() (how many slices applied events, and the most events in one), select(name),
 * logStats(), ...} and document.body.dataset.appliedSeq (the seq the DOM shows),
 * .pendingRows (rows on screen still being fetched) and .logRows (rows of all logs).
 */
import { el, readJSON } from "../core/dom.js";
import { EventStore } from "../core/event-store.js";
import { fetchJSON } from "../core/http.js";
import { onConnect, onJobEvents, request } from "../core/live.js";
import * as R from "../core/rollout.js";
import { applyEffect, wireActions } from "./actions.js";
import { wireFailed } from "./failed.js";
import { streamHealth } from "./health.js";
import { addHost, buildSection, renderHost, renderTimelines } from "./host-view.js";
import { HELD_LINES, LogSet } from "./logview/log-set.js";
import { buildNear, createNear, measureNear, watchScroll } from "./near.js";
import { applyEvent, clearLog, createChanges, createModel, ensureHost, tick } from "./reducer.js";
import { searchPanel } from "./search.js";
import { renderEta, renderHeader, renderOrder, renderRollout, select } from "./view.js";

// Building the servers' rows and logs and applying events go in slices of at most
// SLICE_MS (and SLICE_EVENTS events), in order, yielding to the browser in between:
// input, frames and the socket go on while a thousand servers or a big replay page
// are taken in.
const SLICE_MS = 8;
const SLICE_EVENTS = 100;
const FRAME_HOSTS = 100; // servers rendered in one frame (see flush)
const FRAME_MOVES = 100; // rows moved in one frame
// While more events than this wait to be applied (a reload's replay), the DOM is not
// rendered, except every CATCH_UP_MS: each server would be drawn again for each of its
// events, and each frame in between costs a big page tens of milliseconds, for which
// the slices wait (a 5,000-server replay took 450 frames, one slice each).
const CATCH_UP_EVENTS = 1000;
const CATCH_UP_MS = 1000;
// Over this many servers (as job.html's hosts-many), a server's log section is built
// when it first comes within a screen's height of the view (or is selected, or a
// search result in it is opened), not with its row: a page of 5,000 servers holds the
// DOM of the few logs shown, the others' events as data.
const MANY_HOSTS = 100;
// The bars of servers with a step under way are redrawn every TIMELINE_MS (longer for
// more than FRAME_HOSTS of them), in the page's frame, writing only the shares that
// moved; the timer stops while no step runs.
const TIMELINE_MS = 250;

function pageElements() {
  const byId = (id) => document.getElementById(id);
  return {
    status: byId("job-status"),
    gatePanel: byId("gate-panel"),
    gateTitle: byId("gate-title"),
    gateText: byId("gate-text"),
    gateViewer: byId("gate-viewer"),
    promote: byId("promote-button"),
    abort: byId("abort-button"),
    segments: byId("batch-segments"),
    rolloutNow: byId("rollout-now"),
    rolloutHistory: byId("rollout-history"),
    cancel: byId("cancel-button"),
    cancelHelp: byId("cancel-help"),
    failedBlock: byId("failed-servers"),
    failedTitle: byId("failed-servers-title"),
    failedList: byId("failed-servers-list"),
    failedMore: byId("failed-servers-more"),
    rerun: byId("rerun-button"),
    since: byId("rerun-since"),
    message: byId("job-message"),
    progress: byId("progress"),
    progressText: byId("progress-text"),
    eta: byId("eta"),
    batchInfo: byId("batch-info"),
    summary: byId("job-summary"),
    health: byId("stream-health"),
    hostsBody: document.querySelector("#hosts tbody"),
    hostFilter: byId("host-filter"),
    failedFirst: byId("failed-first"),
    logs: byId("logs"),
    showAll: byId("show-all-logs"),
    selection: byId("log-selection"),
    follow: byId("follow-logs"),
  };
}

/** Notices of console restarts that resumed this job (job_recovered), above the summary. */
function noticeList(root, els) {
  const notices = el("ul", "job-notices");
  notices.hidden = true;
  notices.setAttribute("aria-label", "Console restarts");
  if (els.summary) els.summary.before(notices);
  else root.append(notices);
  return notices;
}

/** The page's state: what every part of it reads and writes. */
function createPage(root) {
  const job = readJSON("job-data", {});
  const els = pageElements();
  const changes = createChanges();
  changes.header = changes.rollout = changes.order = true; // all of it, first frame
  return {
    jobId: Number(root.dataset.jobId),
    job,
    usual: readJSON("usual-data", {}),
    els,
    notices: noticeList(root, els),
    model: createModel(job, readJSON("steps-data", [])),
    changes, // what the events changed, not rendered yet (reducer.js)
    parts: new Map(), // name -> the server's elements (host-view.js)
    logs: null,
    // A job of more than MANY_HOSTS servers builds log sections near the screen only.
    lazyLogs: (job.hosts || []).length > MANY_HOSTS,
    selected: null,
    builtHosts: new Set(), // built sections, least recently near the screen first
    shownHosts: [], // the servers whose sections are not hidden, in page order
    near: createNear(),
    timing: new Set(), // the servers with a step under way (host-view.js)
    onTiming: null, // a server joined `timing`: the redraws start (timelineTicker)
    baseTitle: document.title.replace(/^Paused · /, ""),
    appliedUpTo: 0,
    scheduleFlush: null,
    scheduleNear: null,
  };
}

/** The view takes what the reducer changed: new servers' rows, log rows, effects. */
function takeChanges(page) {
  const changes = page.changes;
  for (const host of changes.added) addHost(page, host);
  for (const item of changes.log) {
    const log = page.parts.get(item.host).log;
    if (item.op === "note") log.note(item.seq, item.note);
    else if (item.op === "touch") log.touch(item.note);
    else log.output(item.seq, item.stream, item.lines, item.count);
  }
  for (const effect of changes.effects) applyEffect(page, effect);
  clearLog(changes);
}

/** The work in slices (building the servers, applying events) and the frames. */
class Loop {
  constructor(page, onApplied) {
    this.page = page;
    this.onApplied = onApplied; // after a slice that applied events
    this.toBuild = (page.job.hosts || []).slice(); // the job's servers not built yet
    this.built = 0;
    this.queue = []; // events handed over by the store, in seq order, not applied yet
    this.queueAt = 0;
    this.pumpQueued = false;
    this.counts = { count: 0, most: 0 }; // slices that applied events; most in one (tests)
    this.pumpChannel = new MessageChannel(); // a task at once, unlike a nested setTimeout
    this.pumpChannel.port1.onmessage = () => this.pump();
    this.renderedAt = 0; // when flush last rendered
    this.flushQueued = false;
    this.flushFrame = 0; // the frame asked for ...
    this.flushTimer = 0; // ... and the timer in case none comes: the one that runs cancels the other
    this.applyEvents = this.applyEvents.bind(this);
    this.scheduleFlush = this.scheduleFlush.bind(this);
    this.flush = this.flush.bind(this);
  }

  /** The store's events, in seq order: applied in slices (see pump). */
  applyEvents(events) {
    for (const event of events) this.queue.push(event);
    this.schedulePump();
  }

  slices() {
    return { ...this.counts };
  }

  schedulePump() {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    this.pumpChannel.port2.postMessage(null);
  }

  buildSlice(deadline) {
    const page = this.page;
    while (this.built < this.toBuild.length && performance.now() < deadline) {
      const host = this.toBuild[this.built];
      this.built += 1;
      ensureHost(page.model, host.name, host.batch, page.changes);
      takeChanges(page);
    }
  }

  applySlice(deadline) {
    const page = this.page;
    const queue = this.queue;
    let count = 0;
    const now = Date.now() / 1000;
    while (this.queueAt < queue.length && count < SLICE_EVENTS &&
           (count === 0 || performance.now() < deadline)) {
      applyEvent(page.model, queue[this.queueAt], page.changes, now);
      takeChanges(page);
      this.queueAt += 1;
      count += 1;
    }
    return count;
  }

  /** One slice of the page's work: the servers' rows and logs first, then events. */
  pump() {
    this.pumpQueued = false;
    const deadline = performance.now() + SLICE_MS;
    this.buildSlice(deadline);
    const count = this.built === this.toBuild.length ? this.applySlice(deadline) : 0;
    if (count) this.applied(count);
    this.scheduleFlush();
    if (this.built < this.toBuild.length || this.queueAt < this.queue.length) this.schedulePump();
  }

  /** A slice applied `count` events: the seq reached, the queue trimmed. */
  applied(count) {
    const queue = this.queue;
    this.page.appliedUpTo = queue[this.queueAt - 1].seq;
    if (this.queueAt === queue.length) {
      queue.length = 0;
      this.queueAt = 0;
    } else if (this.queueAt >= 4096) {
      queue.splice(0, this.queueAt);
      this.queueAt = 0;
    }
    this.counts.count += 1;
    this.counts.most = Math.max(this.counts.most, count);
    this.page.changes.header = true;
    this.onApplied();
  }

  /** Many events still to apply, and the DOM rendered not long ago: render later. */
  catchingUp() {
    return this.queue.length - this.queueAt > CATCH_UP_EVENTS &&
      performance.now() - this.renderedAt < CATCH_UP_MS;
  }

  scheduleFlush() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.flushFrame = requestAnimationFrame(this.flush);
    this.flushTimer = setTimeout(this.flush, 250); // background tabs get no animation frames
  }

  /** One frame's DOM work. The logs first: they read their scroll positions before
   * anything else is written (the page is still laid out then). A frame renders at most
   * FRAME_HOSTS servers and moves at most FRAME_MOVES rows: what a thousand servers
   * starting or finishing at once change is spread over a few frames (each changed row
   * costs the browser style and layout work). data-applied-seq says `appliedUpTo` once
   * the DOM shows all of it. */
  flush() {
    if (!this.flushQueued) return;
    this.flushQueued = false;
    // Else a frame asked for before a timer's flush would run flush again in the frame
    // after, as many times as asked: each one laying out what the one before wrote.
    cancelAnimationFrame(this.flushFrame);
    clearTimeout(this.flushTimer);
    if (this.catchingUp()) return; // the slices call again
    this.renderedAt = performance.now();
    const page = this.page;
    const near = page.near.queued ? measureNear(page) : null; // reads, before any write
    page.logs.render();
    const changes = page.changes;
    let rendered = 0;
    for (const host of changes.hosts) {
      if (rendered === FRAME_HOSTS) break;
      renderHost(page, page.parts.get(host.name));
      changes.hosts.delete(host);
      rendered += 1;
    }
    if (changes.order) changes.order = !renderOrder(page, FRAME_MOVES);
    if (changes.header) renderHeader(page);
    changes.header = false;
    if (changes.rollout) renderRollout(page);
    changes.rollout = false;
    if (changes.timelines) renderTimelines(page, Date.now() / 1000);
    changes.timelines = false;
    if (near) buildNear(page, near); // writes, last
    if (changes.hosts.size || changes.order) {
      this.scheduleFlush();
    } else if (document.body.dataset.appliedSeq !== String(page.appliedUpTo)) {
      document.body.dataset.appliedSeq = String(page.appliedUpTo);
    }
  }
}

function createLogs(page, loop) {
  const els = page.els;
  const logs = new LogSet({
    jobId: page.jobId,
    build: (log) => buildSection(page, page.parts.get(log.name)),
    // The logs render in the page's frame (flush): reads first, then writes.
    requestFrame: () => loop.scheduleFlush(),
    fetchJSON,
    wrapButton: document.getElementById("wrap-logs"),
    follow: () => !els.follow || els.follow.checked,
    deferred: () => loop.catchingUp(),
    onRender: () => {
      const stats = logs.stats();
      document.body.dataset.pendingRows = String(stats.pending);
      document.body.dataset.logRows = String(stats.rows);
    },
  });
  return logs;
}

/** The table's clicks and controls: a row shows its server's log, the filter and the
 * failed-first order, following the logs. */
function wireControls(page, loop) {
  const els = page.els;
  els.hostsBody.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof Element)) return;
    if (target.closest("a") || (target.closest("button") && !target.closest(".show-log"))) return;
    const row = target.closest("tr[data-host]");
    if (row) select(page, row.dataset.host);
  });
  els.showAll.addEventListener("click", () => select(page, null));
  const reorder = () => {
    page.changes.order = !renderOrder(page, FRAME_MOVES);
    if (page.changes.order) loop.scheduleFlush();
  };
  for (const control of [els.hostFilter, els.failedFirst]) {
    if (control) control.addEventListener("change", reorder);
  }
  wireFailed(page, reorder);
  if (els.follow) {
    els.follow.addEventListener("change", () => {
      if (!els.follow.checked) return;
      for (const parts of page.parts.values()) {
        if (parts.built && !parts.section.hidden) parts.log.scrollToEnd();
      }
    });
  }
}

/** Every second: the ETA, the logs near the screen, the countdowns (waits, a soak). */
function everySecond(page, loop) {
  const model = page.model;
  if (model.running && !model.finished) renderEta(page);
  page.scheduleNear(); // the logs above the view may have grown or shrunk
  tick(model, page.changes, Date.now() / 1000);
  takeChanges(page);
  if (model.rollout.activeSoak() && !model.finished) page.changes.rollout = true;
  if (model.waiting.size || page.changes.rollout) loop.scheduleFlush();
}

/** While a step runs somewhere, its bar is redrawn as time passes (in the page's
 * frame: one write pass, no reads); the timer ends when none runs. */
function timelineTicker(page, loop) {
  let timer = 0;
  const tick = () => {
    timer = 0;
    if (!page.timing.size) return;
    page.changes.timelines = true;
    loop.scheduleFlush();
    timer = setTimeout(tick, TIMELINE_MS * Math.ceil(page.timing.size / FRAME_HOSTS));
  };
  return () => {
    if (!timer) timer = setTimeout(tick, TIMELINE_MS);
  };
}

/** Follow the job: (re)subscribe after each connect from the last seq applied. */
function follow(page, store, health, replayLines) {
  const { model, els, jobId } = page;
  onConnect(async () => {
    // `applied` is contiguous: everything after it is replayed, duplicates are ignored.
    const ack = await request("job:subscribe", {
      job_id: jobId, after_seq: store.applied, replay_lines: replayLines,
    });
    if (!ack.ok) {
      els.message.textContent = "Cannot follow this job: " +
        ((ack.error && ack.error.message) || "unknown error");
      return;
    }
    if (ack.job) {
      if (!model.status) {
        model.running = ack.job.status === "running" || ack.job.status === "paused";
        page.changes.header = true;
        page.scheduleFlush();
      }
      if (ack.job.succeeded_since) {
        // Servers a later job has fixed since the page was made: not re-run, said so.
        page.job.succeeded_since = ack.job.succeeded_since;
        page.changes.header = true;
        page.scheduleFlush();
      }
      health.subscribed(ack.job.last_seq);
      store.noteKnown(ack.job.last_seq);
    }
  });
  onJobEvents((payload) => {
    if (Number(payload.job_id) !== jobId) return;
    if (!payload.replay) health.received(payload.events);
    store.add(payload.events);
  });
}

function start(root) {
  const page = createPage(root);
  // Output lines per server sent with a (re)subscription, later output as stubs (fetched
  // when on screen): no more in all than the logs hold (HELD_LINES), so the reload of
  // a thousand servers' job carries 60,000 lines, not a million.
  const replayLines = Math.max(50, Math.min(2000,
    Math.floor(HELD_LINES / Math.max(1, (page.job.hosts || []).length))));
  let health = null;
  const loop = new Loop(page, () => health.progress());
  page.scheduleFlush = loop.scheduleFlush;
  page.scheduleNear = () => {
    if (!page.lazyLogs) return;
    page.near.queued = true;
    loop.scheduleFlush();
  };
  page.logs = createLogs(page, loop);
  page.onTiming = timelineTicker(page, loop);
  if (page.lazyLogs) watchScroll(page);
  wireActions(page);
  setInterval(() => everySecond(page, loop), 1000);
  wireControls(page, loop);
  searchPanel({
    jobId: page.jobId,
    logs: page.logs,
    hostLog: (name) => (page.parts.has(name) ? page.parts.get(name).log : null),
    selected: () => page.selected,
    select: (name) => select(page, name),
  });
  const store = new EventStore({
    jobId: page.jobId,
    apply: loop.applyEvents,
    fetchQuery: "&max_lines=" + replayLines,
    onError: (err) => console.error("job " + page.jobId + " events:", err),
  });
  health = streamHealth({
    element: page.els.health,
    store,
    live: () => page.model.running && !page.model.finished,
  });
  document.body.dataset.appliedSeq = "0";
  loop.pump(); // the first servers now, the others in the next slices
  follow(page, store, health, replayLines);
  return { page, store, loop };
}

const root = document.getElementById("job-page");
if (root) {
  const { page, store, loop } = start(root);
  // For tests (tests/browser, tests/live: window.patchbay.renderedSeq(), slices(),
  // logStats()), as the page's script exposed them before it was modules.
  window.patchbay = Object.freeze({
    jobId: page.jobId,
    store,
    appliedSeq: () => store.applied,
    renderedSeq: () => page.appliedUpTo,
    slices: () => loop.slices(),
    logStats: () => page.logs.stats(),
    select: (name) => select(page, name),
  });
  // As rollout.js exposed it before it was a module (tests fold events in the page).
  window.PatchbayRollout = R;
}
