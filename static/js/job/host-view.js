/*
 * A server's part of the job page: its row in the server table (status, step, step
 * timeline, duration, version, reason) and its log section (title, step chips, the
 * failure, wait panel, the windowed log). A failed server's section leads with its
 * failure; a wait step that matched before it is shown as past, not as the news.
 * Rendering reads the host model (reducer.js) and writes only what changed.
 *
 * `page` is the page's state (main.js): {jobId, els, model, parts (name -> the
 * elements of a server), logs (LogSet), lazyLogs, selected, builtHosts, scheduleNear,
 * timing (the servers with a step under way), onTiming (one joined timing)}.
 */
import { el, setAttr, setClass, setHidden, setText } from "../core/dom.js";
import { formatDuration } from "../core/format.js";
import { root } from "../core/http.js";
import { countdown } from "../core/rollout-model.js";
import {
  FINISHED, reasonText, seconds, secondsLeft, versionText, waitWords,
} from "./words.js";

const CELL_LABELS = { batch: "Batch", status: "Status", step: "Step", timeline: "Timeline",
  duration: "Duration", version: "Version", reason: "Reason" };

function hostRow(name, logId, parts) {
  const row = el("tr");
  row.setAttribute("role", "row"); // a table whatever its display (job.html)
  row.dataset.host = name;
  row.dataset.status = "pending";
  const nameCell = el("th", "host-name", name);
  nameCell.scope = "row";
  nameCell.setAttribute("role", "rowheader");
  parts.cells = {
    batch: el("td", "host-batch"),
    status: el("td", "host-status"),
    step: el("td", "host-step"),
    timeline: el("td", "host-timeline"),
    duration: el("td", "host-duration"),
    version: el("td", "host-version"),
    reason: el("td", "host-reason"),
  };
  // Column names for the cards the rows become on a narrow screen (app.css).
  for (const [key, cell] of Object.entries(parts.cells)) {
    cell.dataset.label = CELL_LABELS[key];
    cell.setAttribute("role", "cell");
  }
  parts.statusBadge = el("span", "badge status-pending", "pending");
  parts.reconnectBadge = el("span", "badge status-reconnecting host-reconnecting");
  parts.reconnectBadge.hidden = true;
  parts.cells.status.append(parts.statusBadge, parts.reconnectBadge);
  parts.bar = el("div", "timeline-bar");
  parts.cells.timeline.append(parts.bar);
  const logCell = el("td", "host-actions");
  logCell.setAttribute("role", "cell");
  parts.button = el("button", "button button-small show-log", "Show log");
  parts.button.type = "button";
  parts.button.dataset.host = name;
  parts.button.setAttribute("aria-controls", logId);
  parts.button.setAttribute("aria-pressed", "false");
  parts.button.setAttribute("aria-label", "Show the log of " + name);
  logCell.append(parts.button);
  row.append(nameCell, parts.cells.batch, parts.cells.status, parts.cells.step,
    parts.cells.timeline, parts.cells.duration, parts.cells.version, parts.cells.reason, logCell);
  return row;
}

/** The row and (empty) log section of a server new to the model. The section's title
 * and log are built when it first comes near the screen (buildSection), or at once in
 * a job of at most MANY_HOSTS servers. */
export function addHost(page, host) {
  const name = host.name;
  const logId = "log-" + host.position;
  const parts = { host, built: false };
  parts.row = hostRow(name, logId, parts);
  parts.row.id = "server-" + host.position; // #failed-servers links here (failed.js)
  page.els.hostsBody.append(parts.row);
  const section = el("section", "log-section");
  section.id = logId;
  section.dataset.host = name;
  if (page.selected !== null && page.selected !== name) section.hidden = true;
  parts.section = section;
  page.els.logs.append(section);
  parts.log = page.logs.add(name, section);
  page.parts.set(name, parts);
  if (page.lazyLogs) page.scheduleNear();
  else buildSection(page, parts);
  return parts;
}

