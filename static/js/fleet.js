/*
 * The servers page, live: rows come from the page, then from `fleet:subscribe` (sent on
 * every connect: the room is joined before the snapshot is read, so nothing falls
 * between), then from `fleet:servers` updates (a job took or released a server, or a
 * reachability round found a change). A row carries `rev` (when the server read it): an
 * older row never replaces a newer one.
 *
 * Builds: each row carries version, previous_version, target_version, drift,
 * agreed_version, newest_version and rollout_job_id/rollout_version
 * (services/builds.py). Drift is relative to the other servers of a tag and to the
 * live rollouts, so when a server's version or rollout changes the page asks for a
 * fresh snapshot (the others' drift may have changed too). A server behind a live
 * rollout is "pending rollout to X", neutral. Reachability rounds send rows without
 * the build fields: those keep what the row had. The filters (?drift=1, ?build=X) hide rows.
 *
 * Operators: Roll back per server and for the checked ones: a confirm dialog naming
 * each server and the build it goes back to (rollback_version: the last build that
 * succeeded there below its current one, with rollback_reason saying so), then POST
 * /api/servers/<name>/rollback (or /api/servers/rollback) and on to the new job's page.
 * Everyone: a row's History unfolds (a <details>) its build history, fetched from
 * GET /api/servers/<name>/builds each time it opens.
 */
import { ask } from "./core/confirm.js";
import { announceError } from "./core/errors.js";
import { P } from "./core/live.js";
import { formatUtc, utcTime } from "./core/times.js";

const el = P.el;
const table = document.getElementById("servers"); // none: no servers yet

const rows = new Map(); // name -> {tr, data}
const checked = document.getElementById("fleet-checked");
for (const tr of table ? table.tBodies[0].rows : []) rows.set(tr.dataset.server, { tr, data: null });
const BUILD_FIELDS = ["version", "version_state", "version_job_id", "previous_version",
  "target_version", "drift", "agreed_version", "newest_version", "rollout_job_id",
  "rollout_version", "rollback_version", "rollback_job_id", "rollback_reason"];
const filter = {
  drift: Boolean(table) && table.dataset.filterDrift === "1",
  build: (table && table.dataset.filterBuild) || "",
};
const mayRollBack = Boolean(table) && table.dataset.mayRollBack === "1";

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
    const when = el("span", "reach-detail", "checked " + ago(data.last_checked));
    when.title = formatUtc(data.last_checked);
    reach.append(when);
  }
  cells.reach.replaceChildren(reach);
  tr.dataset.reachable = reach.dataset.reachable;

  if (mayRollBack && !entry.button) entry.button = tr.querySelector(".rollback-one");
  const button = entry.button ? [" ", entry.button] : [];
  if (!entry.history) entry.history = historyDetails(data.name);
  // Unfolded while the server reports another build: the history has grown.
  if (entry.history.open && tr.dataset.version !== (data.version || "")) entry.history.reload();
  cells.version.replaceChildren(...versionParts(data), ...buildParts(data), ...button,
    entry.history);
  tr.dataset.versionState = data.version_state || "";
  tr.dataset.version = data.version || "";
  tr.dataset.previousVersion = data.previous_version || "";
  tr.dataset.rollbackVersion = data.rollback_version || "";
  tr.dataset.drift = data.drift ? "true" : "false";

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
  if (mayRollBack) renderRollback(entry);
  tr.hidden = !matches(data);
}

function update(list) {
  let versionsMoved = false;
  for (const incoming of list || []) {
    const entry = rows.get(incoming.name);
    if (!entry) continue; // added to the inventory after this page loaded
    if (entry.data && typeof entry.data.rev === "number" && incoming.rev < entry.data.rev) continue;
    const data = Object.assign({}, incoming);
    if (!("drift" in incoming) && entry.data) {
      for (const field of BUILD_FIELDS) data[field] = entry.data[field];
    }
    // A version moved, or a rollout took or let go of a server: others may drift now.
    if (entry.data && ((entry.data.version || null) !== (data.version || null) ||
        (entry.data.rollout_job_id || null) !== (data.rollout_job_id || null))) {
      versionsMoved = true;
    }
    entry.data = data;
    render(entry);
  }
  afterRender();
  return versionsMoved;
}

