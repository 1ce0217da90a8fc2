"""Pydantic's validation errors in words, naming each field as the forms label it.

"strategy.parallel: Input should be greater than or equal to 1" reaches a person as
"Servers at once must be 1 or more"; the raw rule stays beside it as the error's
``detail`` (the pages fold it away). The error's ``code`` and ``field`` are not this
module's business: callers keep them as they were.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# Fields as the pages label them (templates/jobs/dashboard.html, the account page's
# token form), by their dotted path; any other field is named by its own words.
LABELS = {
    "runbook": "Runbook",
    "command": "Shell command",
    "servers": "Servers",
    "tags": "Tags",
    "params": "Parameters",
    "strategy": "Strategy",
    "strategy.parallel": "Servers at once",
    "strategy.batches": "Batches",
    "strategy.max_failures": "Stop after failures",
    "strategy.timeout": "Step timeout",
    "strategy.gate": "Between batches",
    "strategy.gate.soak": "Soak seconds",
    "name": "Name",
    "expires_in_days": "Expires in (days)",
    "role": "Role",
    "job_id": "Job",
}
Words = Callable[[str, dict[str, Any]], str]


def _count(number: Any, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _too_short(label: str, ctx: dict[str, Any]) -> str:
    if ctx.get("min_length") == 1:
        return f"{label} must not be empty"
    return f"{label} must have at least {_count(ctx.get('min_length'), 'character')}"


def _one_of(label: str, ctx: dict[str, Any]) -> str:
    return f"{label} must be {ctx.get('expected', '')}".replace("'", "")


# Each pydantic error type (pydantic_core's ErrorType) as a sentence about ``label``.
SENTENCES: dict[str, Words] = {
    "missing": lambda label, ctx: f"{label} is required",
    "greater_than_equal": lambda label, ctx: f"{label} must be {ctx.get('ge')} or more",
    "greater_than": lambda label, ctx: f"{label} must be more than {ctx.get('gt')}",
    "less_than_equal": lambda label, ctx: f"{label} must be {ctx.get('le')} or less",
    "less_than": lambda label, ctx: f"{label} must be less than {ctx.get('lt')}",
    "string_too_short": _too_short,
    "string_too_long": lambda label, ctx:
        f"{label} must be at most {_count(ctx.get('max_length'), 'character')}",
    "too_short": lambda label, ctx:
        f"{label} must have at least {_count(ctx.get('min_length'), 'entry')}".replace(
            "entrys", "entries"),
    "too_long": lambda label, ctx:
        f"{label} can have at most {_count(ctx.get('max_length'), 'entry')}".replace(
            "entrys", "entries"),
    "int_type": lambda label, ctx: f"{label} must be a whole number",
    "int_parsing": lambda label, ctx: f"{label} must be a whole number",
    "int_from_float": lambda label, ctx: f"{label} must be a whole number",
    "float_type": lambda label, ctx: f"{label} must be a number",
    "float_parsing": lambda label, ctx: f"{label} must be a number",
    "string_type": lambda label, ctx: f"{label} must be text",
    "bool_type": lambda label, ctx: f"{label} must be true or false",
    "bool_parsing": lambda label, ctx: f"{label} must be true or false",
    "list_type": lambda label, ctx: f"{label} must be a list",
    "dict_type": lambda label, ctx: f"{label} must be an object",
    "model_type": lambda label, ctx: f"{label} must be an object",
    "model_attributes_type": lambda label, ctx: f"{label} must be an object",
    "literal_error": _one_of,
    "enum": _one_of,
    "extra_forbidden": lambda label, ctx: f"{label} is not a field here",
    "string_pattern_mismatch": lambda label, ctx: f"{label} does not have the expected form",
}


def field_label(path: Sequence[str | int]) -> str:
    """The label of the field at ``path`` (list positions and union branches skipped):
    the longest known prefix, else the field's own name in words ("after_seq" reads
    "After seq")."""
    names = [str(part) for part in path if isinstance(part, str)]
    for end in range(len(names), 0, -1):
        label = LABELS.get(".".join(names[:end]))
        if label is not None:
            return label
    if not names:
        return "The value"
    words = names[-1].replace("_", " ")
    return words[:1].upper() + words[1:]


def sentence(error: ErrorDetails, prefix: Sequence[str] = ()) -> str:
    """One pydantic error in words; ``prefix`` is where the validated object sits in the
    payload (``("strategy",)`` for a strategy)."""
    path = [*prefix, *error["loc"]]
    if error["type"] == "extra_forbidden":
        return f"unknown field {'.'.join(str(part) for part in path)}"
    if error["type"] == "value_error":  # a validator of ours: its message is words
        message = error["msg"].removeprefix("Value error, ")
        return message[:1].upper() + message[1:]
    label = field_label(path)
    words = SENTENCES.get(error["type"])
    if words is None:  # a type this map does not know: the label, and pydantic's words
        return f"{label}: {error['msg'][:1].lower()}{error['msg'][1:]}"
    return words(label, error.get("ctx") or {})


def rule(error: ErrorDetails, prefix: Sequence[str] = ()) -> str:
    """The raw rule, for the folded detail: "strategy.parallel: Input should be …"."""
    where = ".".join(str(part) for part in (*prefix, *error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


# A value of none of a union's types: pydantic reports each branch (loc ends with the
# type's tag); the sentence names what would do.
BRANCHES = {"int": "a whole number", "float": "a number", "str": "text",
            "bool": "true or false"}
# Fields whose int | str is a count or a percentage.
AMOUNTS = {"strategy.batches": "a whole number or a percentage like '25%'",
           "strategy.max_failures": "a whole number or a percentage like '25%'"}


def _union_sentence(errors: list[ErrorDetails], first: ErrorDetails,
                    prefix: Sequence[str]) -> str | None:
    base = first["loc"][:-1]
    if not first["loc"] or first["loc"][-1] not in BRANCHES:
        return None
    branches = [e for e in errors if e["loc"][:-1] == base]
    tags = {e["loc"][-1] for e in branches}
    if len(tags) < 2 or not tags <= set(BRANCHES) or not all(
            e["type"].endswith(("_type", "_parsing")) for e in branches):
        return None
    names = [str(part) for part in (*prefix, *base) if isinstance(part, str)]
    wanted = AMOUNTS.get(".".join(names))
    if wanted is None:
        kinds = [BRANCHES[tag] for tag in BRANCHES if tag in tags]
        if {"int", "float"} <= tags:
            kinds.remove(BRANCHES["int"])
        wanted = " or ".join(kinds)
    return f"{field_label([*prefix, *base])} must be {wanted}"


def first_problem(exc: ValidationError, prefix: Sequence[str] = ()
                  ) -> tuple[ErrorDetails, str, str | None]:
    """The first error of ``exc``, its sentence and its rule (None when a validator of
    ours said it in words already: the detail would only repeat the sentence)."""
    errors = exc.errors()
    first = errors[0]
    words = _union_sentence(errors, first, prefix) or sentence(first, prefix)
    return first, words, None if first["type"] == "value_error" else rule(first, prefix)


ALTERNATIVES = re.compile(r"\^?\(?((?:[A-Za-z0-9_.-]+\|)+[A-Za-z0-9_.-]+)\)?\$?")


def pattern_choices(pattern: str) -> list[str] | None:
    """The values a pattern that only lists alternatives takes (``^(true|false)$``:
    true, false), else None."""
    match = ALTERNATIVES.fullmatch(pattern)
    if match is None or not pattern.startswith("^") or not pattern.endswith("$"):
        return None
    choices = match.group(1).split("|")
    if any(re.search(r"[.]", choice) for choice in choices):  # "." is any character
        return None
    return choices
