"""Two-level cache-aside: a small cache in process memory in front of Redis (phase 2)
or Redis Cluster (phase 3+).

The cache is an optimisation, never a dependency: every failure is counted and
the caller falls back to the database. After a failure the cache is bypassed for
a short while, so an outage costs one timeout per interval rather than one per
request.

An invalidation that cannot reach Redis (it is down, or was found failing) is owed,
not attempted: a write during an outage pays no timeout. Before this process uses
Redis again it delivers what it owes (DEL and publish), so an entry that survived
the outage (Redis kept its data, or only this process lost it) is not served. Owed
keys are bounded (MAX_OWED_INVALIDATIONS); past that bound the process cannot say
which entries are stale, so it neither reads nor fills Redis until every entry it may
have left stale has expired (the cache TTL after the last lost invalidation); its
writes still invalidate in Redis whenever Redis answers.

Level 1 (LocalCache) keeps recently read values, as the JSON bytes Redis holds, in
this process for at most `local_ttl_seconds` (1 s by default), bounded in entries
and bytes (least recently used first out). A hit there costs no network round trip.
A TTL or bound of 0 turns the level off. Its freshness:

- writes made through this process invalidate it before the write returns, so a
  client that reads back through the same process always sees its write;
- writes made anywhere (other replicas, the worker) delete the Redis key and
  publish the key on the INVALIDATION_CHANNEL; every process subscribed to it drops
  the key when its listener thread handles the message. Redis sends the message
  before it acknowledges the PUBLISH, so it is on its way before the writer answers
  its client, but a read through another process in the moment (normally well
  under a millisecond) before that thread handles it can still get the old value;
- the level is used only while that subscription is up: it starts empty and off,
  and it is emptied and switched off whenever the subscription or Redis fails,
  until the subscription is confirmed again;
- whatever happens to a message, no entry is served more than local_ttl_seconds
  after it was stored (just after it was read from Redis or the database): that is
  the staleness bound for a write made elsewhere whose invalidation did not arrive
  (a writer that lost Redis between its DEL and its PUBLISH, say).

A value read before a write but stored after it (the classic cache-aside race) is
not stored: fills carry a token taken before the read, and an invalidation of the
key in between (by this process, or received from another) voids it, in process
memory and in Redis alike.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

import redis
from redis.cluster import RedisCluster

from .metrics import Metrics

log = logging.getLogger(__name__)

CACHE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

# Writers publish the keys they invalidate here, space-separated.
INVALIDATION_CHANNEL = "phaseshift:invalidate"

# Invalidations kept for delivery once Redis is back; beyond this, the TTL rule holds.
MAX_OWED_INVALIDATIONS = 10_000


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def owner_items_key(owner: str) -> str:
    return f"items:owner:{owner}"


def item_key(item_id: str) -> str:
    return f"item:{item_id}"


def recent_write_key(user_id: str) -> str:
    return f"rw:{user_id}"


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


class Cache:
    def __init__(
        self,
        url: str,
        metrics: Metrics,
        ttl_seconds: float = 30.0,
        cluster: bool = False,
        timeout: float = 0.5,
        retry_after: float = 1.0,
        local_max_entries: int = 10_000,
        local_max_bytes: int = 32 * 1024 * 1024,
        local_ttl_seconds: float = 1.0,
    ) -> None:
        """local_ttl_seconds=0 (or a zero bound) turns the in-process level off: every
        lookup goes to Redis."""
        self.metrics = metrics
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.retry_after = retry_after
        self._down_until = 0.0
        self._failures = 0
        self._owed: dict[str, int] = {}
        self._owed_count = 0
        self._blind_until = 0.0
        self._delivering = threading.Lock()
        self._lock = threading.Lock()
        plan = metrics.plan
        self._hits = metrics.cache_hits.labels(plan=plan)
        self._local_hits = metrics.cache_local_hits.labels(plan=plan)
        self._misses = metrics.cache_misses.labels(plan=plan)
        self._up = metrics.cache_up.labels(plan=plan)
        self._owed_gauge = metrics.cache_invalidations_owed.labels(plan=plan)
        self._reported_up = True
        self.local = LocalCache(local_max_entries, local_max_bytes, local_ttl_seconds)
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()
        self.client: Any
        if cluster:
            # The URL names one startup node; the client discovers the rest.
            self.client = RedisCluster.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        else:
            self.client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        self._up.set(1)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self.metrics.cache_error()
        self._failures += 1
        # Other processes' invalidations cannot be trusted to arrive now.
        self.local.disable()
        with self._lock:
            if self.available:
                log.warning("cache unavailable (%s); serving from the database", exc)
            self._down_until = time.monotonic() + self.retry_after
        self._reported_up = False
        self._up.set(0)

    def _ok(self) -> None:
        if not self._reported_up:
            self._reported_up = True
            self._up.set(1)

    # -- level 1 -------------------------------------------------------------

    def peek(self, key: str, field: str | None = None) -> bytes | None:
        """The value from process memory only: never blocks on the network."""
        value = self.local.get(key, field)
        if value is not None:
            self._hits.inc()
            self._local_hits.inc()
        return value

    def token(self, key: str) -> Token:
        """Take before reading what will be stored under key; pass it to set()."""
        return self.local.token(key)

    def _listen(self) -> None:
        """Keep a subscription to the invalidation channel; level 1 is on only while it
        is confirmed and no request has found Redis failing since."""
        while not self._closing.is_set():
            pubsub = None
            resubscribe = False
            try:
                failures = self._failures
                pubsub = self.client.pubsub()
                pubsub.subscribe(INVALIDATION_CHANNEL)
                while not self._closing.is_set():
                    if self._failures != failures and self.available:
                        # A request found Redis failing (which emptied level 1): confirm
                        # the subscription afresh now that Redis may be used again.
                        resubscribe = True
                        break
                    message = pubsub.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        # A confirmed subscription; on a reconnection anything may have
                        # been missed before it, which enable() forgets.
                        self.local.enable()
                    elif message["type"] == "message":
                        for key in bytes(message["data"]).decode().split():
                            self.local.invalidate(key)
            except CACHE_ERRORS as exc:
                log.debug("cache invalidation channel lost: %s", exc)
            except Exception:  # the listener must outlive any surprise
                log.exception("cache invalidation listener failed")
            finally:
                self.local.disable()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            if not resubscribe:
                self._closing.wait(self.retry_after)

    def _start_listener(self) -> None:
        with self._lock:
            if self._listener is not None or self._closing.is_set():
                return
            self._listener = threading.Thread(
                target=self._listen, name="cache-invalidations", daemon=True
            )
            self._listener.start()

    # -- both levels ---------------------------------------------------------

    def get(self, key: str, field: str | None = None) -> bytes | None:
        """The cached value, or None on a miss or when the cache is unavailable.

        With a field, the value is one field of a hash: variants of one entry (pages of
        different sizes) share a key, so a single DEL invalidates all of them.
        """
        value = self.peek(key, field)
        if value is not None:
            return value
        if self._listener is None and self.local.max_entries:
            self._start_listener()  # started by the first read: writers alone need none
        if not self._usable():
            self._misses.inc()
            return None
        token = self.local.token(key)
        try:
            value = self.client.get(key) if field is None else self.client.hget(key, field)
        except CACHE_ERRORS as exc:
            self._failed(exc)
            self._misses.inc()
            return None
        self._ok()
        if value is None:
            self._misses.inc()
            return None
        self._hits.inc()
        data = bytes(value)
        self.local.put(key, field, data, token)
        return data

    def set(
        self,
        key: str,
        value: bytes,
        ttl_ms: int | None = None,
        field: str | None = None,
        token: Token | None = None,
    ) -> None:
        """Store value. With a token (from token(), taken before the value was read),
        nothing is stored if the key was invalidated since, and the value is kept in
        process memory too."""
        if token is not None and self.local.invalidated_since(key, token):
            return
        if not self._usable():
            return
        try:
            if field is None:
                self.client.set(key, value, px=ttl_ms or self.ttl_ms)
            else:
                # One key, so one slot even in a cluster: the pipeline is allowed there.
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(key, field, value)
                pipe.pexpire(key, ttl_ms or self.ttl_ms)
                pipe.execute()
            if token is not None and self.local.invalidated_since(key, token):
                # Invalidated while this was being written: do not leave it behind.
                self.client.delete(key)
                return
        except CACHE_ERRORS as exc:
            self._failed(exc)
            return
        if token is not None:
            self.local.put(key, field, value, token)

    def delete(self, *keys: str) -> None:
        """Invalidate keys here, in Redis and (by a published message) in every process;
        while Redis cannot be reached, owe the Redis part (see the module's docstring)."""
        # Before the DEL, so that a fill already under way here is not stored; after
        # it, so that nothing read from Redis in between survives either.
        for key in keys:
            self.local.invalidate(key)
        try:
            if self._deliver_owed():
                self._invalidate(keys)
            else:
                self._owe(keys)
        except CACHE_ERRORS as exc:
            self._failed(exc)
            self._owe(keys)
        finally:
            for key in keys:
                self.local.invalidate(key)

    def _invalidate(self, keys: Collection[str]) -> None:
        # One key per command: in a cluster the keys may live in different slots, which
        # a cluster pipeline sends to their nodes.
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        pipe.execute()
        self.client.publish(INVALIDATION_CHANNEL, " ".join(keys))

    def _owe(self, keys: Collection[str]) -> None:
        with self._lock:
            if (
                time.monotonic() < self._blind_until
                or len(self._owed) + len(keys) > MAX_OWED_INVALIDATIONS
            ):
                # Too many to remember: wait until whatever they left stale has expired.
                self._owed.clear()
                self._blind_until = time.monotonic() + self.ttl_ms / 1000
            else:
                for key in keys:
                    # Numbered, so that a delivery under way cannot settle a newer debt.
                    self._owed_count += 1
                    self._owed[key] = self._owed_count
            self._owed_gauge.set(len(self._owed))

    def _usable(self) -> bool:
        """Whether Redis may be read and filled now: see `_deliver_owed`, and not within
        the wait after too many invalidations were lost to remember them."""
        return time.monotonic() >= self._blind_until and self._deliver_owed()

    def _deliver_owed(self) -> bool:
        """Whether Redis may be written now: not bypassed after a failure, and every
        invalidation it missed delivered first."""
        if not self.available:
            return False
        if not self._owed:
            return True
        if not self._delivering.acquire(blocking=False):
            return False  # another request is delivering them; until then, the database
        try:
            with self._lock:
                owed = dict(self._owed)
            self._invalidate(list(owed))
        except CACHE_ERRORS as exc:
            self._failed(exc)
            return False
        finally:
            self._delivering.release()
        with self._lock:
            for key, number in owed.items():
                if self._owed.get(key) == number:  # not owed again since
                    del self._owed[key]
            self._owed_gauge.set(len(self._owed))
        log.info("cache back: delivered %d invalidations owed since the outage", len(owed))
        return not self._owed

    def exists(self, key: str) -> bool:
        if not self._usable():
            return False
        try:
            return bool(self.client.exists(key))
        except CACHE_ERRORS as exc:
            self._failed(exc)
            return False

    def ping(self) -> bool:
        try:
            self.client.ping()
        except CACHE_ERRORS:
            return False
        return True

    def close(self) -> None:
        self._closing.set()
        listener = self._listener
        if listener is not None:
            listener.join(2)
        self.local.disable()
        with contextlib.suppress(*CACHE_ERRORS):
            self.client.close()
