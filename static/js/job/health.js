/*
 * Stream health on the job page (#stream-health), in words: "live · up to date",
 * "live · catching up", "reconnecting…". Its tooltip holds the numbers: the transport
 * (websocket, long-polling), the seq shown, events behind, the lag of the last live
 * event, and what the last (re)connect caught up. data-state, data-transport,
 * data-reconnects and data-caught-up are for tests.
 *
 * streamHealth({element, store, live()}) -> {subscribed(lastSeq), received(events),
 * progress()}.
 */

import { P } from "../core/live.js";

function plural(count, word) {
  return count + " " + word + (count === 1 ? "" : "s");
}

export function streamHealth({ element, store, live }) {
  let status = { state: "disconnected", transport: null };
  let connects = 0;
  let catchUp = null; // {from, target, reconnect}
  let caught = null; // {count, from, to, reconnect}
  let lag = null;
  let downSince = null;

  /** A short line in words ("live · up to date"); the numbers (transport, seq,
   * lag, what the last (re)connect caught up) go in its tooltip. */
  function render() {
    if (!element) return;
    let text;
    const facts = [];
    if (status.state === "connected") {
      const behind = Math.max(0, store.known - store.applied);
      text = catchUp || behind ? "live · catching up" : "live · up to date";
      facts.push("Live over " + status.transport + ".");
      facts.push("Showing every event up to seq " + store.applied +
        (behind ? "; " + plural(behind, "event") + " behind." : "."));
      if (lag !== null && live()) {
        facts.push("Lag of the last live event: " + P.formatDuration(lag) + ".");
      }
    } else {
      text = status.state === "reconnecting" ? "reconnecting…" : "disconnected";
      if (status.detail) text += " (" + status.detail + ")";
      if (downSince) {
        text += " · no live events for " + P.formatDuration((Date.now() - downSince) / 1000);
      }
      facts.push("Showing every event up to seq " + store.applied + ".");
    }
    if (caught) {
      facts.push((caught.reconnect ? "After reconnecting, caught up " : "On load, caught up ") +
        plural(caught.count, "event") +
        (caught.count ? " (seq " + caught.from + "–" + caught.to + ")." : "."));
    }
    element.textContent = text;
    element.title = facts.join("\n");
    element.dataset.state = status.state;
    element.dataset.transport = status.transport || "";
    element.dataset.reconnects = String(Math.max(0, connects - 1));
    element.dataset.caughtUp = caught ? String(caught.count) : "";
  }

  P.onStatus((next) => {
    status = next;
    if (next.state !== "connected" && downSince === null) downSince = Date.now();
    if (next.state === "connected") downSince = null;
    render();
  });
  setInterval(() => {
    if (status.state !== "connected") render();
  }, 1000);

  return {
    /** A (re)subscription was acknowledged; the job had `lastSeq` events then. */
    subscribed(lastSeq) {
      connects += 1;
      catchUp = { from: store.applied, target: lastSeq, reconnect: connects > 1 };
      this.progress();
    },
    /** Live (not replayed) events arrived. */
    received(events) {
      const last = events[events.length - 1];
      if (last && typeof last.ts === "number") lag = Math.max(0, Date.now() / 1000 - last.ts);
    },
    /** The store applied events. */
    progress() {
      if (catchUp && store.applied >= catchUp.target) {
        caught = { count: store.applied - catchUp.from, from: catchUp.from + 1,
          to: store.applied, reconnect: catchUp.reconnect };
        catchUp = null;
      }
      render();
    },
  };
}
