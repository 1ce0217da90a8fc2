"""Webhooks: tell other systems when a job starts, finishes, or one of its servers fails.

Three parts, none of which knows Flask (docs/webhooks.md is the contract):

* **Enqueue** (:class:`Outbox`). The event writer (:class:`tasks.events.writer.EventLog`) calls
  it for every event it writes, inside its transaction. For ``job_started``,
  ``job_finished`` and a ``host_finished`` with status ``failed`` (``host_failed``) it
  adds one ``webhook_deliveries`` row per subscribed webhook, its body built right
  then. The event and its deliveries commit together or not at all: nothing is lost
  when a node dies, and an event that is never written (a fenced batch) sends nothing.
* **Send** (:class:`DeliveryWorker`, one per node). It claims due deliveries with a
  conditional UPDATE (its candidates picked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
  so of several nodes exactly one sends a given attempt. A claim is a lease: a node
  that dies mid-send leaves the delivery due again when its lease ends, and a node that
  was only slow finds its result refused (the claim token no longer matches). Each
  attempt runs in a task of its own with a short timeout, at most ``concurrency`` at
  once per node and :data:`PER_HOOK_IN_FLIGHT` per webhook, so a receiver that hangs
  holds only its own few slots. Failures are retried with exponential backoff until
  ``give_up_after`` seconds after the event, then the delivery is marked ``given_up``.
  A delivery may therefore arrive twice (at least once); receivers deduplicate by its
  ``delivery`` id.
* **Rules**: checking a webhook's settings, payloads, signing, and the retry schedule,
  as pure functions; each format's body is in :mod:`services.webhooks.payloads`.

Where a delivery may connect is :mod:`services.webhooks.address`'s business: not the
console's own networks (unless ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS`` says so), checked
when a webhook is saved and again on every attempt, at the address it connects to.
Every delivery ends ``delivered`` or ``given_up`` with a reason, whatever goes wrong
while sending; a receiver's answer is kept as its status line only, never its body.

A webhook's secret signs its deliveries; it is read only to sign, and is never put in
a payload, a log line, an audit entry or an answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import logging
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import idna
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Job, JobHost, Webhook, WebhookDelivery, utcnow
from services.webhooks.address import (
    PUBLIC_ONLY,
    AddressPolicy,
    AddressRefused,
    PinnedHTTPConnection,
    PinnedHTTPSConnection,
)
from services.webhooks.payloads import FORMATS, render_body
from tasks.errors import PatchbayError
from tasks.events.write_errors import describe, is_transient
from tasks.nodes.health import Dependency

log = logging.getLogger(__name__)

EVENTS = ("job_started", "job_finished", "host_failed")
MAX_URL = 2048
SECRET_LENGTH = (16, 256)
SIGNATURE_HEADER = "X-Patchbay-Signature"
PER_HOOK_IN_FLIGHT = 4  # attempts at once to one webhook, per node
PRUNE_EVERY = 3600.0  # seconds between clean-ups of old finished deliveries
DUE = ("pending", "sending")  # "sending" is due again once its claim's lease has ended
DEFAULT_PORTS = {"http": 80, "https": 443}
# Kept as they are in a path or query: RFC 3986's delimiters, and escapes already made.
URL_SAFE = "/?:@!$&'()*+,;=-._~%"
USERINFO_SAFE = "!$&'()*+,;=-._~%"
HOST_NAME = re.compile(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?")

TaskStarter = Callable[..., Any]


# -- a webhook's settings -------------------------------------------------------------


@dataclass(frozen=True)
class HookSpec:
    """A webhook as an admin asked for it, checked."""

    url: str
    events: tuple[str, ...]
    secret: str | None = field(default=None, repr=False)
    format: str = "json"


def parse_hook(payload: Any, *, addresses: AddressPolicy = PUBLIC_ONLY) -> HookSpec:
    """Check ``{"url", "events", "secret"?, "format"?}``, the URL also against
    ``addresses`` (the node's ``PATCHBAY_WEBHOOK_ALLOW_NETWORKS``); a
    :class:`PatchbayError` naming the field otherwise."""
    if not isinstance(payload, dict):
        raise PatchbayError("invalid", "the body must be a JSON object")
    unknown = sorted(set(payload) - {"url", "events", "secret", "format"})
    if unknown:
        raise PatchbayError("invalid", f"unknown field {unknown[0]!r}", unknown[0])
    spec = HookSpec(url=check_url(payload.get("url")),
                    events=check_events(payload.get("events")),
                    secret=check_secret(payload.get("secret")),
                    format=check_format(payload.get("format", "json")))
    check_destination(spec.url, addresses)
    return spec


def check_url(url: Any) -> str:
    """The URL as it is stored and sent, all ASCII: the host in IDNA form (``bücher.de``
    is ``xn--bcher-kva.de``), the path, query and user info percent-encoded as UTF-8
    (``/ü`` is ``/%C3%BC``), no fragment. Encoding it again changes nothing."""
    if not isinstance(url, str) or not url.strip():
        raise PatchbayError("invalid", "url is required: the address that receives the "
                                       "POSTs", "url")
    url = url.strip()
    if len(url) > MAX_URL:
        raise PatchbayError("invalid", f"url is longer than {MAX_URL} characters", "url")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise PatchbayError("invalid", "url must not contain spaces or control characters",
                            "url")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 literal, a host NFKC would change
        raise PatchbayError("invalid", f"url is not a valid address ({exc})", "url") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise PatchbayError("invalid", "url must be an http:// or https:// address", "url")
    try:
        port = parts.port
    except ValueError:
        raise PatchbayError("invalid", "url has an invalid port", "url") from None
    if not parts.hostname:
        raise PatchbayError("invalid", "url must name a host", "url")
    netloc = _ascii_host(parts.hostname) + (f":{port}" if port is not None else "")
    if parts.username is not None:
        userinfo = quote(parts.username, safe=USERINFO_SAFE)
        if parts.password is not None:
            userinfo += ":" + quote(parts.password, safe=USERINFO_SAFE + ":")
        netloc = f"{userinfo}@{netloc}"
    encoded = urlunsplit((scheme, netloc, quote(parts.path, safe=URL_SAFE),
                          quote(parts.query, safe=URL_SAFE), ""))
    if len(encoded) > MAX_URL:
        raise PatchbayError("invalid", f"url is longer than {MAX_URL} characters once "
                                       "percent-encoded", "url")
    return encoded


def _ascii_host(host: str) -> str:
    """A URL's host (``urlsplit``'s ``hostname``, lower case) as it goes on the wire."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise PatchbayError("invalid", f"url's host [{host}] is not a valid IPv6 "
                                           "address", "url") from None
        return f"[{host}]"
    ascii_host = host
    if not host.isascii():
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise PatchbayError("invalid", f"url's host {host!r} is not a valid "
                                           f"international domain name ({exc})",
                                "url") from None
    if len(ascii_host) > 253 or not HOST_NAME.fullmatch(ascii_host):
        raise PatchbayError("invalid", f"url's host {host!r} is not a valid host name "
                                       "(letters, digits, '-' and '.', labels of at most "
                                       "63 characters)", "url")
    return ascii_host


