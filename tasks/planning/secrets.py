"""Secret values: sealed at rest with a key derived from the console's SECRET_KEY, and
shown as :data:`MASK` everywhere but in the command sent to a server.

A secret is a runbook parameter declared ``secret: true``, or an inventory variable a
server lists in ``secret_vars`` (or reads from the environment with ``{env: NAME}``).
Its real value lives in memory while a job is planned and run, and in the database only
sealed (Fernet: AES-128-CBC with an HMAC-SHA256, keyed by HKDF-SHA256 over SECRET_KEY),
so a console that resumes the job after a restart, or another node sharing the database
and the same SECRET_KEY, runs what was planned. Events, job rows, audit entries and the
server log only ever hold the masked text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tasks.errors import PatchbayError

MASK = "••••"
# Output lines and typed text are masked by searching for the secret values; a value
# shorter than this would mask half of every line ("a", "1") while protecting nothing.
MIN_MASKED_LENGTH = 4
_KEY_INFO = b"patchbay secret values v1"


class SecretUnreadable(PatchbayError):
    """A sealed value this console cannot open: its SECRET_KEY is not the one that
    sealed it (or the stored token was damaged)."""


class SecretBox:
    """Seals and opens secret values with a key derived from the console's SECRET_KEY.

    Every node sharing a database must share the SECRET_KEY (it signs sessions too); a
    changed key makes what was sealed before unreadable, which is reported, never
    guessed around."""

    def __init__(self, secret_key: str | bytes) -> None:
        material = secret_key.encode() if isinstance(secret_key, str) else secret_key
        if not material:
            raise ValueError("a SecretBox needs a non-empty SECRET_KEY")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=_KEY_INFO).derive(material)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, value: Any) -> str:
        """``value`` (anything JSON can hold) as an opaque token."""
        return self._fernet.encrypt(json.dumps(value).encode()).decode("ascii")

    def open(self, token: str, what: str = "a secret value") -> Any:
        """What :meth:`seal` sealed; :class:`SecretUnreadable` naming ``what`` if this
        console's key cannot open it."""
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError, UnicodeEncodeError):
            raise SecretUnreadable(
                "invalid",
                f"{what} cannot be decrypted: it was sealed with another SECRET_KEY "
                "(the console's PATCHBAY_SECRET_KEY changed, or nodes do not share one)",
            ) from None


def masked_values(values: Iterable[str]) -> list[str]:
    """The values a :class:`Masker` searches for: those of at least
    :data:`MIN_MASKED_LENGTH` characters, longer ones first."""
    return sorted({v for v in values if len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True)


class Masker:
    """Replaces every occurrence of some secret values in a text with :data:`MASK`.

    Only values of at least :data:`MIN_MASKED_LENGTH` characters are searched for;
    longer ones first, so a secret that contains another is masked whole."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = masked_values(values)

    def __bool__(self) -> bool:
        return bool(self.values)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        return text
