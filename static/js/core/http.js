/*
 * The console's address and same-origin HTTP: the URL root the console is mounted at
 * (body[data-root]), the page's CSRF token and JSON GETs. Importing this module touches
 * no DOM (Node's tests import the event store, which fetches through it).
 */

export const root = typeof document !== "undefined" && document.body
  ? document.body.dataset.root || "" : "";

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** GET a same-origin JSON resource; throws on HTTP errors. */
export async function fetchJSON(path) {
  const response = await fetch(root + path, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
  });
  if (!response.ok) {
    const error = new Error("HTTP " + response.status + " for " + path);
    error.status = response.status;
    throw error;
  }
  return response.json();
}