def check_destination(url: str, addresses: AddressPolicy) -> None:
    """Refuse a (checked) URL whose host resolves to an address deliveries may not
    reach. A name that does not resolve now is accepted: every attempt checks again,
    as DNS may change between saving and sending."""
    parts = urlsplit(url)
    try:
        addresses.resolve(parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme])
    except AddressRefused as exc:
        raise PatchbayError("invalid", f"url refused: {exc}", "url") from None
    except OSError:
        pass


def check_events(events: Any) -> tuple[str, ...]:
    if not isinstance(events, list) or not events:
        raise PatchbayError("invalid", f"events must be a non-empty list of: "
                                       f"{', '.join(EVENTS)}", "events")
    for name in events:
        if name not in EVENTS:
            shown = name if isinstance(name, str) else type(name).__name__
            raise PatchbayError("invalid", f"events: unknown event {shown!r} (choose from "
                                           f"{', '.join(EVENTS)})", "events")
    return tuple(name for name in EVENTS if name in events)


def check_secret(secret: Any) -> str | None:
    if secret is None or secret == "":
        return None
    shortest, longest = SECRET_LENGTH
    if not isinstance(secret, str) or not shortest <= len(secret) <= longest:
        raise PatchbayError("invalid", f"secret must be {shortest} to {longest} characters "
                                       "(or left out: deliveries are then not signed)",
                            "secret")
    return secret