/** The title, wait panel and log of a server's section, built once. Until then its
 * events are data only (the log's index, notes and held lines). */
export function buildSection(page, parts) {
  if (parts.built) return;
  parts.built = true;
  page.builtHosts.add(parts);
  const name = parts.host.name;
  const heading = el("div", "log-title");
  parts.logBadge = el("span", "badge status-pending", "pending");
  parts.logReconnect = el("span", "badge status-reconnecting host-reconnecting");
  parts.logReconnect.hidden = true;
  const title = el("h3", "log-host", name);
  parts.chips = el("ol", "step-chips");
  parts.chips.setAttribute("aria-label", "Steps of " + name);
  const download = el("a", "button button-small log-download", "Download");
  download.href = root + "/jobs/" + page.jobId + "/log.txt?host=" + encodeURIComponent(name);
  download.setAttribute("download", "");
  download.setAttribute("aria-label", "Download the full log of " + name);
  parts.jump = el("button", "button button-small log-jump", "Jump to latest");
  parts.jump.type = "button";
  parts.jump.hidden = true;
  parts.jump.setAttribute("aria-label", "Follow the latest output of " + name);
  heading.append(title, parts.logBadge, parts.logReconnect, parts.chips, parts.jump, download);
  const log = el("div", "host-log");
  log.dataset.host = name;
  log.setAttribute("role", "log");
  // role=log is polite by default; a chatty log must not flood screen readers.
  log.setAttribute("aria-live", "off");
  log.setAttribute("aria-label", "Log of " + name);
  log.tabIndex = 0;
  buildWaitPanel(parts, name);
  parts.failure = el("p", "log-failure");
  parts.failure.hidden = true;
  parts.section.append(heading, parts.failure, parts.waitPanel, log);
  parts.log.onScrollState = (hostLog) => { parts.jump.hidden = hostLog.pinned; };
  parts.jump.addEventListener("click", () => parts.log.scrollToEnd());
  page.logs.attach(parts.log, log);
  renderHost(page, parts); // its title's status, steps, wait panel (writes only)
}

/** A wait step's probe: what it said last, and the time left (hidden otherwise). */
function buildWaitPanel(parts, name) {
  parts.waitPanel = el("div", "wait-panel");
  parts.waitPanel.dataset.host = name;
  parts.waitPanel.hidden = true;
  parts.waitState = el("p", "wait-state");
  parts.waitCountdown = el("span", "wait-countdown");
  parts.waitOutput = el("pre", "wait-output");
  parts.waitOutput.setAttribute("aria-label", "Last output of the probe on " + name);
  parts.waitPanel.append(parts.waitState, parts.waitOutput);
}

/** Back to data only: the section is emptied (it keeps the log's height). */
export function unbuildSection(page, parts) {
  if (!parts.built) return;
  parts.built = false;
  page.builtHosts.delete(parts);
  page.logs.detach(parts.log);
  parts.section.replaceChildren();
  for (const key of ["logBadge", "logReconnect", "chips", "jump", "failure", "waitPanel",
    "waitState", "waitCountdown", "waitOutput"]) parts[key] = null;
}

/** The Step cell: the step under way, the wait, the failed step or the gate. */
function stepText(page, host, now) {
  const status = host.status;
  const gate = page.model.rollout.gate;
  if (host.wait && !host.wait.ended && status === "running") return waitWords(host.wait, now);
  if (status === "running") return host.step + (host.phase === "on_failure" ? " (on failure)" : "");
  if (FINISHED.has(status)) {
    if (host.phase === "health" && host.stepStartTs !== null) return host.step + " (soak check)";
    return host.failedStep || (status === "interrupted" ? host.step : "");
  }
  if (status === "pending" && gate && host.batch === gate.next) return "waiting at the gate";
  return "";
}

