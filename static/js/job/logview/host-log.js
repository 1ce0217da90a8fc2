/* One server's windowed log (see log-set.js). */
import { el } from "../../core/dom.js";
import {
  FETCH_EVENTS, FETCH_LINES, MAX_CANVAS_PX, MAX_LOG_PX, OVERSCAN, RETRY_MS, ROW_PX, TITLE_PX,
} from "./constants.js";
import { renderLine, renderNote } from "./rows.js";

/** One server's log: a row index, held lines, and (once attached) the rows in the DOM. */
export class HostLog {
  constructor(set, name, box) {
    this.set = set;
    this.name = name;
    this.element = null; // the scroll container, once attached
    this.box = box || null; // the log's section, sized while off screen or not attached
    this.canvas = null;
    this.block = null;
    this.seqs = new Int32Array(16); // per chunk (event): its seq ...
    this.starts = new Int32Array(16); // ... and its first row
    this.chunks = 0;
    this.total = 0;
    this.notes = new Map(); // seq -> note {kind, parts, status, version, node}
    this.stepSeqs = []; // seqs of the step headers, ascending
    this.stepNotes = []; // ... and the headers (a line's step: the last one before it)
    this.lines = new Map(); // seq -> {stream, lines}; insertion order = recency
    this.held = 0;
    this.nodes = new Map(); // key -> rendered row element
    this.window = { first: 0, last: 0, lowSeq: 0, highSeq: -1 };
    this.pendingRows = 0;
    this.visible = false;
    this.wrapped = false; // the log-wrapped class as set
    this.height = ""; // the canvas height as set
    this.transform = ""; // the rows' offset as set
    this.estimate = 0; // the section's size off screen, as set
    this.clientHeight = 0; // measured in LogSet.render's second pass
    this.scrollHeight = 0;
    this.scrollTop = 0;
    this.pinned = true;
    this.followed = -1; // `total` when last scrolled to the end
    this.fetching = false;
    this.retryAt = 0;
    this.retryQueued = false;
    this.onScrollState = null;
    this.scrolled = false; // scrolled since the last measure
  }

  /** Render into the scroll container `element` from now on (LogSet.attach). */
  attach(element) {
    this.element = element;
    this.canvas = el("div", "log-canvas");
    this.block = el("div", "log-rows");
    this.canvas.append(this.block);
    element.append(this.canvas);
    if (this.box) this.box.style.height = ""; // sized by its content from now on
    this.estimate = 0; // the box's size: as an attached log's (see layout)
    // The intent of a key or wheel counts at once, before its scroll events (and any
    // render in between, which would otherwise snap a following view back to the end).
    // Home and End jump at once: a smooth scroll across a million rows is no help, and
    // it would still be moving when a search result asks for another row.
    element.addEventListener("keydown", (event) => {
      if (event.key === "Home" || event.key === "End") {
        event.preventDefault();
        if (event.key === "End") this.scrollToEnd();
        else this.scrollToRow(0);
      } else if (event.key === "PageUp" || event.key === "ArrowUp") {
        this.pinned = false;
      }
    });
    element.addEventListener("wheel", (event) => {
      if (event.deltaY < 0) this.pinned = false;
    }, { passive: true });
    // Whether a scroll reached the end is read with the log's other sizes in the next
    // render (measure): read here, between frames, it would lay the page out again.
    element.addEventListener("scroll", () => {
      this.scrolled = true;
      this.set.mark(this);
    }, { passive: true });
    // Its height now, before any frame: a search result scrolls to a row at once.
    this.layout();
  }

  /** Leave the DOM (LogSet.detach): the view starts again at the tail when attached. */
  detach() {
    this.element = null;
    this.canvas = null;
    this.block = null;
    this.nodes.clear();
    this.window = { first: 0, last: 0, lowSeq: 0, highSeq: -1 };
    this.pendingRows = 0;
    this.visible = false;
    this.wrapped = false;
    this.height = "";
    this.transform = "";
    this.estimate = 0;
    this.pinned = true;
    this.followed = -1;
    this.onScrollState = null;
    this.scrolled = false;
    this.sizeBox();
  }

  /** Attach now if not yet (LogSet's `build`): for what needs the DOM at once. */
  needed() {
    if (!this.element) this.set.build(this);
    return Boolean(this.element);
  }

  // --- the index -------------------------------------------------------------------

