"""The console's JSON API over HTTP, with a bearer token (``docs/live-api.md``).

Every failure becomes one of two exceptions: :class:`ApiError` when the console
answered and refused (its ``{"ok": false, "error": {...}}``), :class:`Unreachable` when
it could not be asked (no connection, a timeout, a proxy's 5xx page): the first is
final, the second may pass when the network comes back.
"""

from __future__ import annotations

import re
from typing import Any

import requests

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')


class ApiError(Exception):
    """The console refused a request (``code`` as in the API: ``unauthorized``,
    ``forbidden``, ``not_found``, ``invalid``, ``server_busy``…)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.message}{where}"


class Unreachable(Exception):
    """The console could not be asked, or did not answer in its own words."""


class Api:
    """The JSON API of one console, as one token's user."""

    def __init__(self, url: str, token: str | None,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = session or requests.Session()
        self.http.headers["User-Agent"] = "patchbay-cli"
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None) -> dict[str, Any]:
        try:
            response = self.http.request(method, self.url + path, params=params, json=body,
                                         timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach the console at {self.url}: "
                              f"{_reason(exc)}") from None
        return _answer(response, self.url)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params={k: v for k, v in params.items()
                                                 if v is not None})

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        return self.request("POST", path, body=body if body is not None else {})

    def job(self, job_id: int) -> dict[str, Any]:
        return self.get(f"/api/jobs/{job_id}")["job"]

    def events(self, job_id: int, after_seq: int, limit: int = 1000,
               host: str | None = None) -> list[dict[str, Any]]:
        return self.get(f"/api/jobs/{job_id}/events", after_seq=after_seq, limit=limit,
                        host=host)["events"]


def log_in_with_password(url: str, username: str, password: str) -> requests.Session:
    """A browser-like session, logged in through the login form (CSRF token and all),
    carrying the CSRF token for JSON posts in ``X-CSRFToken``."""
    http = requests.Session()
    http.headers["User-Agent"] = "patchbay-cli"
    try:
        page = http.get(f"{url}/login", timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        form_token = CSRF_FIELD.search(page.text)
        if page.status_code != 200 or form_token is None:
            raise Unreachable(f"{url}/login is not a Patchbay login page "
                              f"(HTTP {page.status_code})")
        answer = http.post(f"{url}/login", allow_redirects=False,
                           timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                           data={"username": username, "password": password,
                                 "csrf_token": form_token.group(1)})
        if answer.status_code == 429:
            raise ApiError(429, "unauthorized", "too many login attempts from this "
                           "address; wait a minute and try again")
        if answer.status_code != 302:
            raise ApiError(answer.status_code, "unauthorized", "wrong user name or password")
        home = http.get(f"{url}/", timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as exc:
        raise Unreachable(f"cannot reach the console at {url}: {_reason(exc)}") from None
    meta = CSRF_META.search(home.text)
    http.headers["X-CSRFToken"] = meta.group(1) if meta else form_token.group(1)
    return http


def _answer(response: requests.Response, url: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.ok and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and response.status_code < 500:
        raise ApiError(response.status_code, str(error.get("code", "error")),
                       str(error.get("message", "")), error.get("field"))
    if isinstance(error, dict):  # the console's own 500: it will not be better later
        raise ApiError(response.status_code, str(error.get("code", "internal")),
                       str(error.get("message", "")), error.get("field"))
    # Not the API's own answer: a proxy's error page, a node restarting, a wrong URL.
    if response.status_code >= 500:
        raise Unreachable(f"the console at {url} answered HTTP {response.status_code}")
    raise ApiError(response.status_code, "not_patchbay",
                   f"{response.url} answered HTTP {response.status_code}, not Patchbay's "
                   "API: check the console URL")


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or lost"
    return type(exc).__name__
