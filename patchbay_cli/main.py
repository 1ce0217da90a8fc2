"""The ``patchbay`` command: start, follow and inspect jobs from a shell or CI.

Exit status: 0 the job succeeded (or the command did what was asked), 1 the job failed,
2 it was cancelled or interrupted, 3 a usage, authentication or connection error,
130 you stopped following with Ctrl-C (the job goes on).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from patchbay_cli import config
from patchbay_cli.api import Api, ApiError, Unreachable, log_in_with_password
from patchbay_cli.follow import PAGE, Follower
from patchbay_cli.output import PlainRenderer, make_renderer

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_CANCELLED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a command ended by SIGPIPE
EXIT_OF_STATUS = {"succeeded": EXIT_SUCCEEDED, "failed": EXIT_FAILED,
                  "cancelled": EXIT_CANCELLED, "interrupted": EXIT_CANCELLED}


class CliError(click.ClickException):
    """A refusal worth one line on stderr and exit status 3."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"patchbay: {self.message}", err=True)


@dataclass
class Settings:
    """The global options, resolved lazily: ``login`` needs no token."""

    url_option: str | None
    token_option: str | None
    plain: bool
    reconnect_timeout: float

    @property
    def url(self) -> str:
        url = self.url_option or config.default_url()
        if not url:
            raise CliError("no console URL: pass --url, set PATCHBAY_URL, or run "
                           "`patchbay login URL`")
        return config.normalize_url(url)

    @property
    def token(self) -> str:
        token = self.token_option or config.stored_token(self.url)
        if not token:
            raise CliError(f"no token for {self.url}: pass --token, set PATCHBAY_TOKEN, "
                           f"or run `patchbay login {self.url}`")
        return token

    def api(self) -> Api:
        return Api(self.url, self.token)


def refusals(command: Callable[..., int | None]) -> Callable[..., int]:
    """The console's refusals and an unreachable console as one line and exit 3."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs) or EXIT_SUCCEEDED
        except ApiError as exc:
            if exc.status == 401:
                raise CliError(f"authentication failed: {exc.message} (check --token or "
                               "PATCHBAY_TOKEN, or run `patchbay login URL`)") from None
            raise CliError(str(exc)) from None
        except Unreachable as exc:
            raise CliError(str(exc)) from None

    return wrapper


def _split(values: tuple[str, ...]) -> list[str]:
    """``--servers a,b --servers c`` is ``[a, b, c]``."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _amount(text: str) -> int | str:
    """``3`` is a count, ``25%`` a percentage (as the API takes them)."""
    return int(text) if text.strip().isdigit() else text.strip()


def _targets(servers: tuple[str, ...], tags: tuple[str, ...]) -> dict[str, list[str]]:
    if servers and tags:
        raise click.UsageError("give --servers or --tags, not both")
    if not servers and not tags:
        raise click.UsageError("choose servers: --servers A,B or --tags T")
    return {"servers": _split(servers)} if servers else {"tags": _split(tags)}


def _strategy(**given: Any) -> dict[str, Any]:
    strategy: dict[str, Any] = {}
    if given.get("parallel") is not None:
        strategy["parallel"] = given["parallel"]
    if given.get("batches"):
        strategy["batches"] = [_amount(b) for b in _split((given["batches"],))]
    if given.get("max_failures") is not None:
        strategy["max_failures"] = _amount(given["max_failures"])
    if given.get("timeout") is not None:
        strategy["timeout"] = given["timeout"]
    gate = given.get("gate")
    if gate is not None:
        if gate.startswith("soak="):
            seconds = gate.removeprefix("soak=")
            try:
                strategy["gate"] = {"soak": float(seconds)}
            except ValueError:
                raise click.UsageError(f"--gate {gate}: soak=SECONDS takes a number") from None
        elif gate in ("auto", "manual"):
            strategy["gate"] = gate
        else:
            raise click.UsageError(f"--gate {gate}: choose auto, manual or soak=SECONDS")
    return strategy


def _notice(text: str) -> None:
    click.echo(f"patchbay: {text}", err=True)


def follow_job(settings: Settings, job_id: int, host: str | None = None) -> int:
    """Show a job until it ends; its exit status (130 after Ctrl-C)."""
    api = settings.api()
    job = api.job(job_id)
    renderer = make_renderer(job_id, host=host, plain=settings.plain)
    renderer.begin(job, f"{api.url}/jobs/{job_id}")
    follower = Follower(api, settings.token, job_id, renderer, _notice,
                        reconnect_timeout=settings.reconnect_timeout)
    try:
        try:
            finished = follower.run()
        finally:
            renderer.close()  # also on a refusal: a terminal gets its cursor back
    except KeyboardInterrupt:
        _notice(f"stopped following job #{job_id}; it goes on running. Follow it again: "
                f"patchbay logs {job_id} --follow; cancel it: patchbay cancel {job_id}")
        return EXIT_STOPPED
    return EXIT_OF_STATUS.get(str(finished.get("status")), EXIT_FAILED)


