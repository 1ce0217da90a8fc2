"""Asking the database which of many ids a query selects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select

from extensions import db

CHUNK = 500  # ids per IN list: databases cap the parameters of one statement


def selected_ids(statement: Select[Any], id_column: Any, wanted: Iterable[int]) -> set[int]:
    """The ids of ``wanted`` that ``statement`` (selecting ``id_column``) returns."""
    ids = sorted(set(wanted))
    found: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        found.update(db.session.scalars(
            statement.where(id_column.in_(ids[start:start + CHUNK]))))
    return found
