/*
 * Stream health on the job page (#stream-health): how the page is connected (websocket,
 * long-polling, reconnecting), how far behind it is (events known to exist but not yet
 * applied, and the lag of the last live event), and how much it caught up after the
 * last (re)connect. data-state, data-reconnects and data-caught-up are for tests.
 *
 * Exposes PatchbayJob.streamHealth({element, store, live()}) -> {subscribed(lastSeq),
 * received(events), progress()}.
 */
(function () {
  "use strict";

  const P = window.Patchbay;

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  function streamHealth({ element, store, live }) {
    let status = { state: "disconnected", transport: null };
    let connects = 0;
    let catchUp = null; // {from, target, reconnect}
    let caught = null; // {count, from, to, reconnect}
    let lag = null;
    let downSince = null;

    function render() {
      if (!element) return;
      const parts = [];
      if (status.state === "connected") {
        parts.push("Live over " + status.transport);
        const behind = Math.max(0, store.known - store.applied);
        if (catchUp) parts.push("catching up: " + plural(behind, "event") + " behind");
        else if (behind) parts.push(plural(behind, "event") + " behind");
        else parts.push("up to date (seq " + store.applied + ")");
        if (lag !== null && live()) parts.push("lag " + P.formatDuration(lag));
      } else {
        parts.push(status.state === "reconnecting" ? "Reconnecting…" : "Disconnected");
        if (downSince) {
          parts.push("no live events for " + P.formatDuration((Date.now() - downSince) / 1000) +
            " (have seq " + store.applied + ")");
        }
      }
      if (caught) {
        parts.push((caught.reconnect ? "after reconnecting, " : "on load, ") + "caught up " +
          plural(caught.count, "event") +
          (caught.count ? " (seq " + caught.from + "–" + caught.to + ")" : ""));
      }
      element.textContent = parts.join(" · ");
      element.dataset.state = status.state;
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

  window.PatchbayJob = Object.assign(window.PatchbayJob || {}, { streamHealth });
})();
