"""Invalidations owed to Redis while it could not be reached.

An invalidation that cannot reach Redis (it is down, or was found failing) is owed,
not attempted: a write during an outage pays no timeout. Before a process uses Redis
again it delivers what it owes (DEL and publish), so an entry that survived the outage
(Redis kept its data, or only this process lost it) is not served.

Owed keys are bounded (MAX_OWED_INVALIDATIONS). Past that bound the process cannot say
which entries are stale, so it forgets them all and must neither read nor fill Redis
until every entry it may have left stale has expired: the cache TTL after the last
lost invalidation. Its writes still invalidate in Redis whenever Redis answers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Mapping

# Invalidations kept for delivery once Redis is back; beyond this, the TTL rule holds.
MAX_OWED_INVALIDATIONS = 10_000


def _ignore(count: int) -> None:
    pass


class OwedInvalidations:
    """The keys whose invalidation Redis has not received, each numbered when it was
    owed so that a delivery under way cannot settle a newer debt of the same key.

    Nothing here talks to Redis, and time comes from `clock` alone.
    """

    def __init__(
        self,
        entry_ttl_seconds: float,
        limit: int = MAX_OWED_INVALIDATIONS,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int], None] = _ignore,
    ) -> None:
        """`on_change` is told the number owed after every change, under the lock, so a
        gauge fed by it never shows an older count after a newer one."""
        self.entry_ttl = entry_ttl_seconds
        self.limit = limit
        self.clock = clock
        self.on_change = on_change
        self._owed: dict[str, int] = {}
        self._last_number = 0
        self._forgotten_until = -math.inf
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._owed)

    @property
    def forgotten(self) -> bool:
        """Whether Redis may still hold entries left stale by invalidations too many to
        remember: until then it must be neither read nor filled."""
        return self.clock() < self._forgotten_until

    def owe(self, keys: Collection[str]) -> None:
        with self._lock:
            if self.forgotten or len(self._owed) + len(keys) > self.limit:
                # Too many to remember: wait until whatever they left stale has expired.
                self._owed.clear()
                self._forgotten_until = self.clock() + self.entry_ttl
            else:
                for key in keys:
                    self._last_number += 1
                    self._owed[key] = self._last_number
            self.on_change(len(self._owed))

    def due(self) -> dict[str, int]:
        """What is owed now, to deliver and then pass to `settle`."""
        with self._lock:
            return dict(self._owed)

    def settle(self, delivered: Mapping[str, int]) -> None:
        """Forget what `delivered` (from `due`) covered, but not a key owed again since."""
        with self._lock:
            for key, number in delivered.items():
                if self._owed.get(key) == number:
                    del self._owed[key]
            self.on_change(len(self._owed))