def check_format(format_: Any) -> str:
    if not isinstance(format_, str) or format_ not in FORMATS:
        raise PatchbayError("invalid", f"format must be one of {', '.join(FORMATS)}",
                            "format")
    return str(format_)


def shown_url(url: str) -> str:
    """The URL for admins' pages and answers: any user name and password masked
    (``https://***@host/path``). The stored URL keeps them for Basic authentication."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def safe_url(url: str) -> str:
    """The URL for logs and the audit log: scheme, host and port only. Paths and
    queries often hold a token (Slack's incoming webhooks do), user info a password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    tail = "/…" if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{tail}"


# -- managing webhooks ----------------------------------------------------------------


def create_webhook(session: Session, spec: HookSpec, created_by_id: int | None) -> Webhook:
    """Add a webhook (the caller commits, with its audit entry)."""
    hook = Webhook(url=spec.url, events=list(spec.events), secret=spec.secret,
                   format=spec.format, created_by_id=created_by_id, created_at=utcnow())
    session.add(hook)
    session.flush()
    return hook


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise PatchbayError("not_found", f"no webhook #{webhook_id}")
    return hook


def delete_webhook(session: Session, webhook_id: int) -> Webhook:
    """Remove a webhook and its deliveries, sent or not (the caller commits). A node
    sending one right now finds its claim gone and records nothing."""
    hook = get_webhook(session, webhook_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    session.flush()
    return hook


def list_webhooks(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def delivery_counts(session: Session) -> dict[int, dict[str, int]]:
    """Per webhook, how many of its deliveries are in each status."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(select(WebhookDelivery.webhook_id, WebhookDelivery.status,
                                  func.count()).group_by(WebhookDelivery.webhook_id,
                                                         WebhookDelivery.status))
    for hook_id, status, count in rows:
        counts.setdefault(hook_id, {})[status] = count
    return counts


def delivery_log(session: Session, webhook_id: int, limit: int = 100,
                 before: int | None = None) -> list[WebhookDelivery]:
    """A webhook's deliveries, newest first (``before``: older than that delivery id)."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


# -- payloads -------------------------------------------------------------------------


def webhook_event(event: dict[str, Any]) -> str | None:
    """The webhook event a job event is, if any."""
    kind = event["type"]
    if kind in ("job_started", "job_finished"):
        return kind
    if kind == "host_finished" and (event.get("data") or {}).get("status") == "failed":
        return "host_failed"
    return None


def job_link(public_url: str | None, job_id: int) -> str | None:
    return f"{public_url.rstrip('/')}/jobs/{job_id}" if public_url else None


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment else None


def job_part(job: Job) -> dict[str, Any]:
    """The ``job`` object of a payload."""
    return {"id": job.id, "runbook": job.runbook, "kind": job.kind, "status": job.status,
            "created_by": job.created_by.username if job.created_by else None,
            "created_at": _stamp(job.created_at), "finished_at": _stamp(job.finished_at),
            "rerun_of": job.rerun_of_id}


def host_part(host: JobHost | None, event: dict[str, Any]) -> dict[str, Any]:
    """The ``host`` object of a ``host_failed`` payload."""
    data = event["data"]
    if host is None:  # not in the plan's rows (never expected): what the event says
        return {"name": event["host"], "status": data.get("status"),
                "failed_step": data.get("failed_step"), "exit_code": data.get("exit_code"),
                "reason": data.get("reason"), "batch": None, "started_at": None,
                "finished_at": None}
    return {"name": host.name, "status": host.status, "failed_step": host.failed_step,
            "exit_code": host.exit_code, "reason": host.reason, "batch": host.batch,
            "started_at": _stamp(host.started_at), "finished_at": _stamp(host.finished_at)}


def build_payload(name: str, delivery: str, event: dict[str, Any], job: dict[str, Any],
                  host: dict[str, Any] | None, url: str | None) -> dict[str, Any]:
    """The JSON body of a delivery (docs/webhooks.md, "Payload")."""
    return {"event": name, "delivery": delivery, "job": job, "host": host,
            "data": event["data"], "seq": event["seq"], "ts": event["ts"], "url": url}


def sign(secret: str, body: bytes) -> str:
    """The ``X-Patchbay-Signature`` value: ``sha256=`` and the hex HMAC of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Outbox:
    """The event writer's hook: queue deliveries for the events webhooks want, in the
    writer's transaction (see :class:`tasks.events.writer.EventLog`'s ``on_event``)."""

    def __init__(self, public_url: str | None = None) -> None:
        self.public_url = public_url

    def __call__(self, session: Session, job_id: int, event: dict[str, Any]) -> None:
        name = webhook_event(event)
        if name is None:
            return
        hooks = [hook for hook in session.scalars(select(Webhook).order_by(Webhook.id))
                 if name in hook.events]
        job = session.get(Job, job_id) if hooks else None
        if job is None:
            return
        host = None
        if name == "host_failed":
            host = host_part(session.scalar(select(JobHost).where(
                JobHost.job_id == job_id, JobHost.name == event["host"])), event)
        job_data, url, now = job_part(job), job_link(self.public_url, job_id), utcnow()
        for hook in hooks:
            uid = uuid.uuid4().hex
            try:
                body = render_body(hook.format, build_payload(name, uid, event, job_data,
                                                              host, url))
            except (TypeError, ValueError):  # a bug here must not stall the event log
                log.exception("webhook %s: building the %s body of job %s failed",
                              hook.id, name, job_id)
                continue
            session.add(WebhookDelivery(
                uid=uid, webhook_id=hook.id, event=name, job_id=job_id, seq=event["seq"],
                body=body, status="pending", attempts=0, created_at=now,
                next_attempt_at=now))


# -- retries --------------------------------------------------------------------------


def retry_delay(attempts: int, base: float, longest: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2 base, 4 base …
    never more than ``longest``."""
    return min(longest, base * 2 ** min(max(attempts - 1, 0), 40))


def next_attempt(attempts: int, now: datetime, created_at: datetime, *, base: float,
                 longest: float, give_up_after: float) -> datetime | None:
    """When to try again after a failed attempt, or None to give up. The last try
    comes at ``give_up_after`` seconds after the event, not later."""
    deadline = created_at + timedelta(seconds=give_up_after)
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=retry_delay(attempts, base, longest)), deadline)


