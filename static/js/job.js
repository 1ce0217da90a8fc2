/*
 * The job page: builds the whole view (server table with step timelines, progress and
 * ETA, logs) from the job's event log only, so a reload, a reconnect, a second tab or a
 * finished job's page show exactly the same thing.
 *
 * Events go through Patchbay.EventStore (seq order, exactly once). Long output is not
 * replayed in full: the subscription asks for at most REPLAY_LINES lines per server and
 * gets later output events as stubs (seq, count), which the windowed logs
 * (PatchbayLogs.LogSet) index and fetch by seq only when their rows are on screen.
 * The servers' rows and logs are built, and events applied to the view model, in
 * slices of a few milliseconds that yield to the browser (a job of a thousand servers
 * or a replay page of a thousand events is never one long task); the DOM is updated
 * once per animation frame, writing only what changed.
 *
 * Steps run detached on the servers, so a server whose SSH connection drops shows
 * "reconnecting to <server>…" (host_reconnecting) until the console is back
 * (host_reconnected) or the server moves on (output, a step, its end); a job a
 * restarted console resumed (job_recovered) says so above the server table and in the
 * logs of the servers it picked up. Unknown event types are skipped.
 *
 * A rollout's batches show as segments (canary, batch 2, …; rollout.js) above the server
 * table. A job paused at a manual gate (job_paused) shows Promote and Abort at the top
 * of the page (operators; viewers read who can), each asking first; job_resumed and
 * job_aborted take them away and say who did it, in the rollout history and in the logs
 * of the servers concerned. A wait step (step_started with data.wait) shows its probe's
 * last output (wait_probe) in a panel above the server's log, one updating log line and
 * a countdown to its deadline; a soak gate says when the health checks run again.
 *
 * For tests: window.patchbay = {store, appliedSeq() (received), renderedSeq() (applied),
 * slices() (how many slices applied events, and the most events in one), select(name),
 * logStats(), ...} and document.body.dataset.appliedSeq (the seq the DOM shows),
 * .pendingRows (rows on screen still being fetched) and .logRows (rows of all logs).
 */
