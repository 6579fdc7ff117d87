"""The cache's breaker and its ledger of owed invalidations, on a clock the test moves."""

from __future__ import annotations

from sample_app.cache.breaker import Breaker
from sample_app.cache.owed import OwedInvalidations


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_the_breaker_stays_open_for_retry_after_each_failure() -> None:
    clock = Clock()
    breaker = Breaker(retry_after=1.0, clock=clock)
    assert breaker.closed
    assert breaker.trip()  # the first failure of an outage
    assert not breaker.closed
    clock.advance(0.6)
    assert not breaker.trip()  # already open: not a new outage, but the wait starts again
    clock.advance(0.6)
    assert not breaker.closed
    clock.advance(0.4)
    assert breaker.closed
    assert breaker.failures == 2


def test_a_settled_delivery_forgets_only_what_it_carried() -> None:
    counts: list[int] = []
    owed = OwedInvalidations(30.0, clock=Clock(), on_change=counts.append)
    owed.owe(["a", "b"])
    due = owed.due()
    owed.owe(["b", "c"])  # b written again while the first delivery is under way
    owed.settle(due)
    assert owed.due().keys() == {"b", "c"}
    owed.settle(owed.due())
    assert len(owed) == 0
    assert counts == [2, 3, 2, 0]


def test_too_many_owed_are_forgotten_for_one_entry_ttl() -> None:
    clock = Clock()
    owed = OwedInvalidations(5.0, limit=3, clock=clock)
    owed.owe(["a", "b"])
    assert not owed.forgotten
    owed.owe(["c", "d"])  # one more than can be remembered
    assert owed.forgotten and len(owed) == 0
    clock.advance(4.0)
    owed.owe(["e"])  # lost while forgotten: the wait runs from this one
    assert len(owed) == 0
    clock.advance(4.9)
    assert owed.forgotten
    clock.advance(0.1)
    assert not owed.forgotten
    owed.owe(["f"])
    assert owed.due().keys() == {"f"}
