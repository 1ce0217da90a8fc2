/*
 * Live job rows on the dashboard (recent jobs) and the history page.
 *
 * Every tab of a user is in the room user:<id> and receives the events of every job that
 * user starts, so a job started in another tab appears here at once (tables marked
 * data-job-feed="insert"; a filtered or later history page only updates its rows), and
 * each row shows its status, how many servers are done and the latest output line as
 * they happen. Rows of running jobs are refreshed from the API after a reconnect, since
 * events missed while disconnected are not replayed to these pages.
 */
(function () {
  "use strict";
  const el = window.Patchbay.el;

  const P = window.Patchbay;
  const table = document.querySelector("table[data-job-feed]");
  if (!P || !table) return;

  const tbody = table.tBodies[0];
  const inserting = table.dataset.jobFeed === "insert";
  const maxRows = Math.max(tbody.querySelectorAll("tr[data-job-id]").length, 10);
  const me = (document.getElementById("current-user") || {}).textContent || "";
  const rows = new Map();
  const fetching = new Set();
  const FINISHED = new Set(["succeeded", "failed", "cancelled", "skipped", "interrupted"]);

  function track(row) {
    const entry = {
      row,
      status: row.dataset.status,
      total: Number(row.dataset.total) || 0,
      done: Number(row.dataset.done) || 0,
      counts: readCounts(row),
      badge: row.querySelector(".job-status-cell"),
      progress: row.querySelector(".job-progress"),
      latest: row.querySelector(".job-latest"),
      duration: row.querySelector(".job-duration"),
    };
    rows.set(Number(row.dataset.jobId), entry);
    return entry;
  }

  function readCounts(row) {
    try {
      return JSON.parse(row.dataset.counts || "{}") || {};
    } catch (err) {
      return {};
    }
  }

  /** As _job_rows.html: "0 / 8 succeeded · 1 failed · 7 skipped" (a stopped rollout is
   * not a finished one). */
  const APART = ["failed", "cancelled", "interrupted", "skipped"];
  function progressText(counts, total) {
    let text = (counts.succeeded || 0) + " / " + total + " succeeded";
    for (const status of APART) {
      if (counts[status]) text += " · " + counts[status] + " " + status;
    }
    return text;
  }

  function render(entry) {
    entry.row.dataset.status = entry.status;
    entry.badge.className = "badge status-" + entry.status + " job-status-cell";
    entry.badge.textContent = entry.status;
    entry.progress.textContent = progressText(entry.counts, entry.total);
  }

  /** A row like templates/jobs/_job_rows.html renders, from what is known so far. */
  function buildRow(job) {
    const row = el("tr", "job-new");
    row.dataset.jobId = String(job.id);
    row.dataset.status = job.status;
    row.dataset.total = String(job.total);
    row.dataset.done = String(job.done);
    const head = el("th");
    head.scope = "row";
    const link = el("a", null, "#" + job.id);
    link.href = P.root + "/jobs/" + job.id;
    head.append(link);
    const what = el("td", "job-what");
    if (job.kind === "adhoc") {
      what.append(el("span", "badge", "ad-hoc"), " ",
        el("code", "kind-adhoc", String((job.params || {}).command || "").slice(0, 80)));
    } else {
      what.append(el("span", "job-runbook", job.runbook), " ");
      const params = el("span", "params");
      for (const [name, value] of Object.entries(job.params || {})) {
        params.append(el("code", null, name + "=" + value), " ");
      }
      what.append(params);
    }
    const status = el("td");
    status.append(el("span", "badge job-status-cell"), " ", el("span", "job-progress"), " ",
      el("span", "job-latest muted"));
    const started = el("td");
    const time = el("time", null, job.createdAt.slice(0, 19).replace("T", " "));
    time.dateTime = job.createdAt;
    started.append(time);
    row.append(head, what, status, el("td", "job-user", job.createdBy || "—"), started,
      el("td", "job-duration"), el("td"));
    return row;
  }

  function insert(job) {
    const empty = tbody.querySelector("tr.empty-row");
    if (empty) empty.remove();
    const entry = track(buildRow(job));
    tbody.prepend(entry.row);
    const all = tbody.querySelectorAll("tr[data-job-id]");
    for (let i = maxRows; i < all.length; i++) {
      rows.delete(Number(all[i].dataset.jobId));
      all[i].remove();
    }
    render(entry);
    return entry;
  }

  /** Insert or refresh a row from GET /api/jobs/<id> (its state as of now). */
  async function refresh(id) {
    if (fetching.has(id)) return;
    fetching.add(id);
    try {
      const { job } = await P.fetchJSON("/api/jobs/" + id);
      let entry = rows.get(id);
      const done = job.hosts.filter((h) => FINISHED.has(h.status)).length;
      const counts = {};
      for (const h of job.hosts) counts[h.status] = (counts[h.status] || 0) + 1;
      if (!entry) {
        if (!inserting) return;
        entry = insert({ id, kind: job.kind, runbook: job.runbook, params: job.params,
          status: job.status, total: job.hosts.length, done, createdBy: job.created_by,
          createdAt: job.created_at });
      }
      entry.status = job.status;
      entry.total = job.hosts.length;
      entry.done = done;
      entry.counts = counts;
      render(entry);
    } catch (err) {
      console.error("job " + id, err);
    } finally {
      fetching.delete(id);
    }
  }

  function apply(entry, events) {
    for (const event of events) {
      const data = event.data || {};
      if (event.type === "host_finished") {
        entry.done = Math.min(entry.total, entry.done + 1);
        const status = data.status || "failed";
        entry.counts[status] = (entry.counts[status] || 0) + 1;
      } else if (event.type === "output" && Array.isArray(data.lines) && data.lines.length) {
        entry.latest.textContent = "[" + event.host + "] " +
          String(data.lines[data.lines.length - 1]).slice(0, 120);
      } else if (event.type === "job_finished") {
        entry.status = data.status || "failed";
        entry.latest.textContent = "";
        if (typeof data.duration === "number") {
          entry.duration.textContent = data.duration.toFixed(1) + " s";
        }
      }
    }
    render(entry);
  }

  for (const row of tbody.querySelectorAll("tr[data-job-id]")) track(row);

  try {
    P.connect();
  } catch (err) {
    console.error(err);
    return;
  }
  let connected = 0;
  P.onConnect(() => {
    connected += 1;
    if (connected === 1) return;
    for (const [id, entry] of rows) {
      if (entry.status === "running") refresh(id);
    }
  });
  P.onJobEvents((payload) => {
    const id = Number(payload.job_id);
    const entry = rows.get(id);
    if (entry) {
      apply(entry, payload.events);
      return;
    }
    if (!inserting) return;
    const started = payload.events.find((event) => event.type === "job_started");
    if (!started || started.seq !== 1) {
      refresh(id); // joined mid-job: take its current state from the API
      return;
    }
    const data = started.data || {};
    const servers = data.servers || [];
    apply(insert({ id, kind: data.kind, runbook: data.runbook, params: data.params,
      status: "running", total: servers.length, done: 0, createdBy: me,
      createdAt: new Date(started.ts * 1000).toISOString() }), payload.events);
  });
})();
