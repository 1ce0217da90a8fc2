"""The one error type the engine raises for bad input; the web layer turns it into an
error ack or a 4xx response."""

from __future__ import annotations

from typing import Any


class PatchbayError(Exception):
    """A request the engine refuses, with a machine-readable code and the field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None,
                 detail: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        # For the curious (the exact pattern a value missed): pages fold it away.
        self.detail = detail
        # More, for programs (server_busy: ``held``, which jobs hold which servers).
        self.extra = extra or {}

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message,
                                 "field": self.field}
        if self.detail is not None:
            error["detail"] = self.detail
        error.update(self.extra)
        return error
