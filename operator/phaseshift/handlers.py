"""kopf wiring: one daemon per ScalePlan that evaluates it on a wall-clock-aligned tick.

No decisions live here: the daemon fetches signals (batched across plans), hands the
live object to the Reconciler in a worker thread, and sleeps until the next tick.
The shared objects arrive through kopf's memo (see operator_main).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from phaseshift import rollout
from phaseshift.api import GROUP, PLURAL, VERSION, InvalidSpec, ScalePlanStatus, parse_plan

log = logging.getLogger(__name__)

# While a transition or a rollout waits for something, look again this often.
TRANSITION_POLL_SECONDS = 1.0
# Look this long after a moment due by the clock, so the clock has surely passed it.
DUE_SLACK_SECONDS = 0.01
# How often a sleeping daemon looks at its (locally cached) body for a new generation.
SPEC_POLL_SECONDS = 0.25


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.persistence.finalizer = f"{GROUP}/daemons"
    settings.execution.max_workers = 16


def seconds_to_next_tick(interval: float, now: float) -> float:
    """Ticks fall on multiples of the interval, so plans with equal intervals tick together."""
    return interval - (now % interval)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0, initial_delay=0.5)
async def evaluate(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    next_decision = 0.0
    while not stopped:
        interval = float(
            body.get("spec", {}).get("policy", {}).get("evaluationIntervalSeconds", 15)
        )
        seen = _generation(body)
        due = _in_motion(body)
        if memo.leader.is_leader:
            decide = time.time() >= next_decision
            due = await _tick(body, memo, decide=decide)
            if decide:
                next_decision = time.time() + seconds_to_next_tick(interval, time.time())
        await _sleep(body, stopped, seconds_to_look(due, interval, time.time()), seen)


def seconds_to_look(due: float | None, interval: float, now: float) -> float:
    """Until the next aligned tick when nothing is under way; else the next poll, or sooner
    when the rollout has a moment due by the clock before it."""
    if due is None:
        return seconds_to_next_tick(interval, now)
    return min(TRANSITION_POLL_SECONDS, due + DUE_SLACK_SECONDS)


def _generation(body: kopf.Body) -> Any:
    return body.get("metadata", {}).get("generation")


async def _sleep(body: kopf.Body, stopped: kopf.DaemonStopped, seconds: float, seen: Any) -> None:
    """Sleep until the next tick, or until the spec differs from the one the last tick
    saw (kopf keeps `body` current): a new spec.app starts its rollout at once."""
    deadline = time.monotonic() + seconds
    while not stopped:
        left = deadline - time.monotonic()
        if left <= 0 or _generation(body) != seen:
            return
        await stopped.wait(min(left, SPEC_POLL_SECONDS))


def _in_motion(body: kopf.Body) -> float | None:
    """What the plan's last written status says, in `Reconciler.tick`'s terms: None when
    nothing is under way, else infinity (poll: no moment known to be due)."""
    try:
        status = ScalePlanStatus.model_validate(dict(body.get("status") or {}))
    except ValidationError:
        return None  # the reconciler reports what is wrong with it
    return math.inf if rollout.in_motion(status) else None


async def _tick(body: kopf.Body, memo: kopf.Memo, *, decide: bool) -> float | None:
    """One reconcile in a worker thread; see `Reconciler.tick` for what it returns."""
    started = time.monotonic()
    try:
        plan = parse_plan(body)
    except InvalidSpec:
        signals = None  # the reconciler reports the invalid spec
    else:
        wanted = decide and not plan.status.transition
        signals = await memo.batcher.get(plan) if wanted else None
    due = _in_motion(body)
    try:
        due = await asyncio.to_thread(
            memo.reconciler.tick, body, signals, datetime.now(UTC), decide=decide
        )
    except Exception:
        # Logged, not raised: the daemon must keep ticking; the next tick retries.
        log.exception(
            "evaluating %s/%s failed", body["metadata"].get("namespace"), body["metadata"]["name"]
        )
    memo.metrics.tick_seconds.observe(time.monotonic() - started)
    return due
