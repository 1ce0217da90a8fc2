/*
 * Log sections near the screen (a job of more than MANY_HOSTS servers: page.lazyLogs).
 * The sections not built are empty boxes of their log's height in server order, so the
 * shown ones are found by a binary search on their positions: no observer of thousands
 * of elements (Chromium computes every observed target's intersection on every frame:
 * 13 ms a frame at 5,000 servers). They are measured at the start of the page's frame
 * (flush), before it writes anything, and built at its end: a frame lays the page out
 * once.
 */
import { buildSection, unbuildSection } from "./host-view.js";

const MAX_BUILT = 40; // ... and at most twice this many built (see buildNear)
// Building log sections (buildNear), at most this many a frame: those on screen first,
// those within the margin once the page has not scrolled for SETTLE_MS. Emptying
// sections past twice MAX_BUILT: at most EVICT_FRAME a frame.
const BUILD_FRAME = 2;
const SETTLE_MS = 150;
const EVICT_FRAME = 8;

/** The state of the sections near the screen, kept in page.near. */
export function createNear() {
  return {
    queued: false,
    evicting: false, // emptying built sections down to MAX_BUILT
    scrolledAt: -Infinity, // the page's last scroll event ...
    scrollY: window.scrollY, // ... where it left the page ...
    scrollStep: 0, // ... and how far it had moved it since the one before
    settleTimer: 0,
  };
}

/** Follow the page's scrolling and resizing (lazyLogs only). */
export function watchScroll(page) {
  const near = page.near;
  window.addEventListener("scroll", () => {
    near.scrolledAt = performance.now();
    near.scrollStep = Math.abs(window.scrollY - near.scrollY);
    near.scrollY = window.scrollY;
    page.scheduleNear();
  }, { passive: true });
  window.addEventListener("resize", () => page.scheduleNear());
}

/** Reads only: the shown servers whose sections are on screen, and those within half
 * a screen's height of it. */
export function measureNear(page) {
  page.near.queued = false;
  const shown = page.shownHosts;
  const height = window.innerHeight;
  const margin = height / 2;
  const onScreen = [];
  const near = [];
  let lo = 0;
  let hi = shown.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (shown[mid].section.getBoundingClientRect().bottom > -margin) hi = mid;
    else lo = mid + 1;
  }
  for (let i = lo; i < shown.length; i++) {
    const parts = shown[i];
    const box = parts.section.getBoundingClientRect();
    if (box.top > height + margin) break;
    near.push(parts);
    if (box.bottom > 0 && box.top < height) onScreen.push(parts);
  }
  return { onScreen, near };
}

/** Past twice MAX_BUILT built sections, empty those longest away from the view down to
 * MAX_BUILT, EVICT_FRAME a frame (never the selected one, nor one with the focus).
 * Returns whether more are to go. */
function evict(page, found) {
  const built = page.builtHosts;
  if (built.size > 2 * MAX_BUILT) page.near.evicting = true;
  if (!page.near.evicting) return false;
  let evicts = EVICT_FRAME;
  for (const parts of Array.from(built)) {
    if (built.size <= MAX_BUILT || evicts === 0) break;
    if (found.near.includes(parts) || parts.host.name === page.selected ||
        parts.section.contains(document.activeElement)) continue;
    unbuildSection(page, parts);
    evicts -= 1;
  }
  page.near.evicting = built.size > MAX_BUILT && evicts === 0;
  return page.near.evicting;
}

/** Writes only: build at most BUILD_FRAME sections of `found` (measureNear), those on
 * screen first, those within the margin only once the page has stopped scrolling (a
 * fast scroll passes most logs by), none while it moves a screen's height or more a
 * frame (no one reads a log that passes in a frame: they are built where it stops);
 * then evict. What is left waits for the next frame. */
export function buildNear(page, found) {
  const near = page.near;
  const settled = performance.now() - near.scrolledAt >= SETTLE_MS;
  const flung = !settled && near.scrollStep >= window.innerHeight;
  const most = flung ? 0 : BUILD_FRAME;
  let builds = 0;
  let more = false;
  for (const parts of settled ? [...found.onScreen, ...found.near] : found.onScreen) {
    if (parts.built) continue;
    if (builds === most) {
      more = !flung;
      break;
    }
    buildSection(page, parts);
    builds += 1;
  }
  for (const parts of found.near) {
    if (!parts.built) continue;
    page.builtHosts.delete(parts); // most recently near: last
    page.builtHosts.add(parts);
  }
  more = evict(page, found) || more;
  // Built sections take their own height: look again once it is laid out.
  if (builds || more) {
    page.scheduleNear();
  } else if (!settled && found.near.some((parts) => !parts.built)) {
    // The near ones once the scroll settles.
    clearTimeout(near.settleTimer);
    near.settleTimer = setTimeout(() => page.scheduleNear(),
      SETTLE_MS - (performance.now() - near.scrolledAt));
  }
}