# -- sending --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status, or an error before there was one.
    ``final``: trying again cannot help (the address is refused, the URL invalid)."""

    status_code: int | None = None
    error: str | None = None
    final: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None \
            and 200 <= self.status_code < 300


def _printable(text: str, limit: int) -> str:
    cleaned = "".join(char if char.isprintable() else " " for char in text)
    return " ".join(cleaned.split())[:limit]


def status_line(status: int) -> str:
    """``HTTP 500 Internal Server Error``: the code and its standard phrase, never what
    the receiver wrote (its body or reason phrase could be anything it holds)."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def post(url: str, body: bytes, headers: dict[str, str], timeout: float,
         addresses: AddressPolicy) -> Outcome:
    """POST ``body`` to ``url`` once: only to an address ``addresses`` allows, resolved
    once and connected to as checked; no redirects followed (a 3xx is a failure), no
    proxy, ``timeout`` seconds for the connection and for each read. Certificates are
    verified for https. The answer's body is not read. Blocking-style I/O: green under
    eventlet or gevent."""
    try:
        url = check_url(url)  # rows stored before URLs were encoded on saving
    except PatchbayError as exc:
        return Outcome(error=_printable(f"invalid url: {exc.message}", 255), final=True)
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        targets = addresses.resolve(host, port)
    except AddressRefused as exc:
        return Outcome(error=_printable(f"refused: {exc}", 255), final=True)
    except OSError as exc:
        return Outcome(error=_printable(f"cannot resolve {host}: {exc}", 255))
    headers = dict(headers)
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = PinnedHTTPSConnection(host, port, targets, timeout,
                                           ssl.create_default_context())
    else:
        connection = PinnedHTTPConnection(host, port, targets, timeout)
    try:
        connection.request("POST", target, body=body, headers=headers)
        status = connection.getresponse().status
    except TimeoutError:
        return Outcome(error=f"timed out after {timeout:g} s")
    except ssl.SSLError as exc:
        return Outcome(error=_printable(f"TLS: {exc}", 255))
    except http.client.HTTPException as exc:  # its text would quote what was received
        return Outcome(error=f"{type(exc).__name__}: the answer is not valid HTTP")
    except OSError as exc:
        return Outcome(error=_printable(f"{type(exc).__name__}: {exc}", 255))
    finally:
        connection.close()
    if 200 <= status < 300:
        return Outcome(status)
    return Outcome(status, status_line(status))