def _start(settings: Settings, body: dict[str, Any], follow: bool) -> int:
    api = settings.api()
    job_id = api.post("/api/jobs", body)["job_id"]
    if follow:
        return follow_job(settings, job_id)
    _notice(f"job #{job_id} started: {api.url}/jobs/{job_id}; follow it with "
            f"`patchbay logs {job_id} --follow`")
    click.echo(job_id)
    return EXIT_SUCCEEDED


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


# -- The commands ------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="PATCHBAY_URL", metavar="URL",
              help="The console, e.g. https://patchbay.example (env PATCHBAY_URL; "
                   "default: the one `patchbay login` stored last).")
@click.option("--token", envvar="PATCHBAY_TOKEN", metavar="TOKEN",
              help="An API token (env PATCHBAY_TOKEN; default: the one `patchbay login` "
                   "stored for this URL).")
@click.option("--plain", is_flag=True,
              help="Plain lines even on a terminal (they are the default elsewhere).")
@click.option("--reconnect-timeout", type=click.FloatRange(min=0), default=300,
              show_default=True, metavar="SECONDS",
              help="While following: give up (exit 3) when the console stays unreachable "
                   "this long.")
@click.version_option(package_name="patchbay", prog_name="patchbay")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, plain: bool,
        reconnect_timeout: float) -> None:
    """Roll builds onto game servers with Patchbay, from a shell or a CI pipeline.

    Exit status: 0 succeeded, 1 failed, 2 cancelled or interrupted, 3 usage,
    authentication or connection error, 130 stopped following (Ctrl-C).
    """
    ctx.obj = Settings(url, token, plain, reconnect_timeout)


@cli.command()
@click.argument("url", required=False)
@click.option("--token", "given_token", metavar="TOKEN",
              help="Store this token (made on the Account page or by `flask create-token`).")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")
@click.option("--username", "-u", help="Log in as this user and make a token.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (no prompt).")
@click.option("--name", "token_name", metavar="NAME",
              help="The new token's name (default: patchbay-cli@HOSTNAME).")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None,
              help="The new token stops working after this many days (default: never).")
@click.pass_obj
@refusals
def login(settings: Settings, url: str | None, given_token: str | None, token_stdin: bool,
          username: str | None, password_stdin: bool, token_name: str | None,
          expires_in_days: int | None) -> int:
    """Store a token for the console at URL (mode 0600, in the config directory).

    Give a token (--token, --token-stdin), or log in with a user name and password:
    a new token is made for you. The password is never stored.
    """
    url = config.normalize_url(url) if url else settings.url
    about: dict[str, Any] = {}
    if token_stdin:
        given_token = sys.stdin.readline().strip()
    if given_token:
        token = given_token
    else:
        username = username or click.prompt("User name")
        password = sys.stdin.readline().rstrip("\n") if password_stdin \
            else getpass.getpass("Password: ")
        session = log_in_with_password(url, username, password)
        name = token_name or f"patchbay-cli@{socket.gethostname()}"[:64]
        made = Api(url, None, session).post("/api/tokens", {
            "name": name, "expires_in_days": expires_in_days, "password": password})
        token = made["token"]
        about = {"token_id": made["id"], "name": made["name"], "prefix": made["prefix"],
                 "role": made["role"], "expires_at": made["expires_at"], "user": username}
    Api(url, token).get("/api/jobs", limit=1)  # the token works here
    path = config.save_login(url, token, **about)
    what = f"token {about['name']} ({about['prefix']}…, role {about['role']}, expires " \
        f"{about['expires_at'] or 'never'})" if about else "the token"
    _notice(f"logged in to {url}: {what} stored in {path}")
    return EXIT_SUCCEEDED


@cli.command()
@click.argument("url", required=False)
@click.pass_obj
@refusals
def logout(settings: Settings, url: str | None) -> int:
    """Forget the token stored for URL (and revoke it, if `login` made it)."""
    url = config.normalize_url(url) if url else settings.url
    entry = config.forget_login(url)
    if entry is None:
        raise CliError(f"no token is stored for {url}")
    if entry.get("token_id"):
        try:
            Api(url, entry["token"]).request("DELETE", f"/api/tokens/{entry['token_id']}")
        except (ApiError, Unreachable) as exc:
            _notice(f"forgotten, but not revoked on the console: {exc}")
            return EXIT_SUCCEEDED
    _notice(f"forgot the token for {url}" + (" and revoked it" if entry.get("token_id")
                                             else ""))
    return EXIT_SUCCEEDED


