/*
 * Patchbay live layer, shared by the dashboard and the job page:
 *   - one Socket.IO connection per page (polling first, upgraded to websocket when possible),
 *   - the connection-state badge (#connection-state) and status listeners (onStatus),
 *   - EventStore: applies a job's events strictly in seq order, exactly once.
 *
 * Exports connect, socket(), request, onConnect, onStatus, onJobEvents, onJobProgress,
 * setConnectionState, and P: all of these with the shared helpers of dom.js, format.js,
 * http.js and event-store.js in one object (the pages' `P.…`).
 */

import { el, readJSON } from "./dom.js";
import { EventStore } from "./event-store.js";
import { formatDuration } from "./format.js";
import { csrfToken, fetchJSON, root } from "./http.js";

let socket = null;
const connectHandlers = [];
const statusHandlers = [];
let status = { state: "disconnected", transport: null, detail: null };

// --- connection-state badge ------------------------------------------------------

export function setConnectionState(state, text, detail, transport) {
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
export function onStatus(handler) {
  statusHandlers.push(handler);
  handler(status);
}

// --- the socket ----------------------------------------------------------------------

/** Open (once) and return the page's socket. */
export function connect() {
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
export function onConnect(handler) {
  connectHandlers.push(handler);
  if (socket && socket.connected) handler(socket);
}

/** Call `handler(payload)` for every `job:events` message (the jobs this socket
 * subscribed to or started: the rooms job:<id>). */
export function onJobEvents(handler) {
  connect().on("job:events", (payload) => {
    if (payload && Array.isArray(payload.events)) handler(payload);
  });
}

/** Call `handler(payload)` for every `job:progress` message: every job of this user,
 * without its output (`events`), and now and then its `latest` line. */
export function onJobProgress(handler) {
  connect().on("job:progress", (payload) => {
    if (payload && Array.isArray(payload.events)) handler(payload);
  });
}

/**
 * Emit `event` and resolve with the server's ack. Resolves with an error-shaped ack
 * (code "timeout") when no answer comes in time, so callers handle one shape only.
 */
export function request(event, payload, timeoutMs = 15000) {
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

export const P = Object.freeze({
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
