"""The one poll helper of the integration tests and benches."""

from __future__ import annotations

import itertools

import pytest

from phaseshift.lab.wait import wait_for


def test_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "", 3])
    assert wait_for(lambda: next(values), timeout=5, poll=0) == 3


def test_until_decides_what_counts() -> None:
    counter = itertools.count()
    assert wait_for(lambda: next(counter), timeout=5, poll=0, until=lambda n: n >= 2) == 2


def test_exceptions_in_retry_on_count_as_not_yet_and_others_propagate() -> None:
    calls = iter([ConnectionError("refused"), "up"])

    def produce() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_for(produce, timeout=5, poll=0, retry_on=(ConnectionError,)) == "up"
    with pytest.raises(KeyError):
        wait_for(lambda: {}["x"], timeout=5, poll=0)


def test_a_timeout_names_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"timed out waiting for the answer \(last: \[\]\)"):
        wait_for(list, timeout=0, what="the answer", poll=0)
