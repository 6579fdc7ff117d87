"""SignalBatcher: the signal fetches of one tick coalesce into one batched fetch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from phaseshift.api import ScalePlan, parse_plan
from phaseshift.batching import SignalBatcher
from phaseshift.promql import PlanKey, PlanSignals, SignalSnapshot

WINDOW = 0.05


def plan(name: str, namespace: str = "web") -> ScalePlan:
    return parse_plan({"metadata": {"name": name, "namespace": namespace}, "spec": {}})


class RecordingFetch:
    """A fetch that records each batch it was given and answers every plan in it."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.batches: list[list[PlanKey]] = []
        self.fail = fail
        self.threads: set[int] = set()

    def __call__(self, plans: Sequence[ScalePlan], now: datetime) -> SignalSnapshot:
        self.batches.append([PlanKey.of(p) for p in plans])
        self.threads.add(threading.get_ident())
        if self.fail is not None:
            raise self.fail
        return {PlanKey.of(p): PlanSignals(readings={}, fetched_at=now) for p in plans}


async def test_concurrent_gets_within_the_window_share_one_fetch() -> None:
    fetch = RecordingFetch()
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    plans = [plan(f"p{i}") for i in range(20)]
    results = await asyncio.gather(*(batcher.get(p) for p in plans))
    assert len(fetch.batches) == 1
    assert sorted(fetch.batches[0]) == sorted(PlanKey.of(p) for p in plans)
    # Every waiter receives its own plan's answer, all from the same fetch.
    assert all(r is not None for r in results)
    assert len({r.fetched_at for r in results if r is not None}) == 1


async def test_the_same_plan_asked_twice_is_fetched_once_and_answered_twice() -> None:
    fetch = RecordingFetch()
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    first, second = await asyncio.gather(batcher.get(plan("shop")), batcher.get(plan("shop")))
    assert fetch.batches == [[PlanKey("web", "shop")]]
    assert first is not None
    assert first is second


async def test_a_plan_missing_from_the_snapshot_gets_none() -> None:
    def fetch_nothing(plans: Sequence[ScalePlan], now: datetime) -> SignalSnapshot:
        return {}

    batcher = SignalBatcher(fetch_nothing, window_seconds=WINDOW)
    assert await batcher.get(plan("shop")) is None


async def test_a_fetch_exception_reaches_every_waiter() -> None:
    failure = ConnectionError("prometheus is unreachable")
    fetch = RecordingFetch(fail=failure)
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    results = await asyncio.gather(
        *(batcher.get(plan(f"p{i}")) for i in range(5)), return_exceptions=True
    )
    assert len(fetch.batches) == 1
    assert all(r is failure for r in results)


async def test_the_next_tick_fetches_again() -> None:
    fetch = RecordingFetch()
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    shop, cart = plan("shop"), plan("cart")
    first = await asyncio.gather(batcher.get(shop), batcher.get(cart))
    second = await asyncio.gather(batcher.get(shop), batcher.get(cart))
    assert len(fetch.batches) == 2
    assert all(sorted(b) == [PlanKey("web", "cart"), PlanKey("web", "shop")] for b in fetch.batches)
    # A new tick means new data, never the previous tick's answer.
    assert first[0] is not second[0]


async def test_a_failed_tick_does_not_poison_the_next() -> None:
    fetch = RecordingFetch(fail=TimeoutError("slow"))
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    with pytest.raises(TimeoutError):
        await batcher.get(plan("shop"))
    fetch.fail = None
    assert await batcher.get(plan("shop")) is not None
    assert len(fetch.batches) == 2


async def test_the_fetch_runs_off_the_event_loop_thread() -> None:
    # A blocking HTTP fetch on the loop thread would stall every plan's daemon and kopf.
    fetch = RecordingFetch()
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    await batcher.get(plan("shop"))
    assert threading.get_ident() not in fetch.threads


async def test_plans_of_different_namespaces_stay_apart() -> None:
    fetch = RecordingFetch()
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    a, b = await asyncio.gather(batcher.get(plan("shop", "eu")), batcher.get(plan("shop", "us")))
    assert sorted(fetch.batches[0]) == [PlanKey("eu", "shop"), PlanKey("us", "shop")]
    assert a is not None and b is not None
    assert a is not b


def test_fetched_at_is_timezone_aware() -> None:
    # The policy compares it with aware datetimes from status; a naive one would raise.
    fetch = RecordingFetch()
    batcher = SignalBatcher(fetch, window_seconds=WINDOW)
    result = asyncio.run(batcher.get(plan("shop")))
    assert result is not None
    assert result.fetched_at.tzinfo is not None
    assert result.fetched_at.utcoffset() == UTC.utcoffset(None)
