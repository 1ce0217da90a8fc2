/*
 * The job's failed servers first (#failed-servers, right under the job's status): a
 * line per failed server, linked to its row (a card on a phone, a screen further down),
 * with the step and the reason; past FAILED_SHOWN of them, a button shows only the
 * failed rows. In the page's reading order, for screen readers as for the eye.
 */
import { el } from "../core/dom.js";
import { plural } from "../core/format.js";
import { reasonText } from "./words.js";

const FAILED_SHOWN = 10;

/** "at check: exit code 3" — the failed step and why, as the row's Reason says. */
export function failedWhy(host) {
  const why = reasonText(host.reason, host.exitCode, host.signal);
  const at = host.failedStep && !why.includes(host.failedStep) ? "at " + host.failedStep : "";
  return [at, why].filter(Boolean).join(": ");
}

/** The failed servers, in page order: [{name, id (their row's), why}]. */
function failedHosts(page) {
  const failed = [];
  for (const parts of page.parts.values()) {
    const host = parts.host;
    if (host.status === "failed") {
      failed.push({ name: host.name, id: parts.row.id, why: failedWhy(host),
        position: host.position });
    }
  }
  return failed.sort((a, b) => a.position - b.position);
}

/** The block from the model; written only when what it says changed. */
export function renderFailed(page) {
  const block = page.els.failedBlock;
  if (!block) return;
  const failed = failedHosts(page);
  const key = JSON.stringify(failed);
  if (block.dataset.key === key) return;
  block.dataset.key = key;
  block.hidden = failed.length === 0;
  page.els.failedTitle.textContent = plural(failed.length, "server") + " failed";
  page.els.failedList.replaceChildren(...failed.slice(0, FAILED_SHOWN).map((host) => {
    const link = el("a", "failed-server-link", host.name);
    link.href = "#" + host.id;
    const item = el("li", "failed-server");
    item.dataset.host = host.name;
    item.append(link);
    if (host.why) item.append(" ", el("span", "failed-server-why", host.why));
    return item;
  }));
  const more = failed.length - FAILED_SHOWN;
  page.els.failedMore.hidden = more <= 0;
  if (more > 0) page.els.failedMore.textContent = "Show only the failed servers (" + more + " more)";
}

/** A link shows its server's row, even one the filter hides; the button filters. */
export function wireFailed(page, reorder) {
  const els = page.els;
  if (!els.failedBlock) return;
  const showAll = () => {
    if (els.hostFilter && els.hostFilter.value && els.hostFilter.value !== "failed") {
      els.hostFilter.value = "";
      reorder();
    }
  };
  els.failedList.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.closest("a")) showAll();
  });
  els.failedMore.addEventListener("click", () => {
    if (!els.hostFilter) return;
    els.hostFilter.value = "failed";
    reorder();
    document.getElementById("hosts-title").scrollIntoView({ block: "start" });
  });
}