  push(seq, rows) {
    if (this.chunks === this.seqs.length) {
      const seqs = new Int32Array(this.seqs.length * 2);
      const starts = new Int32Array(this.seqs.length * 2);
      seqs.set(this.seqs);
      starts.set(this.starts);
      this.seqs = seqs;
      this.starts = starts;
    }
    this.seqs[this.chunks] = seq;
    this.starts[this.chunks] = this.total;
    this.chunks += 1;
    this.total += rows;
    this.set.grew(rows);
    this.set.mark(this);
  }

  /** Add a note row (events arrive in seq order); returns it for later updates. */
  note(seq, note) {
    note.version = 0;
    note.node = null;
    this.notes.set(seq, note);
    if (note.kind === "step") {
      this.stepSeqs.push(seq);
      this.stepNotes.push(note);
    }
    this.push(seq, 1);
    return note;
  }

  /** A note changed (e.g. its step finished): re-render its row if it is shown. */
  touch(note) {
    note.version += 1;
    if (note.node) this.set.mark(this);
  }

  /** Add an output event: `lines` may be null (a stub: only `count` is known). */
  output(seq, stream, lines, count) {
    if (count <= 0) return;
    if (lines) this.hold(seq, stream, lines);
    this.push(seq, count);
  }

  hold(seq, stream, lines) {
    if (this.lines.has(seq)) return;
    this.lines.set(seq, { stream, lines });
    this.held += lines.length;
    this.set.held += lines.length;
  }

