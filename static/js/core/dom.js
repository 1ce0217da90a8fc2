/*
 * Small DOM helpers shared by every page: elements with text (never HTML), the pages'
 * JSON data blocks, and writes that skip unchanged values (at a thousand servers a
 * frame writes only changes: a write that changes nothing still costs style and layout).
 */

/** A new element with an optional class and text (never HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** The JSON data block with this id (a <script type="application/json">). */
export function readJSON(id, fallback) {
  const node = document.getElementById(id);
  if (!node) return fallback;
  try {
    return JSON.parse(node.textContent);
  } catch (err) {
    console.error("bad JSON in #" + id, err);
    return fallback;
  }
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function setClass(node, name) {
  if (node.className !== name) node.className = name;
}

export function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

export function setHidden(node, hidden) {
  if (node.hidden !== hidden) node.hidden = hidden;
}