/** A server's row (and its section's title, if built) from its model. */
export function renderHost(page, parts) {
  const host = parts.host;
  const status = host.status;
  const now = Date.now() / 1000;
  if (parts.row.dataset.status !== status) parts.row.dataset.status = status;
  setClass(parts.statusBadge, "badge status-" + status);
  setText(parts.statusBadge, status);
  if (parts.built) {
    setClass(parts.logBadge, "badge status-" + status);
    setText(parts.logBadge, status);
  }
  renderReconnecting(parts);
  setText(parts.cells.batch, host.batch === null ? "" : String(host.batch + 1));
  setText(parts.cells.step, stepText(page, host, now));
  renderFailure(parts);
  renderWait(parts, now);
  setText(parts.cells.duration, formatDuration(host.duration));
  setText(parts.cells.version, versionText(host));
  const versionTitle = host.versionState === "unverified" ? "A step ran on " +
    host.name + " after it reported this version: its build may differ now." : "";
  if (parts.cells.version.title !== versionTitle) parts.cells.version.title = versionTitle;
  setText(parts.cells.reason, status === "succeeded" ? ""
    : reasonText(host.reason, host.exitCode, host.signal) +
      (host.onFailure === "succeeded" && !host.reason.includes("rolled back to")
        ? "; on_failure steps succeeded" : ""));
  renderTimeline(page, parts, now);
}

/** A failed server's section says so first: the step that failed and why. */
function renderFailure(parts) {
  if (!parts.built) return;
  const host = parts.host;
  const failed = host.status === "failed";
  setHidden(parts.failure, !failed);
  if (!failed) return;
  const why = reasonText(host.reason, host.exitCode, host.signal);
  // The reason names the step, mostly ("step 'x' exited with code 3"): not twice.
  const at = host.failedStep && !why.includes(host.failedStep) ? " at " + host.failedStep : "";
  setText(parts.failure, "Failed" + at + (why ? ": " + why : ""));
}

/** A wait that matched, on a server that failed after it: past, not the news. */
function waitIsPast(host, wait) {
  return Boolean(wait.ended) && wait.ended.status === "ok" &&
    (host.status === "failed" || Boolean(host.failedStep && host.failedStep !== wait.step));
}

/** The wait panel above the server's log: state, countdown and the probe's last output. */
function renderWait(parts, now) {
  if (!parts.built) return; // the panel is in the log's section
  const wait = parts.host.wait;
  setHidden(parts.waitPanel, !wait);
  if (!wait) return;
  const past = waitIsPast(parts.host, wait);
  parts.waitPanel.dataset.state = wait.ended ? wait.ended.status : "waiting";
  if (parts.waitPanel.dataset.past !== String(past)) parts.waitPanel.dataset.past = String(past);
  parts.waitState.replaceChildren(el("strong", "wait-step", wait.step), " ");
  if (wait.ended) {
    parts.waitState.append(el("span", "wait-end", wait.ended.words));
    if (past) {
      parts.waitState.append(el("span", "wait-past", " · earlier; the server failed after it"));
    }
  } else {
    const every = wait.every ? " every " + seconds(wait.every) : "";
    parts.waitState.append("waits for " + wait.until + every +
      (wait.attempt ? " · probe " + wait.attempt + (wait.matched ? " matched" : " did not match")
        : " · first probe running"));
    const left = secondsLeft(wait, now);
    if (left !== null) {
      parts.waitCountdown.textContent = countdown(left) + " left";
      parts.waitState.append(" · ", parts.waitCountdown, ", then " +
        (wait.onTimeout === "proceed" ? "it goes on" : "the step fails"));
    }
  }
  parts.waitOutput.textContent = wait.output.length ? wait.output.join("\n")
    : wait.attempt ? "(the probe printed nothing)" : "";
  parts.waitOutput.hidden = !wait.attempt || past; // the past wait: one line
}

