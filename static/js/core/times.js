/*
 * Times on the pages, in one convention (the same as the server's utc_time filter,
 * blueprints/http/times.py): UTC, 24-hour, to the second, the zone said —
 * "2026-12-07 21:04:05 UTC" — with the reader's local time in the tooltip.
 * Pure functions (usable in Node's tests) plus `utcTime`, which builds a <time>, and
 * `titleLocalTimes`, which titles the server's time[data-utc] elements; base.html loads
 * this module on every page, and that runs at once there.
 */

const pad = (n) => String(n).padStart(2, "0");

/** A Date from an ISO string, a Date, or seconds since the epoch; null if none. */
function toDate(moment) {
  if (moment === null || moment === undefined || moment === "") return null;
  const date = typeof moment === "number" ? new Date(moment * 1000) : new Date(moment);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "2026-12-07 21:04:05 UTC"; "" for no time. */
export function formatUtc(moment) {
  const d = toDate(moment);
  if (!d) return "";
  return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate())
    + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":"
    + pad(d.getUTCSeconds()) + " UTC";
}

/** "Local time: 2026-12-07 16:04:05 EST" in the reader's zone (or `timeZone`). */
export function localTitle(moment, timeZone) {
  const d = toDate(moment);
  if (!d) return "";
  const parts = {};
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" });
  for (const part of format.formatToParts(d)) parts[part.type] = part.value;
  return "Local time: " + parts.year + "-" + parts.month + "-" + parts.day + " "
    + parts.hour + ":" + parts.minute + ":" + parts.second + " " + parts.timeZoneName;
}

/** A <time> saying the moment in UTC, titled with the local time; null for none. */
export function utcTime(moment, className) {
  const d = toDate(moment);
  if (!d) return null;
  const time = document.createElement("time");
  if (className) time.className = className;
  time.dateTime = d.toISOString();
  time.dataset.utc = "";
  time.textContent = formatUtc(d);
  time.title = localTitle(d);
  return time;
}

/** Titles every time[data-utc] under `root` (the server's) with its local time. */
export function titleLocalTimes(root) {
  for (const time of root.querySelectorAll("time[data-utc]")) {
    if (!time.title) time.title = localTitle(time.dateTime);
  }
}

if (typeof document !== "undefined") titleLocalTimes(document);