def _target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--servers", multiple=True, metavar="A,B",
                     help="Server names (comma-separated, repeatable)."),
        click.option("--tags", multiple=True, metavar="T",
                     help="Every server with one of these tags (comma-separated)."),
        click.option("--parallel", type=click.IntRange(1, 1000),
                     help="Servers at once."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                     metavar="SECONDS", help="Per-step timeout."),
        click.option("--follow", "-f", is_flag=True,
                     help="Show the job live until it ends; exit with its status."),
    ]):
        command = option(command)
    return command


@cli.command()
@click.argument("runbook")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A runbook parameter (repeatable).")
@_target_options
@click.option("--batches", metavar="SIZES",
              help="Batch sizes or percentages, e.g. 1,25%,100% (the first is a canary).")
@click.option("--max-failures", metavar="N|P%", help="Failed servers that stop the rollout.")
@click.option("--gate", metavar="auto|manual|soak=SECONDS",
              help="Between batches: go on, pause until promoted, or soak and re-check "
                   "health.")
@click.pass_obj
@refusals
def run(settings: Settings, runbook: str, params: tuple[str, ...], servers: tuple[str, ...],
        tags: tuple[str, ...], parallel: int | None, timeout: float | None, follow: bool,
        batches: str | None, max_failures: str | None, gate: str | None) -> int:
    """Start RUNBOOK on servers; with --follow, show it live and exit with its status.

    Without --follow the job id is printed alone on standard output.
    """
    values: dict[str, str] = {}
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise click.UsageError(f"-p {param}: write NAME=VALUE")
        values[name] = value
    body = {"runbook": runbook, "params": values, **_targets(servers, tags)}
    strategy = _strategy(parallel=parallel, batches=batches, max_failures=max_failures,
                         timeout=timeout, gate=gate)
    if strategy:
        body["strategy"] = strategy
    return _start(settings, body, follow)


@cli.command("exec")
@click.argument("command")
@_target_options
@click.pass_obj
@refusals
def exec_command(settings: Settings, command: str, servers: tuple[str, ...],
                 tags: tuple[str, ...], parallel: int | None, timeout: float | None,
                 follow: bool) -> int:
    """Run one shell COMMAND, as typed, on servers (an ad-hoc job)."""
    body: dict[str, Any] = {"command": command, **_targets(servers, tags)}
    strategy = _strategy(parallel=parallel, timeout=timeout)
    if strategy:
        body["strategy"] = strategy
    return _start(settings, body, follow)


@cli.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.option("--follow", "-f", is_flag=True,
              help="Go on showing it live until it ends; exit with its status.")
@click.option("--host", metavar="SERVER", help="Only this server's lines.")
@click.pass_obj
@refusals
def logs(settings: Settings, job_id: int, follow: bool, host: str | None) -> int:
    """Print a job's log; with --follow, live to its end."""
    if follow:
        return follow_job(settings, job_id, host)
    api = settings.api()
    job = api.job(job_id)
    renderer = PlainRenderer(job_id, host=host)
    renderer.begin(job, f"{api.url}/jobs/{job_id}")
    after = 0
    while True:
        events = api.events(job_id, after, PAGE, host=host)
        renderer.show(events)
        if len(events) < PAGE:
            break
        after = events[-1]["seq"]
    if job["status"] in ("pending", "running", "paused"):
        _notice(f"job #{job_id} is {job['status']}; `patchbay logs {job_id} --follow` "
                "shows the rest")
    return EXIT_SUCCEEDED


@cli.command()
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--status", help="Only jobs with this status.")
@click.option("--runbook", help="Only jobs of this runbook (adhoc: ad-hoc commands).")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def jobs(settings: Settings, limit: int, status: str | None, runbook: str | None,
         as_json: bool) -> int:
    """Recent jobs, newest first."""
    listed = settings.api().get("/api/jobs", limit=limit, status=status,
                                runbook=runbook)["jobs"]
    if as_json:
        _json(listed)
        return EXIT_SUCCEEDED
    _table(["JOB", "STATUS", "RUNBOOK", "PARAMS", "SERVERS", "BY", "CREATED (UTC)"], [
        [j["id"], j["status"], j["runbook"], _params(j), len(j["hosts"]), j["created_by"],
         _when(j["created_at"])] for j in listed])
    return EXIT_SUCCEEDED


