/* The windowed logs' sizes and budgets (see log-set.js). */

export const ROW_PX = 20; // keep in step with .log-row in app.css
export const FULL_ROWS = 5000; // all servers' rows together, rendered whole
export const HELD_LINES = 60000; // lines held across all servers (beyond the rows on screen)
export const MIN_HOST_LINES = 300; // ... but at least this tail per server
export const OVERSCAN = 15; // rows rendered above and below the visible ones
export const MAX_CANVAS_PX = 15000000; // stay well below the browser's largest element
export const MAX_LOG_PX = 448; // a log's largest height: keep in step with .host-log in app.css
export const TITLE_PX = 34; // about the height of a log's title (.log-title)
export const FETCH_EVENTS = 40; // output events per fetch
export const FETCH_LINES = 4000; // ... or this many lines
export const RETRY_MS = 2000;
export const WRAP_QUERY = "(max-width: 700px)"; // keep in step with the phone layout in app.css
export const WRAP_KEY = "patchbay.wrapLogs";
// A line that only sets shell options: not what a step header should show.
export const PRELUDE = /^(set(\s+[-+][A-Za-z]+(\s+[a-z]+)?)+|shopt(\s+-[a-z]+)+(\s+[a-z_]+)*)\s*;?$/;
