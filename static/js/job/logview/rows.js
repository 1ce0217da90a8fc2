/* A log row's DOM: an output line (matches of a search marked) or a note. */
import { el } from "../../core/dom.js";
import { PRELUDE } from "./constants.js";

/** Append `text` to `node`, wrapping case-insensitive matches of `term` in <mark>. */
function appendMarked(node, text, term) {
  if (!term) {
    node.append(text);
    return;
  }
  const lower = text.toLowerCase();
  let from = 0;
  for (;;) {
    const at = lower.indexOf(term, from);
    if (at < 0) break;
    if (at > from) node.append(text.slice(from, at));
    node.append(el("mark", null, text.slice(at, at + term.length)));
    from = at + term.length;
  }
  if (from < text.length) node.append(text.slice(from));
}

/** The first line of a step's command that does something: not blank, not a comment,
 * not only shell options (`set -eu`, `set -o pipefail`, `shopt -s nullglob`). */
function firstCommand(command) {
  const lines = command.split("\n");
  for (const line of lines) {
    const text = line.trim();
    if (text && !text.startsWith("#") && !PRELUDE.test(text)) return text;
  }
  return lines[0].trim();
}

export function renderLine(stream, text, term, failed) {
  const node = el("div", "log-row line " + stream + (failed ? " step-failed" : ""));
  appendMarked(node, text === undefined ? "" : text, term);
  return node;
}

/** Notes: {kind: "note"|"end"|"wait", text} (a "wait" note is a wait step's probe line,
 * rewritten by each probe) or a step header
 * {kind: "step", label, step, phase, status, result, command}. */
export function renderNote(note) {
  if (note.kind !== "step") {
    const node = el("div", "log-row log-note" + (note.kind === "end" ? " log-note-end"
      : note.kind === "wait" ? " log-wait" : ""), note.text);
    if (note.status) node.dataset.status = note.status;
    return node;
  }
  const node = el("div", "log-row step-header");
  node.dataset.step = note.step;
  node.dataset.phase = note.phase;
  node.dataset.status = note.status;
  node.append(el("span", "step-label", note.label), " ", el("span", "step-name", note.step),
    " ", el("span", "step-result", note.result));
  if (note.command) {
    const command = el("span", "step-command", "$ " + firstCommand(note.command));
    command.title = note.command;
    node.append(" ", command);
  }
  return node;
}
