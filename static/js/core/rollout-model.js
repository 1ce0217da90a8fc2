/*
 * A rollout's model (pure: no DOM, tested in Node): the Rollout fold of a job's events
 * into what each batch is doing, and the words for batches, gates and soaks. See
 * rollout.js for the page parts.
 */
import { formatDuration, plural } from "./format.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "interrupted"]);
const WORDS = { gate: "waiting at the gate", soaking: "soaking" };

/** "canary" for the first of several batches, else "batch N" (N from 1). */
export function batchName(index, count) {
  return index === 0 && count > 1 ? "canary" : "batch " + (index + 1);
}

/** "the canary" / "batch 2": a batch named inside a sentence. */
export function batchPhrase(index, count) {
  return index === 0 && count > 1 ? "the canary" : "batch " + (index + 1);
}

/** Seconds as a countdown: "42 s", "4 min 05 s", "1 h 02 min" (whole seconds, up;
 * live.js's duration format, which shows tenths below 10 s, fed whole seconds). */
export function countdown(seconds) {
  const total = Math.max(0, Math.ceil(seconds));
  return total < 10 ? total + " s" : formatDuration(total);
}

export function listed(names, most = 8) {
  return names.slice(0, most).join(", ") + (names.length > most ? ", …" : "");
}

/** One line of the gate history: "promoted by alice", "aborted at the gate by alice". */
export function gateWords(entry, count) {
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

export class Rollout {
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
