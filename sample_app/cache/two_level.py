"""Two-level cache-aside: level 1 in process memory (see `local`) in front of Redis
(phase 2) or Redis Cluster (phase 3+).

The cache is an optimisation, never a dependency: every failure is counted and the
caller falls back to the database. After a failure a breaker keeps requests off Redis
for a short while (see `breaker`); invalidations Redis missed meanwhile are owed and
delivered before it is used again (see `owed`).

A value read before a write but stored after it (the classic cache-aside race) is not
stored: fills carry a token taken before the read, and an invalidation of the key in
between (by this process, or received from another) voids it, in process memory and in
Redis alike.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import redis
from redis.cluster import RedisCluster

from ..metrics import Metrics
from .breaker import Breaker
from .listener import INVALIDATION_CHANNEL, InvalidationListener
from .local import LocalCache, Token
from .owed import MAX_OWED_INVALIDATIONS, OwedInvalidations

log = logging.getLogger(__name__)

# A cluster client raises RedisClusterException, which is not a RedisError, when no
# node it knows answers (all of a cluster's pods replaced at once, say).
CACHE_ERRORS: tuple[type[BaseException], ...] = (
    redis.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
)


class ClusterClient:
    """A RedisCluster made on first use: its constructor asks the URL's node for the
    cluster's layout and raises when no node answers, and an app must start (and serve
    from its database) while its cache is still forming. Until one is made, each use
    tries again and raises what the constructor raised."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    # The URL names one startup node; the client discovers the rest.
                    self._client = RedisCluster.from_url(
                        self._url,
                        socket_timeout=self._timeout,
                        socket_connect_timeout=self._timeout,
                    )
                client = self._client
        return getattr(client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


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
        max_owed_invalidations: int = MAX_OWED_INVALIDATIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """local_ttl_seconds=0 (or a zero bound) turns the in-process level off: every
        lookup goes to Redis."""
        self.metrics = metrics
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        plan = metrics.plan
        self._hits = metrics.cache_hits.labels(plan=plan)
        self._local_hits = metrics.cache_local_hits.labels(plan=plan)
        self._misses = metrics.cache_misses.labels(plan=plan)
        self._up = metrics.cache_up.labels(plan=plan)
        self._reported_up = True
        self.breaker = Breaker(retry_after, clock)
        self.owed = OwedInvalidations(
            self.ttl_ms / 1000,
            max_owed_invalidations,
            clock,
            on_change=metrics.cache_invalidations_owed.labels(plan=plan).set,
        )
        # One delivery of owed invalidations at a time; other requests use the database.
        self._delivering = threading.Lock()
        self.local = LocalCache(local_max_entries, local_max_bytes, local_ttl_seconds, clock)
        self._listener: InvalidationListener | None = None
        self._listener_lock = threading.Lock()
        self._closed = False
        self.client: Any
        if cluster:
            self.client = ClusterClient(url, timeout)
        else:
            self.client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        self._up.set(1)

    def _failed(self, exc: BaseException) -> None:
        self.metrics.cache_error()
        # Other processes' invalidations cannot be trusted to arrive now.
        self.local.disable()
        if self.breaker.trip():
            log.warning("cache unavailable (%s); serving from the database", exc)
        self._reported_up = False
        self._up.set(0)

    def _succeeded(self) -> None:
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

    def _start_listener(self) -> None:
        with self._listener_lock:
            if self._listener is not None or self._closed:
                return
            self._listener = InvalidationListener(
                self.client, self.local, self.breaker, CACHE_ERRORS
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
        if not self._deliver_owed_before_reading():
            self._misses.inc()
            return None
        token = self.local.token(key)
        try:
            value = self.client.get(key) if field is None else self.client.hget(key, field)
        except CACHE_ERRORS as exc:
            self._failed(exc)
            self._misses.inc()
            return None
        self._succeeded()
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
        if not self._deliver_owed_before_reading():
            return  # a fill: Redis may hold stale entries no one can name
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
        while Redis cannot be reached, owe the Redis part (see `owed`)."""
        # Before the DEL, so that a fill already under way here is not stored; after
        # it, so that nothing read from Redis in between survives either.
        for key in keys:
            self.local.invalidate(key)
        try:
            if self._deliver_owed_before_writing():
                self._delete_and_publish(keys)
            else:
                self.owed.owe(keys)
        except CACHE_ERRORS as exc:
            self._failed(exc)
            self.owed.owe(keys)
        finally:
            for key in keys:
                self.local.invalidate(key)

    def exists(self, key: str) -> bool:
        if not self._deliver_owed_before_reading():
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
        with self._listener_lock:
            self._closed = True
            listener = self._listener
        if listener is not None:
            listener.stop()
        self.local.disable()
        with contextlib.suppress(*CACHE_ERRORS):
            self.client.close()

    # -- Redis, after what it owes -------------------------------------------

    def _delete_and_publish(self, keys: Collection[str]) -> None:
        # One key per command: in a cluster the keys may live in different slots, which
        # a cluster pipeline sends to their nodes.
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        pipe.execute()
        self.client.publish(INVALIDATION_CHANNEL, " ".join(keys))

    def _deliver_owed_before_reading(self) -> bool:
        """Deliver the owed invalidations (see `_deliver_owed_before_writing`); True if
        Redis may then be read and filled: also not while it may hold entries left stale
        by invalidations too many to remember."""
        return not self.owed.forgotten and self._deliver_owed_before_writing()

    def _deliver_owed_before_writing(self) -> bool:
        """Deliver the owed invalidations to Redis (DEL and publish) unless the breaker
        is open or another request is delivering them; True if Redis may then be
        written: nothing is owed any more."""
        if not self.breaker.closed:
            return False
        if not self.owed:
            return True
        if not self._delivering.acquire(blocking=False):
            return False  # another request is delivering them; until then, the database
        try:
            due = self.owed.due()
            self._delete_and_publish(list(due))
        except CACHE_ERRORS as exc:
            self._failed(exc)
            return False
        finally:
            self._delivering.release()
        self.owed.settle(due)
        log.info("cache back: delivered %d invalidations owed since the outage", len(due))
        return not self.owed
