/*
 * Windowed server logs for the job page: the browser never holds a whole log.
 *
 * A server's log is a list of rows: a few notes (connecting, step headers, the end
 * note) and one row per output line. Every row is indexed (each output event's seq and
 * first row, in typed arrays: 8 bytes per event), but the text of only a bounded number
 * of lines is held: the live tail and the rows on screen. Rows scrolled to whose text is
 * not held are fetched by seq from GET /api/jobs/<id>/events?host=H&type=output. Only
 * the rows on screen are in the DOM; every row is ROW_PX high, so a row's position is
 * its index times ROW_PX and the scrollbar spans the whole log.
 *
 * A small job (at most FULL_ROWS rows in all) renders every row instead, like a plain
 * page: find-in-page, screen readers and copying then see the whole log. Only such a
 * log can wrap long lines (rows then take their own height): a windowed log keeps one
 * row per ROW_PX and scrolls sideways. Wrapping is on by default on narrow screens
 * (WRAP_QUERY); the wrap button's choice is kept in localStorage.
 *
 * A log is data first (its index, notes and held lines) and gets its DOM when it is
 * attached (LogSet.attach): a job of thousands of servers builds only the logs that are
 * shown. Until then LogSet.add's `box` (the log's empty section) takes the height the
 * log would take, so that the page scrolls as if every log were there.
 *
 * A stderr line is marked quietly (plenty of tools print warnings and notes there); it
 * is marked as an error only when its step failed.
 *
 * Parts: constants.js (sizes and budgets), rows.js (a row's DOM), host-log.js (one
 * server's log), log-set.js (all of them: LogSet, and ROW_PX, HELD_LINES).
 */
import {
  FULL_ROWS, HELD_LINES, MIN_HOST_LINES, ROW_PX, WRAP_KEY, WRAP_QUERY,
} from "./constants.js";
import { HostLog } from "./host-log.js";

export { HELD_LINES, ROW_PX };

/** The wrap choice kept in localStorage: true, false, or null for none. */
function storedWrap() {
  try {
    const value = window.localStorage.getItem(WRAP_KEY);
    return value === "1" ? true : value === "0" ? false : null;
  } catch (err) {
    return null; // storage refused (private mode, a policy): wrap by screen width
  }
}

/** All servers' logs of one job: shared budgets, rendering and visibility. */
export class LogSet {
  constructor(options) {
    this.jobId = options.jobId;
    this.follow = options.follow || (() => true);
    this.onRender = options.onRender || (() => {});
    this.fetchJSON = options.fetchJSON;
    this.wrapButton = options.wrapButton || null;
    // Asked to attach a log that is needed at once (scrolled to a row): builds its DOM.
    this.build = options.build || (() => {});
    // While true, frames render nothing (the page is catching up); render() then runs
    // when the page calls it.
    this.deferred = options.deferred || (() => false);
    // Asks the page for a frame that calls render() (the page then reads and writes in
    // one pass for everything); by default a frame of its own.
    this.requestFrame = options.requestFrame || null;
    this.logs = new Map();
    this.totalRows = 0;
    this.held = 0;
    this.full = true;
    this.term = "";
    this.termVersion = 0;
    this.dirty = new Set();
    this.queued = false;
    this.observer = "IntersectionObserver" in window
      ? new IntersectionObserver((entries) => this.onIntersect(entries)) : null;
    const stored = storedWrap();
    this.wrap = stored !== null ? stored
      : Boolean(window.matchMedia && window.matchMedia(WRAP_QUERY).matches);
    if (this.wrapButton) {
      this.wrapButton.addEventListener("click", () => {
        this.setWrap(!this.wrap);
        try {
          window.localStorage.setItem(WRAP_KEY, this.wrap ? "1" : "0");
        } catch (err) {
          // not kept: the choice holds for this page
        }
      });
    }
    this.showWrap();
  }

  /** Wrap long lines (true) or scroll them sideways (false). */
  setWrap(on) {
    this.wrap = Boolean(on);
    for (const log of this.logs.values()) log.followed = -1;
    this.showWrap();
    this.markAll();
  }

