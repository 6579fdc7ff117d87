"""The cache's circuit breaker: after a failure, Redis is left alone for a while."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Breaker:
    """Open for `retry_after` seconds after each failure, so that an outage costs one
    timeout per interval rather than one per request.

    Time comes from `clock` alone, so its behaviour can be tested without waiting.
    """

    def __init__(self, retry_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_after = retry_after
        self.clock = clock
        # Every failure counts: a watcher that saw this number change knows Redis failed.
        self.failures = 0
        self._open_until = -math.inf
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """Whether Redis may be tried now."""
        return self.clock() >= self._open_until

    def trip(self) -> bool:
        """Record a failure and stay open for `retry_after`; True if it was closed until
        now (the first failure of an outage, the one worth a log line)."""
        with self._lock:
            was_closed = self.closed
            self._open_until = self.clock() + self.retry_after
            self.failures += 1
        return was_closed