  chunkOfRow(row) {
    let lo = 0;
    let hi = this.chunks - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  chunkOfSeq(seq) {
    let lo = 0;
    let hi = this.chunks - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[mid] === seq) return mid;
      if (this.seqs[mid] < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** The row of line `index` of output event `seq`, or -1 if not (yet) indexed. */
  rowOf(seq, index) {
    const chunk = this.chunkOfSeq(seq);
    return chunk < 0 ? -1 : this.starts[chunk] + (index || 0);
  }

  /** Whether the output of event `seq` belongs to a step that failed. */
  stepFailed(seq) {
    let lo = 0;
    let hi = this.stepSeqs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.stepSeqs[mid] < seq) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && this.stepNotes[found].status === "failed";
  }

  /** 1-based number of the output line at `row` (notes do not count). */
  lineNumber(row) {
    let notesBefore = 0;
    for (const seq of this.notes.keys()) {
      const chunk = this.chunkOfSeq(seq);
      if (chunk >= 0 && this.starts[chunk] < row) notesBefore += 1;
    }
    return row - notesBefore + 1;
  }

  // --- memory ----------------------------------------------------------------------

  /** Drop held lines down to `keep`, oldest use first, never those on screen. */
  evict(keep) {
    const { lowSeq, highSeq } = this.window;
    for (const [seq, entry] of this.lines) {
      if (this.held <= keep) break;
      if (seq >= lowSeq && seq <= highSeq) continue;
      this.lines.delete(seq);
      this.held -= entry.lines.length;
      this.set.held -= entry.lines.length;
    }
  }

  /** Leave whole-log rendering: drop the DOM rows (render() builds the window). */
  forget() {
    this.nodes.clear();
    if (this.block) this.block.replaceChildren();
    this.window = { first: 0, last: 0, lowSeq: 0, highSeq: -1 };
  }

  // --- rendering -------------------------------------------------------------------

  /**
   * Pass 1 of LogSet.render: the log's height (or, wrapped, its rows), and all its rows
   * when the job is small enough to render whole. Writes only. Returns whether the log
   * is on screen (then measured, scrolled and filled in passes 2 and 3).
   */
  layout() {
    if (!this.element) {
      this.sizeBox();
      return false;
    }
    const wrapped = this.set.wrap && this.set.full;
    if (wrapped !== this.wrapped) {
      this.wrapped = wrapped;
      this.element.classList.toggle("log-wrapped", wrapped);
    }
    const height = wrapped ? "" : Math.min(this.total * ROW_PX, MAX_CANVAS_PX) + "px";
    if (height !== this.height) {
      this.height = height;
      this.canvas.style.height = height;
    }
    if (this.box) {
      // What the section is thought to take while its content is skipped off screen
      // (content-visibility: auto in app.css): the title and the log's rows.
      const estimate = this.boxEstimate();
      if (estimate !== this.estimate) {
        this.estimate = estimate;
        this.box.style.containIntrinsicBlockSize = "auto " + estimate + "px";
      }
    }
    if (this.set.full) {
      this.setOffset(0);
      this.paint(0, this.total);
    }
    return this.visible;
  }

  /** The height of the log's section: its title and its rows (at most MAX_LOG_PX). */
  boxEstimate() {
    return TITLE_PX + Math.max(2 * ROW_PX, Math.min(this.total * ROW_PX, MAX_LOG_PX)) + 2;
  }

  /** Not attached: the empty section takes the height the log would take. */
  sizeBox() {
    const estimate = this.boxEstimate();
    if (this.box && estimate !== this.estimate) {
      this.estimate = estimate;
      this.box.style.height = estimate + "px";
    }
  }

  /** Pass 2: the scroll container's size and position (one layout for all logs). */
  measure() {
    const element = this.element;
    this.clientHeight = element.clientHeight;
    this.scrollHeight = element.scrollHeight;
    this.scrollTop = element.scrollTop;
    if (this.scrolled) {
      this.scrolled = false;
      this.pinned = this.scrollTop >= this.scrollHeight - this.clientHeight - ROW_PX / 2;
      if (this.onScrollState) this.onScrollState(this);
    }
  }

  /** Pass 3: follow the tail, only when rows were added: a render between a key press
   * or wheel turn and its first scroll event must not snap the view back to the end. */
  followTail() {
    if (this.pinned && this.set.follow() && this.followed !== this.total) {
      const end = Math.max(0, this.scrollHeight - this.clientHeight);
      if (end !== this.scrollTop) {
        this.element.scrollTop = end;
        this.scrollTop = end;
      }
    }
    this.followed = this.total;
  }

  /** Pass 3, after every log's scroll: a windowed log's rows on screen. */
  fill() {
    if (this.set.full) return; // every row is rendered (pass 1)
    const top = this.topRow(this.scrollTop, this.scrollHeight, this.clientHeight);
    const shown = Math.ceil(this.clientHeight / ROW_PX) + 1;
    const first = Math.max(0, Math.floor(top) - OVERSCAN);
    const last = Math.min(this.total, Math.floor(top) + shown + OVERSCAN);
    this.setOffset(Math.max(0, this.scrollTop - (top - first) * ROW_PX));
    this.paint(first, last);
  }

  setOffset(px) {
    const transform = px ? "translateY(" + px + "px)" : "";
    if (transform !== this.transform) {
      this.transform = transform;
      this.block.style.transform = transform;
    }
  }

  paint(first, last) {
    const fresh = new Map();
    const rows = [];
    const missing = [];
    let pending = 0;
    const term = this.set.term;
    let lowSeq = 0;
    let highSeq = -1;
    if (last > first && this.chunks) {
      lowSeq = this.seqs[this.chunkOfRow(first)];
      highSeq = this.seqs[this.chunkOfRow(last - 1)];
    }
    let chunk = last > first ? this.chunkOfRow(first) : 0;
    for (let row = first; row < last; row++) {
      while (chunk + 1 < this.chunks && this.starts[chunk + 1] <= row) chunk++;
      const seq = this.seqs[chunk];
      const offset = row - this.starts[chunk];
      const note = this.notes.get(seq);
      let key;
      let build;
      if (note) {
        key = "n" + seq + ":" + note.version + ":" + this.set.termVersion;
        build = () => renderNote(note);
      } else {
        const held = this.lines.get(seq);
        if (held) {
          if (offset === 0 || row === first) {
            this.lines.delete(seq); // mark as recently used
            this.lines.set(seq, held);
          }
          const failed = held.stream === "stderr" && this.stepFailed(seq);
          key = "l" + seq + ":" + offset + ":" + this.set.termVersion + (failed ? ":f" : "");
          build = () => renderLine(held.stream, held.lines[offset], term, failed);
        } else {
          key = "p" + seq + ":" + offset;
          build = () => el("div", "log-row row-pending", "…");
          pending += 1;
          if (!missing.length || missing[missing.length - 1] !== chunk) missing.push(chunk);
        }
      }
      let node = this.nodes.get(key);
      if (!node) {
        node = build();
        node.dataset.row = String(row);
      }
      if (note) note.node = node;
      fresh.set(key, node);
      rows.push(node);
    }
    const unchanged = rows.length === this.nodes.size &&
      this.window.first === first && this.window.last === last &&
      rows.every((node, i) => node === this.block.children[i]);
    if (!unchanged) {
      // Common case while following a small log: rows only appended at the end.
      const kept = this.window.first === first && last >= this.window.last &&
        this.block.children.length === this.window.last - first &&
        rows.slice(0, this.window.last - first).every((node, i) => node === this.block.children[i]);
      if (kept) this.block.append(...rows.slice(this.window.last - first));
      else this.block.replaceChildren(...rows);
    }
    this.nodes = fresh;
    this.window = { first, last, lowSeq, highSeq };
    this.pendingRows = pending;
    if (missing.length) this.fetchMissing(missing);
  }

  /** Fetch the text of output events `chunks` (indexes, in order) by seq. */
  async fetchMissing(chunks) {
    if (this.fetching) return; // marked again when it ends
    if (Date.now() < this.retryAt) {
      if (!this.retryQueued) {
        this.retryQueued = true;
        setTimeout(() => {
          this.retryQueued = false;
          this.set.mark(this);
        }, this.retryAt - Date.now());
      }
      return;
    }
    this.fetching = true;
    const firstSeq = this.seqs[chunks[0]];
    let events = 0;
    let lines = 0;
    for (let chunk = chunks[0]; chunk < this.chunks && events < FETCH_EVENTS &&
         lines < FETCH_LINES; chunk++) {
      const seq = this.seqs[chunk];
      if (this.notes.has(seq)) continue;
      events += 1;
      const end = chunk + 1 < this.chunks ? this.starts[chunk + 1] : this.total;
      lines += end - this.starts[chunk];
      if (chunk >= chunks[chunks.length - 1]) break;
    }
    try {
      const page = await this.set.fetchJSON(
        "/api/jobs/" + encodeURIComponent(this.set.jobId) + "/events?type=output&host=" +
        encodeURIComponent(this.name) + "&after_seq=" + (firstSeq - 1) +
        "&limit=" + Math.max(1, events));
      for (const event of page.events || []) {
        const data = event.data || {};
        if (event.host !== this.name || !Array.isArray(data.lines)) continue;
        if (this.chunkOfSeq(event.seq) < 0) continue; // not applied yet: comes live
        this.hold(event.seq, data.stream === "stderr" ? "stderr" : "stdout", data.lines);
      }
    } catch (err) {
      console.error("fetching lines of " + this.name, err);
      this.retryAt = Date.now() + RETRY_MS;
    } finally {
      this.fetching = false;
      this.set.mark(this);
    }
  }

  /**
   * The (fractional) row at the top of the view, from the scroll container's position
   * and sizes. The scroll range maps linearly onto rows 0 … total - rows in view; with
   * at most MAX_CANVAS_PX / ROW_PX rows that is exactly scrollTop / ROW_PX, beyond it
   * the canvas is compressed.
   */
  topRow(scrollTop, scrollHeight, clientHeight) {
    const range = scrollHeight - clientHeight;
    const rows = this.total - clientHeight / ROW_PX;
    if (range <= 0 || rows <= 0) return 0;
    return Math.min(rows, Math.max(0, scrollTop) * rows / range);
  }

  /** Scroll so that `row` is in view, a third down (row 0: the very top), and stop
   * following the tail. */
  scrollToRow(row) {
    if (!this.needed()) return;
    if (this.element.classList.contains("log-wrapped")) {
      const node = this.block.children[row]; // a wrapped log renders every row
      const top = node ? node.offsetTop : 0;
      this.pinned = false;
      this.element.scrollTop = Math.max(0, top - (row ? this.element.clientHeight / 3 : 0));
      this.set.mark(this);
      return;
    }
    const range = this.element.scrollHeight - this.element.clientHeight;
    const rows = this.total - this.element.clientHeight / ROW_PX;
    const top = Math.max(0, row - (row ? this.element.clientHeight / ROW_PX / 3 : 0));
    this.pinned = false;
    this.element.scrollTop = rows > 0 ? Math.min(range, top * range / rows) : 0;
    this.set.mark(this);
  }

  /** Follow the tail again. */
  scrollToEnd() {
    if (!this.needed()) return;
    this.pinned = true;
    this.followed = -1;
    this.element.scrollTop = this.element.scrollHeight;
    this.set.mark(this);
  }
}
