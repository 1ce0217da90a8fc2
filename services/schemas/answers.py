"""The shapes of the JSON API's answers. They document (the routes build them as
dicts): ``/api/openapi.json`` is generated from them, and the tests check every route's
answers against that document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.schemas.fields import HostStatus, JobStatus, Timestamp


class HeldServers(BaseModel):
    job_id: int
    status: JobStatus = Field(description="running or paused")
    servers: list[str] = Field(description="the servers of the request this job holds")


class ErrorDetail(BaseModel):
    code: str = Field(description="invalid, csrf, unknown_runbook, runbook_invalid, "
                      "unknown_server, server_busy, not_found, unauthorized, forbidden, "
                      "internal")
    message: str
    field: str | None = Field(description="the field at fault, dotted (params.version)")
    detail: str | None = Field(default=None, description="more for the curious, when "
                               "there is more: e.g. the regular expression a parameter "
                               "missed (the message says it in words)")
    held: list[HeldServers] | None = Field(
        default=None, description="server_busy only: every job holding servers of the "
        "request, oldest first (the message names at most 5 servers per job and counts "
        "the rest). field stays servers, where the busy servers were chosen, but the "
        "choice itself is not at fault: the dashboard marks no field for it")


class ErrorAnswer(BaseModel):
    """Any refused request: status 400, 401, 403, 404 or 409 (500 for ``internal``)."""

    ok: Literal[False]
    error: ErrorDetail


class JobStarted(BaseModel):
    ok: Literal[True]
    job_id: int


class PlannedStep(BaseModel):
    name: str
    command: str = Field(description="exactly what will run, parameters shell-quoted")


class PlannedHost(BaseModel):
    name: str
    steps: list[PlannedStep]
    on_failure: list[PlannedStep]


class Plan(BaseModel):
    runbook: str
    params: dict[str, str]
    strategy: dict[str, Any]
    batches: list[list[str]] = Field(description="server names per batch, in order")
    hosts: list[PlannedHost]


class PlanAnswer(BaseModel):
    ok: Literal[True]
    plan: Plan


class CancelAnswer(BaseModel):
    ok: Literal[True]
    cancelled: bool = Field(description="false when the job had finished or was "
                            "already being cancelled")
    status: JobStatus
    message: str


class GateAnswer(BaseModel):
    ok: Literal[True]
    job_id: int
    status: JobStatus = Field(description="paused: the job's owner acts on the decision "
                              "within a second (job_resumed or job_aborted follows)")
    message: str


class HostState(BaseModel):
    name: str
    batch: int
    status: HostStatus
    current_step: str | None
    failed_step: str | None
    exit_code: int | None
    reason: str | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    from_version: str | None = Field(description="the build the server reported when "
                                     "the job was recorded (null: none known)")
    to_version: str | None = Field(description="the build the job installs there: a "
                                   "rollback's own per server, an update's version")


class BuildMove(BaseModel):
    from_: str | None = Field(alias="from", description="the build before")
    to: str | None = Field(description="the build after")
    servers: list[str] = Field(description="the servers making this move, in order")


class JobState(BaseModel):
    id: int
    runbook: str = Field(description="the runbook's name; adhoc for an ad-hoc command")
    kind: Literal["runbook", "adhoc", "rollback"]
    title: str = Field(description='what the pages call the job: the runbook, "ad-hoc '
                       'command", or for a rollback "Roll back (game-update)"')
    builds: list[BuildMove] = Field(description="a rollback's servers grouped by their "
                                    "move (from → to); empty for other kinds")
    builds_words: str = Field(description='those moves in words: "1.4.8 → 1.4.7", or '
                              '"1.4.8 → 1.4.7 (gs-01); 1.4.9 → 1.4.8 (gs-02)"; empty for '
                              'other kinds')
    params: dict[str, Any]
    strategy: dict[str, Any]
    status: JobStatus
    created_by: str | None
    created_at: Timestamp
    finished_at: Timestamp | None
    last_seq: int
    rerun_of: int | None
    reruns: list[int]
    hosts: list[HostState]


class OneJob(JobState):
    succeeded_since: dict[str, int] = Field(description="its servers that did not "
                                            "succeed and that a later finished job of "
                                            "the same runbook, kind and parameters has "
                                            "fixed since (the newest such job that ran "
                                            "the server succeeded there): {server: that "
                                            "job's id}; a re-run leaves them out")


class JobAnswer(BaseModel):
    job: OneJob


class JobList(BaseModel):
    jobs: list[JobState] = Field(description="newest first")
    more: bool = Field(description="more jobs follow (the page may end early at "
                       "PATCHBAY_MAX_PAGE_BYTES)")
    next_before_id: int | None = Field(description="before_id for the next page, when more")


class WaitingGate(BaseModel):
    batch: int = Field(description="the batch that finished (0: the first, the canary)")
    next_batch: int | None = Field(description="the batch promoting starts")
    next_name: str | None = Field(description='"canary" or "batch 2": as the page names it')
    batches: int = Field(description="how many batches the rollout has")
    reason: str | None
    done_servers: list[str] = Field(description="the finished batch's servers (the first 12)")
    done_count: int
    next_servers: list[str] = Field(description="the next batch's servers (the first 12)")
    next_count: int
    not_started: int = Field(description="servers an abort would skip")


class WaitingJob(BaseModel):
    job_id: int
    runbook: str
    kind: Literal["runbook", "adhoc", "rollback"]
    target_version: str | None
    created_by: str | None
    waiting: Literal["gate"] = Field(description="what it waits for: gate (promote or "
                                     "abort at a manual gate)")
    since: float | None = Field(description="when it began to wait (Unix seconds)")
    gate: WaitingGate | None
    words: str = Field(description='what it waits at, in words ("paused after the canary '
                       '(1 server); promoting starts batch 2 (7 servers)")')


class WaitingJobs(BaseModel):
    count: int = Field(description="how many jobs wait for a person (all of them)")
    jobs: list[WaitingJob] = Field(description="oldest first, at most 20 described")
    for_you: bool = Field(description="whether the caller may act on them (operator or "
                          "admin); a viewer sees them as waiting for an operator")


class ServerRow(BaseModel):
    name: str
    host: str
    port: int
    tags: list[str]
    version: str | None = Field(description="the version the server last reported "
                                "(a runbook step's capture: version), or null")
    version_state: Literal["verified", "unverified"] | None = Field(
        description="verified: reported after the last step that may change the build; "
        "unverified: job version_job_id ran such a step and ended (cancelled, failed, "
        "interrupted) without reporting again, so the version may differ now; null "
        "without a version")
    version_job_id: int | None = Field(description="the job that last verified the "
                                       "version or left it unverified (null: none since "
                                       "versions were tracked)")
    previous_version: str | None = Field(description="the version the server reported "
                                         "before its current one (what a rollback "
                                         "restores), or null")
    target_version: str | None = Field(description="the build of the live job (running "
                                       "or paused) holding the server, or null; a rollback "
                                       "job's when all its servers go back to one build")
    drift: bool = Field(description="true when the server is outside any rollout and "
                        "not on agreed_version, ahead or behind (a server without a "
                        "version never drifts)")
    agreed_version: str | None = Field(description="the build most of the servers "
                                       "sharing a tag with it run (untagged servers: "
                                       "the untagged), a tie going to the newer build")
    rollout_job_id: int | None = Field(description="the live job (running or paused) "
                                       "with a target build that lists the server, "
                                       "whether its turn has come or not, or null")
    rollout_version: str | None = Field(description="that job's target build: the "
                                        "server is pending while its version differs")
    newest_version: str | None = Field(description="the newest build among the servers "
                                       "sharing a tag with it (untagged servers: among the "
                                       "untagged), versions compared naturally "
                                       "(1.10.0 > 1.9.2)")
    rollback_version: str | None = Field(description="the build a rollback would put "
                                         "it back on: the last build that succeeded "
                                         "there below its current one, never one it was "
                                         "rolled back from (null: none)")
    rollback_job_id: int | None = Field(description="the job that build last succeeded "
                                        "in there (null: known only from "
                                        "previous_version)")
    rollback_reason: str | None = Field(description='why that build, in words: "1.4.7, '
                                        'the last build that succeeded here before 1.4.8 '
                                        '(job #3)"')
    last_job_id: int | None
    last_status: str | None
    reachable: bool | None = Field(description="null until probed")
    last_checked: Timestamp | None


class ServerList(BaseModel):
    servers: list[ServerRow]


class ServerBuildEntry(BaseModel):
    version: str = Field(description="the build the server reported at the end of the job")
    reported_at: Timestamp
    job_id: int
    runbook: str
    kind: Literal["runbook", "adhoc", "rollback"]
    status: HostStatus = Field(description="the job's outcome on this server")
    succeeded: bool = Field(description="true when the job succeeded on this server")


class ServerBuilds(BaseModel):
    server: str
    version: str | None = Field(description="the build it reports now")
    builds: list[ServerBuildEntry] = Field(description="newest first, the newest 20")
    more: bool = Field(description="true when older entries exist")
    rollback_version: str | None = Field(description="as in GET /api/servers")
    rollback_job_id: int | None
    rollback_reason: str | None


class RunbookParam(BaseModel):
    type: Literal["string", "integer"]
    pattern: str | None = Field(description="a regular expression the whole value must "
                                "match (RE2 syntax, matched whole)")
    required: bool
    default: str | int | None = Field(description='"••••" for a secret parameter')
    description: str
    secret: bool = Field(description="shown as •••• everywhere but in the server's command")
    example: str | None = Field(description="a value that fits, e.g. 1.4.2 (or null)")
    pattern_hint: str | None = Field(description="the pattern in words, completing "
                                     '"NAME must be ...", e.g. "three numbers" (or null)')


class RunbookInfo(BaseModel):
    name: str
    description: str
    params: dict[str, RunbookParam]
    steps: list[str] = Field(description="step names, in order")
    on_failure: list[str]
    strategy: dict[str, Any] = Field(description="the runbook's default strategy")


class RunbookList(BaseModel):
    runbooks: list[RunbookInfo]


class JobEvent(BaseModel):
    seq: int
    ts: float
    type: str = Field(description="see the table of event types in docs/live-api.md")
    host: str | None
    data: dict[str, Any]


class EventPage(BaseModel):
    job_id: int
    events: list[JobEvent] = Field(description="oldest first")
    last_seq: int = Field(description="the highest seq returned, or after_seq")
    more: bool = Field(description="more events match beyond this page (it may end "
                       "early at PATCHBAY_MAX_PAGE_BYTES): go on after last_seq, or, "
                       "paging back, before the first seq")


class SearchMatch(BaseModel):
    seq: int
    host: str | None
    stream: str
    step: str | None
    index: int = Field(description="the line's place in its event")
    line: str


class SearchAnswer(BaseModel):
    job_id: int
    matches: list[SearchMatch] = Field(description="oldest first")
    more: bool
