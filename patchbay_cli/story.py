"""What a job's events say, the same for every renderer: this client's copy of the
console's event types, and the short sentences for the events that are not output
(the first line of a followed job, each step and result, the last summary line)."""

from __future__ import annotations

from typing import Any

from patchbay_cli.tables import param_words

HOST_END_STATUSES = ("succeeded", "failed", "cancelled", "skipped", "interrupted")
# The event types of a job's log: this client's copy of the console's catalogue
# (tasks.events.catalogue; this package imports nothing of the app, and
# tests/engine/test_event_catalogue.py checks that the copies agree). Types not listed
# here (added later) get no line: clients ignore types they do not know.
EVENT_TYPES = ("job_started", "batch_started", "host_started", "step_started", "output",
               "host_reconnecting", "host_reconnected", "step_finished", "host_finished",
               "job_recovered", "job_finished", "events_pruned", "wait_probe", "job_paused",
               "job_resumed", "job_aborted", "soak_started", "soak_finished")
# The gates' events (the catalogue's GATE_STATES), said as the rollout's story.
GATE_EVENTS = ("job_paused", "job_resumed", "job_aborted", "soak_started", "soak_finished")
# Types no sentence is said for: output is shown as its lines, and a pruned log's
# first event is followed by its job_finished, which is.
UNSAID_EVENTS = frozenset({"output", "events_pruned"})
# Events the terminal shows as a line; the bars show the others (steps starting, ok).
LOUD_EVENTS = frozenset({"job_started", "job_recovered", "batch_started", "host_finished",
                         "job_paused", "job_resumed", "job_aborted", "soak_started",
                         "soak_finished", "wait_probe",
                         "host_reconnecting", "host_reconnected"})


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class JobStory:
    """Turns events that are not output into short sentences, the same for both
    renderers; remembers what later sentences need (step count, batch count)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.steps: list[str] = []
        self.batches = 0

    def describe(self, event: dict[str, Any]) -> str | None:
        """A sentence for ``event`` (``None``: nothing worth a line)."""
        data = event.get("data") or {}
        kind = event.get("type")
        if kind == "job_started":
            self.steps = list(data.get("steps") or [])
            self.batches = len(data.get("batches") or [])
            return _job_started(data, self.batches)
        if kind == "batch_started" and self.batches > 1:
            servers = ", ".join(data.get("servers") or [])
            return f"batch {int(data.get('batch', 0)) + 1}/{self.batches}: {servers}"
        if kind == "host_started":
            return "started"
        if kind == "step_started":
            if data.get("phase") == "on_failure":
                return f"on failure: {data.get('step')}"
            total = f"/{len(self.steps)}" if self.steps else ""
            return f"step {int(data.get('index', 0)) + 1}{total}: {data.get('step')}"
        if kind == "step_finished":
            return _step_finished(data)
        if kind == "host_reconnecting":
            return (f"SSH connection lost ({data.get('reason')}); reconnecting for up to "
                    f"{data.get('timeout')} s")
        if kind == "host_reconnected":
            return "SSH connection back; reading on"
        if kind == "host_finished":
            return _host_finished(data)
        if kind == "job_recovered":
            return f"resumed by node {data.get('node')}: {data.get('reason')}"
        if kind in GATE_EVENTS or kind == "wait_probe":
            return _rollout_event(kind, data, self.job_id)
        if kind == "job_finished":
            return summary(self.job_id, data)
        return None  # a type this client does not know: new ones may be added


def _rollout_event(kind: str, data: dict[str, Any], job_id: int) -> str | None:
    """Gates between batches, and a wait step's probes."""
    batch = int(data.get("batch", 0)) + 1
    if kind == "job_paused":
        return (f"paused after batch {batch}: waiting for an operator to promote it "
                f"(patchbay promote {job_id}) or abort it")
    if kind == "job_resumed":
        return f"promoted by {data.get('by')}: batch {batch} starts"
    if kind == "job_aborted":
        return f"aborted at the gate after batch {batch} by {data.get('by')}"
    if kind == "soak_started":
        return f"soaking batch {batch} for {data.get('seconds'):g} s, then health checks again"
    if kind == "soak_finished":
        if data.get("passed"):
            return f"batch {batch} is still healthy after the soak"
        return str(data.get("reason") or f"batch {batch} failed its health check")
    if data.get("matched"):
        return None  # the step's end says it
    said = " / ".join(data.get("output") or []) or "no output"
    return (f"{data.get('step')}: probe {data.get('attempt')} says {said[:200]}; "
            f"{data.get('remaining', 0):g} s left")


def _job_started(data: dict[str, Any], batches: int) -> str:
    servers = data.get("servers") or []
    where = f"{len(servers)} server{'s' if len(servers) != 1 else ''}"
    if data.get("kind") == "adhoc":
        return f"started ad-hoc command on {where}: {data.get('params', {}).get('command')}"
    params = ", ".join(param_words(data))
    parallel = (data.get("strategy") or {}).get("parallel")
    plan = f"{batches} batches, " if batches > 1 else ""
    return (f"started {title(data)}{f' ({params})' if params else ''} on {where}"
            f" ({plan}{parallel} at once)")


def title(job: dict[str, Any]) -> str:
    """The job as the pages call it: its runbook, or "Roll back (game-update)"."""
    if job.get("title"):
        return job["title"]
    runbook = job.get("runbook")
    return f"Roll back ({runbook})" if job.get("kind") == "rollback" else str(runbook)


def _step_finished(data: dict[str, Any]) -> str:
    status = data.get("status")
    text = f"{data.get('step')} {status}"
    if status != "ok" and data.get("exit_code") is not None:
        text += f" (exit {data.get('exit_code')})"
    text += f" in {duration(data.get('duration'))}"
    if status != "ok" and data.get("reason"):
        text += f": {data['reason']}"
    return text


def _host_finished(data: dict[str, Any]) -> str:
    status = data.get("status")
    if status == "succeeded":
        facts = ", ".join(f"{k} {v}" for k, v in (data.get("facts") or {}).items())
        return f"succeeded in {duration(data.get('duration'))}" + (f" ({facts})" if facts
                                                                      else "")
    text = str(status)
    if data.get("failed_step"):
        text += f" at {data['failed_step']}"
    if data.get("exit_code") is not None:
        text += f" (exit {data['exit_code']})"
    if data.get("reason"):
        text += f": {data['reason']}"
    return text


def header(job: dict[str, Any]) -> str:
    """``job #12 game-update (version=1.4.2), running``: the first line."""
    what = title(job)
    if job.get("kind") == "adhoc":
        what = f"ad-hoc `{(job.get('params') or {}).get('command')}`"
    elif param_words(job):
        what += " (" + ", ".join(param_words(job)) + ")"
    if job.get("builds_words"):
        what += f" {job['builds_words']}"
    return f"job #{job['id']} {what}, {job.get('status')}"


def summary(job_id: int, data: dict[str, Any]) -> str:
    """The last line: ``job #12 failed in 3.1 s: 7 succeeded, 1 failed (reason)``."""
    given = data.get("counts") or {}
    order = [s for s in HOST_END_STATUSES if s in given] + \
        sorted(s for s in given if s not in HOST_END_STATUSES)
    counts = ", ".join(f"{given[status]} {status}" for status in order if given[status])
    text = f"job #{job_id} {data.get('status')}"
    if data.get("duration") is not None:
        text += f" in {duration(data['duration'])}"
    if counts:
        text += f": {counts}"
    if data.get("reason"):
        text += f" ({data['reason']})"
    return text