// --- builds ------------------------------------------------------------------------

/** The build a rollback goes back to and why, the build on its way (a live job's), and
 * drift, after the version. */
function buildParts(data) {
  const parts = [];
  if (data.drift) {
    const flag = el("span", "badge status-failed build-drift", "drift");
    flag.title = "Not on " + data.agreed_version + ", the agreed build of its tag: the " +
      "build most of the servers sharing a tag with it run.";
    parts.push(" ", flag, el("span", "reach-detail", "agreed: " + data.agreed_version));
  }
  if (data.rollout_version && data.rollout_version !== data.version) {
    // Behind a live rollout: its turn comes (or has come), not drift.
    const pending = el("span", "badge status-pending build-pending", "pending rollout to " +
      data.rollout_version);
    pending.title = "Job #" + data.rollout_job_id + " takes this server to " +
      data.rollout_version + " when its turn comes.";
    parts.push(" ", pending, " ", jobLink(data.rollout_job_id));
  } else if (data.target_version && data.target_version !== data.version) {
    parts.push(el("span", "reach-detail build-target", "→ " + data.target_version +
      (data.held_by ? " (job #" + data.held_by + ")" : "")));
  }
  if (data.rollback_version) {
    parts.push(el("span", "reach-detail build-rollback", "Roll back to " +
      (data.rollback_reason || data.rollback_version)));
  }
  return parts;
}

/** A row's build history, folded: opening it fetches the newest entries. */
function historyDetails(name) {
  const details = el("details", "build-history");
  const summary = el("summary", null, "History");
  summary.setAttribute("aria-label", "Build history of " + name);
  const body = el("div", "build-history-body");
  details.append(summary, body);
  details.reload = () => loadHistory(name, body);
  details.addEventListener("toggle", () => {
    if (details.open) details.reload();
  });
  return details;
}

async function loadHistory(name, body) {
  body.replaceChildren(el("span", "muted", "Loading…"));
  let answer = null;
  try {
    const response = await fetch(P.root + "/api/servers/" + encodeURIComponent(name) +
      "/builds", { credentials: "same-origin", headers: { Accept: "application/json" } });
    answer = await response.json();
  } catch (err) {
    answer = { error: { message: "the console did not answer (" + err + ")" } };
  }
  if (!answer || !answer.builds) {
    body.replaceChildren(el("span", "flash-error", "History not loaded: " +
      ((answer && answer.error && answer.error.message) || "unknown error")));
    return;
  }
  if (!answer.builds.length) {
    body.replaceChildren(el("span", "muted", "No builds recorded yet."));
    return;
  }
  const list = el("ol", "build-history-list");
  for (const build of answer.builds) list.append(historyItem(build));
  body.replaceChildren(list);
  if (answer.more) body.append(el("span", "muted", "Older builds are not shown."));
}

function historyItem(build) {
  const item = el("li");
  item.dataset.version = build.version;
  item.dataset.succeeded = String(build.succeeded);
  const when = utcTime(build.reported_at) || "";
  item.append(el("code", null, build.version), " ", when, " ",
    jobLink(build.job_id, (build.kind === "rollback" ? "rollback job #" : "job #") +
      build.job_id), " ",
    el("span", "badge status-" + build.status, build.succeeded ? "succeeded here"
      : build.status + " here"));
  return item;
}

function matches(data) {
  if (filter.drift && !data.drift) return false;
  if (filter.build && filter.build !== (data.version || "unknown")) return false;
  return true;
}