(function () {
  "use strict";
  const el = window.Patchbay.el;
  const readJSON = window.Patchbay.readJSON;

  const P = window.Patchbay;
  const L = window.PatchbayLogs;
  const J = window.PatchbayJob;
  const R = window.PatchbayRollout;
  const page = document.getElementById("job-page");
  if (!P || !L || !J || !R || !page) return;

  const jobId = Number(page.dataset.jobId);
  const job = readJSON("job-data", {});
  // Output lines per server sent with a (re)subscription, later output as stubs (fetched
  // when on screen): no more in all than the logs hold (L.HELD_LINES), so the reload of
  // a thousand servers' job carries 60,000 lines, not a million.
  const REPLAY_LINES = Math.max(50, Math.min(2000,
    Math.floor(L.HELD_LINES / Math.max(1, (job.hosts || []).length))));
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
  const MAX_BUILT = 40; // ... and at most twice this many built (see buildNear)
  // Building log sections (buildNear), at most this many a frame: those on screen first,
  // those within the margin once the page has not scrolled for SETTLE_MS. Emptying
  // sections past twice MAX_BUILT: at most EVICT_FRAME a frame.
  const BUILD_FRAME = 2;
  const SETTLE_MS = 150;
  const EVICT_FRAME = 8;
  // Each server's status as stored when the page was made (final for a finished job).
  const storedStatus = new Map((job.hosts || []).map((host) => [host.name, host.status]));
  const usual = readJSON("usual-data", {});
  const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "interrupted"]);
  const FAILED_FIRST = { failed: 0, interrupted: 1, running: 2 };
  const CELL_LABELS = { batch: "Batch", status: "Status", step: "Step", timeline: "Timeline",
    duration: "Duration", version: "Version", reason: "Reason" };

  const els = {
    status: document.getElementById("job-status"),
    gatePanel: document.getElementById("gate-panel"),
    gateTitle: document.getElementById("gate-title"),
    gateText: document.getElementById("gate-text"),
    gateViewer: document.getElementById("gate-viewer"),
    promote: document.getElementById("promote-button"),
    abort: document.getElementById("abort-button"),
    segments: document.getElementById("batch-segments"),
    rolloutNow: document.getElementById("rollout-now"),
    rolloutHistory: document.getElementById("rollout-history"),
    cancel: document.getElementById("cancel-button"),
    rerun: document.getElementById("rerun-button"),
    message: document.getElementById("job-message"),
    progress: document.getElementById("progress"),
    progressText: document.getElementById("progress-text"),
    eta: document.getElementById("eta"),
    batchInfo: document.getElementById("batch-info"),
    summary: document.getElementById("job-summary"),
    health: document.getElementById("stream-health"),
    hostsBody: document.querySelector("#hosts tbody"),
    hostFilter: document.getElementById("host-filter"),
    failedFirst: document.getElementById("failed-first"),
    logs: document.getElementById("logs"),
    showAll: document.getElementById("show-all-logs"),
    selection: document.getElementById("log-selection"),
    follow: document.getElementById("follow-logs"),
  };

  // Notices of console restarts that resumed this job (job_recovered), above the summary.
  const notices = el("ul", "job-notices");
  notices.hidden = true;
  notices.setAttribute("aria-label", "Console restarts");
  if (els.summary) els.summary.before(notices);
  else page.append(notices);

  // --- view model ----------------------------------------------------------------------

  const hosts = new Map(); // name -> host view (model + its elements)
  const view = {
    status: null, // from job_started / job_finished only
    running: job.status === "running" || job.status === "paused",
    steps: readJSON("steps-data", []),
    batches: [],
    batch: null,
    finished: null, // job_finished data
    stepTotals: new Map(), // step name -> {seconds, count} of finished ok steps (this job)
    recoveries: [], // job_recovered: {node, servers, ts, reason}, oldest first
  };
  // Batches, gates and soaks (rollout.js): from the stored servers until the events say more.
  const rollout = new R.Rollout();
  rollout.setHosts(job.hosts || []);
  rollout.setJobStatus(job.status);
  const baseTitle = document.title.replace(/^Paused · /, "");
  let selected = null;
  let appliedUpTo = 0;
  let headerDirty = true;
  let rolloutDirty = true;
  let orderDirty = true;
  const dirtyHosts = new Set();
  let flushQueued = false;

  const logs = new L.LogSet({
    jobId,
    build: (log) => buildSection(hosts.get(log.name)),
    // The logs render in the page's frame (flush): reads first, then writes.
    requestFrame: () => scheduleFlush(),
    fetchJSON: P.fetchJSON,
    wrapButton: document.getElementById("wrap-logs"),
    follow: () => !els.follow || els.follow.checked,
    deferred: () => catchingUp(),
    onRender: () => {
      const stats = logs.stats();
      document.body.dataset.pendingRows = String(stats.pending);
      document.body.dataset.logRows = String(stats.rows);
    },
  });

  const formatDuration = P.formatDuration;

  // A job of more than MANY_HOSTS servers builds log sections near the screen only.
  const lazyLogs = (job.hosts || []).length > MANY_HOSTS;

  // Writes that change nothing still cost the browser style and layout work (a new text
  // node, an attribute set again): at a thousand servers a frame writes only changes.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  function setClass(node, name) {
    if (node.className !== name) node.className = name;
  }
  function setAttr(node, name, value) {
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }
  function setHidden(node, hidden) {
    if (node.hidden !== hidden) node.hidden = hidden;
  }

  /** A server's or step's reason, with its exit code unless the reason says it, or the
   * step was stopped by a signal (the reason then says "stopped (TERM)"), or it has
   * none (-1: killed). */
  function reasonText(reason, exitCode, signal) {
    let text = reason || "";
    if (exitCode !== null && exitCode !== undefined && exitCode !== -1 && !signal &&
        !text.includes("code " + exitCode)) {
      text = text ? text + " (exit code " + exitCode + ")" : "exit code " + exitCode;
    }
    return text;
  }

  /** The statuses apart: "0 / 8 succeeded · 1 failed · 7 skipped" (a stopped rollout
   * is not a finished one). */
  const PROGRESS_ORDER = ["failed", "cancelled", "interrupted", "skipped", "running", "pending"];
  function progressText(counts, total) {
    let text = (counts.succeeded || 0) + " / " + total + " succeeded";
    for (const status of PROGRESS_ORDER) {
      if (counts[status]) text += " · " + counts[status] + " " + (status === "pending" ? "waiting" : status);
    }
    return text;
  }

  /** What the Version cell says: the version the server reported in this job, marked
   * when its on_failure steps rolled it back, or when a step ran after the report. */
  function versionText(host) {
    if (!host.version) return "";
    if (host.onFailure === "succeeded" && host.versionState === "verified") {
      return "rolled back to " + host.version + " ✓";
    }
    return host.versionState === "unverified" ? host.version + " (unverified)" : host.version;
  }

  // --- host rows and log panels ---------------------------------------------------------

  function ensureHost(name, batch) {
    let host = hosts.get(name);
    if (host) {
      if (Number.isInteger(batch) && host.batch !== batch) {
        host.batch = batch;
        dirtyHosts.add(host);
      }
      return host;
    }
    const index = hosts.size;
    const logId = "log-" + index;
    host = {
      name,
      position: index,
      batch: Number.isInteger(batch) ? batch : null,
      status: "pending",
      step: "",
      phase: "steps",
      stepIndex: -1,
      stepStartTs: null,
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
      timeline: [], // {step, phase, status, duration}
      headers: new Map(), // "phase:index:step" -> step-header note
      reconnecting: null, // {reason, timeout} while the console reconnects to it
      wait: null, // the wait step under way or last ended (see waitStarted)
    };

    const row = el("tr");
    row.setAttribute("role", "row"); // a table whatever its display (job.html)
    row.dataset.host = name;
    row.dataset.status = "pending";
    const nameCell = el("th", "host-name", name);
    nameCell.scope = "row";
    nameCell.setAttribute("role", "rowheader");
    host.cells = {
      batch: el("td", "host-batch"),
      status: el("td", "host-status"),
      step: el("td", "host-step"),
      timeline: el("td", "host-timeline"),
      duration: el("td", "host-duration"),
      version: el("td", "host-version"),
      reason: el("td", "host-reason"),
    };
    // Column names for the cards the rows become on a narrow screen (app.css).
    for (const [key, cell] of Object.entries(host.cells)) {
      cell.dataset.label = CELL_LABELS[key];
      cell.setAttribute("role", "cell");
    }
    host.statusBadge = el("span", "badge status-pending", "pending");
    host.reconnectBadge = el("span", "badge status-reconnecting host-reconnecting");
    host.reconnectBadge.hidden = true;
    host.cells.status.append(host.statusBadge, host.reconnectBadge);
    host.bar = el("div", "timeline-bar");
    host.cells.timeline.append(host.bar);
    const logCell = el("td", "host-actions");
    logCell.setAttribute("role", "cell");
    host.button = el("button", "button button-small show-log", "Show log");
    host.button.type = "button";
    host.button.dataset.host = name;
    host.button.setAttribute("aria-controls", logId);
    host.button.setAttribute("aria-pressed", "false");
    host.button.setAttribute("aria-label", "Show the log of " + name);
    logCell.append(host.button);
    row.append(nameCell, host.cells.batch, host.cells.status, host.cells.step,
      host.cells.timeline, host.cells.duration, host.cells.version, host.cells.reason, logCell);
    host.row = row;
    els.hostsBody.append(row);

    // The log's section; its title and log are built when it first comes near the
    // screen (buildSection), or at once in a job of at most MANY_HOSTS servers.
    const section = el("section", "log-section");
    section.id = logId;
    section.dataset.host = name;
    if (selected !== null && selected !== name) section.hidden = true;
    host.section = section;
    host.built = false;
    els.logs.append(section);
    host.log = logs.add(name, section);
    if (lazyLogs) scheduleNear();
    else buildSection(host);

    hosts.set(name, host);
    dirtyHosts.add(host);
    headerDirty = true;
    orderDirty = true;
    return host;
  }

  /** The title, wait panel and log of `host`'s section, built once. Until then its
   * events are data only (the log's index, notes and held lines). */
  function buildSection(host) {
    if (host.built) return;
    host.built = true;
    builtHosts.add(host);
    const name = host.name;
    const heading = el("div", "log-title");
    host.logBadge = el("span", "badge status-pending", "pending");
    host.logReconnect = el("span", "badge status-reconnecting host-reconnecting");
    host.logReconnect.hidden = true;
    const title = el("h3", "log-host", name);
    host.chips = el("ol", "step-chips");
    host.chips.setAttribute("aria-label", "Steps of " + name);
    const download = el("a", "button button-small log-download", "Download");
    download.href = P.root + "/jobs/" + jobId + "/log.txt?host=" + encodeURIComponent(name);
    download.setAttribute("download", "");
    download.setAttribute("aria-label", "Download the full log of " + name);
    host.jump = el("button", "button button-small log-jump", "Jump to latest");
    host.jump.type = "button";
    host.jump.hidden = true;
    host.jump.setAttribute("aria-label", "Follow the latest output of " + name);
    heading.append(title, host.logBadge, host.logReconnect, host.chips, host.jump, download);
    const log = el("div", "host-log");
    log.dataset.host = name;
    log.setAttribute("role", "log");
    // role=log is polite by default; a chatty log must not flood screen readers.
    log.setAttribute("aria-live", "off");
    log.setAttribute("aria-label", "Log of " + name);
    log.tabIndex = 0;
    // A wait step's probe: what it said last, and the time left (hidden otherwise).
    host.waitPanel = el("div", "wait-panel");
    host.waitPanel.dataset.host = name;
    host.waitPanel.hidden = true;
    host.waitState = el("p", "wait-state");
    host.waitCountdown = el("span", "wait-countdown");
    host.waitOutput = el("pre", "wait-output");
    host.waitOutput.setAttribute("aria-label", "Last output of the probe on " + name);
    host.waitPanel.append(host.waitState, host.waitOutput);
    host.section.append(heading, host.waitPanel, log);
    host.log.onScrollState = (hostLog) => { host.jump.hidden = hostLog.pinned; };
    host.jump.addEventListener("click", () => host.log.scrollToEnd());
    logs.attach(host.log, log);
    renderHost(host); // its title's status, steps, wait panel (writes only)
  }

  /** Back to data only: the section is emptied (it keeps the log's height). */
  function unbuildSection(host) {
    if (!host.built) return;
    host.built = false;
    builtHosts.delete(host);
    logs.detach(host.log);
    host.section.replaceChildren();
    for (const key of ["logBadge", "logReconnect", "chips", "jump", "waitPanel", "waitState",
      "waitCountdown", "waitOutput"]) host[key] = null;
  }

  // Log sections near the screen (lazyLogs). The sections not built are empty boxes of
  // their log's height in server order, so the shown ones are found by a binary search
  // on their positions: no observer of thousands of elements (Chromium computes every
  // observed target's intersection on every frame: 13 ms a frame at 5,000 servers).
  // They are measured at the start of the page's frame (flush), before it writes
  // anything, and built at its end: a frame lays the page out once.
  const builtHosts = new Set(); // built sections, least recently near the screen first
  let shownHosts = []; // the servers whose sections are not hidden, in page order
  let nearQueued = false;
  let evicting = false; // emptying built sections down to MAX_BUILT
  let scrolledAt = -Infinity; // the page's last scroll event ...
  let scrollY = window.scrollY; // ... where it left the page ...
  let scrollStep = 0; // ... and how far it had moved it since the one before
  let settleTimer = 0;

  function scheduleNear() {
    if (!lazyLogs) return;
    nearQueued = true;
    scheduleFlush();
  }

  function pageScrolled() {
    scrolledAt = performance.now();
    scrollStep = Math.abs(window.scrollY - scrollY);
    scrollY = window.scrollY;
    scheduleNear();
  }

  /** Reads only: the shown servers whose sections are on screen, and those within half
   * a screen's height of it. */
  function measureNear() {
    nearQueued = false;
    const height = window.innerHeight;
    const margin = height / 2;
    const onScreen = [];
    const near = [];
    let lo = 0;
    let hi = shownHosts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (shownHosts[mid].section.getBoundingClientRect().bottom > -margin) hi = mid;
      else lo = mid + 1;
    }
    for (let i = lo; i < shownHosts.length; i++) {
      const host = shownHosts[i];
      const box = host.section.getBoundingClientRect();
      if (box.top > height + margin) break;
      near.push(host);
      if (box.bottom > 0 && box.top < height) onScreen.push(host);
    }
    return { onScreen, near };
  }

  /** Writes only: build at most BUILD_FRAME sections of `found` (measureNear), those on
   * screen first, those within the margin only once the page has stopped scrolling (a
   * fast scroll passes most logs by), none while it moves a screen's height or more a
   * frame (no one reads a log that passes in a frame: they are built where it stops); past twice MAX_BUILT built sections, empty those
   * longest away from the view down to MAX_BUILT, EVICT_FRAME a frame (never the selected
   * one, nor one with the focus). What is left waits for the next frame. */
  function buildNear(found) {
    const settled = performance.now() - scrolledAt >= SETTLE_MS;
    const flung = !settled && scrollStep >= window.innerHeight;
    const most = flung ? 0 : BUILD_FRAME;
    let builds = 0;
    let more = false;
    for (const host of settled ? [...found.onScreen, ...found.near] : found.onScreen) {
      if (host.built) continue;
      if (builds === most) {
        more = !flung;
        break;
      }
      buildSection(host);
      builds += 1;
    }
    for (const host of found.near) {
      if (!host.built) continue;
      builtHosts.delete(host); // most recently near: last
      builtHosts.add(host);
    }
    if (builtHosts.size > 2 * MAX_BUILT) evicting = true;
    if (evicting) {
      let evicts = EVICT_FRAME;
      for (const host of Array.from(builtHosts)) {
        if (builtHosts.size <= MAX_BUILT || evicts === 0) break;
        if (found.near.includes(host) || host.name === selected ||
            host.section.contains(document.activeElement)) continue;
        unbuildSection(host);
        evicts -= 1;
      }
      evicting = builtHosts.size > MAX_BUILT && evicts === 0;
      more = more || evicting;
    }
    // Built sections take their own height: look again once it is laid out.
    if (builds || more) {
      scheduleNear();
    } else if (!settled && found.near.some((host) => !host.built)) {
      // The near ones once the scroll settles.
      clearTimeout(settleTimer);
      settleTimer = setTimeout(scheduleNear, SETTLE_MS - (performance.now() - scrolledAt));
    }
  }

  if (lazyLogs) {
    window.addEventListener("scroll", pageScrolled, { passive: true });
    window.addEventListener("resize", scheduleNear);
  }

  function stepKey(data) {
    return (data.phase || "steps") + ":" + data.index + ":" + data.step;
  }

  /** The console is connected to `host` again, or `host` moved on (output, a step, its
   * end: a later event of it means the drop is over). */
  function clearReconnecting(host) {
    if (!host.reconnecting) return;
    host.reconnecting = null;
    dirtyHosts.add(host);
  }

  function setStatus(host, status) {
    if (host.status !== status) orderDirty = true;
    host.status = status;
    dirtyHosts.add(host);
    headerDirty = true;
  }

  /** A server ended with steps still open (the console stopped under them, or the
   * job ended first): their headers, chips and timeline take its final status. */
  function settleSteps(host, status, ts) {
    for (const header of host.headers.values()) {
      header.status = status;
      header.result = status;
      host.log.touch(header);
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
    dirtyHosts.add(host);
  }

  // --- wait steps --------------------------------------------------------------------------

  /** A wait step started: its probe runs every `every` s until `until` matches or the
   * deadline (epoch seconds) passes. */
  function waitStarted(host, data) {
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
    waiting.add(host);
  }

  function secondsLeft(wait) {
    return wait.deadline === null ? null : Math.max(0, wait.deadline - Date.now() / 1000);
  }

  /** The wait in a few words, for the Step cell: "drain: waiting for ^0$ · 42 s left". */
  function waitWords(wait) {
    if (wait.ended) return wait.step + ": " + wait.ended.words;
    const left = secondsLeft(wait);
    return wait.step + ": waiting for " + wait.until +
      (left === null ? "" : " · " + R.countdown(left) + " left");
  }

  /** The probe's one log line: what it printed last (the panel shows all of it), and
   * the countdown or how the wait ended. */
  function probeLine(wait) {
    const last = wait.output.length ? wait.output[wait.output.length - 1] : "";
    const said = wait.output.length ? ": \u201c" + last.slice(0, 200) + "\u201d" : ": no output";
    const code = wait.exitCode === null || wait.exitCode === undefined ? ""
      : " (exit " + wait.exitCode + ")";
    let text = "probe " + wait.attempt + said + code + " · ";
    if (wait.ended) return text + wait.ended.words;
    text += wait.matched ? "matched" : "no match yet";
    const left = secondsLeft(wait);
    return left === null ? text : text + " · " + R.countdown(left) + " left";
  }

  /** "2 s", "0.5 s", "1 min 00 s". */
  function seconds(value) {
    return Number.isInteger(value) && value < 60 ? value + " s" : P.formatDuration(value);
  }

  function waitEnded(host, wait, status, reason) {
    let words;
    const probes = wait.attempt + " probe" + (wait.attempt === 1 ? "" : "s");
    const timeout = wait.timeout ? " after " + seconds(wait.timeout) : "";
    if (status === "ok" && wait.matched) words = "matched after " + probes;
    else if (status === "ok") words = "timed out" + timeout + ", proceeding";
    else if (status === "failed" && /^timed out/.test(reason)) words = "timed out" + timeout + ", failed";
    else words = status + (reason ? ": " + reason : "");
    wait.ended = { status, words, reason };
    waiting.delete(host);
    if (wait.note) {
      wait.note.text = (wait.attempt ? probeLine(wait) : waitWords(wait));
      wait.note.status = status === "ok" ? "ok" : "failed";
      host.log.touch(wait.note);
    }
    dirtyHosts.add(host);
  }

  const waiting = new Set(); // hosts with a wait under way (their countdowns tick)

  // --- applying events (model and log index only) ----------------------------------------

  const handlers = {
    job_started(event, data) {
      view.status = "running";
      if (Array.isArray(data.steps)) view.steps = data.steps;
      view.batches = Array.isArray(data.batches) ? data.batches : [];
      const batchOf = new Map();
      view.batches.forEach((names, index) => names.forEach((name) => batchOf.set(name, index)));
      for (const name of data.servers || []) ensureHost(name, batchOf.get(name));
    },

    batch_started(event, data) {
      view.batch = data.batch;
      view.batchServers = data.servers || [];
      for (const name of view.batchServers) ensureHost(name, data.batch);
    },

    host_started(event, data) {
      const host = ensureHost(event.host);
      host.startTs = event.ts;
      setStatus(host, "running");
      host.log.note(event.seq, { kind: "note", text: "connecting to " + (data.address || event.host) });
    },

    step_started(event, data) {
      const host = ensureHost(event.host);
      clearReconnecting(host);
      host.step = data.step || "";
      host.phase = data.phase || "steps";
      host.stepIndex = Number.isInteger(data.index) ? data.index : -1;
      host.stepStartTs = event.ts;
      dirtyHosts.add(host);
      headerDirty = true;
      const total = host.phase === "steps" && view.steps.length ? "/" + view.steps.length : "";
      const label = host.phase === "on_failure" ? "on failure " + (data.index + 1)
        : host.phase === "health" ? "soak check " + (data.index + 1)
          : host.phase === "probe" ? "asking the server its build"
            : "step " + (data.index + 1) + total;
      // An ended wait's panel stays (how it ended) until another wait step starts.
      if (data.wait && typeof data.wait === "object") waitStarted(host, data);
      host.headers.set(stepKey(data), host.log.note(event.seq, {
        kind: "step", label, step: host.step, phase: host.phase, status: "running",
        result: data.wait ? "waiting…" : "running…", command: data.command || "",
      }));
      host.timeline.push({ step: host.step, phase: host.phase, status: "running", duration: null,
        startTs: event.ts });
    },

    output(event, data) {
      const host = ensureHost(event.host);
      clearReconnecting(host);
      const stream = data.stream === "stderr" ? "stderr" : "stdout";
      const lines = Array.isArray(data.lines) ? data.lines : null;
      host.log.output(event.seq, stream, lines, lines ? lines.length : Number(data.count) || 0);
    },

    step_finished(event, data) {
      const host = ensureHost(event.host);
      clearReconnecting(host);
      const status = data.status || "failed";
      const parts = [status];
      if (data.exit_code !== null && data.exit_code !== undefined && data.exit_code !== -1 &&
          !data.signal) {
        parts.push("exit code " + data.exit_code);
      }
      const duration = formatDuration(data.duration);
      if (duration) parts.push(duration);
      let text = parts.join(" · ");
      const wait = host.wait && !host.wait.ended && host.wait.key === stepKey(data)
        ? host.wait : null;
      if (data.reason && (status !== "ok" || wait)) text += " — " + data.reason;
      if (wait) waitEnded(host, wait, status, data.reason || "");
      const header = host.headers.get(stepKey(data));
      host.headers.delete(stepKey(data));
      if (header) {
        header.status = status;
        header.result = text;
        host.log.touch(header);
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
          const total = view.stepTotals.get(data.step) || { seconds: 0, count: 0 };
          total.seconds += data.duration;
          total.count += 1;
          view.stepTotals.set(data.step, total);
        }
      }
      host.stepStartTs = null;
      dirtyHosts.add(host);
      headerDirty = true;
    },

    host_finished(event, data) {
      const host = ensureHost(event.host);
      clearReconnecting(host);
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
      settleSteps(host, status, event.ts);
      setStatus(host, status);
      let text = "finished: " + status;
      const reason = reasonText(host.reason, host.exitCode, host.signal);
      if (reason) text += " — " + reason;
      const duration = formatDuration(host.duration);
      if (duration) text += " (" + duration + ")";
      host.log.note(event.seq, { kind: "end", text, status });
    },

    /** One probe of a wait step: one updating log line, the panel, the countdown. */
    wait_probe(event, data) {
      const host = ensureHost(event.host);
      clearReconnecting(host);
      const wait = host.wait;
      if (!wait || wait.ended || wait.key !== stepKey(data)) return;
      wait.attempt = Number(data.attempt) || wait.attempt + 1;
      wait.exitCode = data.exit_code ?? null;
      wait.output = Array.isArray(data.output) ? data.output.map(String) : [];
      wait.matched = Boolean(data.matched);
      if (!wait.note) {
        wait.note = host.log.note(event.seq, { kind: "wait", text: "", status: "waiting" });
      }
      wait.note.text = probeLine(wait);
      host.log.touch(wait.note);
      dirtyHosts.add(host);
    },

    /** Paused at a manual gate: the next batch waits for Promote or Abort. */
    job_paused(event, data) {
      view.status = "paused";
      const next = data.next_batch ?? data.batch + 1;
      const text = "waiting at the gate after " + R.batchPhrase(data.batch, rollout.count) +
        ": an operator promotes " + R.batchPhrase(next, rollout.count) + " or aborts the rollout";
      for (const name of rollout.serversOf(next)) {
        const host = ensureHost(name);
        host.log.note(event.seq, { kind: "note", text, status: "paused" });
        dirtyHosts.add(host);
      }
      headerDirty = true;
    },

    job_resumed(event, data) {
      view.status = "running";
      clearGateNote();
      const text = "promoted by " + (data.by || "an operator") + ": " +
        R.batchPhrase(data.batch, rollout.count) + " starts";
      for (const name of rollout.serversOf(data.batch)) {
        const host = ensureHost(name);
        host.log.note(event.seq, { kind: "note", text, status: "promoted" });
        dirtyHosts.add(host);
      }
      gateBusy(false);
      headerDirty = true;
    },

    /** Aborted: the servers not started end skipped (their host_finished says why). */
    job_aborted() {
      clearGateNote();
      gateBusy(false);
      headerDirty = true;
    },

    soak_started(event, data) {
      const text = "soaking " + R.batchPhrase(data.batch, rollout.count) + ": health checks " +
        "again in " + R.countdown(Number(data.seconds) || 0);
      for (const name of rollout.serversOf(data.batch)) {
        ensureHost(name).log.note(event.seq, { kind: "note", text, status: "soaking" });
      }
      headerDirty = true;
    },

    soak_finished(event, data) {
      const text = data.passed ? "soak passed: the health checks succeeded again"
        : "soak failed: " + (data.reason || "the health checks failed");
      for (const name of rollout.serversOf(data.batch)) {
        ensureHost(name).log.note(event.seq, { kind: "note", text,
          status: data.passed ? "ok" : "failed" });
      }
      headerDirty = true;
    },

    /** The SSH connection dropped mid-step; the step runs on, the console reconnects
     * for up to `timeout` seconds. */
    host_reconnecting(event, data) {
      const host = ensureHost(event.host);
      const timeout = typeof data.timeout === "number" ? data.timeout : null;
      host.reconnecting = { reason: data.reason ? String(data.reason) : "", timeout };
      dirtyHosts.add(host);
      const detail = [];
      if (host.reconnecting.reason) detail.push(host.reconnecting.reason);
      if (timeout !== null) detail.push("trying for up to " + formatDuration(timeout));
      const text = "reconnecting to " + host.name + "…" +
        (detail.length ? " (" + detail.join("; ") + ")" : "");
      host.log.note(event.seq, { kind: "note", text, status: "reconnecting" });
    },

    /** Connected again: reading goes on from the stored byte offsets. */
    host_reconnected(event, data) {
      const host = ensureHost(event.host);
      clearReconnecting(host);
      const attempts = Number(data.attempts);
      let text = "reconnected to " + host.name;
      if (attempts > 0) text += " after " + attempts + " attempt" + (attempts === 1 ? "" : "s");
      host.log.note(event.seq, { kind: "note", text: text + "; output goes on where it stopped",
        status: "reconnected" });
    },

    /** A console restarted and resumed this job, carrying on the same seq. */
    job_recovered(event, data) {
      const node = data.node ? String(data.node) : "another console";
      const servers = Array.isArray(data.servers) ? data.servers.map(String) : [];
      view.recoveries.push({ node, servers, ts: event.ts,
        reason: data.reason ? String(data.reason) : "" });
      headerDirty = true;
      // The console that was reconnecting is gone; the new one says so if it must.
      for (const host of hosts.values()) clearReconnecting(host);
      for (const name of servers) {
        ensureHost(name).log.note(event.seq, {
          kind: "note", text: "console restarted: resumed on " + node, status: "recovered",
        });
      }
    },

    /** Event retention removed this job's log (flask prune-events): say so. */
    events_pruned(event, data) {
      const days = Number(data.days);
      els.message.textContent = "This job's log was pruned after " + days + " day" +
        (days === 1 ? "" : "s") + " (" + Number(data.events) + " events removed): " +
        "the servers and their final statuses below are what remains.";
    },

    job_finished(event, data) {
      view.status = data.status || "failed";
      view.running = false;
      view.finished = data;
      // A server the log leaves unfinished (a pruned log) ends as the summary stored
      // it, or else as the job did: nothing of a finished job still looks running.
      for (const host of hosts.values()) {
        if (FINISHED.has(host.status)) continue;
        const stored = storedStatus.get(host.name);
        const status = FINISHED.has(stored) ? stored : view.status;
        settleSteps(host, status, event.ts);
        setStatus(host, status);
      }
      if (els.message.dataset.kind === "cancel") els.message.textContent = "";
      for (const host of Array.from(waiting)) {
        if (host.wait) waitEnded(host, host.wait, view.status, data.reason || "");
      }
      gateBusy(false);
    },
  };

  // --- work in slices: building the servers, applying events ----------------------------

  const toBuild = (job.hosts || []).slice(); // the job's servers not built yet
  let built = 0;
  const queue = []; // events handed over by the store, in seq order, not applied yet
  let queueAt = 0;
  let pumpQueued = false;
  const slices = { count: 0, most: 0 }; // slices that applied events; most in one (tests)
  const pumpChannel = new MessageChannel(); // a task at once, unlike a nested setTimeout
  pumpChannel.port1.onmessage = pump;

  /** The store's events, in seq order: applied in slices (see pump). */
  function applyEvents(events) {
    for (const event of events) queue.push(event);
    schedulePump();
  }

  function schedulePump() {
    if (pumpQueued) return;
    pumpQueued = true;
    pumpChannel.port2.postMessage(null);
  }

  /** One slice of the page's work: the servers' rows and logs first, then events. */
  function pump() {
    pumpQueued = false;
    const deadline = performance.now() + SLICE_MS;
    while (built < toBuild.length && performance.now() < deadline) {
      const host = toBuild[built];
      built += 1;
      ensureHost(host.name, host.batch);
    }
    let count = 0;
    if (built === toBuild.length) {
      while (queueAt < queue.length && count < SLICE_EVENTS &&
             (count === 0 || performance.now() < deadline)) {
        applyEvent(queue[queueAt]);
        queueAt += 1;
        count += 1;
      }
    }
    if (count) {
      appliedUpTo = queue[queueAt - 1].seq;
      if (queueAt === queue.length) {
        queue.length = 0;
        queueAt = 0;
      } else if (queueAt >= 4096) {
        queue.splice(0, queueAt);
        queueAt = 0;
      }
      slices.count += 1;
      slices.most = Math.max(slices.most, count);
      headerDirty = true;
      health.progress();
    }
    scheduleFlush();
    if (built < toBuild.length || queueAt < queue.length) schedulePump();
  }

  function applyEvent(event) {
    try {
      if (rollout.apply(event)) rolloutDirty = true;
    } catch (err) {
      console.error("cannot apply event to the rollout", event, err);
    }
    const handler = handlers[event.type];
    if (!handler) return;
    try {
      handler(event, event.data || {});
    } catch (err) {
      console.error("cannot apply event", event, err);
    }
  }

  // --- rendering (once per frame) -------------------------------------------------------

  let renderedAt = 0; // when flush last rendered

  /** Many events still to apply, and the DOM rendered not long ago: render later. */
  function catchingUp() {
    return queue.length - queueAt > CATCH_UP_EVENTS &&
      performance.now() - renderedAt < CATCH_UP_MS;
  }

  let flushFrame = 0; // the frame asked for ...
  let flushTimer = 0; // ... and the timer in case none comes: the one that runs cancels the other

  function scheduleFlush() {
    if (flushQueued) return;
    flushQueued = true;
    flushFrame = requestAnimationFrame(flush);
    flushTimer = setTimeout(flush, 250); // background tabs get no animation frames
  }

  /** One frame's DOM work. The logs first: they read their scroll positions before
   * anything else is written (the page is still laid out then). A frame renders at most
   * FRAME_HOSTS servers and moves at most FRAME_MOVES rows: what a thousand servers
   * starting or finishing at once change is spread over a few frames (each changed row
   * costs the browser style and layout work). data-applied-seq says `appliedUpTo` once
   * the DOM shows all of it. */
  function flush() {
    if (!flushQueued) return;
    flushQueued = false;
    // Else a frame asked for before a timer's flush would run flush again in the frame
    // after, as many times as asked: each one laying out what the one before wrote.
    cancelAnimationFrame(flushFrame);
    clearTimeout(flushTimer);
    if (catchingUp()) return; // the slices call again
    renderedAt = performance.now();
    const near = nearQueued ? measureNear() : null; // reads, before any write
    logs.render();
    let rendered = 0;
    for (const host of dirtyHosts) {
      if (rendered === FRAME_HOSTS) break;
      renderHost(host);
      dirtyHosts.delete(host);
      rendered += 1;
    }
    if (orderDirty) orderDirty = !renderOrder(FRAME_MOVES);
    if (headerDirty) renderHeader();
    headerDirty = false;
    if (rolloutDirty) renderRollout();
    rolloutDirty = false;
    if (near) buildNear(near); // writes, last
    if (dirtyHosts.size || orderDirty) {
      scheduleFlush();
    } else if (document.body.dataset.appliedSeq !== String(appliedUpTo)) {
      document.body.dataset.appliedSeq = String(appliedUpTo);
    }
  }

  function renderHost(host) {
    const status = host.status;
    if (host.row.dataset.status !== status) host.row.dataset.status = status;
    setClass(host.statusBadge, "badge status-" + status);
    setText(host.statusBadge, status);
    if (host.built) {
      setClass(host.logBadge, "badge status-" + status);
      setText(host.logBadge, status);
    }
    renderReconnecting(host);
    setText(host.cells.batch, host.batch === null ? "" : String(host.batch + 1));
    let step = "";
    if (host.wait && !host.wait.ended && status === "running") {
      step = waitWords(host.wait);
    } else if (status === "running") {
      step = host.step + (host.phase === "on_failure" ? " (on failure)" : "");
    } else if (FINISHED.has(status)) {
      step = host.failedStep || (status === "interrupted" ? host.step : "");
      if (host.phase === "health" && host.stepStartTs !== null) step = host.step + " (soak check)";
    } else if (status === "pending" && rollout.gate && host.batch === rollout.gate.next) {
      step = "waiting at the gate";
    }
    setText(host.cells.step, step);
    renderWait(host);
    setText(host.cells.duration, formatDuration(host.duration));
    setText(host.cells.version, versionText(host));
    const versionTitle = host.versionState === "unverified" ? "A step ran on " +
      host.name + " after it reported this version: its build may differ now." : "";
    if (host.cells.version.title !== versionTitle) host.cells.version.title = versionTitle;
    setText(host.cells.reason, status === "succeeded" ? ""
      : reasonText(host.reason, host.exitCode, host.signal) +
        (host.onFailure === "succeeded" && !host.reason.includes("rolled back to")
          ? "; on_failure steps succeeded" : ""));
    renderTimeline(host);
  }

  /** The wait panel above the server's log: state, countdown and the probe's last output. */
  function renderWait(host) {
    if (!host.built) return; // the panel is in the log's section
    const wait = host.wait;
    setHidden(host.waitPanel, !wait);
    if (!wait) return;
    host.waitPanel.dataset.state = wait.ended ? wait.ended.status : "waiting";
    host.waitState.replaceChildren(el("strong", "wait-step", wait.step), " ");
    if (wait.ended) {
      host.waitState.append(el("span", "wait-end", wait.ended.words));
    } else {
      const every = wait.every ? " every " + seconds(wait.every) : "";
      host.waitState.append("waits for " + wait.until + every +
        (wait.attempt ? " · probe " + wait.attempt + (wait.matched ? " matched" : " did not match")
          : " · first probe running"));
      const left = secondsLeft(wait);
      if (left !== null) {
        host.waitCountdown.textContent = R.countdown(left) + " left";
        host.waitState.append(" · ", host.waitCountdown, ", then " +
          (wait.onTimeout === "proceed" ? "it goes on" : "the step fails"));
      }
    }
    host.waitOutput.textContent = wait.output.length ? wait.output.join("\n")
      : wait.attempt ? "(the probe printed nothing)" : "";
    host.waitOutput.hidden = !wait.attempt;
  }

  /** "reconnecting to <server>…" next to the server's status, in its row and log title. */
  function renderReconnecting(host) {
    const state = host.reconnecting;
    const flag = state ? "true" : "false";
    if (host.row.dataset.reconnecting !== flag) host.row.dataset.reconnecting = flag;
    let title = "";
    if (state) {
      title = "The SSH connection to " + host.name + " dropped" +
        (state.reason ? " (" + state.reason + ")" : "") + "; its step goes on running on " +
        "the server while the console reconnects" +
        (state.timeout !== null ? " for up to " + formatDuration(state.timeout) : "") + ".";
    }
    for (const badge of host.built ? [host.reconnectBadge, host.logReconnect]
      : [host.reconnectBadge]) {
      setHidden(badge, !state);
      setText(badge, state ? "reconnecting to " + host.name + "…" : "");
      if (badge.title !== title) badge.title = title;
    }
  }

  /** The server's steps as a bar (widths by duration, the running step by its time so
   * far) and as labelled chips; the bar's label says it all in words. Elements are kept
   * and changed in place: a step finishing changes one segment and one chip. */
  function renderTimeline(host) {
    const now = Date.now() / 1000;
    const weights = host.timeline.map((item) => item.duration !== null ? item.duration
      : Math.max(0, now - item.startTs));
    const total = weights.reduce((sum, weight) => sum + weight, 0);
    const segments = host.bar.children;
    const chips = host.built ? host.chips.children : null;
    const described = [];
    host.timeline.forEach((item, index) => {
      const duration = item.duration === null ? "" : formatDuration(item.duration);
      const text = item.step + (item.phase === "on_failure" ? " (on failure)" : "") + ": " +
        item.status + (duration ? ", " + duration : "");
      described.push(text);
      const segment = segments[index] || host.bar.appendChild(el("span"));
      setClass(segment, "timeline-segment status-" + item.status);
      const grow = String(total > 0 ? Math.max(weights[index] / total, 0.03) : 1);
      if (segment.style.flexGrow !== grow) segment.style.flexGrow = grow;
      if (segment.title !== text) segment.title = text;
      if (!chips) return; // the chips are in the log's section, not built yet
      const chip = chips[index] || host.chips.appendChild(el("li"));
      setClass(chip, "step-chip-live badge status-" + item.status);
      setText(chip, item.step + (duration ? " " + duration : ""));
      if (chip.title !== text) chip.title = text;
    });
    while (segments.length > host.timeline.length) segments[segments.length - 1].remove();
    while (chips && chips.length > host.timeline.length) chips[chips.length - 1].remove();
    setAttr(host.bar, "role", "img");
    setAttr(host.bar, "aria-label", described.length
      ? "Steps of " + host.name + ": " + described.join("; ") : "No steps yet");
  }

  /** Failed servers first (when asked), and the status filter. Only the rows out of
   * place move, at most `moves` of them (the first ones): a server that starts or fails
   * moves alone, not the whole table. Returns whether every row is in place. */
  function renderOrder(moves = Infinity) {
    const filter = els.hostFilter ? els.hostFilter.value : "";
    const failedFirst = !els.failedFirst || els.failedFirst.checked;
    const ordered = Array.from(hosts.values());
    if (failedFirst) {
      ordered.sort((a, b) => (FAILED_FIRST[a.status] ?? 9) - (FAILED_FIRST[b.status] ?? 9) ||
        a.position - b.position);
    }
    const placed = placeRows(ordered.map((host) => host.row), moves);
    const counts = {};
    const sections = [];
    for (const host of hosts.values()) {
      counts[host.status] = (counts[host.status] || 0) + 1;
      const shown = !filter || host.status === filter;
      setHidden(host.row, !shown);
      const section = selected === null ? shown : host.name === selected;
      setHidden(host.section, !section);
      if (section) sections.push(host);
    }
    if (sections.length !== shownHosts.length ||
        sections.some((host, i) => host !== shownHosts[i])) {
      shownHosts = sections;
      scheduleNear();
    }
    if (els.hostFilter) {
      for (const option of els.hostFilter.options) {
        const n = option.value ? counts[option.value] || 0 : hosts.size;
        setText(option, (option.value || "all servers") + " (" + n + ")");
      }
    }
    return placed;
  }

  /** Put the table's rows in the order of `rows` (every row of it), moving the fewest:
   * those outside a longest run already in order (a longest increasing subsequence), at
   * most `moves` of them, top first. Returns whether all are in place. */
  function placeRows(rows, moves) {
    const body = els.hostsBody;
    const current = Array.from(body.children);
    if (current.length === rows.length && rows.every((row, i) => current[i] === row)) return true;
    const wanted = new Map(rows.map((row, i) => [row, i]));
    // Patience sorting over the rows' wanted places, in their current order.
    const tails = []; // tails[k]: index in `current` ending the best run of length k+1
    const before = new Array(current.length).fill(-1);
    current.forEach((row, i) => {
      const place = wanted.has(row) ? wanted.get(row) : -1;
      if (place < 0) return;
      let lo = 0;
      let hi = tails.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (wanted.get(current[tails[mid]]) < place) lo = mid + 1;
        else hi = mid;
      }
      if (lo > 0) before[i] = tails[lo - 1];
      tails[lo] = i;
    });
    const stay = new Set();
    for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = before[i]) {
      stay.add(current[i]);
    }
    let previous = null;
    let left = moves;
    for (const row of rows) {
      if (!stay.has(row)) {
        if (left === 0) return false;
        body.insertBefore(row, previous ? previous.nextSibling : body.firstChild);
        left -= 1;
      }
      previous = row;
    }
    return true;
  }

  /** One line per console restart that resumed this job, above the summary. */
  function renderRecoveries() {
    if (notices.childElementCount === view.recoveries.length) return;
    const items = view.recoveries.map((recovery) => {
      const item = el("li", "job-notice");
      let text = "Console restarted: resumed on " + recovery.node;
      if (typeof recovery.ts === "number") {
        text += " at " + new Date(recovery.ts * 1000).toLocaleString();
      }
      const names = recovery.servers;
      if (names.length) {
        text += " (" + names.length + " server" + (names.length === 1 ? " was" : "s were") +
          " under way: " + names.slice(0, 8).join(", ") + (names.length > 8 ? ", …" : "") + ")";
      }
      item.textContent = text;
      if (recovery.reason) item.title = recovery.reason;
      return item;
    });
    notices.replaceChildren(...items);
    notices.hidden = items.length === 0;
  }

  function renderHeader() {
    renderRecoveries();
    const status = view.status || "loading…";
    els.status.textContent = status;
    els.status.className = "badge badge-large status-" + (view.status || "loading");

    const running = view.finished ? false : view.running;
    if (els.cancel) els.cancel.hidden = !running;
    if (view.status) document.title = (view.status === "paused" ? "Paused · " : "") + baseTitle;
    if (els.rerun) renderRerunButton();

    // The bar is the work done: a server that ran to its end counts whole, one stopped
    // part-way by its steps, a skipped one not at all.
    let work = 0;
    const counts = {};
    const steps = Math.max(1, view.steps.length);
    for (const host of hosts.values()) {
      counts[host.status] = (counts[host.status] || 0) + 1;
      if (host.status === "succeeded" || host.status === "failed") {
        work += 1;
      } else if (host.status !== "skipped" && host.status !== "pending") {
        work += Math.min(host.status === "running" ? 0.99 : 1, host.doneSteps / steps);
      }
    }
    const total = hosts.size;
    els.progress.max = Math.max(total, 1);
    els.progress.value = work;
    els.progress.setAttribute("aria-valuemax", String(total));
    els.progress.setAttribute("aria-valuenow", String(Math.round(work)));
    let text = progressText(counts, total);
    if (!view.finished) text += " · " + (total ? Math.round((100 * work) / total) : 0) + "%";
    els.progressText.textContent = text;
    renderEta();

    if (view.batches.length > 1) {
      let text;
      const count = view.batches.length;
      if (view.finished) {
        const ran = view.batch === null ? 0 : view.batch + 1;
        text = "Ran " + ran + " of " + count + " batches";
      } else if (rollout.gate) {
        text = "Batch " + (rollout.gate.batch + 1) + " of " + count + " done; paused at the " +
          "gate before batch " + (rollout.gate.next + 1);
      } else if (view.batch === null) {
        text = count + " batches; waiting for the first";
      } else {
        const names = view.batchServers || [];
        const shown = names.slice(0, 8).join(", ") + (names.length > 8 ? ", …" : "");
        text = "Batch " + (view.batch + 1) + " of " + count + " running (" + names.length +
          " server" + (names.length === 1 ? "" : "s") + ": " + shown + ")";
      }
      els.batchInfo.textContent = text;
      els.batchInfo.hidden = false;
    } else {
      els.batchInfo.hidden = true;
    }

    if (view.finished) {
      const data = view.finished;
      const counts = Object.entries(data.counts || {})
        .map(([name, n]) => n + " " + name).join(", ");
      let text = "Finished: " + (data.status || "?");
      const duration = formatDuration(data.duration);
      if (duration) text += " in " + duration;
      if (counts) text += " — " + counts;
      if (data.reason) text += ". Reason: " + data.reason;
      els.summary.textContent = text;
      els.summary.hidden = false;
    }
  }

  // --- the rollout: segments, the gate, a soak, its history -------------------------------

  const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

  function renderRollout() {
    if (els.segments) R.renderSegments(els.segments, rollout.segments(), false);
    renderGate();
    renderSoak();
    renderRolloutHistory();
  }

  /** Paused at a manual gate: what succeeded, what is next, and who may act. */
  function renderGate() {
    if (!els.gatePanel) return;
    const gate = view.finished ? null : rollout.gate;
    els.gatePanel.hidden = !gate;
    if (!gate) return;
    const count = rollout.count;
    const done = rollout.serversOf(gate.batch);
    const next = rollout.serversOf(gate.next);
    const nextName = R.batchName(gate.next, count);
    els.gateTitle.textContent = "Paused after " + R.batchPhrase(gate.batch, count);
    els.gateText.textContent = capital(R.batchPhrase(gate.batch, count)) + " succeeded" +
      (done.length ? " (" + R.listed(done) + ")" : "") + ". Next: " + nextName +
      (next.length ? " (" + R.listed(next) + ")" : "") + ".";
    if (els.promote) els.promote.textContent = "Promote: start " + nextName;
    if (els.gateViewer) {
      els.gateViewer.textContent = "An operator can promote it (start " + nextName +
        ") or abort it (the servers not started are skipped).";
    }
  }

  /** "Soaking the canary: health checks again in 45 s", then its health checks. */
  function renderSoak() {
    if (!els.rolloutNow) return;
    const soak = view.finished ? null : rollout.activeSoak();
    els.rolloutNow.hidden = !soak;
    if (!soak) return;
    const phrase = capital("soaking " + R.batchPhrase(soak.batch, rollout.count));
    const left = typeof soak.until === "number" ? soak.until - Date.now() / 1000 : null;
    els.rolloutNow.replaceChildren(phrase + ": ");
    if (left !== null && left > 0) {
      els.rolloutNow.append("health checks again in ",
        el("span", "soak-countdown", R.countdown(left)));
    } else {
      els.rolloutNow.append("running its health checks again");
    }
  }

  /** Pauses, promotions, aborts and soaks, oldest first, with who and when. */
  function renderRolloutHistory() {
    if (!els.rolloutHistory) return;
    const entries = rollout.log;
    if (els.rolloutHistory.childElementCount === entries.length) return;
    els.rolloutHistory.replaceChildren(...entries.map((entry) => {
      const item = el("li", "rollout-entry");
      item.dataset.kind = entry.kind;
      if (typeof entry.ts === "number") {
        const time = el("time", "muted", new Date(entry.ts * 1000).toLocaleTimeString());
        time.dateTime = new Date(entry.ts * 1000).toISOString();
        item.append(time, " ");
      }
      item.append(R.gateWords(entry, rollout.count));
      return item;
    }));
    els.rolloutHistory.hidden = entries.length === 0;
  }

  /** "Asking the server to promote…" goes when the decision shows; an error stays. */
  function clearGateNote() {
    if (els.message.dataset.kind === "gate") els.message.textContent = "";
  }

  /** The gate buttons are off while a decision is on its way. */
  function gateBusy(busy) {
    for (const button of [els.promote, els.abort]) if (button) button.disabled = busy;
  }

  async function gateAction(action) {
    const ask = action === "promote" ? R.askPromote : R.askAbort;
    if (!rollout.gate || !(await ask(jobId, rollout))) return;
    gateBusy(true);
    els.message.dataset.kind = "gate";
    els.message.textContent = action === "promote" ? "Asking the server to promote…"
      : "Asking the server to abort…";
    const ack = await R.act(action, jobId);
    if (!ack.ok) {
      els.message.dataset.kind = "error";
      els.message.textContent = (ack.error && ack.error.message) ||
        (action === "promote" ? "Promote failed." : "Abort failed.");
      gateBusy(false);
    } else if (rollout.gate) {
      // The buttons go when job_resumed / job_aborted arrives.
      els.message.textContent = ack.message || (action === "promote" ? "Promoted." : "Aborted.");
    } else {
      els.message.textContent = "";
    }
  }

  if (els.promote) els.promote.addEventListener("click", () => gateAction("promote"));
  if (els.abort) els.abort.addEventListener("click", () => gateAction("abort"));

  // --- ETA ------------------------------------------------------------------------------

  function renderEta() {
    if (!els.eta) return;
    const guess = view.running && !view.finished && view.status !== "paused" ? J.estimate({
      steps: view.steps,
      stepTotals: view.stepTotals,
      usual,
      hosts: hosts.values(),
      parallel: Number((job.strategy || {}).parallel) || hosts.size || 1,
      now: Date.now() / 1000,
    }) : null;
    els.eta.hidden = !guess;
    if (guess) {
      els.eta.textContent = "About " + (formatDuration(guess.seconds) || "0 s") + " left (" +
        guess.basis + ")";
    }
  }

  setInterval(() => {
    if (view.running && !view.finished) renderEta();
    scheduleNear(); // the logs above the view may have grown or shrunk
    // Countdowns: waits under way, and a soak.
    for (const host of waiting) {
      if (host.wait.note) {
        host.wait.note.text = probeLine(host.wait);
        host.log.touch(host.wait.note);
      }
      dirtyHosts.add(host);
    }
    if (rollout.activeSoak() && !view.finished) rolloutDirty = true;
    if (waiting.size || rolloutDirty) scheduleFlush();
  }, 1000);

  // --- log selection ----------------------------------------------------------------------

  function select(name) {
    selected = hosts.has(name) ? name : null;
    for (const host of hosts.values()) {
      host.row.classList.toggle("selected", host.name === selected);
      setAttr(host.button, "aria-pressed", String(host.name === selected));
    }
    renderOrder();
    els.showAll.setAttribute("aria-pressed", String(selected === null));
    els.selection.textContent = "Showing " + (selected === null ? "all servers" : selected);
    els.showAll.hidden = selected === null;
    if (selected !== null) {
      const host = hosts.get(selected);
      buildSection(host);
      host.section.scrollIntoView({ block: "nearest" });
      logs.mark(host.log);
    }
  }

  els.hostsBody.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof Element)) return;
    if (target.closest("a") || (target.closest("button") && !target.closest(".show-log"))) return;
    const row = target.closest("tr[data-host]");
    if (row) select(row.dataset.host);
  });
  els.showAll.addEventListener("click", () => select(null));
  for (const control of [els.hostFilter, els.failedFirst]) {
    if (control) {
      control.addEventListener("change", () => {
        orderDirty = !renderOrder(FRAME_MOVES);
        if (orderDirty) scheduleFlush();
      });
    }
  }
  if (els.follow) {
    els.follow.addEventListener("change", () => {
      if (!els.follow.checked) return;
      for (const host of hosts.values()) {
        if (host.built && !host.section.hidden) host.log.scrollToEnd();
      }
    });
  }

  // --- search, stream health ------------------------------------------------------------

  J.searchPanel({
    jobId,
    logs,
    hostLog: (name) => (hosts.has(name) ? hosts.get(name).log : null),
    selected: () => selected,
    select,
  });

  const store = new P.EventStore({
    jobId,
    apply: applyEvents,
    fetchQuery: "&max_lines=" + REPLAY_LINES,
    onError: (err) => console.error("job " + jobId + " events:", err),
  });
  const health = J.streamHealth({
    element: els.health,
    store,
    live: () => view.running && !view.finished,
  });

  // --- cancel and re-run ------------------------------------------------------------------

  /** "cancelling job #N" while the cancel is under way; it goes when the job ends. */
  function cancelNote(text) {
    els.message.dataset.kind = "cancel";
    els.message.textContent = view.finished ? "" : text;
  }

  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
  const jobWhat = job.kind === "adhoc" ? "the ad-hoc command" : "the runbook " + job.runbook;

  /** The servers a re-run would run (those that did not succeed, by status) and the
   * words for it: "Re-run failed" only when something failed; a cancelled job's servers
   * that never finished "Run again". */
  function rerunChoice() {
    const names = [];
    const counts = {};
    for (const host of hosts.values()) {
      if (host.status === "succeeded") continue;
      names.push(host.name);
      counts[host.status] = (counts[host.status] || 0) + 1;
    }
    const failed = counts.failed || 0;
    const n = names.length;
    let label = n === hosts.size ? "Run again" : "Run again on unfinished servers";
    let confirm = "Run again on " + plural(n, "server");
    if (failed && failed === n) {
      label = "Re-run failed servers";
      confirm = "Re-run " + plural(n, "failed server");
    } else if (failed) {
      label = "Re-run failed and unfinished servers";
      confirm = "Re-run " + plural(n, "server");
    }
    const why = Object.entries(counts).map(([status, count]) => count + " " + status).join(", ");
    return { names, why, label, confirm };
  }

  function renderRerunButton() {
    const choice = view.finished && view.status !== "succeeded" ? rerunChoice() : null;
    els.rerun.hidden = !choice || choice.names.length === 0;
    if (choice) els.rerun.textContent = choice.label;
  }

  function shownParams() {
    if (job.kind === "adhoc") return "";
    const text = Object.entries(job.params || {}).map(([k, v]) => k + "=" + v).join(" ");
    return text ? " (" + text + ")" : "";
  }

  function askToCancel() {
    const statuses = Array.from(hosts.values(), (host) => host.status);
    const running = statuses.filter((status) => status === "running").length;
    const waiting = statuses.filter((status) => status === "pending").length;
    const lines = ["Job #" + jobId + " runs " + jobWhat + shownParams() + " on " +
      plural(hosts.size, "server") + ". Cancelling stops it now:"];
    if (running) {
      lines.push("The steps running on " + plural(running, "server") + " are stopped on " +
        "the servers, mid-step.");
    }
    if (waiting) {
      lines.push(plural(waiting, "server") + " not started yet will not start: they end " +
        "cancelled.");
    }
    lines.push("Servers that finished keep their result. Afterwards you can run the job " +
      "again on the servers that did not succeed.");
    return window.PatchbayConfirm.ask({
      title: "Cancel job #" + jobId + "?",
      lines,
      confirm: "Cancel job #" + jobId,
      dismiss: "Keep it running",
      danger: true,
    });
  }

  function askToRerun(choice) {
    const names = choice.names;
    return window.PatchbayConfirm.ask({
      title: choice.label + ": job #" + jobId + "?",
      lines: [
        "Starts a new job running " + jobWhat + shownParams() + " with the same " +
          "strategy on the " + plural(names.length, "server") + " of job #" + jobId +
          " that did not succeed (" + choice.why + "): " + names.slice(0, 12).join(", ") +
          (names.length > 12 ? ", …" : "") + ".",
        "Servers that succeeded are left alone.",
      ],
      confirm: choice.confirm,
    });
  }

  if (els.cancel) {
    els.cancel.addEventListener("click", async () => {
      if (!(await askToCancel())) return;
      els.cancel.disabled = true;
      cancelNote("Asking the server to cancel…");
      const ack = await P.request("job:cancel", { job_id: jobId });
      if (ack.ok) {
        cancelNote(ack.message || "Cancel requested.");
        if (!ack.cancelled) els.cancel.disabled = false;
      } else {
        els.message.textContent = (ack.error && ack.error.message) || "Cancel failed.";
        els.cancel.disabled = false;
      }
    });
  }

  if (els.rerun) {
    els.rerun.addEventListener("click", async () => {
      if (!(await askToRerun(rerunChoice()))) return;
      els.rerun.disabled = true;
      els.message.textContent = "Starting a re-run of the servers that did not succeed…";
      const ack = await P.request("job:rerun", { job_id: jobId });
      if (ack.ok) {
        window.location.href = P.root + "/jobs/" + ack.job_id;
      } else {
        els.message.textContent = (ack.error && ack.error.message) || "Re-run failed.";
        els.rerun.disabled = false;
      }
    });
  }

  // --- wiring ---------------------------------------------------------------------------

  document.body.dataset.appliedSeq = "0";
  pump(); // the first servers now, the others in the next slices

  P.onConnect(async () => {
    // `applied` is contiguous: everything after it is replayed, duplicates are ignored.
    const ack = await P.request("job:subscribe", {
      job_id: jobId, after_seq: store.applied, replay_lines: REPLAY_LINES,
    });
    if (!ack.ok) {
      els.message.textContent = "Cannot follow this job: " +
        ((ack.error && ack.error.message) || "unknown error");
      return;
    }
    if (ack.job) {
      if (!view.status) {
        view.running = ack.job.status === "running" || ack.job.status === "paused";
        headerDirty = true;
        scheduleFlush();
      }
      health.subscribed(ack.job.last_seq);
      store.noteKnown(ack.job.last_seq);
    }
  });
  P.onJobEvents((payload) => {
    if (Number(payload.job_id) !== jobId) return;
    if (!payload.replay) health.received(payload.events);
    store.add(payload.events);
  });

  window.patchbay = Object.freeze({
    jobId,
    store,
    appliedSeq: () => store.applied,
    renderedSeq: () => appliedUpTo,
    slices: () => ({ ...slices }),
    logStats: () => logs.stats(),
    select,
  });
})();
