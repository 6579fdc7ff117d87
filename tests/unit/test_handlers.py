"""When a plan's daemon looks again: pure timing arithmetic, no kopf loop."""

from __future__ import annotations

import math

import pytest

from phaseshift.handlers import (
    DUE_SLACK_SECONDS,
    TRANSITION_POLL_SECONDS,
    seconds_to_look,
    seconds_to_next_tick,
)


@pytest.mark.parametrize(("now", "wait"), [(0.0, 15.0), (1.0, 14.0), (29.5, 0.5), (30.0, 15.0)])
def test_ticks_fall_on_multiples_of_the_interval(now: float, wait: float) -> None:
    assert seconds_to_next_tick(15.0, now) == pytest.approx(wait)


def test_an_idle_plan_sleeps_until_its_next_aligned_tick() -> None:
    assert seconds_to_look(None, 15.0, 100.0) == pytest.approx(5.0)


def test_a_plan_in_motion_polls_when_nothing_is_due_sooner() -> None:
    assert seconds_to_look(math.inf, 15.0, 100.0) == TRANSITION_POLL_SECONDS
    assert seconds_to_look(5.0, 15.0, 100.0) == TRANSITION_POLL_SECONDS


@pytest.mark.parametrize("due", [0.0, 0.3, TRANSITION_POLL_SECONDS - 2 * DUE_SLACK_SECONDS])
def test_a_moment_due_before_the_next_poll_is_looked_at_just_after_it(due: float) -> None:
    wait = seconds_to_look(due, 15.0, 100.0)
    assert due < wait <= due + DUE_SLACK_SECONDS + 1e-9