/** Natural order, newest first: numbers compare as numbers (1.10.0 > 1.9.2). */
function newestFirst(a, b) {
  const split = (v) => v.match(/[0-9]+|[A-Za-z]+/g) || [];
  const pa = split(a);
  const pb = split(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if (pa[i] === undefined) return 1;
    if (pb[i] === undefined) return -1;
    const na = /^[0-9]+$/.test(pa[i]);
    const nb = /^[0-9]+$/.test(pb[i]);
    if (na !== nb) return na ? -1 : 1;
    const diff = na ? Number(pb[i]) - Number(pa[i]) : pb[i].localeCompare(pa[i]);
    if (diff) return diff;
  }
  return b.localeCompare(a);
}

function buildLink(label, params, current) {
  const link = el("a", null, label);
  link.href = P.root + "/servers" + (params ? "?" + params : "");
  if (current) link.setAttribute("aria-current", "page");
  return link;
}

/** The groups by build with their counts, from the rows as they are now. */
function renderGroups() {
  const list = document.getElementById("build-groups");
  if (!list) return;
  const groups = new Map();
  let drifted = 0;
  for (const { data } of rows.values()) {
    if (!data) continue;
    const key = data.version || "";
    const group = groups.get(key) || { count: 0, drifted: 0 };
    group.count += 1;
    if (data.drift) {
      group.drifted += 1;
      drifted += 1;
    }
    groups.set(key, group);
  }
  const items = [];
  const all = el("li");
  all.append(buildLink("All servers", "", !filter.drift && !filter.build), " ",
    el("span", "muted", "(" + rows.size + ")"));
  all.firstChild.dataset.filter = "all";
  const drift = el("li");
  drift.append(buildLink("Drifted", "drift=1", filter.drift), " ",
    el("span", "muted", "(" + drifted + ")"));
  drift.firstChild.dataset.filter = "drift";
  drift.lastChild.id = "drift-count";
  items.push(all, drift);
  const versions = [...groups.keys()].filter((v) => v).sort(newestFirst);
  if (groups.has("")) versions.push("");
  for (const version of versions) {
    const group = groups.get(version);
    const label = version || "unknown";
    const item = el("li", "build-group");
    item.dataset.build = label;
    const link = buildLink("", "build=" + encodeURIComponent(label), filter.build === label);
    if (version) link.append("on ", el("code", null, version));
    else link.append("no version reported");
    item.append(link, " ", el("span", "muted build-count", "(" + group.count +
      (group.drifted ? ", " + group.drifted + " drifted" : "") + ")"));
    items.push(item);
  }
  list.replaceChildren(...items);
}

function afterRender() {
  renderGroups();
  const empty = document.getElementById("filter-empty");
  if (empty) empty.hidden = [...rows.values()].some(({ tr }) => !tr.hidden);
  if (mayRollBack) renderSelection();
}

// --- rollback ------------------------------------------------------------------------

const selectedButton = document.getElementById("rollback-selected");
const selectionNote = document.getElementById("rollback-selection");
const rollbackError = document.getElementById("rollback-error");

function rollbackBlocker(data) {
  if (!data) return "loading";
  if (!data.rollback_version) return data.name + " has no earlier good build to roll back to";
  if (data.held_by) return data.name + " is busy in job #" + data.held_by;
  return null;
}

function renderRollback(entry) {
  const { tr, data } = entry;
  const why = rollbackBlocker(data);
  const button = entry.button;
  const pick = tr.querySelector(".rollback-pick");
  if (button) {
    // Nothing to go back to: no button at all; busy: shown, disabled, saying why.
    button.hidden = !data || !data.rollback_version;
    button.disabled = Boolean(why);
    button.title = why || "Roll " + data.name + " back to " + data.rollback_reason;
  }
  if (pick) {
    pick.disabled = Boolean(why);
    if (why) pick.checked = false;
    pick.title = why || "";
  }
}

