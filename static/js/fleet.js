/*
 * The servers page, live: rows come from the page, then from `fleet:subscribe` (sent on
 * every connect: the room is joined before the snapshot is read, so nothing falls
 * between), then from `fleet:servers` updates (a job took or released a server, or a
 * reachability round found a change). A row carries `rev` (when the server read it): an
 * older row never replaces a newer one.
 */
(function () {
  "use strict";
  const el = window.Patchbay.el;

  const P = window.Patchbay;
  const table = document.getElementById("servers");
  if (!P || !table) return;

  const rows = new Map(); // name -> {tr, data}
  const checked = document.getElementById("fleet-checked");
  for (const tr of table.tBodies[0].rows) rows.set(tr.dataset.server, { tr, data: null });

  function jobLink(id, text) {
    const link = el("a", null, text || "#" + id);
    link.href = P.root + "/jobs/" + id;
    return link;
  }

  function ago(iso) {
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  /** The version the server last reported; "(unverified)" when a job may have changed
   * its build since (a step ran and the job ended cancelled, failed or interrupted
   * before the server reported again), with why in its title and a link to that job. */
  function versionParts(data) {
    if (!data.version) return [el("span", "muted", "unknown")];
    const parts = [el("code", null, data.version)];
    if (data.version_state === "unverified") {
      const job = data.version_job_id ? "job #" + data.version_job_id : "a job";
      const note = el("span", "version-unverified", "(unverified)");
      note.title = "Not verified: " + job + " ran a step on this server that may change " +
        "its build, and ended before the server reported its version again. " +
        data.version + " is the last version it reported, not necessarily what it runs " +
        "now; run the runbook again to verify it.";
      parts.push(" ", note);
      if (data.version_job_id) parts.push(" ", jobLink(data.version_job_id));
    }
    return parts;
  }

  function render(entry) {
    const { tr, data } = entry;
    const cells = {
      reach: tr.querySelector(".server-reach"),
      version: tr.querySelector(".server-version"),
      held: tr.querySelector(".server-held"),
      last: tr.querySelector(".server-last-job"),
    };
    const reach = el("span", "reach");
    reach.dataset.reachable = data.reachable === null || data.reachable === undefined
      ? "unknown" : String(data.reachable);
    reach.append(data.reachable === true ? "reachable"
      : data.reachable === false ? "unreachable" : "not checked yet");
    if (data.reachable === false && data.reach_error) {
      reach.append(el("span", "reach-detail", data.reach_error));
    }
    if (data.last_checked) {
      reach.append(el("span", "reach-detail", "checked " + ago(data.last_checked)));
    }
    cells.reach.replaceChildren(reach);
    tr.dataset.reachable = reach.dataset.reachable;

    cells.version.replaceChildren(...versionParts(data));
    tr.dataset.versionState = data.version_state || "";

    if (data.held_by) {
      const badge = el("span", "badge status-running", "in job ");
      badge.append(jobLink(data.held_by));
      cells.held.replaceChildren(badge);
    } else {
      cells.held.replaceChildren(el("span", "muted", "idle"));
    }
    tr.dataset.heldBy = data.held_by ? String(data.held_by) : "";

    if (data.last_job_id) {
      const parts = [jobLink(data.last_job_id)];
      if (data.last_status) {
        parts.push(" ", el("span", "badge status-" + data.last_status, data.last_status));
      }
      cells.last.replaceChildren(...parts);
    } else {
      cells.last.replaceChildren(el("span", "muted", "never"));
    }
    tr.dataset.lastStatus = data.last_status || "";
  }

  function update(list) {
    for (const data of list || []) {
      const entry = rows.get(data.name);
      if (!entry) continue; // added to the inventory after this page loaded
      if (entry.data && typeof entry.data.rev === "number" && data.rev < entry.data.rev) continue;
      entry.data = data;
      render(entry);
    }
  }

  update(JSON.parse(document.getElementById("fleet-data").textContent || "[]"));

  P.connect();
  let first = true;
  P.onConnect(async () => {
    let ack = await P.request("fleet:subscribe", { probe: first });
    if (!ack.ok && ack.error && ack.error.code === "rate_limited") {
      ack = await P.request("fleet:subscribe", { probe: false }); // a round comes anyway
    }
    first = false;
    if (ack.ok) update(ack.servers);
  });
  P.connect().on("fleet:servers", (payload) => {
    if (!payload) return;
    update(payload.servers);
    if (payload.checked_at) {
      for (const entry of rows.values()) {
        if (entry.data) {
          entry.data.last_checked = payload.checked_at;
          render(entry);
        }
      }
      checked.textContent = "Reachability checked " + payload.checked_at.slice(11, 19) + " UTC";
    }
  });
})();
