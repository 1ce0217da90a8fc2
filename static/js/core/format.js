/* Number formats shared by the pages (pure: no DOM, usable in Node's tests). */

/** "0.4 s", "42 s", "3 min 05 s", "1 h 02 min"; "" for no number. */
export function formatDuration(seconds) {
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

/** "3 servers", "1 server". */
export const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
