/*
 * Errors shown where the eye is, the same way on every page: the message is brought
 * into view and announced (role="alert"), the field at fault is marked (aria-invalid,
 * aria-describedby naming the message) and gets the focus, so a refusal is never a
 * line far above the button that was pressed.
 *
 *   showFieldError(field, content, {box, focus})  the message just by the field (a
 *       control, or a fieldset: after its legend), which is marked; `box` the page's own
 *       message element to move there (put back where it was when cleared; default: a
 *       new one), `focus` the control to focus (default: the field, or a fieldset's
 *       first visible control)
 *   announceError(box, content)  a form-wide message in `box`, scrolled to and focused
 *   clearErrors(root)  every message and mark these functions left in `root`
 *
 * `content` is a string or an array of nodes and strings. A page rendered with an error
 * (`.form-error[role=alert]`: the admin forms, the account page, the history's filter)
 * is announced on load (base.html loads this module on every page); with
 * `data-field="<id>"` the message moves beside that field.
 */

const MARK = "data-error-for"; // on a message beside a field: the id of that field
const homes = new WeakMap(); // a page's message moved beside a field: where it was

function nodes(content) {
  return Array.isArray(content) ? content : [String(content)];
}

let made = 0;
function idOf(node, prefix) {
  if (!node.id) node.id = prefix + "-" + (++made);
  return node.id;
}

function describedBy(field, id, add) {
  const ids = (field.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean)
    .filter((each) => each !== id);
  if (add) ids.push(id);
  if (ids.length) field.setAttribute("aria-describedby", ids.join(" "));
  else field.removeAttribute("aria-describedby");
}

function visible(node) {
  return node.getClientRects().length > 0;
}

function focusable(field) {
  if (field.matches("input, select, textarea, button")) return field;
  return Array.from(field.querySelectorAll("input, select, textarea, button"))
    .find((node) => !node.disabled && visible(node)) || null;
}

/** Focus `target` without the browser's own jump, then bring `shown` to the middle. */
function reveal(shown, target) {
  if (target) target.focus({ preventScroll: true });
  shown.scrollIntoView({ block: "center", inline: "nearest" });
}

/** The message beside `field`, marked and focused. Returns the message element. */
export function showFieldError(field, content, options = {}) {
  const fieldId = idOf(field, "field");
  let box = options.box || document.querySelector("[" + MARK + '="' + fieldId + '"]');
  if (!box) {
    box = document.createElement("p");
    box.className = "form-error";
    box.id = fieldId + "-error";
  } else if (box.getAttribute(MARK) && box.getAttribute(MARK) !== fieldId) {
    takeAway(box);
  }
  if (box.isConnected && !homes.has(box) && !box.hasAttribute(MARK)) {
    const home = document.createComment("the error's place");
    box.before(home);
    homes.set(box, home);
  }
  idOf(box, "error");
  box.classList.add("field-error");
  box.setAttribute(MARK, fieldId);
  const legend = field.matches("fieldset") ? field.querySelector(":scope > legend") : null;
  if (legend) legend.after(box);
  else field.after(box);
  box.setAttribute("role", "alert");
  box.replaceChildren(...nodes(content));
  box.hidden = false;
  field.setAttribute("aria-invalid", "true");
  describedBy(field, box.id, true);
  reveal(box, options.focus || focusable(field));
  return box;
}

/** A form-wide message in `box` (role=alert), scrolled to and focused. */
export function announceError(box, content) {
  if (content !== undefined) box.replaceChildren(...nodes(content));
  box.setAttribute("role", "alert");
  if (!box.hasAttribute("tabindex")) box.setAttribute("tabindex", "-1");
  box.hidden = false;
  reveal(box, box);
  return box;
}

/** A message beside a field goes: the field's mark with it; a page's own message
 * back to its place, hidden; one made here, removed. */
function takeAway(box) {
  const field = document.getElementById(box.getAttribute(MARK));
  if (field) {
    field.removeAttribute("aria-invalid");
    describedBy(field, box.id, false);
  }
  box.removeAttribute(MARK);
  box.classList.remove("field-error");
  const home = homes.get(box);
  if (!home) {
    box.remove();
    return;
  }
  homes.delete(box);
  home.replaceWith(box);
  box.hidden = true;
}

/** Take away the message of `field` and its mark (a field corrected by hand). */
export function clearFieldError(field) {
  field.removeAttribute("aria-invalid");
  const box = field.id ? document.querySelector("[" + MARK + '="' + field.id + '"]') : null;
  if (box) takeAway(box);
}

/** Every message and mark of these functions inside `root`. */
export function clearErrors(root) {
  for (const box of root.querySelectorAll("[" + MARK + "]")) takeAway(box);
  for (const field of root.querySelectorAll('[aria-invalid="true"]')) {
    field.removeAttribute("aria-invalid");
  }
}

/** A page rendered with an error: say it where the eye is, once the page is up. */
function announceRendered() {
  const box = document.querySelector(".form-error[role=alert]:not([hidden])");
  if (!box || box.hasAttribute(MARK) || !box.textContent.trim()) return;
  const field = box.dataset.field ? document.getElementById(box.dataset.field) : null;
  if (field) {
    showFieldError(field, Array.from(box.childNodes), { box }); // moved beside it
  } else {
    announceError(box);
  }
}

if (typeof document !== "undefined" && document.body) announceRendered();
