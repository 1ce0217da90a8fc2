/*
 * Search within a job's output (GET /api/jobs/<id>/search): on the server shown, or on
 * all of them. Matches are highlighted in the rendered rows; each result jumps to its
 * line, which the windowed log fetches if it is not held.
 *
 * searchPanel({jobId, logs, hostLog(name), selected(), select(name)}).
 */
import { P } from "../core/live.js";

const el = P.el;

export function searchPanel({ jobId, logs, hostLog, selected, select }) {
  const form = document.getElementById("log-search");
  const input = document.getElementById("search-text");
  const results = document.getElementById("search-results");
  const summary = document.getElementById("search-summary");
  const list = document.getElementById("search-list");
  if (!form) return;

  function describe(count, more, text, scope) {
    const where = scope ? " on " + scope : "";
    if (!count) return "No output line contains “" + text + "”" + where + ".";
    return (more ? "First " : "") + count + " matching line" + (count === 1 ? "" : "s") +
      where + (more ? " (refine the search to see the rest)" : "");
  }

  function hit(match) {
    const log = hostLog(match.host);
    const row = log ? log.rowOf(match.seq, match.index) : -1;
    const button = el("button", "search-hit");
    button.type = "button";
    button.disabled = row < 0; // not applied yet: it is still on its way
    button.append(
      el("span", "search-where", match.host + (row >= 0 ? " · line " + log.lineNumber(row) : "")),
      " ",
      el("span", "search-line " + (match.stream === "stderr" ? "stderr" : "stdout"), match.line));
    button.addEventListener("click", () => {
      if (selected() !== match.host) select(match.host);
      log.scrollToRow(row);
    });
    const item = el("li");
    item.append(button);
    return item;
  }

  async function search(text) {
    logs.highlight(text);
    list.replaceChildren();
    results.hidden = !text;
    if (!text) return;
    const scope = selected();
    summary.textContent = "Searching…";
    let answer;
    try {
      answer = await P.fetchJSON("/api/jobs/" + jobId + "/search?q=" +
        encodeURIComponent(text) + (scope ? "&host=" + encodeURIComponent(scope) : ""));
    } catch (err) {
      summary.textContent = "Search failed: " + err.message;
      return;
    }
    const matches = answer.matches || [];
    summary.textContent = describe(matches.length, answer.more, text, scope);
    list.append(...matches.map(hit));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(input.value.trim());
  });
  input.addEventListener("search", () => {
    if (!input.value) search("");
  });
}