function picked() {
  return [...rows.values()].filter(({ tr }) => {
    const pick = tr.querySelector(".rollback-pick");
    return pick && pick.checked && !tr.hidden;
  }).map(({ data }) => data);
}

function renderSelection() {
  if (!selectedButton) return;
  const chosen = picked();
  selectedButton.disabled = chosen.length === 0;
  selectedButton.textContent = chosen.length ? "Roll back " + chosen.length +
    " selected" : "Roll back selected";
  selectionNote.textContent = chosen.length
    ? chosen.map((data) => data.name).join(", ")
    : "Select servers to roll back several at once.";
}

async function rollBack(servers) {
  const lines = servers.map((data) => data.name + ": " + (data.version || "unknown") +
    " → " + data.rollback_version + (data.rollback_job_id
    ? " (the last build that succeeded there, job #" + data.rollback_job_id + ")" : ""));
  lines.push(servers.length === 1
    ? "A rollback job runs the runbook's rollback section on this server: it switches " +
      "to that build and restarts its game server."
    : "One rollback job runs the runbook's rollback section on these servers: each " +
      "switches to its own build above and restarts its game server.");
  const title = servers.length === 1 ? "Roll back " + servers[0].name + "?"
    : "Roll back " + servers.length + " servers?";
  const yes = await ask({
    title, lines, danger: true,
    confirm: servers.length === 1 ? "Roll back to " + servers[0].rollback_version
      : "Roll back " + servers.length + " servers",
    dismiss: "Keep the current builds",
  });
  if (!yes) return;
  rollbackError.hidden = true;
  const path = servers.length === 1
    ? "/api/servers/" + encodeURIComponent(servers[0].name) + "/rollback"
    : "/api/servers/rollback";
  const body = servers.length === 1 ? {} : { servers: servers.map((data) => data.name) };
  let answer = null;
  try {
    const response = await fetch(P.root + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json",
        "X-CSRFToken": P.csrfToken() },
      body: JSON.stringify(body),
    });
    answer = await response.json();
  } catch (err) {
    answer = { ok: false, error: { message: "the console did not answer (" + err + ")" } };
  }
  if (answer && answer.ok) {
    window.location.assign(P.root + "/jobs/" + answer.job_id);
    return;
  }
  // Said where the eye is: the message is above the table, the button may be far below.
  announceError(rollbackError, "Not rolled back: " + ((answer && answer.error &&
    answer.error.message) || "unknown error"));
}

if (mayRollBack) {
  table.addEventListener("click", (event) => {
    const button = event.target.closest(".rollback-one");
    if (!button || button.disabled) return;
    const entry = rows.get(button.dataset.server);
    if (entry && entry.data && !rollbackBlocker(entry.data)) rollBack([entry.data]);
  });
  table.addEventListener("change", (event) => {
    if (event.target.classList.contains("rollback-pick")) renderSelection();
  });
  if (selectedButton) {
    selectedButton.addEventListener("click", () => {
      const chosen = picked();
      if (chosen.length) rollBack(chosen);
    });
  }
}

let first = true; // the first subscribe asks for a probe round

// A version changed: other servers of its tags may drift now (or no longer).
let refreshing = null;
function refreshSoon() {
  if (refreshing) return;
  refreshing = setTimeout(async () => {
    refreshing = null;
    const ack = await P.request("fleet:subscribe", { probe: false });
    if (ack.ok) update(ack.servers);
  }, 300);
}

if (table) {
  update(JSON.parse(document.getElementById("fleet-data").textContent || "[]"));

  P.connect();
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
    if (update(payload.servers)) refreshSoon();
    if (payload.checked_at) {
      for (const entry of rows.values()) {
        if (entry.data) {
          entry.data.last_checked = payload.checked_at;
          render(entry);
        }
      }
      checked.replaceChildren("Reachability checked ", utcTime(payload.checked_at) || "");
    }
  });
}
