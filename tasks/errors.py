"""The one error type the engine raises for bad input; the web layer turns it into an
error ack or a 4xx response."""

from __future__ import annotations


class PatchbayError(Exception):
    """A request the engine refuses, with a machine-readable code and the field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}
