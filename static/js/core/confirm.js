/*
 * Asking before an action that is hard to take back (cancelling a job, running on many
 * servers, re-running): an HTML <dialog> that says what will happen, with the action's
 * own words on its confirm button. Escape, or the dismiss button, closes it and nothing
 * happens; the dismiss button has the focus, so a stray Enter does nothing either.
 *
 * ask({title, lines, confirm, dismiss, danger}) resolves to true
 * only when the confirm button was pressed. `lines` are strings (a paragraph each) or
 * DOM nodes. For tests: the dialog is #confirm-dialog, its buttons #confirm-accept and
 * #confirm-dismiss.
 */

let dialog = null;
let parts = null;
let settle = null;

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function build() {
  dialog = make("dialog", "confirm-dialog");
  dialog.id = "confirm-dialog";
  dialog.setAttribute("aria-labelledby", "confirm-title");
  dialog.setAttribute("aria-describedby", "confirm-body");
  const form = make("form", "confirm-form");
  form.method = "dialog";
  parts = {
    title: make("h2", "confirm-title"),
    body: make("div", "confirm-body"),
    dismiss: make("button", "button"),
    accept: make("button", "button button-primary"),
  };
  parts.title.id = "confirm-title";
  parts.body.id = "confirm-body";
  parts.dismiss.id = "confirm-dismiss";
  parts.dismiss.value = "dismiss";
  parts.accept.id = "confirm-accept";
  parts.accept.value = "confirm";
  const actions = make("div", "confirm-actions");
  actions.append(parts.dismiss, parts.accept);
  form.append(parts.title, parts.body, actions);
  dialog.append(form);
  // Escape closes the dialog without a returnValue: the answer is no.
  dialog.addEventListener("close", () => {
    const done = settle;
    settle = null;
    if (done) done(dialog.returnValue === "confirm");
  });
  document.body.append(dialog);
}

/** Show the question; resolves to whether the action was confirmed. */
export function ask({ title, lines = [], confirm, dismiss = "Cancel", danger = false }) {
  if (!dialog) build();
  // One question at a time: also while a closed one's answer is still on its way
  // (the close event comes a task later), or that answer would never be delivered.
  if (dialog.open || settle) return Promise.resolve(false);
  parts.title.textContent = title;
  parts.body.replaceChildren(...lines.map((line) =>
    typeof line === "string" ? make("p", null, line) : line));
  parts.accept.textContent = confirm;
  parts.accept.className = "button " + (danger ? "button-danger" : "button-primary");
  parts.dismiss.textContent = dismiss;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    settle = resolve;
    dialog.showModal();
    parts.dismiss.focus();
  });
}

