/*
 * Rollouts in the browser: a job's batches as a row of segments (canary, batch 2, …)
 * with their status, the manual gate's Promote and Abort (each asks first, in
 * confirm.js's dialog), and the words for gate and soak events. Shared by the job page
 * (job.js) and the job rows of the dashboard and the history (jobfeed.js).
 *
 * A Rollout folds a job's events (job_started.batches, batch_started, host statuses,
 * job_paused / job_resumed / job_aborted, soak_started / soak_finished, job_finished)
 * into what each batch is doing, so a reload or a finished job's page shows the same
 * segments as the live page did. Where no events are at hand (a history row) it starts
 * from per-batch status counts and the job's stored status.
 *
 * Exposes window.PatchbayRollout = {Rollout, renderSegments, batchName, gateWords,
 * countdown, askPromote, askAbort, act}.
 */
(function () {
  "use strict";
  const P = window.Patchbay;
  if (!P) return;
  const el = P.el;

  const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "interrupted"]);
  const WORDS = { gate: "waiting at the gate", soaking: "soaking" };

  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");

  /** "canary" for the first of several batches, else "batch N" (N from 1). */
  function batchName(index, count) {
    return index === 0 && count > 1 ? "canary" : "batch " + (index + 1);
  }

  /** "the canary" / "batch 2": a batch named inside a sentence. */
  function batchPhrase(index, count) {
    return index === 0 && count > 1 ? "the canary" : "batch " + (index + 1);
  }

  /** Seconds as a countdown: "42 s", "4 min 05 s", "1 h 02 min" (whole seconds, up;
   * live.js's duration format, which shows tenths below 10 s, fed whole seconds). */
  function countdown(seconds) {
    const total = Math.max(0, Math.ceil(seconds));
    return total < 10 ? total + " s" : window.Patchbay.formatDuration(total);
  }

  function listed(names, most = 8) {
    return names.slice(0, most).join(", ") + (names.length > most ? ", …" : "");
  }

  /** One line of the gate history: "promoted by alice", "aborted at the gate by alice". */
  function gateWords(entry, count) {
    const by = entry.by || "an operator";
    if (entry.kind === "paused") {
      return "paused after " + batchPhrase(entry.batch, count) + ": waiting for an operator";
    }
    if (entry.kind === "promoted") {
      return "promoted by " + by + ": " + batchPhrase(entry.batch, count) + " started";
    }
    if (entry.kind === "aborted") {
      return "aborted at the gate by " + by + " after " + batchPhrase(entry.batch, count);
    }
    if (entry.kind === "soak_started") {
      return "soaking " + batchPhrase(entry.batch, count) + " for " +
        countdown(entry.seconds || 0) + ", then its health checks again";
    }
    if (entry.kind === "soak_finished") {
      return entry.passed
        ? batchPhrase(entry.batch, count) + " passed its health checks after the soak"
        : entry.reason || batchPhrase(entry.batch, count) + " failed its health check after the soak";
    }
    return entry.kind;
  }

  class Rollout {
    constructor() {
      this.batches = []; // [[name, …], …] when the names are known
      this.counts = null; // [{status: n}, …] when only counts are known
      this.batchOf = new Map();
      this.hostStatus = new Map();
      this.started = new Set(); // batch indexes that started
      this.gate = null; // {batch, next} while paused at a manual gate
      this.soaks = new Map(); // batch -> {seconds, until, passed, failed, reason}
      this.log = []; // gate and soak history: {kind, batch, by, ts, …}
      this.jobStatus = null;
    }

    /** The batches by server names (job_started.batches, or the stored hosts). */
    setBatches(batches) {
      this.batches = batches.map((names) => names.map(String));
      this.counts = null;
      this.batchOf.clear();
      this.batches.forEach((names, index) => names.forEach((name) => this.batchOf.set(name, index)));
    }

    /** From stored hosts [{name, batch, status}] (a page's data, GET /api/jobs/<id>). */
    setHosts(hosts) {
      const batches = [];
      for (const host of hosts) {
        const index = Number.isInteger(host.batch) ? host.batch : 0;
        while (batches.length <= index) batches.push([]);
        batches[index].push(host.name);
      }
      this.setBatches(batches);
      for (const host of hosts) {
        this.hostStatus.set(host.name, host.status || "pending");
        if (host.status && host.status !== "pending") this.started.add(this.batchOf.get(host.name));
      }
    }

    /** Only per-batch counts are known (a history row): [{status: n}, …]. */
    setCounts(counts) {
      this.counts = counts.map((c) => Object.assign({}, c));
      for (let i = 0; i < this.counts.length; i++) {
        const c = this.counts[i];
        if (Object.keys(c).some((status) => status !== "pending" && c[status])) this.started.add(i);
      }
    }

    get count() {
      return this.counts ? this.counts.length : this.batches.length;
    }

    /** A stored job status (before or without events): a paused job waits before the
     * first batch that has not started. */
    setJobStatus(status) {
      this.jobStatus = status;
      if (status === "paused" && !this.gate) {
        const next = this.batchCounts().findIndex((c, i) => i > 0 && !this.started.has(i));
        if (next > 0) this.gate = { batch: next - 1, next };
      } else if (status !== "paused") {
        this.gate = null;
      }
    }

    /** One gate or soak entry of the log, once per event: a dashboard row re-applies
     * the events that came while its GET /api/jobs/<id> was in flight (they may be
     * newer than the answer), and some of them were already folded in on arrival. */
    record(item) {
      if (item.seq != null && this.log.some((known) => known.seq === item.seq)) return;
      this.log.push(item);
    }

    /** Gate actions stored for a history row: [{kind, by, batch}]. */
    setLog(entries) {
      this.log = entries.slice();
    }

    /** Fold one event in; true when it changed what the segments show. */
    apply(event) {
      const data = event.data || {};
      switch (event.type) {
        case "job_started":
          // The log tells it from the start: forget the stored (maybe final) statuses.
          this.jobStatus = "running";
          this.hostStatus.clear();
          this.started.clear();
          this.gate = null;
          if (Array.isArray(data.batches) && data.batches.length) this.setBatches(data.batches);
          else if (Array.isArray(data.servers)) this.setBatches([data.servers]);
          return true;
        case "batch_started":
          if (Number.isInteger(data.batch)) this.started.add(data.batch);
          return true;
        case "host_started":
          this.setHost(event.host, "running");
          return true;
        case "host_finished":
          // A soak runs health steps on finished servers: those never reopen a server.
          this.setHost(event.host, data.status || "failed");
          return true;
        case "job_paused":
          this.jobStatus = "paused";
          this.gate = { batch: data.batch, next: data.next_batch ?? data.batch + 1 };
          this.record({ kind: "paused", batch: data.batch, ts: event.ts, seq: event.seq });
          return true;
        case "job_resumed":
          this.jobStatus = "running";
          this.gate = null;
          if (Number.isInteger(data.batch)) this.started.add(data.batch);
          this.record({ kind: "promoted", by: data.by, batch: data.batch, ts: event.ts,
            seq: event.seq });
          return true;
        case "job_aborted":
          this.gate = null;
          this.record({ kind: "aborted", by: data.by, batch: data.batch, ts: event.ts,
            seq: event.seq });
          return true;
        case "soak_started":
          this.soaks.set(data.batch, { seconds: data.seconds, until: data.until, passed: null,
            failed: [], reason: "" });
          this.record({ kind: "soak_started", batch: data.batch, seconds: data.seconds,
            ts: event.ts, seq: event.seq });
          return true;
        case "soak_finished": {
          const soak = this.soaks.get(data.batch) || { seconds: null, until: null };
          soak.passed = Boolean(data.passed);
          soak.failed = Array.isArray(data.failed) ? data.failed : [];
          soak.reason = data.reason || "";
          this.soaks.set(data.batch, soak);
          this.record({ kind: "soak_finished", batch: data.batch, passed: soak.passed,
            reason: soak.reason, ts: event.ts, seq: event.seq });
          return true;
        }
        case "job_finished":
          this.jobStatus = data.status || "failed";
          this.gate = null;
          return true;
        default:
          return false;
      }
    }

    setHost(name, status) {
      if (!name) return;
      this.hostStatus.set(name, status);
      const index = this.batchOf.get(name);
      if (index !== undefined && status !== "pending") this.started.add(index);
    }

    /** The soak under way (started, not finished), or null. */
    activeSoak() {
      for (const [batch, soak] of this.soaks) {
        if (soak.passed === null) return Object.assign({ batch }, soak);
      }
      return null;
    }

    batchCounts() {
      if (this.counts) return this.counts;
      return this.batches.map((names) => {
        const counts = {};
        for (const name of names) {
          const status = this.hostStatus.get(name) || "pending";
          counts[status] = (counts[status] || 0) + 1;
        }
        return counts;
      });
    }

    /** [{index, label, status, word, detail, servers}] in batch order. */
    segments() {
      const all = this.batchCounts();
      const finished = FINISHED.has(this.jobStatus);
      return all.map((counts, index) => {
        const status = this.segmentStatus(counts, index, finished);
        const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
        const soak = this.soaks.get(index);
        // "3 servers", or how a partly done or mixed batch stands: "1 of 3 succeeded, 1 failed".
        let detail = plural(total, "server");
        const done = Object.entries(counts).filter(([s, n]) => n && s !== "pending" && s !== "running");
        if (done.length > 1 || (done.length === 1 && done[0][1] < total)) {
          detail = done.map(([s, n], i) => n + (i === 0 ? " of " + total + " " : " ") + s).join(", ");
        }
        if (soak && soak.passed === true) detail += "; soak passed";
        if (soak && soak.passed === false) detail += "; failed its soak";
        return {
          index,
          label: batchName(index, all.length),
          status,
          word: WORDS[status] || status,
          detail,
          servers: this.counts ? null : this.batches[index],
        };
      });
    }

    segmentStatus(counts, index, finished) {
      const soak = this.soaks.get(index);
      if (soak && soak.passed === null && !finished) return "soaking";
      if (this.gate && this.gate.next === index && !finished) return "gate";
      const n = (status) => counts[status] || 0;
      const total = Object.values(counts).reduce((sum, v) => sum + v, 0);
      if (n("running")) return "running";
      if (n("pending")) {
        if (!finished && (n("pending") < total || this.started.has(index))) return "running";
        if (n("pending") === total) return "pending";
      }
      if (soak && soak.passed === false) return "failed";
      if (n("failed")) return "failed";
      if (n("interrupted")) return "interrupted";
      if (n("cancelled")) return "cancelled";
      if (n("skipped")) return n("skipped") === total ? "skipped" : "cancelled";
      return total && n("succeeded") === total ? "succeeded" : "pending";
    }

    /** Servers of batch `index` (names, when known). */
    serversOf(index) {
      return this.batches[index] || [];
    }

    /** Servers that would be skipped by an abort: those not started. */
    notStarted() {
      const names = [];
      for (const [name, index] of this.batchOf) {
        if ((this.hostStatus.get(name) || "pending") === "pending" && !this.started.has(index)) {
          names.push(name);
        }
      }
      return names;
    }
  }

  /** The segments as an <ol> (replacing `list`'s children); compact for table rows. */
  function renderSegments(list, segments, compact) {
    list.setAttribute("aria-label", "Batches");
    const items = segments.map((segment) => {
      const item = el("li", "batch-segment segment-" + segment.status);
      item.dataset.batch = String(segment.index);
      item.dataset.status = segment.status;
      const servers = segment.servers || [];
      if (!compact) item.style.flexGrow = String(Math.max(1, Math.min(servers.length, 12)));
      item.append(el("span", "segment-label", segment.label), " ",
        el("span", "badge status-" + segment.status + " segment-status", segment.word));
      if (!compact) item.append(" ", el("span", "segment-detail", segment.detail));
      item.title = segment.label + ": " + segment.word + " (" + segment.detail + ")" +
        (servers.length ? " — " + listed(servers, 20) : "");
      return item;
    });
    list.replaceChildren(...items);
  }

  // --- Promote and Abort ---------------------------------------------------------------

  /** Ask before promoting: names the batch that starts and its servers. */
  function askPromote(jobId, rollout) {
    const gate = rollout.gate;
    const count = rollout.count;
    const next = gate ? gate.next : null;
    const names = next === null ? [] : rollout.serversOf(next);
    const batch = next === null ? "the next batch" : batchName(next, count);
    const lines = ["Promote: " + batch + (names.length ? " (" + listed(names, 12) + ")" : "") +
      " starts."];
    if (gate) {
      const done = rollout.serversOf(gate.batch);
      const phrase = batchPhrase(gate.batch, count);
      lines.push(phrase.charAt(0).toUpperCase() + phrase.slice(1) + " succeeded" +
        (done.length ? " (" + listed(done, 12) + ")" : "") + ".");
    }
    const later = next === null ? 0 : count - next - 1;
    if (later > 0) {
      lines.push(later + (later === 1 ? " more batch follows" : " more batches follow") +
        ", each after a gate like this one.");
    }
    return window.PatchbayConfirm.ask({
      title: "Promote job #" + jobId + "?",
      lines,
      confirm: "Promote: start " + batch,
      dismiss: "Keep it paused",
    });
  }

  /** Ask before aborting: how many servers end skipped, and that the job ends cancelled. */
  function askAbort(jobId, rollout) {
    const skipped = rollout.notStarted();
    const lines = ["Abort: " + plural(skipped.length, "server") + " will be skipped and the " +
      "job ends cancelled." + (skipped.length ? " (" + listed(skipped, 12) + ")" : "")];
    lines.push("Servers that finished keep their result.");
    return window.PatchbayConfirm.ask({
      title: "Abort job #" + jobId + " at the gate?",
      lines,
      confirm: "Abort: skip " + plural(skipped.length, "server"),
      dismiss: "Keep it paused",
      danger: true,
    });
  }

  /** Emit job:promote or job:abort; resolves to the ack ({ok, message} or {ok:false, error}). */
  function act(action, jobId) {
    return P.request("job:" + action, { job_id: jobId });
  }

  window.PatchbayRollout = Object.freeze({
    Rollout, renderSegments, batchName, batchPhrase, gateWords, countdown, askPromote,
    askAbort, act, listed,
  });
})();