Sender = Callable[[str, bytes, dict[str, str], float, AddressPolicy], Outcome]


@dataclass(frozen=True)
class WebhookSettings:
    """How a node sends deliveries (``PATCHBAY_WEBHOOK_*``, see config.DEFAULTS)."""

    timeout: float = 10
    retry_base: float = 10
    retry_max: float = 900
    give_up_after: float = 3600
    concurrency: int = 20
    poll_interval: float = 1
    retention: float = 30 * 86_400
    user_agent: str = "Patchbay-Webhook"
    addresses: AddressPolicy = PUBLIC_ONLY  # where deliveries may connect

    @property
    def lease(self) -> float:
        """How long a claim holds a delivery: longer than any attempt can take."""
        return 2 * self.timeout + 30


@dataclass(frozen=True)
class Claimed:
    """A delivery this node holds for one attempt."""

    id: int
    webhook_id: int
    uid: str
    event: str
    claim: str
    attempts: int
    created_at: datetime
    url: str = field(repr=False)
    secret: str | None = field(repr=False)
    body: str = field(repr=False)

    def headers(self, user_agent: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": user_agent,
                   "X-Patchbay-Event": self.event, "X-Patchbay-Delivery": self.uid,
                   "X-Patchbay-Attempt": str(self.attempts)}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, self.body.encode())
        return headers


