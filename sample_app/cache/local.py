"""Level 1 of the cache: recently read values in process memory.

Values are kept as the JSON bytes Redis holds, for at most `ttl_seconds` (1 s by
default), bounded in entries and bytes (least recently used first out). A hit costs no
network round trip. A TTL or bound of 0 turns the level off. Its freshness:

- writes made through this process invalidate it before the write returns, so a
  client that reads back through the same process always sees its write;
- writes made anywhere (other replicas, the worker) delete the Redis key and
  publish the key on the invalidation channel; every process subscribed to it drops
  the key when its listener thread handles the message. Redis sends the message
  before it acknowledges the PUBLISH, so it is on its way before the writer answers
  its client, but a read through another process in the moment (normally well
  under a millisecond) before that thread handles it can still get the old value;
- the level is used only while that subscription is up: it starts empty and off,
  and it is emptied and switched off whenever the subscription or Redis fails,
  until the subscription is confirmed again;
- whatever happens to a message, no entry is served more than `ttl_seconds` after
  it was stored (just after it was read from Redis or the database): that is the
  staleness bound for a write made elsewhere whose invalidation did not arrive (a
  writer that lost Redis between its DEL and its PUBLISH, say).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

# Taken before a value is read, so that storing it can be refused if the key was
# invalidated meanwhile: (the key's invalidation generation, level 1's emptying count).
Token = tuple[int, int]


class LocalCache:
    """A bounded LRU of cached values in process memory, each kept at most `ttl` seconds.

    Entries are keyed by (key, field) like the Redis values they copy; invalidating a
    key drops all its fields. Each key maps to one of a few generation counters that
    every invalidation bumps: a fill is stored only if the generation it was given
    (token) is still current, so a value read before an invalidation never lands
    after it. Emptying the level (clear) voids pending fills of this level only.
    """

    STRIPES = 64

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 32 * 1024 * 1024,
        ttl_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.max_bytes = max(0, max_bytes)
        # No entries at all when none could be kept or served: the level is off.
        self.max_entries = max(0, max_entries) if ttl_seconds > 0 and self.max_bytes else 0
        self.clock = clock
        # Off until invalidations from other processes are known to arrive.
        self.enabled = False
        self._entries: OrderedDict[tuple[str, str | None], tuple[float, bytes]] = OrderedDict()
        self._fields: dict[str, set[str | None]] = {}
        self._bytes = 0
        self._gens = [0] * self.STRIPES
        self._epoch = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def token(self, key: str) -> Token:
        return self._gens[hash(key) % self.STRIPES], self._epoch

    def invalidated_since(self, key: str, token: Token) -> bool:
        return self._gens[hash(key) % self.STRIPES] != token[0]

    def get(self, key: str, field: str | None = None) -> bytes | None:
        if not self.enabled:
            return None
        entry_key = (key, field)
        with self._lock:
            entry = self._entries.get(entry_key)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                self._drop(entry_key)
                return None
            self._entries.move_to_end(entry_key)
            return entry[1]

    def put(self, key: str, field: str | None, value: bytes, token: Token) -> bool:
        """Store value unless the key was invalidated, or this level emptied, since
        `token`; True if stored."""
        if not self.enabled or self.max_entries == 0 or len(value) > self.max_bytes:
            return False
        entry_key = (key, field)
        with self._lock:
            if self.token(key) != token or not self.enabled:
                return False
            if entry_key in self._entries:
                self._drop(entry_key)
            self._entries[entry_key] = (self.clock() + self.ttl, value)
            self._fields.setdefault(key, set()).add(field)
            self._bytes += len(value)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return True

    def invalidate(self, key: str) -> None:
        with self._lock:
            self._gens[hash(key) % self.STRIPES] += 1
            for field in self._fields.pop(key, ()):
                entry = self._entries.pop((key, field), None)
                if entry is not None:
                    self._bytes -= len(entry[1])

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._fields.clear()
            self._bytes = 0

    def enable(self) -> None:
        # Emptied first: nothing read while invalidations were not arriving survives.
        self.clear()
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False
        self.clear()

    def _drop(self, entry_key: tuple[str, str | None]) -> None:
        entry = self._entries.pop(entry_key, None)
        if entry is None:
            return
        self._bytes -= len(entry[1])
        key, field = entry_key
        fields = self._fields.get(key)
        if fields is not None:
            fields.discard(field)
            if not fields:
                del self._fields[key]
