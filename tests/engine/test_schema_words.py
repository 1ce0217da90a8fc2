"""Issue 32 (item 11): pydantic's validation errors in words naming the field as the
form labels it, the raw rule kept for the folded detail (tasks/schema_words.py)."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from tasks.schema_words import field_label, first_problem, pattern_choices


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runbook: Annotated[StrictStr, Field(min_length=1, max_length=8)] = "x"
    command: Annotated[StrictStr, Field(min_length=1)] = "uptime"
    job_id: StrictInt = Field(default=1, ge=1, le=99)
    after_seq: StrictInt = Field(default=0, gt=-1, lt=10)
    servers: list[StrictStr] = Field(default_factory=lambda: ["a"], min_length=1,
                                     max_length=2)
    role: Literal["viewer", "operator"] = "viewer"
    limit: StrictInt | StrictStr = 1


class Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parallel: StrictInt = Field(default=10, ge=1, le=1000)
    timeout: int | float | None = None
    batches: list[StrictInt | StrictStr] = []


def words(model: type[BaseModel], payload: dict, prefix: tuple[str, ...] = ()
          ) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    _, sentence, rule = first_problem(caught.value, prefix)
    return sentence, rule


@pytest.mark.parametrize(("payload", "sentence"), [
    ({"command": ""}, "Shell command must not be empty"),
    ({"runbook": "much-too-long"}, "Runbook must be at most 8 characters"),
    ({"job_id": 0}, "Job must be 1 or more"),
    ({"job_id": 100}, "Job must be 99 or less"),
    ({"job_id": "7"}, "Job must be a whole number"),
    ({"after_seq": -1}, "After seq must be more than -1"),
    ({"after_seq": 10}, "After seq must be less than 10"),
    ({"servers": []}, "Servers must have at least 1 entry"),
    ({"servers": ["a", "b", "c"]}, "Servers can have at most 2 entries"),
    ({"servers": "a"}, "Servers must be a list"),
    ({"servers": [5]}, "Servers must be text"),
    ({"role": "root"}, "Role must be viewer or operator"),
    ({"limit": 1.5}, "Limit must be a whole number or text"),
    ({"surprise": 1}, "unknown field surprise"),
], ids=repr)
def test_each_error_type_is_a_sentence_naming_the_field(payload, sentence):
    assert words(Payload, payload)[0] == sentence


def test_the_raw_rule_is_kept_for_the_detail():
    assert words(Payload, {"command": ""}) == (
        "Shell command must not be empty",
        "command: String should have at least 1 character")


def test_a_strategy_field_is_named_as_the_dashboard_labels_it():
    assert words(Strategy, {"parallel": 0}, ("strategy",)) == (
        "Servers at once must be 1 or more",
        "strategy.parallel: Input should be greater than or equal to 1")
    assert words(Strategy, {"parallel": "many"}, ("strategy",))[0] == \
        "Servers at once must be a whole number"
    assert words(Strategy, {"timeout": "soon"}, ("strategy",))[0] == \
        "Step timeout must be a number"
    assert words(Strategy, {"batches": [True]}, ("strategy",))[0] == \
        "Batches must be a whole number or a percentage like '25%'"


def test_a_missing_field_is_required():
    class Needs(BaseModel):
        runbook: StrictStr

    assert words(Needs, {}) == ("Runbook is required", "runbook: Field required")


def test_a_validator_of_ours_speaks_for_itself_and_has_no_detail():
    from pydantic import field_validator

    class Checked(BaseModel):
        gate: str

        @field_validator("gate")
        @classmethod
        def _gate(cls, value: str) -> str:
            raise ValueError("between batches must be auto or manual")

    assert words(Checked, {"gate": "x"}) == ("Between batches must be auto or manual", None)


def test_an_unknown_error_type_keeps_pydantic_words_after_the_label():
    class Dated(BaseModel):
        since: __import__("datetime").date

    assert words(Dated, {"since": "soon"})[0].startswith("Since: input should be a valid date")


@pytest.mark.parametrize(("path", "label"), [
    (["strategy", "parallel"], "Servers at once"),
    (["strategy", "gate", "soak"], "Soak seconds"),
    (["strategy", "batches", 0, "int"], "Batches"),
    (["strategy", "unknown"], "Strategy"),
    (["expires_in_days"], "Expires in (days)"),
    (["replay_lines"], "Replay lines"),
    ([], "The value"),
])
def test_labels_come_from_the_longest_known_path(path, label):
    assert field_label(path) == label


@pytest.mark.parametrize(("pattern", "choices"), [
    ("^(true|false)$", ["true", "false"]),
    ("^(stable|beta|canary-1)$", ["stable", "beta", "canary-1"]),
    ("^true|false$", ["true", "false"]),
    (r"^[0-9]+(\.[0-9]+){2}$", None),
    ("^(1.4|1.5)$", None),  # "." is any character: not a list of values
    ("(true|false)", None),
    ("^true$", None),
])
def test_a_pattern_of_alternatives_lists_its_values(pattern, choices):
    assert pattern_choices(pattern) == choices


RESTART = """\
name: restartable
params:
  restart:
    pattern: '^(true|false)$'
  version:
    pattern: '^[0-9]+(\\.[0-9]+){2}$'
  build:
    pattern: '^[0-9]+(\\.[0-9]+){2}$'
    pattern_hint: three numbers
    example: 1.4.2
steps:
  - name: show
    run: echo {{ params.restart }} {{ params.version }} {{ params.build }}
"""
GOOD = {"restart": "true", "version": "1.4.8", "build": "1.4.8"}


@pytest.mark.parametrize(("bad", "message", "detail"), [
    ({"restart": "yes"}, "Restart must be one of true, false",
     "parameter 'restart' value 'yes' does not match ^(true|false)$"),
    ({"version": "1.4"}, "Version does not have the expected form",
     r"parameter 'version' value '1.4' does not match ^[0-9]+(\.[0-9]+){2}$"),
    ({"build": "1.4"}, "Build must be three numbers, like 1.4.2",
     r"parameter 'build' value '1.4' does not match ^[0-9]+(\.[0-9]+){2}$"),
    ({"build": ""}, "Build is required", None),
    ({"build": True}, "Build must be text or a whole number",
     "parameter 'build' must be a string"),
], ids=repr)
def test_a_parameter_is_refused_in_words_with_its_pattern_in_the_detail(bad, message, detail):
    from tasks.errors import PatchbayError
    from tasks.planning.runbook_files import parse_runbook

    book = parse_runbook(RESTART, "restartable.yml")

    with pytest.raises(PatchbayError) as caught:
        book.validate_params({**GOOD, **bad})

    field = f"params.{next(iter(bad))}"
    assert (caught.value.code, caught.value.field) == ("invalid", field)
    assert (caught.value.message, caught.value.detail) == (message, detail)