class DeliveryWorker:
    """One node's sender: claims due deliveries and sends each in a task of its own."""

    def __init__(self, sessions: sessionmaker[Session], node_id: str,
                 settings: WebhookSettings, start_task: TaskStarter,
                 send: Sender = post, database: Dependency | None = None) -> None:
        self.sessions = sessions
        # The database outage is logged once by whoever sees it (tasks.nodes.health), not with
        # a traceback every poll.
        self.database = database or Dependency("database")
        self.node_id = node_id
        self.settings = settings
        self.start_task = start_task
        self.send = send
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # webhook id -> attempts under way here
        self._wakeup = threading.Event()
        self._stop = threading.Event()

    def start(self) -> None:
        """Send due deliveries in a background task until :meth:`stop`."""
        self.start_task(self._run)

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return sum(self._in_flight.values())

    def _run(self) -> None:
        next_prune = time.monotonic()
        while not self._stop.is_set():
            self._wakeup.clear()
            try:
                self.poll()
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + PRUNE_EVERY
            except Exception as error:  # noqa: BLE001 - a database hiccup must not end the sender
                if is_transient(error):
                    self.database.failed(describe(error))
                else:
                    log.exception("webhook sender of node %s: looking for deliveries failed",
                                  self.node_id)
            self._wakeup.wait(self.settings.poll_interval)

    def poll(self) -> list[Claimed]:
        """Claim what is due, as far as free slots allow, and start sending it."""
        with self._lock:
            busy = dict(self._in_flight)
        free = self.settings.concurrency - sum(busy.values())
        if free <= 0:
            return []
        claimed = self.claim(free, busy)
        for delivery in claimed:
            with self._lock:
                self._in_flight[delivery.webhook_id] = \
                    self._in_flight.get(delivery.webhook_id, 0) + 1
            self.start_task(self._deliver, delivery)
        return claimed

    def claim(self, limit: int, busy: dict[int, int] | None = None) -> list[Claimed]:
        """Take up to ``limit`` due deliveries (at most :data:`PER_HOOK_IN_FLIGHT` per
        webhook, counting ``busy``) for one attempt each. Of several nodes claiming at
        once, each delivery goes to exactly one: the UPDATE re-checks that it is still
        due, under the row's lock."""
        busy = busy or {}
        now = utcnow()
        due = (WebhookDelivery.status.in_(DUE), WebhookDelivery.next_attempt_at <= now)
        with self.sessions() as session:
            hooks = session.execute(
                select(WebhookDelivery.webhook_id).where(*due)
                .group_by(WebhookDelivery.webhook_id)
                .order_by(func.min(WebhookDelivery.next_attempt_at))).scalars().all()
        token = uuid.uuid4().hex
        with self.sessions() as session, session.begin():
            for hook_id in hooks:
                room = min(PER_HOOK_IN_FLIGHT - busy.get(hook_id, 0), limit)
                if room <= 0:
                    continue
                # Picked first, then updated: PostgreSQL may run a LIMIT subquery
                # inside the UPDATE more than once, and claim more than ``room``.
                candidates = session.scalars(
                    select(WebhookDelivery.id)
                    .where(WebhookDelivery.webhook_id == hook_id, *due)
                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                    .limit(room).with_for_update(skip_locked=True)).all()
                if not candidates:
                    continue
                limit -= session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(candidates), *due)
                    .values(status="sending", claim=token, claimed_by=self.node_id,
                            attempts=WebhookDelivery.attempts + 1, last_attempt_at=now,
                            next_attempt_at=now + timedelta(seconds=self.settings.lease))
                    .execution_options(synchronize_session=False)).rowcount
                if limit <= 0:
                    break
            rows = session.execute(
                select(WebhookDelivery, Webhook.url, Webhook.secret)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.claim == token).order_by(WebhookDelivery.id)).all()
            return [Claimed(row.id, row.webhook_id, row.uid, row.event, token, row.attempts,
                            row.created_at, url, secret, row.body)
                    for row, url, secret in rows]

    def _deliver(self, delivery: Claimed) -> None:
        try:
            self.record(delivery, self._attempt(delivery))
        except Exception:  # noqa: BLE001 - the database: the lease ends, another try follows
            log.exception("webhook %s: recording delivery %s failed",
                          delivery.webhook_id, delivery.uid)
        finally:
            with self._lock:
                self._in_flight[delivery.webhook_id] -= 1
                if not self._in_flight[delivery.webhook_id]:
                    del self._in_flight[delivery.webhook_id]
            self._wakeup.set()  # a slot is free: look again now

    def _attempt(self, delivery: Claimed) -> Outcome:
        """Send once. Whatever goes wrong becomes a failed attempt with a reason: left
        unrecorded, the delivery would stay ``sending`` and be claimed again forever."""
        try:
            return self.send(delivery.url, delivery.body.encode(),
                             delivery.headers(self.settings.user_agent),
                             float(self.settings.timeout), self.settings.addresses)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("webhook %s: sending delivery %s failed unexpectedly",
                          delivery.webhook_id, delivery.uid)
            return Outcome(error=f"internal error: {type(exc).__name__} (see the log)")

    def record(self, delivery: Claimed, outcome: Outcome) -> bool:
        """Store an attempt's outcome: delivered, due again later, or given up. False if
        this node no longer held the claim (its lease ended and another node took the
        delivery, or the webhook was deleted): nothing is stored then."""
        now = utcnow()
        values: dict[str, Any] = {"last_status_code": outcome.status_code,
                                  "last_error": outcome.error, "claim": None}
        retry_at = None
        if outcome.ok:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
        else:
            settings = self.settings
            retry_at = None if outcome.final else next_attempt(
                delivery.attempts, now, delivery.created_at, base=settings.retry_base,
                longest=settings.retry_max, give_up_after=settings.give_up_after)
            values.update(status="pending" if retry_at else "given_up",
                          next_attempt_at=retry_at)
        with self.sessions() as session, session.begin():
            stored = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery.id, WebhookDelivery.claim == delivery.claim)
                .values(**values).execution_options(synchronize_session=False)).rowcount == 1
        if not outcome.ok:
            log.warning("webhook %s: delivery %s (%s) attempt %d failed: %s; %s",
                        delivery.webhook_id, delivery.uid, safe_url(delivery.url),
                        delivery.attempts, outcome.error,
                        f"next attempt at {retry_at:%H:%M:%S} UTC" if retry_at else "given up")
        return stored

    def prune(self) -> int:
        """Forget finished deliveries older than the retention."""
        cutoff = utcnow() - timedelta(seconds=self.settings.retention)
        with self.sessions() as session, session.begin():
            return session.execute(
                delete(WebhookDelivery)
                .where(WebhookDelivery.status.in_(("delivered", "given_up")),
                       WebhookDelivery.created_at < cutoff)
                .execution_options(synchronize_session=False)).rowcount
