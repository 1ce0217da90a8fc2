"""Rollout strategy: batch sizes, the failure limit, and validation of job input."""

from __future__ import annotations

import pytest

from tasks.errors import PatchbayError
from tasks.rollout.strategy import Strategy, parse_strategy


@pytest.mark.parametrize(("batches", "hosts", "sizes"), [
    ([], 10, [10]),
    ([], 1, [1]),
    ([], 0, []),
    ([2], 10, [2, 8]),
    ([1, 2, 3], 10, [1, 2, 3, 4]),
    ([5, 5], 10, [5, 5]),
    ([20], 10, [10]),
    (["25%"], 10, [3, 7]),
    (["10%", "50%"], 7, [1, 4, 2]),
    (["1%"], 10, [1, 9]),
    (["100%"], 10, [10]),
    ([1, "50%"], 10, [1, 5, 4]),
    ([1, "50%"], 3, [1, 2]),
    ([1, 1, 1, 1, 1], 3, [1, 1, 1]),
    (["50%", "50%", "50%"], 3, [2, 1]),
], ids=str)
def test_batch_sizes(batches, hosts, sizes):
    strategy = Strategy(batches=batches)

    assert strategy.batch_sizes(hosts) == sizes


@pytest.mark.parametrize("hosts", [1, 2, 3, 7, 10, 99, 250])
@pytest.mark.parametrize("batches", [[], [1], [1, "10%"], ["33%", "33%"], [3, 3, 3, 3]])
def test_batches_cover_every_host_exactly_once(batches, hosts):
    sizes = Strategy(batches=batches).batch_sizes(hosts)

    assert sum(sizes) == hosts
    assert all(size >= 1 for size in sizes)


@pytest.mark.parametrize(("max_failures", "hosts", "limit"), [
    (None, 10, None),
    (3, 10, 3),
    (0, 10, 1),
    (1, 10, 1),
    ("50%", 10, 5),
    ("25%", 10, 2),
    ("10%", 5, 1),
    ("0%", 10, 1),
    ("100%", 7, 7),
], ids=str)
def test_failure_limit(max_failures, hosts, limit):
    strategy = Strategy(max_failures=max_failures)

    assert strategy.failure_limit(hosts) == limit


def test_parse_uses_the_default_parallelism():
    strategy = parse_strategy(None, {}, default_parallel=7)

    assert strategy == Strategy(parallel=7, batches=[], max_failures=None, timeout=None)


def test_runbook_defaults_are_merged_under_job_values():
    defaults = {"parallel": 2, "batches": [1, "50%"], "timeout": 60}

    strategy = parse_strategy({"parallel": 5, "max_failures": 1}, defaults, default_parallel=10)

    assert strategy.parallel == 5
    assert strategy.batches == [1, "50%"]
    assert strategy.max_failures == 1
    assert strategy.timeout == 60


def test_runbook_default_beats_the_global_parallelism():
    strategy = parse_strategy({}, {"parallel": 3}, default_parallel=10)

    assert strategy.parallel == 3


def test_strategy_must_be_an_object():
    with pytest.raises(PatchbayError) as caught:
        parse_strategy([1, 2], {}, default_parallel=10)

    assert (caught.value.code, caught.value.field) == ("invalid", "strategy")


@pytest.mark.parametrize(("raw", "field"), [
    ({"parallel": 0}, "parallel"),
    ({"parallel": 1001}, "parallel"),
    ({"parallel": "many"}, "parallel"),
    ({"batches": ["abc"]}, "batches"),
    ({"batches": [0]}, "batches"),
    ({"batches": [-1]}, "batches"),
    ({"batches": ["0%"]}, "batches"),
    ({"batches": ["101%"]}, "batches"),
    ({"batches": ["50"]}, "batches"),
    ({"batches": ["50%\n"]}, "batches"),
    ({"batches": [True]}, "batches"),
    ({"batches": "1,50%"}, "batches"),
    ({"batches": [1] * 101}, "batches"),
    ({"max_failures": "150%"}, "max_failures"),
    ({"max_failures": -1}, "max_failures"),
    ({"max_failures": "some"}, "max_failures"),
    ({"max_failures": True}, "max_failures"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": 86_401}, "timeout"),
    ({"retries": 3}, "retries"),
], ids=repr)
def test_invalid_strategy_names_the_field(raw, field):
    with pytest.raises(PatchbayError) as caught:
        parse_strategy(raw, {}, default_parallel=10)

    error = caught.value
    assert (error.code, error.field) == ("invalid", f"strategy.{field}")
    assert error.message.startswith(f"strategy.{field}: ")


def test_invalid_runbook_default_is_reported_too():
    with pytest.raises(PatchbayError) as caught:
        parse_strategy({}, {"batches": [0]}, default_parallel=10)

    assert caught.value.field == "strategy.batches"


def test_error_message_drops_pydantic_prefix():
    with pytest.raises(PatchbayError) as caught:
        parse_strategy({"max_failures": "150%"}, {}, default_parallel=10)

    assert "Value error" not in caught.value.message
    assert "'150%'" in caught.value.message
