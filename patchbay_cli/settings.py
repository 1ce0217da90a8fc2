"""The global options (``--url``, ``--token``, ``--plain``, ``--reconnect-timeout``),
resolved lazily: ``login`` needs no token, and only a command that talks to the console
asks for its URL."""

from __future__ import annotations

from dataclasses import dataclass

from patchbay_cli import config
from patchbay_cli.api import Api
from patchbay_cli.exits import CliError


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