  /** The wrap button says what is asked, and why a long log does not wrap. */
  showWrap() {
    const button = this.wrapButton;
    if (!button) return;
    button.setAttribute("aria-pressed", String(this.wrap));
    button.title = this.full ? "Wrap long lines, or scroll them sideways"
      : "This job's logs are too long to wrap: scroll long lines sideways";
  }

  /** The log of server `name`, in `box` (its section: skipped by the browser while off
   * screen, given the size its rows take); shown once attached to a scroll container. */
  add(name, box) {
    const log = new HostLog(this, name, box);
    this.logs.set(name, log);
    return log;
  }

  /** Stop showing `log` (its DOM goes): data only again, its box sized by it. */
  detach(log) {
    if (!log.element) return;
    if (this.observer) this.observer.unobserve(log.element);
    log.detach();
  }

  /** Show `log` in the scroll container `element` (inside its box), from now on. */
  attach(log, element) {
    log.attach(element);
    if (this.observer) this.observer.observe(element);
    else log.visible = true;
    this.mark(log);
  }

  onIntersect(entries) {
    for (const entry of entries) {
      const log = this.logs.get(entry.target.dataset.host);
      if (!log) continue;
      log.visible = entry.isIntersecting;
      if (log.visible) {
        log.followed = -1; // shown again (maybe scrolled to the top): follow at once
        this.mark(log);
      }
    }
  }

  grew(rows) {
    this.totalRows += rows;
    if (this.full && this.totalRows > FULL_ROWS) {
      this.full = false; // for good: from now on only rows on screen are rendered
      for (const log of this.logs.values()) {
        if (!log.element) continue;
        log.forget();
        this.mark(log);
      }
      this.showWrap();
    }
  }

  mark(log) {
    this.dirty.add(log);
    this.schedule();
  }

  markAll() {
    for (const log of this.logs.values()) if (log.element) this.dirty.add(log);
    this.schedule();
  }

  schedule() {
    if (this.requestFrame) {
      this.queued = true;
      this.requestFrame();
      return;
    }
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => this.render());
    // Background tabs get no animation frames; keep them current all the same.
    setTimeout(() => this.render(), 250);
  }

  /**
   * Render the dirty logs in passes, so that one frame lays the page out once: first
   * every write that changes a log's geometry (its height; the rows of a log rendered
   * whole), then the reads (scroll position and size, only of logs on screen), then the
   * writes that depend on them (scroll positions first, then windows of rows). A log
   * off screen is never measured nor scrolled: it follows its tail when shown again.
   */
  render() {
    if (!this.queued || this.deferred()) return;
    this.queued = false;
    const logs = Array.from(this.dirty);
    this.dirty.clear();
    const shown = [];
    for (const log of logs) {
      if (log.layout()) shown.push(log);
    }
    for (const log of shown) log.measure();
    for (const log of shown) log.followTail();
    for (const log of shown) log.fill();
    this.evict();
    this.onRender();
  }

  /** Search term to highlight in rendered rows ("" for none). */
  highlight(term) {
    const wanted = (term || "").toLowerCase();
    if (wanted === this.term) return;
    this.term = wanted;
    this.termVersion += 1;
    this.markAll();
  }

  /** Drop held lines, least recently used first, beyond the budgets. */
  evict() {
    if (this.full) return;
    const perHost = Math.max(MIN_HOST_LINES, Math.floor(HELD_LINES / Math.max(1, this.logs.size)));
    if (this.held <= HELD_LINES && !Array.from(this.logs.values()).some((l) => l.held > perHost)) {
      return;
    }
    for (const log of this.logs.values()) {
      if (log.held > perHost) log.evict(perHost);
    }
  }

  stats() {
    let rendered = 0;
    let pending = 0;
    let attached = 0;
    for (const log of this.logs.values()) {
      rendered += log.nodes.size;
      pending += log.pendingRows;
      if (log.element) attached += 1;
    }
    return { held: this.held, rows: this.totalRows, rendered, pending, full: this.full,
      logs: this.logs.size, attached };
  }
}
