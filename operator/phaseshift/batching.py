"""Coalesces the signal fetches of many plans into one batched fetch per tick.

Each plan's daemon asks for its signals at the same wall-clock tick; requests arriving
within a short window are fetched together, so plans sharing a Prometheus and a signal
template cost one query per signal, however many plans there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from phaseshift.api import ScalePlan
from phaseshift.promql import PlanKey, PlanSignals, SignalSnapshot

Fetch = Callable[[Sequence[ScalePlan], datetime], SignalSnapshot]


class SignalBatcher:
    def __init__(self, fetch: Fetch, window_seconds: float = 0.2) -> None:
        self.fetch = fetch
        self.window = window_seconds
        self._pending: dict[
            PlanKey, tuple[ScalePlan, list[asyncio.Future[PlanSignals | None]]]
        ] = {}
        self._flush: asyncio.Task[None] | None = None

    async def get(self, plan: ScalePlan) -> PlanSignals | None:
        future: asyncio.Future[PlanSignals | None] = asyncio.get_running_loop().create_future()
        key = PlanKey.of(plan)
        entry = self._pending.setdefault(key, (plan, []))
        entry[1].append(future)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._flush_soon())
        return await future

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.window)
        batch, self._pending = self._pending, {}
        plans = [plan for plan, _ in batch.values()]
        try:
            snapshot = await asyncio.to_thread(self.fetch, plans, datetime.now(UTC))
        except Exception as e:
            for _, futures in batch.values():
                for f in futures:
                    if not f.done():
                        f.set_exception(e)
            return
        for key, (_, futures) in batch.items():
            for f in futures:
                if not f.done():
                    f.set_result(snapshot.get(key))
