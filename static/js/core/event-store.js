/*
 * EventStore: applies a job's events strictly in seq order, exactly once (no DOM: the
 * job page and Node's tests use it alike).
 */
import { fetchJSON as httpFetchJSON } from "./http.js";

/**
 * Applies one job's events exactly once and in seq order.
 *
 * `applied` is the highest seq up to which every event has been applied (contiguous).
 * Events beyond a hole wait in `pending` until the hole is filled. Never "drop all at or
 * below the highest seq seen": a live event arriving before the replay would swallow it.
 * A hole left open for `holeTimeoutMs` is filled from GET /api/jobs/<id>/events
 * (with `fetchQuery` appended, e.g. "&max_lines=1000" to get long output as stubs).
 *
 * options: {jobId, apply(events), holeTimeoutMs = 1500, pageSize = 1000, fetchQuery,
 *           onError(err), fetchJSON(path) (default: http.js's)}
 */
export class EventStore {
  constructor(options) {
    this.jobId = options.jobId;
    this.applyBatch = options.apply;
    this.onError = options.onError || ((err) => console.error(err));
    this.holeTimeoutMs = options.holeTimeoutMs ?? 1500;
    this.pageSize = options.pageSize ?? 1000;
    this.fetchQuery = options.fetchQuery || "";
    this.fetchJSON = options.fetchJSON || httpFetchJSON; // tests pass their own
    this.applied = 0;
    this.known = 0; // highest seq known to exist (from events, acks, fetches)
    this.pending = new Map();
    this.holeTimer = null;
    this.holeArmedAt = -1; // `applied` when the timer was armed
    this.fetching = false;
    this.stopped = false;
  }

  /** Feed events (any order, duplicates allowed). */
  add(events) {
    for (const event of events) {
      const seq = event && event.seq;
      if (!Number.isInteger(seq) || seq < 1) continue;
      if (seq <= this.applied || this.pending.has(seq)) continue; // duplicate
      this.pending.set(seq, event);
      if (seq > this.known) this.known = seq;
    }
    this.drain();
  }

  /** Note that events up to `seq` exist (e.g. job.last_seq from a subscribe ack). */
  noteKnown(seq) {
    if (Number.isInteger(seq) && seq > this.known) this.known = seq;
    this.checkHole();
  }

  hasHole() {
    return this.known > this.applied;
  }

  drain() {
    const batch = [];
    while (this.pending.has(this.applied + 1)) {
      const next = this.applied + 1;
      batch.push(this.pending.get(next));
      this.pending.delete(next);
      this.applied = next;
    }
    if (batch.length) {
      try {
        this.applyBatch(batch, this.applied);
      } catch (err) {
        this.onError(err);
      }
    }
    this.checkHole();
  }

  checkHole() {
    if (this.stopped) return;
    if (!this.hasHole()) {
      this.clearHoleTimer();
      return;
    }
    // Progress since the timer was armed means the stream is flowing: wait again.
    if (this.holeTimer !== null && this.holeArmedAt === this.applied) return;
    this.clearHoleTimer();
    this.holeArmedAt = this.applied;
    this.holeTimer = setTimeout(() => {
      this.holeTimer = null;
      this.fillHole();
    }, this.holeTimeoutMs);
  }

  clearHoleTimer() {
    if (this.holeTimer !== null) clearTimeout(this.holeTimer);
    this.holeTimer = null;
  }

  /** Fetch everything after `applied` over HTTP, page by page. */
  async fillHole() {
    if (this.fetching || this.stopped || !this.hasHole()) return;
    this.fetching = true;
    try {
      for (;;) {
        const after = this.applied;
        const page = await this.fetchJSON(
          "/api/jobs/" + encodeURIComponent(this.jobId) + "/events?after_seq=" + after +
          "&limit=" + this.pageSize + this.fetchQuery);
        const events = Array.isArray(page.events) ? page.events : [];
        if (Number.isInteger(page.last_seq)) this.noteKnownQuietly(page.last_seq);
        this.add(events);
        // A page may also end early at the server's byte limit: it then says `more`.
        if ((events.length < this.pageSize && !page.more) || this.applied === after) break;
      }
      if (this.hasHole() && this.pending.size === 0) {
        // The server has nothing beyond what we hold: `known` was optimistic.
        this.known = this.applied;
      }
    } catch (err) {
      this.onError(err);
      if (err && (err.status === 401 || err.status === 403 || err.status === 404)) {
        this.stopped = true;
        this.clearHoleTimer();
      }
    } finally {
      this.fetching = false;
      this.holeArmedAt = -1;
      this.checkHole();
    }
  }

  noteKnownQuietly(seq) {
    if (seq > this.known) this.known = seq;
  }
}