/** "reconnecting to <server>…" next to the server's status, in its row and log title. */
function renderReconnecting(parts) {
  const host = parts.host;
  const state = host.reconnecting;
  const flag = state ? "true" : "false";
  if (parts.row.dataset.reconnecting !== flag) parts.row.dataset.reconnecting = flag;
  let title = "";
  if (state) {
    title = "The SSH connection to " + host.name + " dropped" +
      (state.reason ? " (" + state.reason + ")" : "") + "; its step goes on running on " +
      "the server while the console reconnects" +
      (state.timeout !== null ? " for up to " + formatDuration(state.timeout) : "") + ".";
  }
  for (const badge of parts.built ? [parts.reconnectBadge, parts.logReconnect]
    : [parts.reconnectBadge]) {
    setHidden(badge, !state);
    setText(badge, state ? "reconnecting to " + host.name + "…" : "");
    if (badge.title !== title) badge.title = title;
  }
}

/** Whether the step's segment still grows: running, with no duration yet. */
const growing = (item) => item.status === "running" && item.duration === null;

/** The share of the bar each step takes: its duration, the running step's its time so
 * far (a step that ended without a duration: none), at least 3 % (1 each if nothing has
 * taken time), in thousandths, so a redraw writes only what moved. A reload at the same
 * moment draws the same. */
export function timelineShares(timeline, now) {
  const weights = timeline.map((item) => typeof item.duration === "number" ? item.duration
    : growing(item) && typeof item.startTs === "number" ? Math.max(0, now - item.startTs)
      : 0);
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  // As the browser reads style.flexGrow back ("0.97", not "0.970"): unchanged is unwritten.
  return weights.map((weight) => total > 0
    ? String(Math.round(1000 * Math.max(weight / total, 0.03)) / 1000) : "1");
}

/** Running steps' segments grow as time passes: the servers with a step under way
 * (page.timing) have their bars redrawn every few hundred milliseconds (main.js). */
function noteTiming(page, parts) {
  const running = parts.host.timeline.some(growing);
  if (running === page.timing.has(parts)) return;
  if (running) {
    page.timing.add(parts);
    page.onTiming();
  } else {
    page.timing.delete(parts);
  }
}

/** The bars of the servers with a step under way, as time has passed (writes only;
 * a row the filter hides waits for its next redraw). */
export function renderTimelines(page, now) {
  for (const parts of page.timing) {
    if (!parts.row.hidden) renderBar(parts, timelineShares(parts.host.timeline, now));
  }
}

/** The bar's segments at these shares (kept and changed in place). */
function renderBar(parts, shares) {
  const segments = parts.bar.children;
  shares.forEach((grow, index) => {
    const segment = segments[index] || parts.bar.appendChild(el("span"));
    if (segment.style.flexGrow !== grow) segment.style.flexGrow = grow;
  });
  while (segments.length > shares.length) segments[segments.length - 1].remove();
}

/** The server's steps as a bar (widths by timelineShares) and as labelled chips; the
 * bar's label says it all in words. Elements are kept and changed in place: a step
 * finishing changes one segment and one chip. */
function renderTimeline(page, parts, now) {
  const host = parts.host;
  renderBar(parts, timelineShares(host.timeline, now));
  noteTiming(page, parts);
  const segments = parts.bar.children;
  const chips = parts.built ? parts.chips.children : null;
  const described = [];
  host.timeline.forEach((item, index) => {
    const duration = item.duration === null ? "" : formatDuration(item.duration);
    const text = item.step + (item.phase === "on_failure" ? " (on failure)" : "") + ": " +
      item.status + (duration ? ", " + duration : "");
    described.push(text);
    const segment = segments[index];
    setClass(segment, "timeline-segment status-" + item.status);
    if (segment.title !== text) segment.title = text;
    if (!chips) return; // the chips are in the log's section, not built yet
    const chip = chips[index] || parts.chips.appendChild(el("li"));
    setClass(chip, "step-chip-live badge status-" + item.status);
    setText(chip, item.step + (duration ? " " + duration : ""));
    if (chip.title !== text) chip.title = text;
  });
  while (chips && chips.length > host.timeline.length) chips[chips.length - 1].remove();
  setAttr(parts.bar, "role", "img");
  setAttr(parts.bar, "aria-label", described.length
    ? "Steps of " + host.name + ": " + described.join("; ") : "No steps yet");
}
