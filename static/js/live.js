/*
 * Patchbay live layer, shared by the dashboard and the job page:
 *   - one Socket.IO connection per page (polling first, upgraded to websocket when possible),
 *   - the connection-state badge (#connection-state) and status listeners (onStatus),
 *   - EventStore: applies a job's events strictly in seq order, exactly once.
 *
 * Exposes window.Patchbay = {connect, socket(), request, onConnect, onStatus,
 * onJobEvents, onJobProgress, EventStore, fetchJSON, formatDuration, el, readJSON, root}.
 */
(function () {
  "use strict";

  const root = document.body.dataset.root || "";
  let socket = null;
  const connectHandlers = [];
  const statusHandlers = [];
  let status = { state: "disconnected", transport: null, detail: null };

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // --- connection-state badge ------------------------------------------------------

  function setConnectionState(state, text, detail, transport) {
    status = { state, transport: transport || null, detail: detail || null };
    const badge = document.getElementById("connection-state");
    if (badge) {
      badge.dataset.state = state;
      badge.textContent = text;
      if (detail) badge.title = detail;
      else badge.removeAttribute("title");
    }
    for (const handler of statusHandlers.slice()) {
      try {
        handler(status);
      } catch (err) {
        console.error("status handler failed", err);
      }
    }
  }

  function showTransport() {
    if (!socket || !socket.connected) return;
    const engine = socket.io.engine;
    const name = engine && engine.transport ? engine.transport.name : "unknown";
    setConnectionState("connected", "connected (" + name + ")", null, name);
  }

  /**
   * Call `handler({state, transport, detail})` on every change of the connection:
   * state is "connected" (transport "websocket" or "polling"), "reconnecting" or
   * "disconnected"; also now, with the current status.
   */
  function onStatus(handler) {
    statusHandlers.push(handler);
    handler(status);
  }

  // --- the socket ----------------------------------------------------------------------

  /** Open (once) and return the page's socket. */
  function connect() {
    if (socket) return socket;
    if (typeof window.io !== "function") {
      setConnectionState("disconnected", "disconnected", "the Socket.IO client did not load");
      throw new Error("Socket.IO client missing");
    }
    socket = window.io({
      path: root + "/socket.io",
      transports: ["polling", "websocket"],
      tryAllTransports: true,
      reconnection: true,
      // The session cookie authenticates; the token lets the server reject foreign pages.
      auth: { csrf_token: csrfToken() },
    });

    // A new engine is created for every (re)connection: watch each one for its upgrade.
    const watched = new WeakSet();
    const watchEngine = () => {
      const engine = socket.io.engine;
      if (!engine || watched.has(engine)) return;
      watched.add(engine);
      engine.on("upgrade", showTransport);
    };
    socket.io.on("open", watchEngine);

    socket.on("connect", () => {
      watchEngine();
      showTransport();
      for (const handler of connectHandlers.slice()) {
        try {
          handler(socket);
        } catch (err) {
          console.error("connect handler failed", err);
        }
      }
    });
    // Why the connection went, in words; kept through the reconnect attempts after it.
    let dropReason = null;
    const reconnecting = () => setConnectionState(
      "reconnecting", "reconnecting…" + (dropReason ? " (" + dropReason + ")" : ""), dropReason);
    socket.on("disconnect", (reason) => {
      dropReason = dropReasonText(reason);
      // A dropped transport reconnects by itself (socket.active): say so at once.
      if (socket.active) reconnecting();
      else setConnectionState("disconnected", "disconnected", dropReason);
    });
    socket.io.on("reconnect_attempt", reconnecting);
    socket.on("connect_error", (err) => {
      // socket.active is false when the server refused us (e.g. not logged in):
      // no reconnection will follow.
      const message = (err && err.message) || "could not connect";
      if (!socket.active) {
        setConnectionState("disconnected", "disconnected", message);
      } else {
        dropReason = dropReasonText(message);
        reconnecting();
      }
    });
    socket.on("session:ended", (data) => {
      socket.disconnect();
      setConnectionState("disconnected", "disconnected",
        "session ended: " + ((data && data.reason) || "logged out"));
    });
    return socket;
  }

  /** Socket.IO's disconnect reasons, as an operator would say them. */
  const DROP_REASONS = {
    "transport close": "connection lost",
    "transport error": "connection error",
    "ping timeout": "no answer from the console",
    "io server disconnect": "closed by the console",
    "io client disconnect": "closed by this page",
    "parse error": "unreadable message from the console",
    "xhr poll error": "the console did not answer",
    "websocket error": "the console did not answer",
    "timeout": "the console did not answer in time",
  };

  function dropReasonText(reason) {
    return DROP_REASONS[reason] || String(reason || "connection lost");
  }

  /** Run `handler(socket)` on every connect, including now if already connected. */
  function onConnect(handler) {
    connectHandlers.push(handler);
    if (socket && socket.connected) handler(socket);
  }

  /** Call `handler(payload)` for every `job:events` message (the jobs this socket
   * subscribed to or started: the rooms job:<id>). */
  function onJobEvents(handler) {
    connect().on("job:events", (payload) => {
      if (payload && Array.isArray(payload.events)) handler(payload);
    });
  }

  /** Call `handler(payload)` for every `job:progress` message: every job of this user,
   * without its output (`events`), and now and then its `latest` line. */
  function onJobProgress(handler) {
    connect().on("job:progress", (payload) => {
      if (payload && Array.isArray(payload.events)) handler(payload);
    });
  }

  /**
   * Emit `event` and resolve with the server's ack. Resolves with an error-shaped ack
   * (code "timeout") when no answer comes in time, so callers handle one shape only.
   */
  function request(event, payload, timeoutMs = 15000) {
    const sock = connect();
    return new Promise((resolve) => {
      sock.timeout(timeoutMs).emit(event, payload, (err, ack) => {
        if (err) {
          resolve({
            ok: false,
            error: {
              code: "timeout",
              message: "No answer from the server (connection: " +
                (sock.connected ? "up" : "down") + "). Try again.",
              field: null,
            },
          });
        } else if (!ack || typeof ack !== "object") {
          resolve({ ok: false, error: { code: "bad_ack", message: "Unexpected answer from the server.", field: null } });
        } else {
          resolve(ack);
        }
      });
    });
  }

  /** "0.4 s", "42 s", "3 min 05 s", "1 h 02 min"; "" for no number. */
  /** A new element with an optional class and text (never HTML). */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** The JSON data block with this id (a <script type="application/json">). */
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

  /** GET a same-origin JSON resource; throws on HTTP errors. */
  async function fetchJSON(path) {
    const response = await fetch(root + path, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    if (!response.ok) {
      const error = new Error("HTTP " + response.status + " for " + path);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // --- the event store -----------------------------------------------------------------

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
   *           onError(err)}
   */
  class EventStore {
    constructor(options) {
      this.jobId = options.jobId;
      this.applyBatch = options.apply;
      this.onError = options.onError || ((err) => console.error(err));
      this.holeTimeoutMs = options.holeTimeoutMs ?? 1500;
      this.pageSize = options.pageSize ?? 1000;
      this.fetchQuery = options.fetchQuery || "";
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
          const page = await fetchJSON(
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

  window.Patchbay = Object.freeze({
    root,
    connect,
    socket: () => socket,
    onConnect,
    onStatus,
    onJobEvents,
    onJobProgress,
    request,
    fetchJSON,
    formatDuration,
    el,
    readJSON,
    csrfToken,
    setConnectionState,
    EventStore,
  });
})();
