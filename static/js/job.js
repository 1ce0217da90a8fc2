/*
 * The job page: builds the whole view (host table, progress, logs) from the job's
 * event log only, so a reload, a reconnect or a second tab show exactly the same thing.
 *
 * Events go through Patchbay.EventStore (seq order, exactly once); the view model is
 * updated synchronously and the DOM once per animation frame.
 * For tests: window.patchbay = {store, appliedSeq(), renderedSeq(), lineCount()} and
 * document.body.dataset.appliedSeq (the seq the DOM shows).
 */
(function () {
  "use strict";

  const P = window.Patchbay;
  const page = document.getElementById("job-page");
  if (!P || !page) return;

  const jobId = Number(page.dataset.jobId);
  const job = readJSON("job-data", {});
  const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "interrupted"]);

  const els = {
    status: document.getElementById("job-status"),
    cancel: document.getElementById("cancel-button"),
    rerun: document.getElementById("rerun-button"),
    message: document.getElementById("job-message"),
    progress: document.getElementById("progress"),
    progressText: document.getElementById("progress-text"),
    batchInfo: document.getElementById("batch-info"),
    summary: document.getElementById("job-summary"),
    hostsBody: document.querySelector("#hosts tbody"),
    logs: document.getElementById("logs"),
    showAll: document.getElementById("show-all-logs"),
    selection: document.getElementById("log-selection"),
    follow: document.getElementById("follow-logs"),
  };

  // --- view model ----------------------------------------------------------------------

  const hosts = new Map(); // name -> host view (model + its elements)
  const view = {
    status: null, // from job_started / job_finished only
    running: job.status === "running", // Cancel button visibility
    steps: readJSON("steps-data", []),
    batches: [],
    batch: null,
    finished: null, // job_finished data
  };
  let selected = null;
  let renderedSeq = 0;
  let renderedLines = 0;
  let appliedUpTo = 0;
  let headerDirty = true;
  const dirtyHosts = new Set();
  const hostsWithOutput = new Set();
  let flushQueued = false;

  function readJSON(id, fallback) {
    const node = document.getElementById(id);
    if (!node) return fallback;
    try {
      return JSON.parse(node.textContent);
    } catch (err) {
      console.error("bad JSON in #" + id, err);
      return fallback;
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function formatDuration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
    if (seconds < 10) return seconds.toFixed(1) + " s";
    const total = Math.round(seconds);
    if (total < 60) return total + " s";
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    return m + " min " + String(s).padStart(2, "0") + " s";
  }

  function reasonText(reason, exitCode) {
    let text = reason || "";
    if (exitCode !== null && exitCode !== undefined && !text.includes("code " + exitCode)) {
      text = text ? text + " (exit code " + exitCode + ")" : "exit code " + exitCode;
    }
    return text;
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
      batch: Number.isInteger(batch) ? batch : null,
      status: "pending",
      step: "",
      phase: "steps",
      failedStep: null,
      exitCode: null,
      reason: "",
      duration: null,
      version: "",
      pinned: true, // log scrolled to its end: keep following new lines
      fragment: null,
      headers: new Map(), // "phase:index" -> open step header element
    };

    const row = el("tr");
    row.dataset.host = name;
    row.dataset.status = "pending";
    const nameCell = el("th", "host-name", name);
    nameCell.scope = "row";
    host.cells = {
      batch: el("td", "host-batch"),
      status: el("td", "host-status"),
      step: el("td", "host-step"),
      duration: el("td", "host-duration"),
      version: el("td", "host-version"),
      reason: el("td", "host-reason"),
    };
    host.statusBadge = el("span", "badge status-pending", "pending");
    host.cells.status.append(host.statusBadge);
    const logCell = el("td", "host-actions");
    host.button = el("button", "button button-small show-log", "Show log");
    host.button.type = "button";
    host.button.dataset.host = name;
    host.button.setAttribute("aria-controls", logId);
    host.button.setAttribute("aria-pressed", "false");
    logCell.append(host.button);
    row.append(nameCell, host.cells.batch, host.cells.status, host.cells.step,
      host.cells.duration, host.cells.version, host.cells.reason, logCell);
    host.row = row;
    els.hostsBody.append(row);

    const section = el("section", "log-section");
    section.id = logId;
    section.dataset.host = name;
    const heading = el("h3", "log-title");
    host.logBadge = el("span", "badge status-pending", "pending");
    heading.append(el("span", "log-host", name), " ", host.logBadge);
    const log = el("div", "host-log");
    log.dataset.host = name;
    log.setAttribute("role", "log");
    // role=log is polite by default; a chatty log must not flood screen readers.
    log.setAttribute("aria-live", "off");
    log.setAttribute("aria-label", "Log of " + name);
    log.tabIndex = 0;
    log.addEventListener("scroll", () => {
      host.pinned = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    }, { passive: true });
    section.append(heading, log);
    if (selected !== null && selected !== name) section.hidden = true;
    host.section = section;
    host.log = log;
    els.logs.append(section);

    hosts.set(name, host);
    dirtyHosts.add(host);
    headerDirty = true;
    return host;
  }

  function logFragment(host) {
    if (!host.fragment) host.fragment = document.createDocumentFragment();
    hostsWithOutput.add(host);
    return host.fragment;
  }

  function stepKey(data) {
    return (data.phase || "steps") + ":" + data.index + ":" + data.step;
  }

  function setStatus(host, status) {
    host.status = status;
    dirtyHosts.add(host);
    headerDirty = true;
  }

  // --- applying events (model + detached DOM only) --------------------------------------

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
      logFragment(host).append(
        el("div", "log-note", "connecting to " + (data.address || event.host)));
    },

    step_started(event, data) {
      const host = ensureHost(event.host);
      host.step = data.step || "";
      host.phase = data.phase || "steps";
      dirtyHosts.add(host);

      const header = el("div", "step-header");
      header.dataset.step = host.step;
      header.dataset.phase = host.phase;
      header.dataset.status = "running";
      const total = host.phase === "steps" && view.steps.length ? "/" + view.steps.length : "";
      const label = host.phase === "on_failure" ? "on failure " + (data.index + 1)
        : "step " + (data.index + 1) + total;
      header.append(
        el("span", "step-label", label), " ",
        el("span", "step-name", host.step), " ",
        el("span", "step-result", "running…"));
      if (data.command) {
        const details = el("details", "step-command");
        details.append(el("summary", null, "command"), el("pre", null, data.command));
        header.append(details);
      }
      host.headers.set(stepKey(data), header);
      logFragment(host).append(header);
    },

    output(event, data) {
      const host = ensureHost(event.host);
      const stream = data.stream === "stderr" ? "stderr" : "stdout";
      const fragment = logFragment(host);
      const lines = Array.isArray(data.lines) ? data.lines : [];
      for (const line of lines) {
        fragment.append(el("div", "line " + stream, line));
      }
      host.pendingLines = (host.pendingLines || 0) + lines.length;
    },

    step_finished(event, data) {
      const host = ensureHost(event.host);
      const key = stepKey(data);
      let header = host.headers.get(key);
      if (!header) {
        // Should not happen (step_started always comes first); keep the log readable.
        header = el("div", "step-header");
        header.append(el("span", "step-name", data.step || ""), " ",
          el("span", "step-result"));
        logFragment(host).append(header);
      }
      host.headers.delete(key);
      const status = data.status || "failed";
      header.dataset.status = status;
      const parts = [status];
      if (data.exit_code !== null && data.exit_code !== undefined) {
        parts.push("exit code " + data.exit_code);
      }
      const duration = formatDuration(data.duration);
      if (duration) parts.push(duration);
      let text = parts.join(" · ");
      if (data.reason && status !== "ok") text += " — " + data.reason;
      header.querySelector(".step-result").textContent = text;
    },

    host_finished(event, data) {
      const host = ensureHost(event.host);
      host.failedStep = data.failed_step || null;
      host.exitCode = data.exit_code ?? null;
      host.reason = data.reason || "";
      if (typeof data.duration === "number") host.duration = data.duration;
      else if (host.startTs) host.duration = Math.max(0, event.ts - host.startTs);
      if (data.facts && data.facts.version) host.version = String(data.facts.version);
      const status = data.status || "failed";
      setStatus(host, status);
      const note = el("div", "log-note log-note-end");
      note.dataset.status = status;
      let text = "finished: " + status;
      const reason = reasonText(host.reason, host.exitCode);
      if (reason) text += " — " + reason;
      const duration = formatDuration(host.duration);
      if (duration) text += " (" + duration + ")";
      note.textContent = text;
      logFragment(host).append(note);
    },

    job_finished(event, data) {
      view.status = data.status || "failed";
      view.running = false;
      view.finished = data;
    },
  };

  function applyEvents(events, upTo) {
    for (const event of events) {
      const handler = handlers[event.type];
      if (!handler) continue;
      try {
        handler(event, event.data || {});
      } catch (err) {
        console.error("cannot apply event", event, err);
      }
    }
    appliedUpTo = upTo;
    headerDirty = true;
    scheduleFlush();
  }

  // --- rendering (once per frame) -------------------------------------------------------

  function scheduleFlush() {
    if (flushQueued) return;
    flushQueued = true;
    requestAnimationFrame(flush);
    // Background tabs get no animation frames; keep them current all the same.
    setTimeout(flush, 250);
  }

  function flush() {
    if (!flushQueued) return;
    flushQueued = false;

    for (const host of dirtyHosts) renderHost(host);
    dirtyHosts.clear();

    const follow = !els.follow || els.follow.checked;
    const toScroll = [];
    for (const host of hostsWithOutput) {
      if (!host.fragment) continue;
      host.log.append(host.fragment);
      host.fragment = null;
      renderedLines += host.pendingLines || 0;
      host.pendingLines = 0;
      if (follow && host.pinned && !host.section.hidden) toScroll.push(host.log);
    }
    hostsWithOutput.clear();
    for (const log of toScroll) log.scrollTop = log.scrollHeight;

    if (headerDirty) renderHeader();
    headerDirty = false;

    renderedSeq = appliedUpTo;
    document.body.dataset.appliedSeq = String(renderedSeq);
  }

  function renderHost(host) {
    const status = host.status;
    host.row.dataset.status = status;
    host.statusBadge.className = "badge status-" + status;
    host.statusBadge.textContent = status;
    host.logBadge.className = "badge status-" + status;
    host.logBadge.textContent = status;
    host.cells.batch.textContent = host.batch === null ? "" : String(host.batch + 1);
    let step = "";
    if (status === "running") {
      step = host.step + (host.phase === "on_failure" ? " (on failure)" : "");
    } else if (FINISHED.has(status)) {
      step = host.failedStep || (status === "interrupted" ? host.step : "");
    }
    host.cells.step.textContent = step;
    host.cells.duration.textContent = formatDuration(host.duration);
    host.cells.version.textContent = host.version;
    host.cells.reason.textContent = status === "succeeded" ? ""
      : reasonText(host.reason, host.exitCode);
  }

  function renderHeader() {
    const status = view.status || "loading…";
    els.status.textContent = status;
    els.status.className = "badge badge-large status-" + (view.status || "loading");

    const running = view.finished ? false : view.running;
    if (els.cancel) els.cancel.hidden = !running;
    if (els.rerun) {
      els.rerun.hidden = !(view.finished && view.status !== "succeeded");
    }

    let done = 0;
    for (const host of hosts.values()) if (FINISHED.has(host.status)) done += 1;
    const total = hosts.size;
    els.progress.max = Math.max(total, 1);
    els.progress.value = done;
    els.progress.setAttribute("aria-valuemax", String(total));
    els.progress.setAttribute("aria-valuenow", String(done));
    els.progressText.textContent = done + " / " + total + " servers done";

    if (view.batches.length > 1) {
      let text;
      const count = view.batches.length;
      if (view.finished) {
        const ran = view.batch === null ? 0 : view.batch + 1;
        text = "Ran " + ran + " of " + count + " batches";
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

  // --- log selection ----------------------------------------------------------------------

  function select(name) {
    selected = hosts.has(name) ? name : null;
    for (const host of hosts.values()) {
      const shown = selected === null || host.name === selected;
      host.section.hidden = !shown;
      host.row.classList.toggle("selected", host.name === selected);
      host.button.setAttribute("aria-pressed", String(host.name === selected));
    }
    els.showAll.setAttribute("aria-pressed", String(selected === null));
    els.selection.textContent = selected === null ? "All servers" : "Showing " + selected;
    if (selected !== null) {
      const host = hosts.get(selected);
      host.log.scrollTop = host.log.scrollHeight;
      host.pinned = true;
      host.section.scrollIntoView({ block: "nearest" });
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

  // --- cancel ---------------------------------------------------------------------------

  if (els.cancel) {
    els.cancel.addEventListener("click", async () => {
      els.cancel.disabled = true;
      els.message.textContent = "Asking the server to cancel…";
      const ack = await P.request("job:cancel", { job_id: jobId });
      if (ack.ok) {
        els.message.textContent = ack.message || "Cancel requested.";
        if (!ack.cancelled) els.cancel.disabled = false;
      } else {
        els.message.textContent = (ack.error && ack.error.message) || "Cancel failed.";
        els.cancel.disabled = false;
      }
    });
  }

  // --- re-run ---------------------------------------------------------------------------

  if (els.rerun) {
    els.rerun.addEventListener("click", async () => {
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

  const store = new P.EventStore({
    jobId,
    apply: applyEvents,
    onError: (err) => console.error("job " + jobId + " events:", err),
  });

  for (const host of job.hosts || []) ensureHost(host.name, host.batch);
  document.body.dataset.appliedSeq = "0";
  scheduleFlush();

  P.onConnect(async () => {
    // `applied` is contiguous: everything after it is replayed, duplicates are ignored.
    const ack = await P.request("job:subscribe", { job_id: jobId, after_seq: store.applied });
    if (!ack.ok) {
      els.message.textContent = "Cannot follow this job: " +
        ((ack.error && ack.error.message) || "unknown error");
      return;
    }
    if (ack.job) {
      if (!view.status) {
        view.running = ack.job.status === "running";
        headerDirty = true;
        scheduleFlush();
      }
      store.noteKnown(ack.job.last_seq);
    }
  });
  P.onJobEvents((payload) => {
    if (Number(payload.job_id) === jobId) store.add(payload.events);
  });

  window.patchbay = Object.freeze({
    jobId,
    store,
    appliedSeq: () => store.applied,
    renderedSeq: () => renderedSeq,
    lineCount: () => renderedLines,
    select,
  });
})();
