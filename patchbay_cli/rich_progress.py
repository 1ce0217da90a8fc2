"""On a terminal: output lines scroll above one rich progress bar per server (steps
done of the runbook's steps; the status at the end). Only the loud events
(``story.LOUD_EVENTS``, and a step that did not end ok) get a line of their own; the
bars show the rest. rich is imported when a terminal asks for it."""

from __future__ import annotations

from typing import Any

from patchbay_cli.plain import STREAM_MARK, name_width
from patchbay_cli.story import LOUD_EVENTS, JobStory, header

STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
                "skipped": "dim", "interrupted": "yellow", "running": "cyan",
                "pending": "dim"}


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

        self.width = name_width(job)
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
