"""Polling until something holds: the one wait helper of the integration tests and benches."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_SHOWN_CHARS = 500


def wait_for(
    produce: Callable[[], T],
    timeout: float = 90.0,
    what: object = "",
    poll: float = 0.25,
    *,
    until: Callable[[T], object] = bool,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Calls `produce` every `poll` seconds until `until` holds for its value (by default:
    until the value is truthy), and returns that value.

    An exception in `retry_on` counts as "not yet" (a server still starting refuses
    connections); any other propagates at once. After `timeout` seconds it raises
    AssertionError naming `what` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = produce()
        except retry_on as e:
            last = e
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            shown = repr(last)
            if len(shown) > _SHOWN_CHARS:
                shown = shown[:_SHOWN_CHARS] + "..."
            raise AssertionError(f"timed out waiting for {what} (last: {shown})")
        time.sleep(poll)
