"""How a followed job is shown: plain lines for logs and CI, rich progress bars on a
terminal. Both get the job's events once each, in ``seq`` order.

Plain lines, one per output line or event, each starting with the server's name
(padded to the longest): ``gs-01 | text`` (stdout), ``gs-01 ! text`` (stderr),
``gs-01 * what happened`` (steps, results); ``job #12 * ...`` for the job itself, and
a last ``job #12 <status> ...`` summary line.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, TextIO

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
STREAM_MARK = {"stdout": "|", "stderr": "!"}
# Events the terminal shows as a line; the bars show the others (steps starting, ok).
LOUD_EVENTS = frozenset({"job_started", "job_recovered", "batch_started", "host_finished",
                         "job_paused", "job_resumed", "job_aborted", "soak_started",
                         "soak_finished", "wait_probe",
                         "host_reconnecting", "host_reconnected"})
STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
                "skipped": "dim", "interrupted": "yellow", "running": "cyan",
                "pending": "dim"}


class Renderer(Protocol):
    def begin(self, job: dict[str, Any], link: str) -> None:
        """The job as it stands when showing starts (its snapshot), and its page."""

    def show(self, events: list[dict[str, Any]]) -> None:
        """Events, each once, in seq order."""

    def close(self) -> None:
        """Following ended (finished, interrupted or failed)."""


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
    params = ", ".join(f"{k}={v}" for k, v in (data.get("params") or {}).items())
    parallel = (data.get("strategy") or {}).get("parallel")
    plan = f"{batches} batches, " if batches > 1 else ""
    return (f"started {data.get('runbook')}{f' ({params})' if params else ''} on {where}"
            f" ({plan}{parallel} at once)")


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
    what = job.get("runbook")
    if job.get("kind") == "adhoc":
        what = f"ad-hoc `{(job.get('params') or {}).get('command')}`"
    elif job.get("params"):
        what += " (" + ", ".join(f"{k}={v}" for k, v in job["params"].items()) + ")"
    return f"job #{job['id']} {what}, {job.get('status')}"


def _name_width(job: dict[str, Any]) -> int:
    """Server names are padded to the longest (``job #12`` included)."""
    return max([len(h["name"]) for h in job.get("hosts") or []] + [len(f"job #{job['id']}")])


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


class PlainRenderer:
    """One line per output line or event, flushed at once (a CI log shows it live)."""

    def __init__(self, job_id: int, stream: TextIO | None = None,
                 host: str | None = None) -> None:
        self.stream = stream or sys.stdout
        self.story = JobStory(job_id)
        self.host = host
        self.width = 0

    def begin(self, job: dict[str, Any], link: str) -> None:
        self.width = _name_width(job)
        self.stream.write(f"{header(job)}: {link}\n")
        self.stream.flush()

    def show(self, events: list[dict[str, Any]]) -> None:
        lines: list[str] = []
        for event in events:
            host = event.get("host")
            if self.host is not None and host is not None and host != self.host:
                continue
            if event.get("type") == "output":
                data = event.get("data") or {}
                mark = STREAM_MARK.get(data.get("stream"), "|")
                lines.extend(f"{host:<{self.width}} {mark} {line}"
                             for line in data.get("lines") or [])
                continue
            text = self.story.describe(event)
            if text is None:
                continue
            if event.get("type") == "job_finished":
                lines.append(text)
            else:
                who = host if host is not None else f"job #{self.story.job_id}"
                lines.append(f"{who:<{self.width}} * {text}")
        if lines:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class RichRenderer:
    """On a terminal: output lines scroll above one progress bar per server (steps
    done of the runbook's steps; the status at the end)."""

    def __init__(self, job_id: int, host: str | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console()
        self.story = JobStory(job_id)
        self.host = host
        self.width = 0
        self.progress = Progress(
            TextColumn("{task.fields[name]}", style="bold"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[state]}"),
            console=self.console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.ending: Any = None  # the summary, shown once the bars are final

    def begin(self, job: dict[str, Any], link: str) -> None:
        from rich.text import Text

        self.width = _name_width(job)
        self.console.print(Text.assemble((header(job), "bold"), ": ", (link, "underline")))
        for host in job.get("hosts") or []:  # the events, replayed, tell the rest
            if self.host is None or host["name"] == self.host:
                self._bar(host["name"], "pending")
        self.progress.start()

    def _bar(self, name: str, state: str) -> Any:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(
                "", total=None, name=name.ljust(self.width), state=_styled(state))
        return self.tasks[name]

    def show(self, events: list[dict[str, Any]]) -> None:
        from rich.text import Text

        lines: list[Text] = []
        for event in events:
            host = event.get("host")
            if self.host is not None and host is not None and host != self.host:
                continue
            kind = event.get("type")
            data = event.get("data") or {}
            if kind == "output":
                style = "red" if data.get("stream") == "stderr" else ""
                mark = STREAM_MARK.get(data.get("stream"), "|")
                # Text, never markup: a remote line's brackets stay as they are.
                lines.extend(Text.assemble((f"{host:<{self.width}} {mark} ", "dim"),
                                           (line, style))
                             for line in data.get("lines") or [])
                continue
            text = self.story.describe(event)
            self._advance(kind, host, data)
            if text is None:
                continue
            if kind == "job_finished":  # the last line, below the bars
                self.ending = Text(text, style=f"bold {_status_style(data.get('status'))}")
            elif kind in LOUD_EVENTS or (kind == "step_finished" and data.get("status")
                                         != "ok"):
                who = host if host is not None else f"job #{self.story.job_id}"
                lines.append(Text(f"{who:<{self.width}} * {text}", style="bold"))
        if lines:
            self.progress.console.print(Text("\n").join(lines), soft_wrap=True)

    def _advance(self, kind: Any, host: Any, data: dict[str, Any]) -> None:
        total = len(self.story.steps) or None
        if kind == "job_started":
            for name in data.get("servers") or []:
                if self.host is None or name == self.host:
                    self.progress.update(self._bar(name, "pending"), total=total)
            return
        if host is None or (self.host is not None and host != self.host):
            return
        task = self._bar(host, "pending")
        if kind == "host_started":
            self.progress.update(task, total=total, state=_styled("running"))
        elif kind == "step_started":
            label = data.get("step") if data.get("phase") != "on_failure" else \
                f"on failure: {data.get('step')}"
            self.progress.update(task, state=f"[cyan]{_escape(label)}")
        elif kind == "step_finished" and data.get("phase") != "on_failure" \
                and data.get("status") == "ok":
            self.progress.advance(task)
        elif kind == "host_finished":
            status = str(data.get("status"))
            if status == "succeeded" and total:
                self.progress.update(task, completed=total)
            self.progress.update(task, state=_styled(status))

    def close(self) -> None:
        self.progress.stop()
        if self.ending is not None:
            self.console.print(self.ending)
            self.ending = None


def _status_style(status: Any) -> str:
    return STATUS_STYLE.get(str(status), "white")


def _styled(status: str) -> str:
    return f"[{_status_style(status)}]{_escape(status)}"


def _escape(text: Any) -> str:
    from rich.markup import escape

    return escape(str(text))


def make_renderer(job_id: int, host: str | None = None, plain: bool = False) -> Renderer:
    """Progress bars on a terminal; plain lines otherwise (or when asked)."""
    if plain or not sys.stdout.isatty():
        return PlainRenderer(job_id, host=host)
    return RichRenderer(job_id, host=host)