def _when(timestamp: str | None) -> str:
    """``2026-11-25T12:00:00.123456Z`` as ``2026-11-25 12:00:00`` (UTC)."""
    return timestamp[:19].replace("T", " ") if timestamp else ""


def _params(job: dict[str, Any]) -> str:
    text = " ".join(f"{k}={v}" for k, v in (job.get("params") or {}).items())
    return text if len(text) <= 40 else text[:39] + "…"


@cli.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def show(settings: Settings, job_id: int, as_json: bool) -> int:
    """One job: its status and each server's."""
    api = settings.api()
    job = api.job(job_id)
    if as_json:
        _json(job)
        return EXIT_SUCCEEDED
    click.echo(f"job #{job['id']} {job['runbook']} ({job['kind']}): {job['status']}")
    about = [("params", _params(job)), ("strategy", json.dumps(job["strategy"])),
             ("created", f"{_when(job['created_at'])} UTC by {job['created_by']}"),
             ("finished", job["finished_at"] and f"{_when(job['finished_at'])} UTC"),
             ("rerun of", job["rerun_of"]), ("reruns", ", ".join(map(str, job["reruns"]))),
             ("page", f"{api.url}/jobs/{job['id']}")]
    for label, value in about:
        if value:
            click.echo(f"  {label}: {value}")
    click.echo()
    _table(["SERVER", "BATCH", "STATUS", "STEP", "EXIT", "REASON"], [
        [h["name"], h["batch"] + 1, h["status"], h["failed_step"] or h["current_step"],
         h["exit_code"], h["reason"]] for h in job["hosts"]])
    return EXIT_SUCCEEDED


@cli.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.pass_obj
@refusals
def cancel(settings: Settings, job_id: int) -> int:
    """Cancel a running job (servers not started are skipped, running steps stopped)."""
    return _job_action(settings, job_id, "cancel")


def _job_action(settings: Settings, job_id: int, action: str) -> int:
    """POST /api/jobs/JOB/ACTION and print what the console answered."""
    answer = settings.api().post(f"/api/jobs/{job_id}/{action}")
    click.echo(answer.get("message") or f"job #{job_id}: {answer.get('status')}")
    return EXIT_SUCCEEDED


@cli.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.pass_obj
@refusals
def promote(settings: Settings, job_id: int) -> int:
    """Promote a job paused at a manual gate: its next batch runs."""
    return _job_action(settings, job_id, "promote")


@cli.command()
@click.argument("job_id", metavar="JOB", type=click.IntRange(min=1))
@click.pass_obj
@refusals
def abort(settings: Settings, job_id: int) -> int:
    """Abort a job paused at a manual gate: servers not started are skipped."""
    return _job_action(settings, job_id, "abort")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def servers(settings: Settings, as_json: bool) -> int:
    """The servers of the inventory."""
    listed = settings.api().get("/api/servers")["servers"]
    if as_json:
        _json(listed)
        return EXIT_SUCCEEDED
    reach = {True: "yes", False: "no", None: "?"}
    _table(["SERVER", "ADDRESS", "TAGS", "VERSION", "LAST JOB", "REACHABLE"], [
        [s["name"], f"{s['host']}:{s['port']}", ",".join(s["tags"]), s["version"],
         f"#{s['last_job_id']} {s['last_status']}" if s["last_job_id"] else "",
         reach.get(s["reachable"], "?")] for s in listed])
    return EXIT_SUCCEEDED


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@click.pass_obj
@refusals
def runbooks(settings: Settings, as_json: bool) -> int:
    """The runbooks, with their parameters."""
    listed = settings.api().get("/api/runbooks")["runbooks"]
    if as_json:
        _json(listed)
        return EXIT_SUCCEEDED
    _table(["RUNBOOK", "PARAMS", "STEPS", "DESCRIPTION"], [
        [b["name"], " ".join(f"{n}{'' if p['required'] else '?'}"
                             for n, p in b["params"].items()),
         len(b["steps"]), b["description"]] for b in listed])
    return EXIT_SUCCEEDED


def main(argv: list[str] | None = None) -> int:
    """The console script: runs a command and returns its exit status."""
    for stream in (sys.stdout, sys.stderr):  # a remote line is never worth a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    try:
        result = cli.main(args=argv, prog_name="patchbay", standalone_mode=False)
    except click.ClickException as exc:  # usage errors and CliError alike
        exc.show()
        return EXIT_USAGE
    except click.exceptions.Abort:
        click.echo("patchbay: stopped", err=True)
        return EXIT_STOPPED
    except BrokenPipeError:  # `patchbay logs 12 | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return result if isinstance(result, int) else EXIT_SUCCEEDED

