"""The ``.flaskenv`` that ``make run`` writes, so the ``flask`` commands of the README
(``flask --app app create-user …``, ``create-token …``) run in the project folder use
the demo's instance: its database and secret key in ``.demo/instance``.

    python -m demo.flaskenv .flaskenv .demo/instance

Flask loads the file through python-dotenv (pinned in requirements.txt); what the
environment already sets wins over it, so ``PATCHBAY_INSTANCE_PATH`` or ``DATABASE_URL``
given by hand still decide. A ``.flaskenv`` that ``make run`` did not write is left as
it is (with a note on stderr)."""

from __future__ import annotations

import sys
from pathlib import Path

MARK = "# Written by `make run` (scripts/run-demo.sh)"


def quoted(value: str) -> str:
    """A dotenv double-quoted value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def contents(instance: Path) -> str:
    return (f"{MARK}: `flask` commands run in this folder use the\n"
            "# demo's instance (its database and secret key). Delete it to use ./instance.\n"
            "FLASK_APP=app\n"
            f"PATCHBAY_INSTANCE_PATH={quoted(str(instance.resolve()))}\n")


def write(path: Path, instance: Path) -> bool:
    """Write ``path`` for ``instance``; False (nothing written) if ``path`` is a file
    of someone else's."""
    if path.exists() and not path.read_text(errors="replace").startswith(MARK):
        return False
    path.write_text(contents(instance))
    return True


def main(argv: list[str]) -> int:
    path, instance = Path(argv[0]), Path(argv[1])
    if not write(path, instance):
        print(f"make run: {path} was not written by make run: left as it is; `flask` "
              f"commands need PATCHBAY_INSTANCE_PATH={instance.resolve()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
